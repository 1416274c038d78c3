//! The rollback engine on real targets: levels and options, `backout run`,
//! every step kind, the lock under races, hung commands.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::resume::{backout, reap, sh};

fn project(plan: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("backout.toml"), plan).unwrap();
    sh(
        d.path(),
        "git init -q -b main && echo v1 > app.txt && mkdir -p src/mexc && echo 'mexc 1' > src/mexc/client.py
         git add -A && git commit -qm init",
    );
    d
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = backout(dir, args).output().unwrap();
    assert!(
        out.status.success(),
        "backout {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn code(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = backout(dir, args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const LEVELS: &str = r#"
[plan]
name = "levels"
rto = "5m"
[capture]
git = true
[rollback]
target = "5m"
steps = [{ git = "revert" }]

[[phase]]
name = "ticker"
target = "15m"
apply = [{ run = ["sh", "-c", "echo v2 > app.txt && git commit -qam v2"] }]
verify = [{ file = "app.txt", contains = "v1" }]
rollback = [
  { name = "A: direct fix", description = "patch the one line", time = "30s", risk = "low", steps = [{ run = "true" }] },
  { name = "B: full revert", time = "2m", risk = "high", default = true, steps = [{ git = "reset" }] },
]

[[phase]]
name = "never"
apply = [{ run = ["sh", "-c", "echo never > never.txt"] }]

[[component]]
name = "mexc"
paths = ["src/mexc"]
target = "30m"
"#;

#[test]
fn dry_run_shows_each_level_with_its_steps_and_time_against_the_rto() {
    let d = project(LEVELS);
    let p = d.path();
    ok(p, &["checkpoint"]);
    let j: serde_json::Value = serde_json::from_str(&ok(p, &["rollback", "--dry-run", "--json"])).unwrap();
    assert_eq!(j["selection"]["level"], "full");
    assert_eq!(j["target_ms"], 300_000);
    assert!(
        j["steps"][0]["command"]
            .as_str()
            .unwrap()
            .starts_with("git revert --no-edit")
    );

    let j: serde_json::Value =
        serde_json::from_str(&ok(p, &["rollback", "--phase", "ticker", "--dry-run", "--json"])).unwrap();
    assert_eq!(j["selection"]["option"], "B: full revert", "the default option");
    assert_eq!(j["estimate_ms"], 120_000);
    assert_eq!(j["target_ms"], 900_000);
    assert!(
        j["steps"][0]["command"]
            .as_str()
            .unwrap()
            .starts_with("git reset --hard")
    );

    let out = ok(
        p,
        &[
            "rollback",
            "--phase",
            "ticker",
            "--option",
            "A: direct fix",
            "--dry-run",
        ],
    );
    assert!(out.contains("estimated 30s"), "{out}");
    assert!(out.contains("recovery-time objective: 5m (within it)"), "{out}");

    let j: serde_json::Value =
        serde_json::from_str(&ok(p, &["rollback", "--component", "mexc", "--dry-run", "--json"])).unwrap();
    let cmd = j["steps"][0]["command"].as_str().unwrap();
    assert!(
        cmd.starts_with("git checkout --no-overlay") && cmd.ends_with("-- src/mexc"),
        "{cmd}"
    );

    let (c, out) = code(p, &["rollback", "--phase", "ticker", "--option", "Z", "--dry-run"]);
    assert_eq!(c, 2, "{out}");
    assert!(
        out.contains("no option named \"Z\"") && out.contains("\"A: direct fix\""),
        "{out}"
    );
    let (c, out) = code(p, &["rollback", "--component", "nope", "--dry-run"]);
    assert_eq!(c, 2, "{out}");
    assert!(out.contains("components: mexc"), "{out}");
}

#[test]
fn run_rolls_back_a_failed_phase_with_its_default_option_and_stops() {
    let d = project(LEVELS);
    let p = d.path();
    let head = sh(p, "git rev-parse HEAD");
    let (c, out) = code(p, &["run"]);
    assert_eq!(c, 1, "{out}");
    assert!(
        out.contains("phase ticker: verification failed; rolling it back"),
        "{out}"
    );
    assert!(out.contains("rollback option \"B: full revert\""), "{out}");
    assert_eq!(sh(p, "git rev-parse HEAD"), head, "reset to the phase's checkpoint");
    assert_eq!(std::fs::read_to_string(p.join("app.txt")).unwrap(), "v1\n");
    assert!(!p.join("never.txt").exists(), "no later phase runs");
    // The failed phase's rollback is undoable like any other.
    ok(p, &["undo"]);
    assert_eq!(std::fs::read_to_string(p.join("app.txt")).unwrap(), "v2\n");
}

/// Regression: `run` printed a step's output only when it failed; with `-v` a
/// migration's own output is shown under its step, without `-v` it is not.
#[test]
fn run_shows_what_each_step_printed_with_verbose() {
    let plan = r#"
[plan]
name = "out"
rto = "5m"
[capture]
git = true
[[phase]]
name = "migrate"
apply = [{ run = ["sh", "-c", "echo 'applied migration 0042'; echo 'rows: 17'"] }]
"#;
    let d = project(plan);
    let p = d.path();
    let (c, out) = code(p, &["run", "-v"]);
    assert_eq!(c, 0, "{out}");
    assert!(
        out.contains("  | applied migration 0042") && out.contains("  | rows: 17"),
        "{out}"
    );
    let d = project(plan);
    let (c, out) = code(d.path(), &["run"]);
    assert_eq!(c, 0, "{out}");
    assert!(!out.contains("  | applied migration 0042"), "{out}");
    assert!(out.contains("step 1"), "{out}");
}

#[test]
fn a_component_rollback_restores_only_its_paths() {
    let d = project(LEVELS);
    let p = d.path();
    ok(p, &["checkpoint"]);
    sh(
        p,
        "echo 'mexc 2' > src/mexc/client.py && echo new > src/mexc/new.py && echo v2 > app.txt && git add -A && git commit -qm both",
    );
    ok(p, &["rollback", "--component", "mexc", "--yes"]);
    assert_eq!(
        std::fs::read_to_string(p.join("src/mexc/client.py")).unwrap(),
        "mexc 1\n"
    );
    assert!(!p.join("src/mexc/new.py").exists(), "files added since are removed");
    assert_eq!(
        std::fs::read_to_string(p.join("app.txt")).unwrap(),
        "v2\n",
        "other paths untouched"
    );
}

#[test]
fn git_reset_never_loses_uncommitted_work() {
    let d = project(
        r#"
[plan]
name = "reset"
[capture]
git = true
[rollback]
steps = [{ git = "reset", to = "checkpoint" }]
"#,
    );
    let p = d.path();
    ok(p, &["checkpoint"]);
    sh(
        p,
        "echo v2 > app.txt && git commit -qam v2 && echo 'work in progress' > app.txt && echo untracked > wip.txt",
    );
    ok(p, &["rollback", "--yes"]);
    assert_eq!(std::fs::read_to_string(p.join("app.txt")).unwrap(), "v1\n");
    assert_eq!(sh(p, "git rev-list --count HEAD").trim(), "1");
    // `git reset --hard` discarded the edit; the safety checkpoint kept it.
    ok(p, &["undo"]);
    assert_eq!(
        std::fs::read_to_string(p.join("app.txt")).unwrap(),
        "work in progress\n"
    );
    assert_eq!(std::fs::read_to_string(p.join("wip.txt")).unwrap(), "untracked\n");
    assert_eq!(sh(p, "git rev-list --count HEAD").trim(), "2");
    assert_eq!(sh(p, "git status --porcelain"), " M app.txt\n?? wip.txt\n");
    ok(p, &["redo"]);
    assert_eq!(std::fs::read_to_string(p.join("app.txt")).unwrap(), "v1\n");
    let (c, out) = code(p, &["redo"]);
    assert_eq!(c, 1, "{out}");
    assert!(out.contains("nothing to redo"), "{out}");
}

#[test]
fn push_run_with_env_and_retries_and_resource_restore() {
    let d = project(
        r#"
[plan]
name = "push"
[capture]
git = true
[rollback]
steps = [
  { git = "revert" },
  { git = "push", remote = "origin", refspec = "main" },
  { run = ["sh", "-c", "n=$(cat tries 2>/dev/null || echo 0); echo $((n+1)) > tries; echo \"$GREETING try $n\"; [ $n -ge 2 ]"], env = { GREETING = "hello" }, retries = 3, retry-delay = "10ms" },
]
"#,
    );
    let p = d.path();
    let remote = tempfile::tempdir().unwrap();
    sh(remote.path(), "git init -q --bare");
    sh(
        p,
        &format!(
            "git remote add origin {} && git push -q origin main",
            remote.path().display()
        ),
    );
    ok(p, &["checkpoint"]);
    sh(p, "echo v2 > app.txt && git commit -qam v2 && git push -q origin main");
    let out = ok(p, &["rollback", "--yes", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let run = &j["rollback"]["steps"][2];
    assert!(run["output"].as_str().unwrap().contains("attempt 3/4"), "{run}");
    assert!(run["output"].as_str().unwrap().contains("hello try 2"), "{run}");
    assert_eq!(
        sh(remote.path(), "git show main:app.txt"),
        "v1\n",
        "the revert reached the remote"
    );

    // A store resource comes back through the rollback's `resource` step.
    std::fs::create_dir_all(p.join("venv/lib")).unwrap();
    std::fs::write(p.join("venv/lib/flask.txt"), "2.3.3\n").unwrap();
    std::fs::write(
        p.join("backout.toml"),
        "[plan]\nname = \"r\"\n[capture]\npaths = [\"venv\"]\n[rollback]\nsteps = [{ resource = [\"venv\"] }]\n",
    )
    .unwrap();
    let (c, out) = code(p, &["checkpoint"]);
    assert_eq!(c, 0, "{out}");
    std::fs::write(p.join("venv/lib/flask.txt"), "3.0.0\n").unwrap();
    std::fs::write(p.join("venv/lib/werkzeug.txt"), "3.0.1\n").unwrap();
    let (c, out) = code(p, &["rollback", "--yes", "--reason", "users phone in: still broken"]);
    assert_eq!(c, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(p.join("venv/lib/flask.txt")).unwrap(),
        "2.3.3\n"
    );
    assert!(
        !p.join("venv/lib/werkzeug.txt").exists(),
        "a file the checkpoint did not have is removed"
    );
    // A rollback by hand leaves an incident report like an automatic one.
    assert!(out.contains("report: "), "{out}");
    let mut reports: Vec<_> = std::fs::read_dir(p.join(".backout/reports"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    reports.sort();
    let md = std::fs::read_to_string(reports.last().unwrap().join("report.md")).unwrap();
    assert!(
        md.contains("rule `manual`") && md.contains("requested by hand: users phone in: still broken"),
        "the reason given by hand is the report's trigger: {md}"
    );
    assert!(
        md.contains("restored venv from cp-") && md.contains("change venv: venv/lib/flask.txt"),
        "the step and what it changed are in the report: {md}"
    );

    // A resource the checkpoint does not hold fails before changing anything, and says why.
    std::fs::write(
        p.join("backout.toml"),
        "[plan]\nname = \"r\"\n[capture]\npaths = [\"venv\"]\n[rollback]\nsteps = [{ resource = [\"db\"] }]\n",
    )
    .unwrap();
    let (c, out) = code(p, &["rollback", "--yes", "--to", "cp-1"]);
    assert_eq!(c, 1, "{out}");
    assert!(out.contains("holds no resource named \"db\""), "{out}");
}

#[test]
fn degraded_mode_stops_named_services_and_keeps_the_rest() {
    let d = project(
        r#"
[plan]
name = "degraded"
[[service]]
name = "api"
start = ["sleep", "60"]
[[service]]
name = "ticker"
start = ["sleep", "60"]
[[service]]
name = "cron"
kind = "command"
start = ["sh", "-c", "echo on > cron.state"]
stop = ["sh", "-c", "echo off > cron.state"]
status = ["grep", "-q", "on", "cron.state"]
[rollback]
steps = [
  { service = "all", action = "start" },
  { degraded = ["ticker", "cron"] },
]
"#,
    );
    let p = d.path();
    ok(p, &["checkpoint"]);
    let out = ok(p, &["rollback", "--yes", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["rollback"]["degraded"], serde_json::json!(["ticker", "cron"]));
    let alive = |name: &str| {
        std::fs::read_to_string(p.join(format!(".backout/run/{name}.pid")))
            .ok()
            .and_then(|t| t.split_whitespace().next().map(str::to_string))
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    };
    assert!(alive("api"), "api keeps serving");
    assert!(!alive("ticker"), "ticker was stopped");
    assert_eq!(std::fs::read_to_string(p.join("cron.state")).unwrap(), "off\n");
    let log = ok(p, &["log", "--json", "-n", "5"]);
    assert!(log.contains("rollback"), "{log}");
    reap(p);
}

#[test]
fn two_rollbacks_race_and_exactly_one_runs() {
    let d = project(
        r#"
[plan]
name = "race"
[rollback]
steps = [{ run = ["sleep", "0.2"] }]
"#,
    );
    let p = d.path();
    ok(p, &["checkpoint"]);
    for i in 0..100 {
        // Named: after the first race the project is at cp-1 already, and a
        // rollback to the default target would say there is nothing to do.
        let spawn = || {
            backout(p, &["rollback", "--yes", "--to", "cp-1"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut children = vec![spawn(), spawn()];
        let t = Instant::now();
        // Poll both, so each one's own exit time is seen.
        let mut ended: Vec<Option<(i32, Duration)>> = vec![None, None];
        while ended.iter().any(Option::is_none) {
            for (k, c) in children.iter_mut().enumerate() {
                if ended[k].is_none()
                    && let Some(st) = c.try_wait().unwrap()
                {
                    ended[k] = Some((st.code().unwrap_or(-1), t.elapsed()));
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut done: Vec<(i32, Duration, String)> = children
            .into_iter()
            .zip(ended)
            .map(|(c, e)| {
                let o = c.wait_with_output().unwrap();
                let (code, at) = e.unwrap();
                (code, at, String::from_utf8_lossy(&o.stderr).into_owned())
            })
            .collect();
        done.sort_by_key(|d| d.0);
        assert_eq!(
            (done[0].0, done[1].0),
            (0, 3),
            "race {i}: one runs, the other is locked out: {done:?}"
        );
        assert!(done[1].2.contains("locked by PID"), "race {i}: {}", done[1].2);
        assert!(
            done[1].1 < done[0].1,
            "race {i}: the locked one must exit at once, while the other still runs: {done:?}"
        );
    }
}

/// Pids of live (not zombie) processes whose environment holds `marker`.
fn marked(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
            .unwrap_or(true);
        if !zombie && env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn hung_commands_are_killed_at_the_timeout_with_every_descendant() {
    let cases = [
        ("sleeps", "sleep 1000"),
        ("ignores TERM", "trap '' TERM; sleep 1000 & wait; sleep 1000"),
        (
            "forks grandchildren",
            "(sleep 1000 &); (sh -c 'sleep 1000 & sleep 1000' &); sleep 1000",
        ),
        ("floods output", "yes flood"),
    ];
    for (what, script) in cases {
        let marker = format!("BACKOUT_HUNG=t{}{}", std::process::id(), what.len());
        let plan = format!(
            "[plan]\nname = \"hung\"\n[rollback]\nsteps = [{{ run = {script:?}, shell = true, timeout = \"300ms\", env = {{ BACKOUT_HUNG = {:?} }} }}]\n",
            marker.trim_start_matches("BACKOUT_HUNG=")
        );
        let d = project(&plan);
        let p = d.path();
        ok(p, &["checkpoint"]);
        let t = Instant::now();
        let out = backout(p, &["rollback", "--yes", "--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{what}");
        assert!(t.elapsed() < Duration::from_secs(30), "{what}: took {:?}", t.elapsed());
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let step = &j["rollback"]["steps"][0];
        assert_eq!(step["ok"], false, "{what}");
        assert!(
            step["output"]
                .as_str()
                .unwrap()
                .contains("timed out after 300ms; its whole process group was killed"),
            "{what}: {step}"
        );
        let left = marked(&marker);
        assert!(left.is_empty(), "{what}: descendants left: {left:?}");
    }
}

#[test]
fn a_venv_is_rebuilt_from_the_restored_requirements() {
    let d = project(
        r#"
[plan]
name = "venv"
[capture]
git = true
[rollback]
steps = [
  { restore = ["requirements.txt"], from = "checkpoint" },
  { run = ["python3", "-m", "venv", "--clear", "--without-pip", "venv"], timeout = "2m" },
  { run = ["venv/bin/python", "-c", "import sys; open('venv-ok', 'w').write(open('requirements.txt').read() + sys.prefix)"] },
]
"#,
    );
    let p = d.path();
    sh(
        p,
        "echo 'venv/' > .gitignore && echo 'requests==2.31.0' > requirements.txt && git add -A && git commit -qm reqs",
    );
    ok(p, &["checkpoint"]);
    sh(p, "echo 'requests==9.9.9' > requirements.txt && git commit -qam 'bump'");
    ok(p, &["rollback", "--yes"]);
    let out = std::fs::read_to_string(p.join("venv-ok")).unwrap();
    assert!(out.starts_with("requests==2.31.0\n"), "{out}");
    assert!(out.trim_end().ends_with("/venv"), "the venv's own python ran: {out}");
}

#[test]
fn an_interrupted_rollback_blocks_undo_and_a_new_rollback_closes_it() {
    let d = project(
        r#"
[plan]
name = "interrupted"
[capture]
git = true
[rollback]
steps = [{ git = "revert" }, { run = "true" }]
"#,
    );
    let p = d.path();
    ok(p, &["checkpoint"]);
    sh(p, "echo v2 > app.txt && git commit -qam v2");
    let out = backout(p, &["rollback", "--yes"])
        .env("BACKOUT_TEST_CRASH_AT", "end:1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (c, out) = code(p, &["undo"]);
    assert_eq!(c, 1, "{out}");
    assert!(
        out.contains("interrupted") && out.contains("backout rollback --resume"),
        "{out}"
    );
    let (c, out) = code(p, &["rollback", "--yes"]);
    assert_eq!(c, 0, "{out}");
    assert!(out.contains("closed as abandoned"), "{out}");
    let (c, out) = code(p, &["rollback", "--resume", "--yes"]);
    assert_eq!(c, 1, "{out}");
    assert!(out.contains("no interrupted rollback to resume"), "{out}");
    assert_eq!(std::fs::read_to_string(p.join("app.txt")).unwrap(), "v1\n");
}
