use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::resource::gc;

/// Verify every stored object and every checkpoint's manifests and git pins
///
/// Each object is decompressed and re-hashed. Reports what is missing or
/// corrupt and which checkpoints (and files) it affects; exits 5 on damage.
///
/// Example: backout fsck --json
#[derive(Debug, Args)]
pub struct FsckArgs {}

pub fn run(ctx: &Ctx, _args: FsckArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let bar = ctx.printer.progress();
    let report = gc::fsck(&ws, &bar)?;
    ctx.printer.data(&serde_json::json!({
        "clean": report.is_clean(),
        "objects": report.objects,
        "manifests": report.manifests,
        "damaged": report.damaged,
        "affected_checkpoints": report.affected(),
    }));
    let p = &ctx.printer;
    for d in &report.damaged {
        let cps: Vec<&str> = d.checkpoints.iter().map(String::as_str).collect();
        let used = if cps.is_empty() {
            "used by no checkpoint".to_string()
        } else {
            format!("affects {}", cps.join(", "))
        };
        let problem = serde_json::to_value(d.problem)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        p.out(format!(
            "{problem} {} {}: {used}",
            d.role,
            &d.object[..12.min(d.object.len())]
        ));
        if !d.detail.is_empty() {
            p.out(format!("  {}", d.detail));
        }
        for path in &d.paths {
            p.out(format!("  file {path}"));
        }
    }
    if report.is_clean() {
        p.out(format!(
            "store is clean: {} objects, {} manifests checked",
            report.objects, report.manifests
        ));
        Ok(ExitCode::Ok)
    } else {
        let affected = report.affected();
        p.out(format!(
            "{} damaged object(s); affected checkpoints: {}",
            report.damaged.len(),
            if affected.is_empty() {
                "none".into()
            } else {
                affected.into_iter().collect::<Vec<_>>().join(", ")
            }
        ));
        Ok(ExitCode::Damaged)
    }
}
