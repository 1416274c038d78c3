//! The git resource: HEAD, branch, upstream and the whole working tree (staged,
//! unstaged and untracked, not ignored), captured as commit objects without
//! touching the working tree, the index or the stash, and pinned by a ref under
//! `refs/backout/checkpoints/`.
//!
//! The checkpoint commit's tree is the working tree; its parents are HEAD and a
//! commit whose tree is the index, so both can be put back exactly.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("`git {args}` failed in {dir}: {stderr}")]
    Failed { args: String, dir: PathBuf, stderr: String },
    #[error("cannot run git in {dir}; is git installed?")]
    Spawn {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not inside a git repository")]
    NotARepo(PathBuf),
    #[error(
        "the checkpoint's record names the git repository {recorded}, but the project's is {project}; backout restores only the project's own, so nothing was written\n  = hint: the record in .backout/state.db was edited or damaged; restore the other resources with --only"
    )]
    OtherRepository { recorded: PathBuf, project: PathBuf },
}

/// What a checkpoint holds of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitState {
    pub toplevel: PathBuf,
    /// `None` on a branch with no commit yet.
    pub head: Option<String>,
    /// The branch HEAD points at, `None` when detached.
    pub branch: Option<String>,
    pub upstream: Option<String>,
    pub index_tree: String,
    /// The commit holding the working tree; the ref pins it.
    pub commit: String,
    #[serde(rename = "ref")]
    pub pin: String,
}

/// Runs git in `dir` and returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String, GitError> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|source| GitError::Spawn {
            dir: dir.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn optional(r: Result<String, GitError>) -> Option<String> {
    r.ok().filter(|s| !s.is_empty())
}

/// Commits made by backout itself carry this identity, so capture works in a
/// repository where the user never configured one.
pub(crate) const IDENTITY: &[(&str, &str)] = &[
    ("GIT_AUTHOR_NAME", "backout"),
    ("GIT_AUTHOR_EMAIL", "backout@localhost"),
    ("GIT_COMMITTER_NAME", "backout"),
    ("GIT_COMMITTER_EMAIL", "backout@localhost"),
];

/// Captures the repository containing `dir` as checkpoint `name` (e.g. `cp-3`).
pub fn capture(dir: &Path, name: &str) -> Result<GitState, GitError> {
    let toplevel = PathBuf::from(
        git(dir, &["rev-parse", "--show-toplevel"], &[]).map_err(|_| GitError::NotARepo(dir.to_path_buf()))?,
    );
    let git_dir = PathBuf::from(git(&toplevel, &["rev-parse", "--absolute-git-dir"], &[])?);
    let head = optional(git(&toplevel, &["rev-parse", "--verify", "-q", "HEAD"], &[]));
    let branch = optional(git(&toplevel, &["symbolic-ref", "-q", "HEAD"], &[]));
    let upstream = optional(git(
        &toplevel,
        &["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"],
        &[],
    ));
    let index_tree = git(&toplevel, &["write-tree"], &[])?;
    let tree = worktree_tree(&toplevel, &git_dir)?;

    let parent_args = |extra: &[String]| -> Vec<String> {
        let mut v = Vec::new();
        if let Some(h) = &head {
            v.extend(["-p".to_string(), h.clone()]);
        }
        for e in extra {
            v.extend(["-p".to_string(), e.clone()]);
        }
        v
    };
    let mut args = vec!["commit-tree".to_string(), index_tree.clone()];
    args.extend(parent_args(&[]));
    args.extend(["-m".into(), format!("backout {name}: index")]);
    let index_commit = git(
        &toplevel,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        IDENTITY,
    )?;
    let mut args = vec!["commit-tree".to_string(), tree];
    args.extend(parent_args(&[index_commit]));
    args.extend(["-m".into(), format!("backout {name}: working tree")]);
    let commit = git(
        &toplevel,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        IDENTITY,
    )?;
    let pin = format!("refs/backout/checkpoints/{name}");
    git(&toplevel, &["update-ref", &pin, &commit], &[])?;
    Ok(GitState {
        toplevel,
        head,
        branch,
        upstream,
        index_tree,
        commit,
        pin,
    })
}

