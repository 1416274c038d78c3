//! Redis: the server's own RDB snapshot to capture, and every key replayed with
//! `RESTORE ... REPLACE` to restore.
//!
//! Capture runs `redis-cli --rdb FILE`: the server forks and streams a
//! point-in-time RDB of all its logical databases, exactly the file it would
//! write to disk itself, while it keeps serving. `redis-check-rdb` then reads it
//! end to end (checksum included) and counts its keys. The server starts the
//! transfer after its `repl-diskless-sync-delay` (5s by default), so a capture
//! takes at least that long unless the server's setting is lowered.
//!
//! # Why restore replays keys instead of swapping the RDB file
//!
//! The documented way to load an RDB (stop the server, put the file in its
//! `dir`, start it again) needs write access to the server's data directory and
//! the right to restart it: root, on most hosts. backout runs as the
//! application's user and reaches Redis over its URL, so restore uses only the
//! protocol: it starts a private, unprivileged `redis-server` on a Unix socket in
//! a temporary directory (no TCP port) that loads the snapshot, reads each key
//! there with `DUMP` and `PTTL`, writes it into the real server with
//! `RESTORE key ttl payload REPLACE`, then deletes the keys the snapshot does
//! not hold. The payloads come from a server of the same build as the tools, so
//! the target must run the same or a newer Redis (RESTORE refuses newer
//! payloads, and the error says so).
//!
//! A URL naming a database (`redis://host:6379/2`) restores that database only;
//! without one, every database in the snapshot or on the server is restored.
//! The replay is not atomic: clients connected meanwhile see keys change one by
//! one, so stop writers first (a `service` step before the restore) when that
//! matters. Keys whose expiry passed since the capture stay expired.
//!
//! The password goes to `redis-cli` in `REDISCLI_AUTH`, never in its arguments,
//! and to the server in an `AUTH` command.

pub mod contents;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};

use super::{DbError, DbSnapshot, RestorePlan, RestoreReport, ServerUrl, finish_file, human_bytes, run_tool};
use crate::plan::{Database, DbKind};

/// Keys fetched and written per round trip.
const BATCH: usize = 500;

/// The dump's file name for database `name`.
pub fn dump_name(name: &str) -> String {
    format!("{name}.rdb")
}

/// Where a Redis URL points.
#[derive(Debug, Clone)]
struct Target {
    url: ServerUrl,
    host: String,
    port: u16,
    user: Option<String>,
    /// The logical database the URL names, if it names one.
    db: Option<u32>,
}

impl Target {
    fn parse(db: &Database) -> Result<Target, DbError> {
        let url = ServerUrl::parse(db)?;
        let bad = |message: String| DbError::Location {
            name: db.name.clone(),
            message,
        };
        let host = url
            .bare
            .host_str()
            .ok_or_else(|| bad(format!("{} names no host", url.shown())))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let path = url.bare.path().trim_matches('/');
        let dbn = if path.is_empty() {
            None
        } else {
            Some(
                path.parse::<u32>()
                    .map_err(|_| bad(format!("{}: {path:?} is not a database number", url.shown())))?,
            )
        };
        Ok(Target {
            port: url.bare.port().unwrap_or(6379),
            user: Some(url.bare.username().to_string()).filter(|u| !u.is_empty()),
            db: dbn,
            host,
            url,
        })
    }

    fn shown(&self) -> String {
        self.url.shown()
    }

    fn error(&self, message: impl AsRef<str>) -> DbError {
        DbError::Redis {
            target: self.shown(),
            message: self.url.scrub(message.as_ref()),
        }
    }

