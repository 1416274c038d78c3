//! Command-captured state: `{ name, save = "cmd", restore = "cmd" }` from the
//! plan's `[capture] commands`. A checkpoint keeps `save`'s stdout as a file
//! (`pip freeze`, `npm ls --json`, `docker compose ps --format json`); a
//! restore runs `restore` with `{file}` replaced by that file's path
//! (`pip install --force-reinstall -r {file}`).
//!
//! Both run through [`crate::exec`]: in their own process group, killed whole at
//! the timeout. The saved file is hashed at capture and checked before the
//! restore command ever runs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::db::{DbError, DumpFile, finish_file, hash_file};
use crate::exec::{self, ExecError, Invocation, Outcome};
use crate::plan::{CaptureCommand, FILE_PLACEHOLDER};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("command {name:?}: cannot run `{command}`")]
    Exec {
        name: String,
        command: String,
        #[source]
        source: ExecError,
    },
    #[error("command {name:?}: `{command}` failed ({how}){}", output_suffix(.output))]
    Failed {
        name: String,
        command: String,
        how: String,
        /// The last lines of its stderr (and stdout for restore).
        output: String,
    },
    #[error(transparent)]
    File(#[from] DbError),
}

fn output_suffix(output: &str) -> String {
    if output.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", output.trim())
    }
}

/// What a checkpoint holds of one command-captured resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSnapshot {
    pub name: String,
    /// The save command as written in the plan.
    pub save: String,
    /// Its stdout.
    pub file: DumpFile,
    pub duration_ms: u64,
}

/// What a restore would run, for `--dry-run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandRestorePlan {
    pub name: String,
    /// The restore command, `{file}` replaced, as people read it.
    pub run: String,
    pub cwd: PathBuf,
}

/// The saved output's file name for resource `name`.
pub fn file_name(name: &str) -> String {
    format!("{name}.out")
}

/// Runs the save command and keeps its stdout in `dest_dir/<name>.out`.
pub async fn capture(spec: &CaptureCommand, dest_dir: &Path) -> Result<CommandSnapshot, CommandError> {
    let name = file_name(&spec.name);
    let tmp = dest_dir.join(format!("{name}.partial"));
    let inv = Invocation {
        argv: spec.save.resolved(),
        cwd: spec.cwd.clone(),
        env: Vec::new(),
        timeout: spec.timeout,
    };
    let outcome = exec::run_to_file(&inv, &tmp)
        .await
        .map_err(|source| CommandError::Exec {
            name: spec.name.clone(),
            command: spec.save.shown(),
            source,
        })?;
    if !outcome.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed(&spec.name, spec.save.shown(), &outcome));
    }
    let file = finish_file(&tmp, dest_dir, &name)?;
    Ok(CommandSnapshot {
        name: spec.name.clone(),
        save: spec.save.shown(),
        file,
        duration_ms: outcome.duration.as_millis() as u64,
    })
}

fn failed(name: &str, command: String, o: &Outcome) -> CommandError {
    CommandError::Failed {
        name: name.to_string(),
        command,
        how: o.describe(),
        output: exec::tail_lines(&o.output, 6),
    }
}

/// Checks that the saved output is still what the capture wrote.
pub fn verify(snap: &CommandSnapshot, dir: &Path) -> Result<(), CommandError> {
    snap.file.check(dir, &snap.name)?;
    Ok(())
}