/// The tree of the working tree as it is now (tracked and untracked, not
/// ignored). It goes through a private copy of the index, so the user's index
/// (staged vs unstaged) is left exactly as it was.
///
/// The copy keeps the index's mtime. git trusts an entry's cached stat data
/// only when the file's mtime is older than the index file's ("racy git"): a
/// file rewritten with the same size in the same second as `git add` looks
/// unchanged otherwise. A copy stamped with the time of copying made git skip
/// such a file, and the checkpoint kept its old content.
fn worktree_tree(toplevel: &Path, git_dir: &Path) -> Result<String, GitError> {
    let tmp_index = git_dir.join(format!("backout-index-{}", std::process::id()));
    let real_index = git_dir.join("index");
    if real_index.exists() {
        let copied = (|| {
            std::fs::copy(&real_index, &tmp_index)?;
            let modified = std::fs::metadata(&real_index)?.modified()?;
            std::fs::File::options()
                .write(true)
                .open(&tmp_index)?
                .set_times(std::fs::FileTimes::new().set_modified(modified))
        })();
        copied.map_err(|source| GitError::Spawn {
            dir: toplevel.to_path_buf(),
            source,
        })?;
    }
    let idx = tmp_index.display().to_string();
    let tree = git(toplevel, &["add", "-A", "--", "."], &[("GIT_INDEX_FILE", &idx)])
        .and_then(|_| git(toplevel, &["write-tree"], &[("GIT_INDEX_FILE", &idx)]));
    let _ = std::fs::remove_file(&tmp_index);
    tree
}

/// One thing a git restore would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitChange {
    /// `add`, `change`, `remove` (working-tree files), `index`, or `move` (refs).
    pub action: &'static str,
    pub what: String,
}

fn short(sha: Option<&str>) -> String {
    sha.map_or("(no commit)".to_string(), |h| h[..12.min(h.len())].to_string())
}

/// What restoring `state` would change: working-tree files, the index, HEAD and
/// the branch. Changes nothing.
pub fn plan_restore(state: &GitState) -> Result<Vec<GitChange>, GitError> {
    let dir = &state.toplevel;
    verify(state)?;
    let git_dir = PathBuf::from(git(dir, &["rev-parse", "--absolute-git-dir"], &[])?);
    let now_tree = worktree_tree(dir, &git_dir)?;
    let mut out = Vec::new();
    let target = format!("{}^{{tree}}", state.commit);
    let names = git(
        dir,
        &[
            "diff-tree",
            "-r",
            "-z",
            "--no-renames",
            "--name-status",
            &now_tree,
            &target,
        ],
        &[],
    )?;
    let mut parts = names.split('\0').filter(|s| !s.is_empty());
    while let (Some(st), Some(path)) = (parts.next(), parts.next()) {
        let action = match st {
            "A" => "add",
            "D" => "remove",
            _ => "change",
        };
        out.push(GitChange {
            action,
            what: path.to_string(),
        });
    }
    let now_index = git(dir, &["write-tree"], &[])?;
    if now_index != state.index_tree {
        let n = git(
            dir,
            &["diff-tree", "-r", "--name-only", &now_index, &state.index_tree],
            &[],
        )?
        .lines()
        .count();
        out.push(GitChange {
            action: "index",
            what: format!("the index (staged changes) differs in {n} path(s)"),
        });
    }
    let now_branch = optional(git(dir, &["symbolic-ref", "-q", "HEAD"], &[]));
    let now_head = optional(git(dir, &["rev-parse", "--verify", "-q", "HEAD"], &[]));
    if let Some(b) = &state.branch {
        let at = optional(git(dir, &["rev-parse", "--verify", "-q", b], &[]));
        if at != state.head {
            out.push(GitChange {
                action: "move",
                what: format!("{b}: {} → {}", short(at.as_deref()), short(state.head.as_deref())),
            });
        }
    }
    if now_branch != state.branch || (state.branch.is_none() && now_head != state.head) {
        let show = |b: &Option<String>, h: &Option<String>| match b {
            Some(b) => b.clone(),
            None => format!("detached at {}", short(h.as_deref())),
        };
        out.push(GitChange {
            action: "move",
            what: format!(
                "HEAD: {} → {}",
                show(&now_branch, &now_head),
                show(&state.branch, &state.head)
            ),
        });
    }
    Ok(out)
}