    /// Connects, authenticates, and selects the URL's database.
    async fn connect(&self) -> Result<Resp<tokio::net::TcpStream>, DbError> {
        let addr = (self.host.as_str(), self.port);
        let stream = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| self.error("no answer within 10s"))?
            .map_err(|e| self.error(format!("cannot connect: {e}")))?;
        let mut conn = Resp::new(stream);
        if let Some(pw) = &self.url.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(u) = &self.user {
                args.push(u.as_bytes());
            }
            args.push(pw.as_bytes());
            self.ok(conn.call(&args).await, "AUTH")?;
        }
        if let Some(n) = self.db {
            self.ok(conn.call(&[b"SELECT", n.to_string().as_bytes()]).await, "SELECT")?;
        }
        Ok(conn)
    }

    /// The reply, or an error naming the command.
    fn ok(&self, r: std::io::Result<Reply>, what: &str) -> Result<Reply, DbError> {
        match r {
            Ok(Reply::Error(e)) => Err(self.error(format!("{what}: {e}"))),
            Ok(r) => Ok(r),
            Err(e) => Err(self.error(format!("{what}: {e}"))),
        }
    }

    fn cli_env(&self) -> Vec<(String, String)> {
        self.url
            .password
            .iter()
            .map(|p| ("REDISCLI_AUTH".to_string(), p.clone()))
            .collect()
    }
}