/// The restore command with `{file}` replaced: program and arguments to run,
/// and the command as people read it.
fn restore_command(spec: &CaptureCommand, file: &Path) -> (Vec<String>, String) {
    let path = file.display().to_string();
    let quoted = shell_quote(&path);
    let argv = spec.restore.resolved();
    if spec.restore.shell {
        // `sh -c LINE`: the path goes in quoted, so spaces and quotes stay one word.
        let mut argv = argv;
        if let Some(line) = argv.last_mut() {
            *line = line.replace(FILE_PLACEHOLDER, &quoted);
        }
        return (argv, spec.restore_shown().replace(FILE_PLACEHOLDER, &quoted));
    }
    (
        argv.iter().map(|a| a.replace(FILE_PLACEHOLDER, &path)).collect(),
        spec.restore_shown().replace(FILE_PLACEHOLDER, &quoted),
    )
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Checks the saved output and says what a restore would run, touching nothing.
pub fn plan_restore(
    spec: &CaptureCommand,
    snap: &CommandSnapshot,
    dir: &Path,
) -> Result<CommandRestorePlan, CommandError> {
    verify(snap, dir)?;
    let (_, shown) = restore_command(spec, &absolute(&dir.join(&snap.file.name)));
    Ok(CommandRestorePlan {
        name: spec.name.clone(),
        run: shown,
        cwd: spec.cwd.clone(),
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Whether the save command prints today exactly what it saved: then the
/// state is already what the checkpoint holds (a venv put back with the paths
/// before it, an undo of a rollback that did not change it) and its restore
/// need not run — `pip install --force-reinstall` would only ask the package
/// index again for what is installed.
async fn already_as_saved(spec: &CaptureCommand, snap: &CommandSnapshot, dir: &Path) -> bool {
    let now = dir.join(format!("{}.now", file_name(&spec.name)));
    let inv = Invocation {
        argv: spec.save.resolved(),
        cwd: spec.cwd.clone(),
        env: Vec::new(),
        timeout: spec.timeout,
    };
    let same = match exec::run_to_file(&inv, &now).await {
        Ok(o) if o.success() => hash_file(&now).is_ok_and(|(_, h)| h == snap.file.blake3),
        _ => false,
    };
    let _ = std::fs::remove_file(&now);
    same
}

/// Checks the saved output, then runs the restore command with it, unless the
/// state already matches it (see `already_as_saved`).
pub async fn restore(spec: &CaptureCommand, snap: &CommandSnapshot, dir: &Path) -> Result<Outcome, CommandError> {
    verify(snap, dir)?;
    let t = std::time::Instant::now();
    if already_as_saved(spec, snap, dir).await {
        return Ok(Outcome {
            exit_code: Some(0),
            timed_out: false,
            output: format!(
                "`{}` prints what the checkpoint saved: nothing to restore",
                spec.save.shown()
            ),
            duration: t.elapsed(),
        });
    }
    let (argv, shown) = restore_command(spec, &absolute(&dir.join(&snap.file.name)));
    let inv = Invocation {
        argv,
        cwd: spec.cwd.clone(),
        env: Vec::new(),
        timeout: spec.timeout,
    };
    let outcome = exec::run(&inv).await.map_err(|source| CommandError::Exec {
        name: spec.name.clone(),
        command: shown.clone(),
        source,
    })?;
    if !outcome.success() {
        return Err(failed(&spec.name, shown, &outcome));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plan::{Command, Text};

    fn cmd(words: &[&str], shell: bool) -> Command {
        Command {
            argv: words.iter().map(|w| Text::plain(*w)).collect(),
            shell,
        }
    }

    fn spec(cwd: &Path, save: Command, restore: Command) -> CaptureCommand {
        CaptureCommand {
            name: "packages".into(),
            save,
            restore,
            cwd: cwd.to_path_buf(),
            timeout: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn pip_freeze_round_trip_in_a_real_venv() {
        let project = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let venv = project.path().join("venv");
        let made = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .expect("python3 runs");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        // pip reinstalls what the file lists from what is installed: no index
        // needed. notes.txt stands for a change since the capture.
        let s = spec(
            project.path(),
            cmd(&["venv/bin/pip freeze --all; cat notes.txt 2>/dev/null || true"], true),
            cmd(
                &["venv/bin/pip install --no-index --no-deps -r {file} && cp {file} restored-from.txt"],
                true,
            ),
        );
        let snap = capture(&s, store.path()).await.unwrap();
        let saved = std::fs::read_to_string(store.path().join("packages.out")).unwrap();
        assert!(saved.lines().any(|l| l.starts_with("pip==")), "{saved}");
        assert_eq!(snap.file.size, saved.len() as u64);
        verify(&snap, store.path()).unwrap();

        let plan = plan_restore(&s, &snap, store.path()).unwrap();
        assert!(
            plan.run.contains("packages.out") && !plan.run.contains("{file}"),
            "{plan:?}"
        );
        // Unchanged since the capture: nothing to run (and no index to ask).
        let outcome = restore(&s, &snap, store.path()).await.unwrap();
        assert!(outcome.output.contains("nothing to restore"), "{outcome:?}");
        assert!(!project.path().join("restored-from.txt").exists());
        std::fs::write(project.path().join("notes.txt"), "changed since\n").unwrap();
        let outcome = restore(&s, &snap, store.path()).await.unwrap();
        assert!(
            outcome.output.contains("Requirement already satisfied: pip"),
            "{outcome:?}"
        );
        assert_eq!(
            std::fs::read_to_string(project.path().join("restored-from.txt")).unwrap(),
            saved
        );
    }

    #[tokio::test]
    async fn the_file_path_reaches_the_restore_command_as_one_argument() {
        let project = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let odd = store.path().join("it's a dir");
        std::fs::create_dir(&odd).unwrap();
        for shell in [false, true] {
            let restore_cmd = if shell {
                cmd(&["printf '%s\\n' {file} > args.txt"], true)
            } else {
                cmd(&["sh", "-c", "printf '%s\\n' \"$@\" > args.txt", "sh", "{file}"], false)
            };
            std::fs::write(project.path().join("state.txt"), "state").unwrap();
            let s = spec(project.path(), cmd(&["cat", "state.txt"], false), restore_cmd);
            let snap = capture(&s, &odd).await.unwrap();
            std::fs::write(project.path().join("state.txt"), "changed").unwrap();
            if !shell {
                // What --dry-run shows pastes into a shell as the same command.
                let plan = plan_restore(&s, &snap, &odd).unwrap();
                let path = odd.join("packages.out").display().to_string();
                assert!(plan.run.ends_with(&format!(" sh {}", shell_quote(&path))), "{plan:?}");
                assert!(plan.run.contains("it'\\''s a dir"), "{plan:?}");
            }
            restore(&s, &snap, &odd).await.unwrap();
            let args = std::fs::read_to_string(project.path().join("args.txt")).unwrap();
            assert_eq!(
                args,
                format!("{}\n", odd.join("packages.out").display()),
                "shell={shell}"
            );
        }
    }

    #[tokio::test]
    async fn a_failing_save_names_the_command_and_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(
            dir.path(),
            cmd(
                &["sh", "-c", "echo partial; echo 'no such package manager' >&2; exit 3"],
                false,
            ),
            cmd(&["true"], false),
        );
        let e = capture(&s, dir.path()).await.unwrap_err().to_string();
        assert!(e.contains("\"packages\"") && e.contains("exit code 3"), "{e}");
        assert!(e.contains("no such package manager"), "{e}");
        // No half-written output is left to be mistaken for a capture.
        assert!(!dir.path().join("packages.out").exists());
        assert!(!dir.path().join("packages.out.partial").exists());
    }

    #[tokio::test]
    async fn a_hung_save_is_killed_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), cmd(&["sleep", "30"], false), cmd(&["true"], false));
        s.timeout = Duration::from_millis(200);
        let e = capture(&s, dir.path()).await.unwrap_err().to_string();
        assert!(e.contains("timed out"), "{e}");
    }

    #[tokio::test]
    async fn a_corrupted_saved_file_is_refused_before_the_restore_runs() {
        let project = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let s = spec(
            project.path(),
            cmd(&["echo", "requests==2.31.0"], false),
            cmd(&["touch", "restore-ran"], false),
        );
        let snap = capture(&s, store.path()).await.unwrap();
        std::fs::write(store.path().join("packages.out"), "requests==0.0.1\n").unwrap();
        let e = plan_restore(&s, &snap, store.path()).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        let e = restore(&s, &snap, store.path()).await.unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        assert!(!project.path().join("restore-ran").exists());
    }

    #[tokio::test]
    async fn a_failing_restore_is_an_error_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "x").unwrap();
        let s = spec(
            dir.path(),
            cmd(&["cat", "x"], false),
            cmd(
                &["sh", "-c", "echo 'cannot install' >&2; exit 1", "sh", "{file}"],
                false,
            ),
        );
        let snap = capture(&s, dir.path()).await.unwrap();
        std::fs::write(dir.path().join("x"), "y").unwrap();
        let e = restore(&s, &snap, dir.path()).await.unwrap_err().to_string();
        assert!(e.contains("cannot install") && e.contains("exit code 1"), "{e}");
    }
}