/// Puts HEAD, the branch, the index and the working tree back exactly as
/// `state` holds them. Untracked files that the checkpoint did not have are
/// removed (ignored files are left alone); take a checkpoint first.
pub fn restore(state: &GitState) -> Result<(), GitError> {
    let dir = &state.toplevel;
    verify(state)?;
    match (&state.branch, &state.head) {
        (Some(b), Some(h)) => {
            git(dir, &["update-ref", "-m", "backout restore", b, h], &[])?;
            git(dir, &["symbolic-ref", "HEAD", b], &[])?;
        }
        (Some(b), None) => {
            git(dir, &["symbolic-ref", "HEAD", b], &[])?;
            if git(dir, &["rev-parse", "--verify", "-q", b], &[]).is_ok() {
                git(dir, &["update-ref", "-d", b], &[])?;
            }
        }
        (None, Some(h)) => {
            git(
                dir,
                &["update-ref", "--no-deref", "-m", "backout restore", "HEAD", h],
                &[],
            )?;
        }
        (None, None) => {}
    }
    git(dir, &["read-tree", "--reset", "-u", &state.commit], &[])?;
    git(dir, &["clean", "-fdq"], &[])?;
    git(dir, &["read-tree", &state.index_tree], &[])?;
    // Stat information is stale after read-tree; refresh so `git status` is quiet.
    let _ = git(dir, &["update-index", "-q", "--refresh"], &[]);
    Ok(())
}

/// Refuses a captured state whose repository is not the one holding the
/// project at `root`, whatever the record says: restoring resets and cleans
/// the repository it names.
pub fn check_repository(state: &GitState, root: &Path) -> Result<(), GitError> {
    let project =
        git(root, &["rev-parse", "--show-toplevel"], &[]).map_err(|_| GitError::NotARepo(root.to_path_buf()))?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(&state.toplevel, Path::new(&project)) {
        Ok(())
    } else {
        Err(GitError::OtherRepository {
            recorded: state.toplevel.clone(),
            project: PathBuf::from(project),
        })
    }
}

/// Checks that everything a captured state names is still in the repository.
pub fn verify(state: &GitState) -> Result<(), GitError> {
    let dir = &state.toplevel;
    git(dir, &["cat-file", "-e", &format!("{}^{{tree}}", state.commit)], &[])?;
    git(dir, &["cat-file", "-e", &format!("{}^{{tree}}", state.index_tree)], &[])?;
    if let Some(h) = &state.head {
        git(dir, &["cat-file", "-e", &format!("{h}^{{commit}}")], &[])?;
    }
    let pinned = git(dir, &["rev-parse", "--verify", "-q", &state.pin], &[])?;
    if pinned != state.commit {
        return Err(GitError::Failed {
            args: format!("rev-parse {}", state.pin),
            dir: dir.clone(),
            stderr: format!("the ref points at {pinned}, not the captured {}", state.commit),
        });
    }
    Ok(())
}

