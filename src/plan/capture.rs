//! Validation of `[capture]`: the paths a checkpoint stores must be plain
//! relative paths that stay inside the plan root and out of `.backout/`.

use std::collections::BTreeSet;

use super::Validator;
use super::raw::S;
use crate::store::manifest::check_rel_path;

impl Validator<'_> {
    /// `[capture] paths`, normalised (`config/` → `config`), each checked.
    pub(super) fn capture_paths(&mut self, paths: &Option<Vec<S<String>>>) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for p in paths.iter().flatten() {
            let raw = p.get_ref().as_str();
            let norm = raw.trim_end_matches('/').trim_start_matches("./");
            let problem = if raw.starts_with('/') {
                Some("an absolute path")
            } else if norm.split('/').any(|c| c == "..") {
                Some("a path that leaves the plan root through `..`")
            } else if norm.split('/').next() == Some(crate::workspace::STATE_DIR) {
                Some("backout's own state directory")
            } else if check_rel_path(norm).is_err() {
                Some("not a plain relative path")
            } else {
                None
            };
            if let Some(what) = problem {
                self.error(
                    p.span(),
                    format!("capture path {raw:?} is {what}"),
                    "write a path relative to the directory holding backout.toml, e.g. \"api/venv\" or \"config/\"",
                );
                continue;
            }
            if !seen.insert(norm.to_string()) {
                self.error(
                    p.span(),
                    format!("capture path {raw:?} is listed twice"),
                    "list each path once",
                );
                continue;
            }
            out.push(norm.to_string());
        }
        // A path inside another would be captured (and restored) twice.
        for a in &out {
            if let Some(b) = out.iter().find(|b| a.starts_with(&format!("{b}/")))
                && let Some(p) = paths.iter().flatten().find(|p| p.get_ref().trim_end_matches('/') == a)
            {
                self.error(
                    p.span(),
                    format!("capture path {a:?} is inside {b:?}, which is captured already"),
                    "keep only the outer path",
                );
            }
        }
        out
    }
}