/// Dumps the server's dataset into `dest_dir/<name>.rdb`.
pub async fn capture(db: &Database, dest_dir: &Path) -> Result<DbSnapshot, DbError> {
    let target = Target::parse(db)?;
    let name = dump_name(&db.name);
    let tmp = dest_dir.join(format!("{name}.partial"));
    let mut argv: Vec<String> = vec![
        "redis-cli".into(),
        "--no-auth-warning".into(),
        "-h".into(),
        target.host.clone(),
        "-p".into(),
        target.port.to_string(),
    ];
    if let Some(u) = &target.user {
        argv.extend(["--user".into(), u.clone()]);
    }
    argv.extend(["--rdb".into(), tmp.display().to_string()]);
    let out = run_tool(
        argv,
        target.cli_env(),
        dest_dir,
        db.timeout,
        Some(&target.url),
        &target.shown(),
    )
    .await;
    // redis-cli exits 0 on some failures; a finished transfer says so.
    let finished = out
        .as_ref()
        .is_ok_and(|o| o.output.contains("Transfer finished with success"));
    if !finished {
        let _ = std::fs::remove_file(&tmp);
    }
    let out = out?;
    if !finished {
        return Err(target.error(format!(
            "redis-cli --rdb did not finish: {}",
            crate::exec::tail_lines(&out.output, 4)
        )));
    }
    let file = finish_file(&tmp, dest_dir, &name)?;
    let check = check_rdb(&dest_dir.join(&name), db.timeout, &db.name).await?;
    Ok(DbSnapshot {
        name: db.name.clone(),
        kind: DbKind::Redis,
        file,
        server_version: check.version,
        tables: None,
        keys: Some(check.keys),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RdbCheck {
    version: String,
    keys: u64,
}

/// Parses `redis-check-rdb` output: the writer's version and the key count.
fn parse_check(text: &str) -> Option<RdbCheck> {
    let version = text
        .lines()
        .find_map(|l| l.split("AUX FIELD redis-ver = ").nth(1))
        .map(|v| v.trim().trim_matches('\'').to_string())
        .unwrap_or_default();
    let keys = text
        .lines()
        .find_map(|l| l.strip_prefix("[info] ")?.strip_suffix(" keys read"))?
        .trim()
        .parse()
        .ok()?;
    text.contains("RDB looks OK").then_some(RdbCheck { version, keys })
}

async fn check_rdb(path: &Path, timeout: Duration, name: &str) -> Result<RdbCheck, DbError> {
    let argv = vec!["redis-check-rdb".into(), path.display().to_string()];
    let dir = path.parent().unwrap_or(Path::new("."));
    let corrupt = |reason: String| DbError::Corrupt {
        name: name.to_string(),
        path: path.to_path_buf(),
        reason,
    };
    match run_tool(argv, Vec::new(), dir, timeout, None, &path.display().to_string()).await {
        Ok(out) => parse_check(&out.output).ok_or_else(|| {
            corrupt(format!(
                "redis-check-rdb did not accept it: {}",
                crate::exec::tail_lines(&out.output, 4)
            ))
        }),
        Err(DbError::Tool { output, .. }) => Err(corrupt(format!("redis-check-rdb rejects it: {output}"))),
        Err(e) => Err(e),
    }
}

/// Checks the dump's hash, that `redis-check-rdb` reads it, and its key count.
pub async fn verify(snap: &DbSnapshot, dir: &Path, timeout: Duration) -> Result<(), DbError> {
    let path = snap.file.check(dir, &snap.name)?;
    let check = check_rdb(&path, timeout, &snap.name).await?;
    if Some(check.keys) != snap.keys {
        return Err(DbError::Corrupt {
            name: snap.name.clone(),
            path,
            reason: format!(
                "it holds {} keys where the capture recorded {}",
                check.keys,
                snap.keys.unwrap_or(0)
            ),
        });
    }
    Ok(())
}

/// Key counts per logical database, from `INFO keyspace`.
async fn keyspace<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Resp<S>,
    target: &Target,
) -> Result<BTreeMap<u32, u64>, DbError> {
    let info = target.ok(conn.call(&[b"INFO", b"keyspace"]).await, "INFO keyspace")?;
    let text = info.text().unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(|l| {
            let (db, rest) = l.split_once(':')?;
            let n = db.strip_prefix("db")?.parse().ok()?;
            let keys = rest.split(',').find_map(|kv| kv.strip_prefix("keys="))?.parse().ok()?;
            Some((n, keys))
        })
        .collect())
}

/// Says what restoring `snap` would replace, touching nothing.
pub async fn plan_restore(db: &Database, snap: &DbSnapshot, dir: &Path) -> Result<RestorePlan, DbError> {
    let target = Target::parse(db)?;
    verify(snap, dir, db.timeout).await?;
    let mut conn = target.connect().await?;
    let now = keyspace(&mut conn, &target).await?;
    let (scope, keys_now) = match target.db {
        Some(n) => (format!("database {n}"), now.get(&n).copied().unwrap_or(0)),
        None => ("every database".to_string(), now.values().sum()),
    };
    Ok(RestorePlan {
        name: db.name.clone(),
        kind: DbKind::Redis,
        target: target.shown(),
        actions: vec![
            format!(
                "write every key of the checkpoint's snapshot ({} key(s) in all, {}, Redis {}) into {scope} with RESTORE ... REPLACE",
                snap.keys.unwrap_or(0),
                human_bytes(snap.file.size),
                snap.server_version
            ),
            format!("delete the keys of {scope} the snapshot does not hold ({keys_now} key(s) there now)"),
        ],
    })
}

/// Verifies the dump, then makes the server's keys those of the snapshot.
pub async fn restore(db: &Database, snap: &DbSnapshot, dir: &Path) -> Result<RestoreReport, DbError> {
    let target = Target::parse(db)?;
    verify(snap, dir, db.timeout).await?;
    let mut dst = target.connect().await?;
    // The scratch server must have room for every database the snapshot uses.
    let databases = match dst.call(&[b"CONFIG", b"GET", b"databases"]).await {
        Ok(Reply::Array(Some(v))) => v.get(1).and_then(Reply::text).and_then(|t| t.parse::<u32>().ok()),
        _ => None,
    }
    .unwrap_or(16)
    .max(16);
    let scratch = Scratch::start(&dir.join(&snap.file.name), databases, db.timeout).await?;
    let mut src = scratch.connect().await?;
    let src_target = scratch.target();

    let dbs: Vec<u32> = match target.db {
        Some(n) => vec![n],
        None => {
            let mut all: Vec<u32> = keyspace(&mut src, &src_target).await?.into_keys().collect();
            all.extend(keyspace(&mut dst, &target).await?.into_keys());
            all.sort_unstable();
            all.dedup();
            all
        }
    };
    let mut report = RestoreReport {
        name: db.name.clone(),
        steps: Vec::new(),
    };
    for n in dbs {
        let nb = n.to_string();
        src_target.ok(src.call(&[b"SELECT", nb.as_bytes()]).await, "SELECT")?;
        target.ok(dst.call(&[b"SELECT", nb.as_bytes()]).await, "SELECT")?;
        let kept = replay(&mut src, &src_target, &mut dst, &target).await?;
        let deleted = delete_others(&mut dst, &target, &kept).await?;
        report.steps.push(format!(
            "database {n}: wrote {} key(s) with RESTORE ... REPLACE, deleted {deleted} key(s) the snapshot does not hold",
            kept.len()
        ));
    }
    scratch.stop().await;
    Ok(report)
}

/// Copies every key of `src`'s selected database into `dst`'s; returns the keys.
async fn replay<A, B>(
    src: &mut Resp<A>,
    st: &Target,
    dst: &mut Resp<B>,
    dt: &Target,
) -> Result<HashSet<Vec<u8>>, DbError>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut keys = HashSet::new();
    let mut cursor = b"0".to_vec();
    loop {
        let (next, batch) = scan(src, st, &cursor).await?;
        for chunk in batch.chunks(BATCH) {
            for k in chunk {
                src.send(&[b"DUMP", k]).await.map_err(|e| st.error(e.to_string()))?;
                src.send(&[b"PTTL", k]).await.map_err(|e| st.error(e.to_string()))?;
            }
            src.flush().await.map_err(|e| st.error(e.to_string()))?;
            let mut restores = Vec::with_capacity(chunk.len());
            for k in chunk {
                let dump = st.ok(src.read().await, "DUMP")?;
                let ttl = st.ok(src.read().await, "PTTL")?;
                let (Reply::Bulk(Some(payload)), Reply::Int(ttl)) = (dump, ttl) else {
                    continue; // gone in between: cannot happen on the private server
                };
                restores.push((k, payload, ttl.max(0).to_string()));
            }
            for (k, payload, ttl) in &restores {
                dst.send(&[b"RESTORE", k, ttl.as_bytes(), payload, b"REPLACE"])
                    .await
                    .map_err(|e| dt.error(e.to_string()))?;
            }
            dst.flush().await.map_err(|e| dt.error(e.to_string()))?;
            for (k, _, _) in &restores {
                match dt.ok(dst.read().await, "RESTORE") {
                    Ok(_) => {}
                    Err(DbError::Redis { target, message }) if message.contains("payload version") => {
                        return Err(DbError::Redis {
                            target,
                            message: format!(
                                "{message} (the server runs an older Redis than this machine's redis-server, which read the snapshot)"
                            ),
                        });
                    }
                    Err(e) => return Err(e),
                }
                keys.insert(k.to_vec());
            }
        }
        if next == b"0" {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Deletes the keys of `dst`'s selected database that are not in `keep`.
async fn delete_others<B: AsyncRead + AsyncWrite + Unpin>(
    dst: &mut Resp<B>,
    dt: &Target,
    keep: &HashSet<Vec<u8>>,
) -> Result<u64, DbError> {
    // Collect first: deleting while scanning is allowed but may skip keys.
    let mut doomed = HashSet::new();
    let mut cursor = b"0".to_vec();
    loop {
        let (next, batch) = scan(dst, dt, &cursor).await?;
        doomed.extend(batch.into_iter().filter(|k| !keep.contains(k)));
        if next == b"0" {
            break;
        }
        cursor = next;
    }
    let doomed: Vec<Vec<u8>> = doomed.into_iter().collect();
    let mut deleted = 0;
    for chunk in doomed.chunks(BATCH) {
        let mut args: Vec<&[u8]> = vec![b"UNLINK"];
        args.extend(chunk.iter().map(Vec::as_slice));
        if let Reply::Int(n) = dt.ok(dst.call(&args).await, "UNLINK")? {
            deleted += n as u64;
        }
    }
    Ok(deleted)
}

async fn scan<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Resp<S>,
    t: &Target,
    cursor: &[u8],
) -> Result<(Vec<u8>, Vec<Vec<u8>>), DbError> {
    let reply = t.ok(conn.call(&[b"SCAN", cursor, b"COUNT", b"1000"]).await, "SCAN")?;
    let Reply::Array(Some(mut parts)) = reply else {
        return Err(t.error("SCAN: unexpected reply"));
    };
    let keys = match parts.pop() {
        Some(Reply::Array(Some(ks))) => ks
            .into_iter()
            .filter_map(|k| match k {
                Reply::Bulk(Some(b)) => Some(b),
                _ => None,
            })
            .collect(),
        _ => return Err(t.error("SCAN: unexpected reply")),
    };
    let next = match parts.pop() {
        Some(Reply::Bulk(Some(c))) => c,
        _ => return Err(t.error("SCAN: unexpected reply")),
    };
    Ok((next, keys))
}

/// A private redis-server holding the snapshot, on a Unix socket only.
struct Scratch {
    child: tokio::process::Child,
    socket: PathBuf,
    // Removed (with the copy of the snapshot) when the scratch server goes.
    _dir: tempfile::TempDir,
}

impl Scratch {
    async fn start(rdb: &Path, databases: u32, timeout: Duration) -> Result<Scratch, DbError> {
        let dir = tempfile::Builder::new()
            .prefix("backout-redis")
            .tempdir()
            .map_err(|source| DbError::Io {
                action: "create a temporary directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let copy = dir.path().join("snapshot.rdb");
        std::fs::copy(rdb, &copy).map_err(|source| DbError::Io {
            action: "copy",
            path: rdb.to_path_buf(),
            source,
        })?;
        let socket = dir.path().join("redis.sock");
        let log = dir.path().join("redis.log");
        let args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--unixsocket".into(),
            socket.display().to_string(),
            "--unixsocketperm".into(),
            "700".into(),
            "--dir".into(),
            dir.path().display().to_string(),
            "--dbfilename".into(),
            "snapshot.rdb".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--databases".into(),
            databases.to_string(),
            "--logfile".into(),
            log.display().to_string(),
        ];
        let child = tokio::process::Command::new("redis-server")
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DbError::Spawn {
                program: "redis-server".into(),
                source: crate::exec::ExecError::Spawn {
                    program: "redis-server".into(),
                    cwd: dir.path().to_path_buf(),
                    source,
                },
            })?;
        let mut scratch = Scratch {
            child,
            socket,
            _dir: dir,
        };
        let deadline = crate::context::async_deadline(timeout);
        loop {
            if let Ok(mut c) = scratch.connect().await
                && matches!(c.call(&[b"PING"]).await, Ok(Reply::Simple(ref s)) if s == "PONG")
            {
                return Ok(scratch);
            }
            if let Ok(Some(status)) = scratch.child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(DbError::Tool {
                    program: "redis-server".into(),
                    target: rdb.display().to_string(),
                    how: format!("{status}"),
                    output: format!("it could not load the snapshot: {}", crate::exec::tail_lines(&log, 4)),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DbError::Tool {
                    program: "redis-server".into(),
                    target: rdb.display().to_string(),
                    how: "timed out".into(),
                    output: format!("it did not load the snapshot within {}s", timeout.as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn connect(&self) -> Result<Resp<tokio::net::UnixStream>, DbError> {
        let s = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.target().error(format!("cannot connect: {e}")))?;
        Ok(Resp::new(s))
    }

    fn target(&self) -> Target {
        Target {
            url: ServerUrl {
                bare: reqwest::Url::parse("unix:///scratch").expect("a valid URL"),
                password: None,
            },
            host: String::new(),
            port: 0,
            user: None,
            db: None,
        }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A reply in the Redis protocol (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// A minimal RESP2 client: binary-safe commands, pipelining by `send` + `flush`
/// then one `read` per command.
struct Resp<S> {
    io: BufStream<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Resp<S> {
    fn new(s: S) -> Self {
        Resp { io: BufStream::new(s) }
    }

    async fn send(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        self.io.write_all(format!("*{}\r\n", args.len()).as_bytes()).await?;
        for a in args {
            self.io.write_all(format!("${}\r\n", a.len()).as_bytes()).await?;
            self.io.write_all(a).await?;
            self.io.write_all(b"\r\n").await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.io.flush().await
    }

    async fn call(&mut self, args: &[&[u8]]) -> std::io::Result<Reply> {
        self.send(args).await?;
        self.flush().await?;
        self.read().await
    }

    async fn read(&mut self) -> std::io::Result<Reply> {
        Box::pin(self.read_inner()).await
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = Vec::new();
        self.io.read_until(b'\n', &mut line).await?;
        if !line.ends_with(b"\r\n") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed mid-reply",
            ));
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    async fn read_inner(&mut self) -> std::io::Result<Reply> {
        let line = self.line().await?;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad reply line {line:?}"));
        let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        Ok(match kind {
            "+" => Reply::Simple(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut buf = vec![0; n as usize + 2];
                    self.io.read_exact(&mut buf).await?;
                    buf.truncate(n as usize);
                    Reply::Bulk(Some(buf))
                }
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Reply::Array(None)
                } else {
                    let mut items = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        items.push(Box::pin(self.read_inner()).await?);
                    }
                    Reply::Array(Some(items))
                }
            }
            _ => return Err(bad()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    fn redis() -> Option<String> {
        testing::server_url("BACKOUT_TEST_REDIS_URL")
    }

    /// A connection to database `n` of the test server, like an application's.
    async fn app(url: &str) -> (Target, Resp<tokio::net::TcpStream>) {
        let t = Target::parse(&testing::spec("cache", DbKind::Redis, url)).unwrap();
        let c = t.connect().await.unwrap();
        (t, c)
    }

    async fn call(c: &mut Resp<tokio::net::TcpStream>, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        c.call(&args).await.unwrap()
    }

    async fn get(c: &mut Resp<tokio::net::TcpStream>, k: &str) -> Option<String> {
        call(c, &["GET", k]).await.text()
    }

    #[test]
    fn check_output_parses() {
        let text =
            "[offset 27] AUX FIELD redis-ver = '7.0.15'\n[offset 192] \\o/ RDB looks OK! \\o/\n[info] 2 keys read\n";
        assert_eq!(
            parse_check(text),
            Some(RdbCheck {
                version: "7.0.15".into(),
                keys: 2
            })
        );
        assert_eq!(parse_check("[info] 2 keys read\n--- RDB ERROR DETECTED ---"), None);
    }

    #[tokio::test]
    async fn capture_and_restore_with_an_app_connected() {
        let Some(base) = redis() else { return };
        let url = testing::redis_db_url(&base, 11);
        let (_, mut c) = app(&url).await;
        call(&mut c, &["FLUSHDB"]).await;
        call(&mut c, &["SET", "greeting", "hello"]).await;
        call(&mut c, &["RPUSH", "queue", "a", "b", "c"]).await;
        call(&mut c, &["HSET", "user:1", "name", "ada", "role", "admin"]).await;
        call(&mut c, &["SET", "session", "s1", "EX", "3600"]).await;
        call(&mut c, &["SET", "bin\r\nkey", "v\0al"]).await;

        let spec = testing::spec("cache", DbKind::Redis, &url);
        let store = tempfile::tempdir().unwrap();
        let snap = capture(&spec, store.path()).await.unwrap();
        assert!(snap.keys.unwrap() >= 5, "{snap:?}");
        assert!(snap.server_version.starts_with('7'), "{snap:?}");
        verify(&snap, store.path(), spec.timeout).await.unwrap();

        // After the checkpoint, the app changes, adds and deletes keys, and stays connected.
        call(&mut c, &["SET", "greeting", "changed"]).await;
        call(&mut c, &["LPOP", "queue"]).await;
        call(&mut c, &["DEL", "user:1"]).await;
        call(&mut c, &["SET", "new-key", "x"]).await;

        let plan = plan_restore(&spec, &snap, store.path()).await.unwrap();
        assert!(plan.actions.join("\n").contains("database 11"), "{plan:?}");
        let report = restore(&spec, &snap, store.path()).await.unwrap();
        assert!(report.steps[0].contains("deleted 1 key"), "{report:?}");

        // The app's own connection sees the checkpoint's data.
        assert_eq!(get(&mut c, "greeting").await.as_deref(), Some("hello"));
        assert_eq!(get(&mut c, "new-key").await, None);
        assert_eq!(
            call(&mut c, &["LRANGE", "queue", "0", "-1"]).await,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"a".to_vec())),
                Reply::Bulk(Some(b"b".to_vec())),
                Reply::Bulk(Some(b"c".to_vec()))
            ]))
        );
        assert_eq!(
            call(&mut c, &["HGET", "user:1", "role"]).await.text().as_deref(),
            Some("admin")
        );
        assert_eq!(get(&mut c, "bin\r\nkey").await.as_deref(), Some("v\0al"));
        let Reply::Int(ttl) = call(&mut c, &["TTL", "session"]).await else {
            panic!()
        };
        assert!((3500..=3600).contains(&ttl), "the expiry survives: {ttl}");
        assert_eq!(call(&mut c, &["DBSIZE"]).await, Reply::Int(5));
    }

    #[tokio::test]
    async fn a_corrupted_dump_is_refused_before_restore() {
        let Some(base) = redis() else { return };
        let url = testing::redis_db_url(&base, 12);
        let (_, mut c) = app(&url).await;
        call(&mut c, &["FLUSHDB"]).await;
        call(&mut c, &["SET", "k", "before"]).await;
        let spec = testing::spec("cache", DbKind::Redis, &url);
        let store = tempfile::tempdir().unwrap();
        let mut snap = capture(&spec, store.path()).await.unwrap();
        call(&mut c, &["SET", "k", "after"]).await;
        let dump = store.path().join(&snap.file.name);
        let mut bytes = std::fs::read(&dump).unwrap();
        let n = bytes.len();
        bytes[n - 12] ^= 0x40;
        std::fs::write(&dump, &bytes).unwrap();
        let e = restore(&spec, &snap, store.path()).await.unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        // Damage recorded as if it were the original: redis-check-rdb's checksum catches it.
        snap.file = super::super::DumpFile::of(store.path(), &snap.file.name).unwrap();
        let e = verify(&snap, store.path(), spec.timeout).await.unwrap_err().to_string();
        assert!(e.contains("redis-check-rdb"), "{e}");
        assert_eq!(get(&mut c, "k").await.as_deref(), Some("after"));
    }

    #[tokio::test]
    async fn the_password_stays_out_of_arguments_and_errors() {
        let Some(base) = redis() else { return };
        let password = testing::password_of(&base);
        let url = testing::redis_db_url(&base, 13);
        let spec = testing::spec("cache", DbKind::Redis, &url);
        let store = tempfile::tempdir().unwrap();
        let watch = testing::ArgvWatch::start(&password);
        let snap = capture(&spec, store.path()).await.unwrap();
        let plan = plan_restore(&spec, &snap, store.path()).await.unwrap();
        let report = restore(&spec, &snap, store.path()).await.unwrap();
        let leaked = watch.finish();
        assert!(leaked.is_empty(), "the password was in argv: {leaked:?}");
        assert!(!format!("{snap:?}{plan:?}{report:?}").contains(&password));
        assert!(plan.target.contains("********"), "{plan:?}");
        let mut wrong = reqwest::Url::parse(&url).unwrap();
        wrong.set_password(Some(&format!("{password}x"))).unwrap();
        let mut closed = reqwest::Url::parse(&url).unwrap();
        closed.set_port(Some(1)).unwrap();
        for u in [wrong, closed] {
            let spec = testing::spec("cache", DbKind::Redis, u.as_str());
            for e in [
                capture(&spec, store.path()).await.unwrap_err(),
                restore(&spec, &snap, store.path()).await.unwrap_err(),
            ] {
                let text = format!("{e} {e:?}");
                assert!(!text.contains(&password), "{text}");
                assert!(text.contains("********"), "{text}");
            }
        }
    }
}
