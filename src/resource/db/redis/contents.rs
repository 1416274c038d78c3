//! Reading a snapshot's keys: what restoring it would discard (keys added,
//! changed and deleted since, per logical database) and a readable listing of
//! it for `backout export --format text` (one `redis-cli` command per key, so
//! the listing can be replayed).
//!
//! Both load the snapshot into the private scratch server restore uses. Keys
//! are compared by their `DUMP` payload (its version and checksum trailer left
//! out); where payloads differ — a server of another version, or the same value
//! held in another encoding — by their value read by type.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{BATCH, Reply, Resp, Scratch, Target, keyspace, scan};
use crate::plan::Database;
use crate::resource::db::{DbError, DbSnapshot, Measured};
use crate::resource::discard::Count;

/// Every key of the selected database.
async fn all_keys<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Resp<S>, t: &Target) -> Result<Vec<Vec<u8>>, DbError> {
    let mut keys = HashSet::new();
    let mut cursor = b"0".to_vec();
    loop {
        let (next, batch) = scan(c, t, &cursor).await?;
        keys.extend(batch);
        if next == b"0" {
            let mut v: Vec<Vec<u8>> = keys.into_iter().collect();
            v.sort();
            return Ok(v);
        }
        cursor = next;
    }
}

/// `DUMP` payloads of `keys`, trailer (RDB version and CRC) cut off.
async fn payloads<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Resp<S>,
    t: &Target,
    keys: &[&Vec<u8>],
) -> Result<Vec<Option<Vec<u8>>>, DbError> {
    for k in keys {
        c.send(&[b"DUMP", k]).await.map_err(|e| t.error(e.to_string()))?;
    }
    c.flush().await.map_err(|e| t.error(e.to_string()))?;
    let mut out = Vec::with_capacity(keys.len());
    for _ in keys {
        out.push(match t.ok(c.read().await, "DUMP")? {
            Reply::Bulk(Some(mut p)) => {
                p.truncate(p.len().saturating_sub(10));
                Some(p)
            }
            _ => None,
        });
    }
    Ok(out)
}

fn flatten(r: &Reply, out: &mut Vec<Vec<u8>>) {
    match r {
        Reply::Bulk(Some(b)) => out.push(b.clone()),
        Reply::Simple(s) | Reply::Error(s) => out.push(s.as_bytes().to_vec()),
        Reply::Int(i) => out.push(i.to_string().into_bytes()),
        Reply::Array(Some(items)) => items.iter().for_each(|i| flatten(i, out)),
        Reply::Bulk(None) | Reply::Array(None) => out.push(Vec::new()),
    }
}

/// A key's type and value, read by type: `(type, parts)`; sets and hashes
/// sorted, so equal values read alike.
async fn value<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Resp<S>,
    t: &Target,
    key: &[u8],
) -> Result<(String, Vec<Vec<u8>>), DbError> {
    let kind = t.ok(c.call(&[b"TYPE", key]).await, "TYPE")?.text().unwrap_or_default();
    let args: Vec<&[u8]> = match kind.as_str() {
        "string" => vec![b"GET", key],
        "list" => vec![b"LRANGE", key, b"0", b"-1"],
        "set" => vec![b"SMEMBERS", key],
        "zset" => vec![b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"],
        "hash" => vec![b"HGETALL", key],
        "stream" => vec![b"XRANGE", key, b"-", b"+"],
        _ => vec![b"DUMP", key],
    };
    let reply = t.ok(c.call(&args).await, "read a key")?;
    let mut parts = Vec::new();
    match (kind.as_str(), &reply) {
        ("hash", Reply::Array(Some(items))) => {
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = items
                .chunks(2)
                .map(|p| {
                    let mut f = Vec::new();
                    p.iter().for_each(|x| flatten(x, &mut f));
                    (
                        f.first().cloned().unwrap_or_default(),
                        f.get(1).cloned().unwrap_or_default(),
                    )
                })
                .collect();
            pairs.sort();
            for (f, v) in pairs {
                parts.push(f);
                parts.push(v);
            }
        }
        ("stream", Reply::Array(Some(entries))) => {
            // Kept nested: [id, [field, value, ...]] per entry, flattened with a marker.
            for e in entries {
                parts.push(b"\x00entry".to_vec());
                flatten(e, &mut parts);
            }
        }
        _ => {
            flatten(&reply, &mut parts);
            if kind == "set" {
                parts.sort();
            }
        }
    }
    Ok((kind, parts))
}

/// Compares the server's keys with the snapshot in `dir`.
pub async fn measure(db: &Database, snap: &DbSnapshot, dir: &Path) -> Result<Measured, DbError> {
    let target = Target::parse(db)?;
    let mut dst = target.connect().await?;
    let databases = match dst.call(&[b"CONFIG", b"GET", b"databases"]).await {
        Ok(Reply::Array(Some(v))) => v.get(1).and_then(Reply::text).and_then(|t| t.parse::<u32>().ok()),
        _ => None,
    }
    .unwrap_or(16)
    .max(16);
    let scratch = Scratch::start(&dir.join(&snap.file.name), databases, db.timeout).await?;
    let mut src = scratch.connect().await?;
    let st = scratch.target();
    let dbs: Vec<u32> = match target.db {
        Some(n) => vec![n],
        None => {
            let mut all: Vec<u32> = keyspace(&mut src, &st).await?.into_keys().collect();
            all.extend(keyspace(&mut dst, &target).await?.into_keys());
            all.sort_unstable();
            all.dedup();
            all
        }
    };
    let mut out = Measured::default();
    for n in dbs {
        let nb = n.to_string();
        st.ok(src.call(&[b"SELECT", nb.as_bytes()]).await, "SELECT")?;
        target.ok(dst.call(&[b"SELECT", nb.as_bytes()]).await, "SELECT")?;
        let then = all_keys(&mut src, &st).await?;
        let now = all_keys(&mut dst, &target).await?;
        let then_set: HashSet<&Vec<u8>> = then.iter().collect();
        let now_set: HashSet<&Vec<u8>> = now.iter().collect();
        let mut count = Count {
            within: format!("database {n}"),
            added: now.iter().filter(|k| !then_set.contains(k)).count() as u64,
            deleted: then.iter().filter(|k| !now_set.contains(k)).count() as u64,
            ..Count::default()
        };
        let both: Vec<&Vec<u8>> = then.iter().filter(|k| now_set.contains(k)).collect();
        for chunk in both.chunks(BATCH) {
            let a = payloads(&mut src, &st, chunk).await?;
            let b = payloads(&mut dst, &target, chunk).await?;
            for ((k, pa), pb) in chunk.iter().zip(a).zip(b) {
                if pa.is_some() && pa == pb {
                    continue;
                }
                // Gone in between (expired): counted as deleted since.
                if pb.is_none() {
                    count.deleted += 1;
                    continue;
                }
                if value(&mut src, &st, k).await? != value(&mut dst, &target, k).await? {
                    count.changed += 1;
                }
            }
        }
        out.counts.push(count);
    }
    scratch.stop().await;
    Ok(out)
}

/// An argument as `redis-cli` reads it: double-quoted, `\xNN` for anything
/// not printable.
fn arg(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 2);
    s.push('"');
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('"');
    s
}

