//! Child processes: each command runs in its own process group, with a timeout,
//! bounded output, and, at the timeout, TERM then KILL sent to the whole group so
//! no descendant is left behind.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// How much output is kept: the last this many bytes.
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// How long a group has between TERM and KILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Invocation {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// `None` when killed by a signal.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// stdout and stderr interleaved by arrival, trimmed to the last [`OUTPUT_LIMIT`] bytes.
    pub output: String,
    #[serde(serialize_with = "crate::exec::ser_ms")]
    pub duration: Duration,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// One line saying how the command ended.
    pub fn describe(&self) -> String {
        match (self.timed_out, self.exit_code) {
            (true, _) => "timed out; its process group was killed".into(),
            (false, Some(c)) => format!("exit code {c}"),
            (false, None) => "killed by a signal".into(),
        }
    }
}

pub fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot start `{program}` in {cwd}")]
    Spawn {
        program: String,
        cwd: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("empty command")]
    Empty,
    #[error("cannot create {path} for the command's output")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the command to completion or its timeout.
pub async fn run(inv: &Invocation) -> Result<Outcome, ExecError> {
    run_with(inv, None, |_| {}, |_| {}).await
}

/// Like [`run`], handing each piece of output (stdout and stderr, as they
/// arrive) to `on_output`: a deploy command's progress is shown live.
pub async fn run_streamed(inv: &Invocation, on_output: impl FnMut(&[u8])) -> Result<Outcome, ExecError> {
    run_with(inv, None, |_| {}, on_output).await
}

/// Like [`run`], telling `on_spawn` the process group id as soon as the child
/// exists, so a journal can record it and a resumed run can kill what a crash
/// left behind.
pub async fn run_observed(inv: &Invocation, on_spawn: impl FnOnce(i32)) -> Result<Outcome, ExecError> {
    run_with(inv, None, on_spawn, |_| {}).await
}

/// Runs the command with its stdout written to `stdout` (created or truncated),
/// unbounded; the outcome's output then holds only stderr.
pub async fn run_to_file(inv: &Invocation, stdout: &std::path::Path) -> Result<Outcome, ExecError> {
    let file = std::fs::File::create(stdout).map_err(|source| ExecError::Output {
        path: stdout.to_path_buf(),
        source,
    })?;
    run_with(inv, Some(file), |_| {}, |_| {}).await
}

async fn run_with(
    inv: &Invocation,
    stdout: Option<std::fs::File>,
    on_spawn: impl FnOnce(i32),
    mut on_output: impl FnMut(&[u8]),
) -> Result<Outcome, ExecError> {
    let (program, args) = inv.argv.split_first().ok_or(ExecError::Empty)?;
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(&inv.cwd)
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout.map_or_else(Stdio::piped, Stdio::from))
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
        program: program.clone(),
        cwd: inv.cwd.clone(),
        source,
    })?;
    let pgid = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32));
    if let Some(pg) = pgid {
        on_spawn(pg.as_raw_nonzero().get());
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);

    let mut output = Vec::new();
    let mut collect = |output: &mut Vec<u8>, chunk: Vec<u8>| {
        on_output(&chunk);
        output.extend_from_slice(&chunk);
        if output.len() > 2 * OUTPUT_LIMIT {
            output.drain(..output.len() - OUTPUT_LIMIT);
        }
    };
    let deadline = crate::context::async_deadline(inv.timeout);
    let mut timed_out = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.ok(),
            Some(chunk) = rx.recv() => collect(&mut output, chunk),
            _ = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                if let Some(pg) = pgid {
                    let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::TERM);
                }
                let status = match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                    Ok(s) => s.ok(),
                    Err(_) => None,
                };
                // Whatever survived TERM, or was forked meanwhile, goes now.
                if let Some(pg) = pgid {
                    let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
                }
                break match status {
                    Some(s) => Some(s),
                    None => child.wait().await.ok(),
                };
            }
        }
    };
    // Drain what is left; a descendant holding the pipe open must not hang us.
    let drain_until = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(drain_until, rx.recv()).await {
        collect(&mut output, chunk);
    }
    if output.len() > OUTPUT_LIMIT {
        output.drain(..output.len() - OUTPUT_LIMIT);
    }
    Ok(Outcome {
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        output: String::from_utf8_lossy(&output).into_owned(),
        duration: started.elapsed(),
    })
}

/// The last `n` lines of `text`, for reports and error messages.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(argv: &[&str], timeout_ms: u64) -> Invocation {
        Invocation {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: std::env::temp_dir(),
            env: vec![("GREETING".into(), "hi".into())],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test]
    async fn captures_output_and_exit_code() {
        let o = run(&inv(&["sh", "-c", "echo $GREETING; echo oops >&2; exit 3"], 5000))
            .await
            .unwrap();
        assert_eq!(o.exit_code, Some(3));
        assert!(o.output.contains("hi") && o.output.contains("oops"), "{o:?}");
        assert!(!o.success());
    }

    #[tokio::test]
    async fn kills_the_whole_group_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let script = format!(
            "trap '' TERM; (trap '' TERM; sleep 300) & echo $! > {}; sleep 300",
            pidfile.display()
        );
        let o = run(&inv(&["sh", "-c", &script], 300)).await.unwrap();
        assert!(o.timed_out);
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // The grandchild ignored TERM; KILL reached it anyway. Give the kernel a moment to reap.
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => true,
                Ok(s) => s.split_whitespace().nth(2) == Some("Z"),
            }
        });
        assert!(gone, "grandchild {pid} survived the timeout");
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let o = run(&inv(&["sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x"], 10_000))
            .await
            .unwrap();
        assert!(o.success());
        assert_eq!(o.output.len(), OUTPUT_LIMIT);
    }

    #[tokio::test]
    async fn stdout_to_a_file_is_whole_and_kept_apart_from_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let o = run_to_file(
            &inv(
                &["sh", "-c", "head -c 200000 /dev/zero | tr '\\0' y; echo warn >&2"],
                10_000,
            ),
            &out,
        )
        .await
        .unwrap();
        assert!(o.success(), "{o:?}");
        assert_eq!(std::fs::read(&out).unwrap(), vec![b'y'; 200_000]);
        assert_eq!(o.output.trim(), "warn");
    }

    #[tokio::test]
    async fn streamed_output_arrives_whole_and_is_kept() {
        let mut seen = Vec::new();
        let o = run_streamed(&inv(&["sh", "-c", "echo one; echo two >&2; echo three"], 5000), |c| {
            seen.extend_from_slice(c)
        })
        .await
        .unwrap();
        let seen = String::from_utf8(seen).unwrap();
        for w in ["one", "two", "three"] {
            assert!(seen.contains(w) && o.output.contains(w), "{seen:?} {o:?}");
        }
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        assert!(matches!(
            run(&inv(&["no-such-program-xyz"], 1000)).await,
            Err(ExecError::Spawn { .. })
        ));
    }
}