/// The commits made on top of `since`, newest first.
pub fn commits_since(dir: &Path, since: &str) -> Result<Vec<String>, GitError> {
    let out = git(dir, &["rev-list", &format!("{since}..HEAD")], &[])?;
    Ok(out.lines().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        git(p, &["init", "-q", "-b", "main"], &[]).unwrap();
        std::fs::write(p.join("a.txt"), "one\n").unwrap();
        git(p, &["add", "a.txt"], &[]).unwrap();
        git(p, &["commit", "-qm", "first"], IDENTITY).unwrap();
        d
    }

    /// git's "racy git" rule: a file rewritten with the same size in the
    /// second it was committed has the cached stat data of the old content.
    /// Only the index file's own mtime tells git to look at its content.
    #[test]
    fn a_file_rewritten_in_the_second_it_was_committed_is_captured_with_its_new_content() {
        let d = repo();
        let p = d.path();
        std::fs::write(p.join("a.txt"), "two\n").unwrap();
        git(p, &["commit", "-qam", "second"], IDENTITY).unwrap();
        std::fs::write(p.join("a.txt"), "six\n").unwrap();
        // The capture's copy of the index is made in a later second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let s = capture(p, "cp-1").unwrap();
        assert_eq!(
            git(p, &["show", &format!("{}:a.txt", s.commit)], &[]).unwrap(),
            "six",
            "the checkpoint holds what the file holds"
        );
        let plan = plan_restore(&s).unwrap();
        assert!(plan.is_empty(), "nothing to restore: {plan:?}");
    }

    #[test]
    fn captures_staged_unstaged_and_untracked_without_touching_them() {
        let d = repo();
        let p = d.path();
        std::fs::write(p.join("a.txt"), "staged\n").unwrap();
        git(p, &["add", "a.txt"], &[]).unwrap();
        std::fs::write(p.join("a.txt"), "unstaged\n").unwrap();
        std::fs::write(p.join("new.txt"), "untracked\n").unwrap();
        std::fs::write(p.join(".gitignore"), "ignored.txt\n").unwrap();
        std::fs::write(p.join("ignored.txt"), "ignored\n").unwrap();
        let status_before = git(p, &["status", "--porcelain"], &[]).unwrap();

        let s = capture(p, "cp-1").unwrap();
        verify(&s).unwrap();
        assert_eq!(s.branch.as_deref(), Some("refs/heads/main"));
        assert_eq!(
            git(p, &["status", "--porcelain"], &[]).unwrap(),
            status_before,
            "capture changed nothing"
        );
        assert_eq!(git(p, &["stash", "list"], &[]).unwrap(), "");

        let show = |spec: &str| git(p, &["show", spec], &[]).unwrap();
        assert_eq!(show(&format!("{}:a.txt", s.commit)), "unstaged");
        assert_eq!(show(&format!("{}:new.txt", s.commit)), "untracked");
        assert_eq!(show(&format!("{}:a.txt", s.index_tree)), "staged");
        assert!(git(p, &["cat-file", "-e", &format!("{}:ignored.txt", s.commit)], &[]).is_err());
    }

    #[test]
    fn captures_a_repository_without_commits() {
        let d = tempfile::tempdir().unwrap();
        git(d.path(), &["init", "-q"], &[]).unwrap();
        std::fs::write(d.path().join("x"), "x").unwrap();
        let s = capture(d.path(), "cp-1").unwrap();
        assert_eq!(s.head, None);
        verify(&s).unwrap();
    }

    #[test]
    fn a_deleted_pin_fails_verification() {
        let d = repo();
        let s = capture(d.path(), "cp-1").unwrap();
        git(d.path(), &["update-ref", "-d", &s.pin], &[]).unwrap();
        assert!(verify(&s).is_err());
    }

    #[test]
    fn lists_commits_since_a_point() {
        let d = repo();
        let p = d.path();
        let base = git(p, &["rev-parse", "HEAD"], &[]).unwrap();
        for i in 0..2 {
            std::fs::write(p.join("a.txt"), format!("{i}\n")).unwrap();
            git(p, &["commit", "-qam", &format!("c{i}")], IDENTITY).unwrap();
        }
        let c = commits_since(p, &base).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], git(p, &["rev-parse", "HEAD"], &[]).unwrap());
    }

    /// Everything a restore promises to put back: every file of the working
    /// tree (ignored ones included) with its bytes and exec bit, the index,
    /// HEAD and the branch.
    /// Files (path, bytes, exec bit), index tree, HEAD's ref, HEAD's commit.
    type Everything = (Vec<(String, Vec<u8>, bool)>, String, String, String);

    fn everything(p: &Path) -> Everything {
        use std::os::unix::fs::PermissionsExt;
        let mut files = Vec::new();
        for e in walkdir::WalkDir::new(p).sort_by_file_name() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(p).unwrap().to_str().unwrap().to_string();
            if rel == ".git" || rel.starts_with(".git/") || !e.file_type().is_file() {
                continue;
            }
            let exec = e.metadata().unwrap().permissions().mode() & 0o100 != 0;
            files.push((rel, std::fs::read(e.path()).unwrap(), exec));
        }
        let index = git(p, &["write-tree"], &[]).unwrap();
        let head = git(p, &["symbolic-ref", "-q", "HEAD"], &[]).unwrap_or_else(|_| "detached".into());
        let sha = git(p, &["rev-parse", "HEAD"], &[]).unwrap();
        (files, index, head, sha)
    }

    /// Scribbles over everything `everything` looks at.
    fn mess_up(p: &Path) {
        std::fs::write(p.join("a.txt"), "messed\n").unwrap();
        std::fs::write(p.join("later.txt"), "added after the checkpoint\n").unwrap();
        git(p, &["add", "-A"], &[]).unwrap();
        git(p, &["commit", "-qm", "after"], IDENTITY).unwrap();
        std::fs::write(p.join("a.txt"), "unstaged mess\n").unwrap();
        std::fs::write(p.join("untracked-later.txt"), "x").unwrap();
        let _ = std::fs::remove_file(p.join("new.txt"));
    }

    fn round_trip(p: &Path, what: &str) {
        std::fs::write(p.join(".gitignore"), "ignored.txt\n").unwrap();
        std::fs::write(p.join("ignored.txt"), "ignored, never touched\n").unwrap();
        let before = everything(p);
        let s = capture(p, "cp-1").unwrap();
        mess_up(p);
        assert_ne!(everything(p), before, "{what}: the mess changed something");
        let plan = plan_restore(&s).unwrap();
        assert!(!plan.is_empty(), "{what}: the dry run sees changes");
        restore(&s).unwrap();
        assert_eq!(everything(p), before, "{what}: every byte back");
        assert!(plan_restore(&s).unwrap().is_empty(), "{what}: nothing left to change");
    }

    #[test]
    fn restore_gives_back_staged_work() {
        let d = repo();
        std::fs::write(d.path().join("a.txt"), "staged\n").unwrap();
        git(d.path(), &["add", "a.txt"], &[]).unwrap();
        round_trip(d.path(), "staged");
    }

    #[test]
    fn restore_gives_back_unstaged_work_with_exec_bits() {
        use std::os::unix::fs::PermissionsExt;
        let d = repo();
        std::fs::write(d.path().join("a.txt"), "unstaged\n").unwrap();
        std::fs::write(d.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(d.path().join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        git(d.path(), &["add", "run.sh"], &[]).unwrap();
        std::fs::write(d.path().join("run.sh"), "#!/bin/sh\necho changed\n").unwrap();
        round_trip(d.path(), "unstaged");
    }

    #[test]
    fn restore_gives_back_untracked_files() {
        let d = repo();
        std::fs::create_dir_all(d.path().join("dir/sub")).unwrap();
        std::fs::write(d.path().join("new.txt"), "untracked\n").unwrap();
        std::fs::write(d.path().join("dir/sub/deep.txt"), "deep untracked\n").unwrap();
        round_trip(d.path(), "untracked");
    }

    #[test]
    fn restore_gives_back_a_detached_head() {
        let d = repo();
        let p = d.path();
        std::fs::write(p.join("a.txt"), "two\n").unwrap();
        git(p, &["commit", "-qam", "second"], IDENTITY).unwrap();
        git(p, &["checkout", "-q", "--detach", "HEAD~1"], &[]).unwrap();
        std::fs::write(p.join("a.txt"), "detached work\n").unwrap();
        let s = capture(p, "cp-1").unwrap();
        assert_eq!(s.branch, None);
        git(p, &["checkout", "-q", "-f", "main"], &[]).unwrap();
        round_trip_after(p, &s, "detached");
    }

    #[test]
    fn restore_moves_a_branch_back_after_it_moved() {
        let d = repo();
        let p = d.path();
        let before = everything(p);
        let s = capture(p, "cp-1").unwrap();
        for i in 0..3 {
            std::fs::write(p.join("a.txt"), format!("v{i}\n")).unwrap();
            git(p, &["commit", "-qam", &format!("c{i}")], IDENTITY).unwrap();
        }
        git(p, &["checkout", "-q", "-b", "elsewhere"], &[]).unwrap();
        let plan = plan_restore(&s).unwrap();
        assert!(
            plan.iter()
                .any(|c| c.action == "move" && c.what.starts_with("refs/heads/main")),
            "{plan:?}"
        );
        assert!(
            plan.iter().any(|c| c.action == "move" && c.what.starts_with("HEAD")),
            "{plan:?}"
        );
        restore(&s).unwrap();
        assert_eq!(everything(p), before);
        assert_eq!(git(p, &["symbolic-ref", "HEAD"], &[]).unwrap(), "refs/heads/main");
    }

    fn round_trip_after(p: &Path, s: &GitState, what: &str) {
        // Capture again into a throwaway pin to learn what "before" was, then
        // restore the first capture and compare with a fresh look at it.
        restore(s).unwrap();
        let before = everything(p);
        mess_up(p);
        restore(s).unwrap();
        assert_eq!(everything(p), before, "{what}");
        assert_eq!(git(p, &["rev-parse", "HEAD"], &[]).unwrap(), s.head.clone().unwrap());
        assert!(
            git(p, &["symbolic-ref", "-q", "HEAD"], &[]).is_err(),
            "{what}: still detached"
        );
        assert_eq!(std::fs::read_to_string(p.join("a.txt")).unwrap(), "detached work\n");
    }
}