fn command(words: &[&[u8]]) -> String {
    let mut parts: Vec<String> = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        if i == 0 {
            parts.push(String::from_utf8_lossy(w).into_owned());
        } else {
            parts.push(arg(w));
        }
    }
    parts.join(" ")
}

/// Writes every key of the snapshot `rdb` to `w` as `redis-cli` commands
/// (`SELECT`, then `SET`/`RPUSH`/`SADD`/`ZADD`/`HSET`/`XADD` and `PEXPIRE`).
/// Returns how many keys were listed.
pub async fn listing(rdb: &Path, timeout: std::time::Duration, w: &mut dyn Write) -> Result<u64, DbError> {
    let scratch = Scratch::start(rdb, 16, timeout).await?;
    let mut c = scratch.connect().await?;
    let t = scratch.target();
    let io = |e: std::io::Error| DbError::Io {
        action: "write",
        path: rdb.to_path_buf(),
        source: e,
    };
    let mut listed = 0;
    writeln!(
        w,
        "# backout export: every key of the snapshot, as redis-cli commands (replay: redis-cli < this file)"
    )
    .map_err(io)?;
    for n in keyspace(&mut c, &t).await?.into_keys() {
        let nb = n.to_string();
        t.ok(c.call(&[b"SELECT", nb.as_bytes()]).await, "SELECT")?;
        writeln!(w, "SELECT {n}").map_err(io)?;
        for k in all_keys(&mut c, &t).await? {
            let (kind, parts) = value(&mut c, &t, &k).await?;
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let line = match kind.as_str() {
                "string" => Some(command(&[b"SET", &k, refs.first().copied().unwrap_or(b"")])),
                "list" | "set" | "hash" | "zset" if refs.is_empty() => None,
                "list" => Some(command(&[&[b"RPUSH".as_slice(), &k], refs.as_slice()].concat())),
                "set" => Some(command(&[&[b"SADD".as_slice(), &k], refs.as_slice()].concat())),
                "hash" => Some(command(&[&[b"HSET".as_slice(), &k], refs.as_slice()].concat())),
                "zset" => {
                    // ZRANGE gives member, score; ZADD takes score, member.
                    let mut words: Vec<&[u8]> = vec![b"ZADD", &k];
                    for p in refs.chunks(2) {
                        if let [m, s] = p {
                            words.push(s);
                            words.push(m);
                        }
                    }
                    Some(command(&words))
                }
                "stream" => {
                    let mut lines = Vec::new();
                    for e in refs.split(|p| *p == b"\x00entry").filter(|e| !e.is_empty()) {
                        let mut words: Vec<&[u8]> = vec![b"XADD", &k];
                        words.extend(e.iter().copied());
                        lines.push(command(&words));
                    }
                    Some(lines.join("\n"))
                }
                other => {
                    writeln!(
                        w,
                        "# {} is a {other}: not listed here; export the snapshot with --format rdb",
                        arg(&k)
                    )
                    .map_err(io)?;
                    None
                }
            };
            if let Some(line) = line {
                writeln!(w, "{line}").map_err(io)?;
                listed += 1;
                if let Reply::Int(ms) = t.ok(c.call(&[b"PTTL", &k]).await, "PTTL")?
                    && ms > 0
                {
                    writeln!(w, "{}", command(&[b"PEXPIRE", &k, ms.to_string().as_bytes()])).map_err(io)?;
                }
            }
        }
    }
    scratch.stop().await;
    Ok(listed)
}
