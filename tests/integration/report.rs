//! Reports (md, html, json), `report --edit`, `show`, `log --since`.

use crate::Project;

fn demo(p: &Project) -> std::path::PathBuf {
    let dir = p.path().join("demo");
    p.run(&["demo", "--keep", dir.to_str().unwrap()]).success();
    dir
}

fn run_in(p: &Project, dir: &std::path::Path, args: &[&str]) -> crate::Run {
    crate::Run(p.cmd(args).current_dir(dir).output().unwrap())
}

#[test]
fn the_html_report_is_one_self_contained_file_with_charts() {
    let p = Project::new();
    let dir = demo(&p);
    let html = std::fs::read_to_string(dir.join(".backout/reports/inc-1/report.html")).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    // Charts: one per probe plus the timeline, inline.
    assert!(html.matches("<svg").count() >= 3, "expected inline SVG charts");
    assert!(html.contains("api latency"), "no api chart");
    // Nothing external: no scripts, no linked assets.
    for bad in ["<script", "src=\"http", "href=\"http", "<link", "@import", "url("] {
        assert!(!html.contains(bad), "the report references something external: {bad}");
    }
    for section in [
        "Summary",
        "Timeline",
        "Probes",
        "Commands executed",
        "Validation",
        "Diagnostics",
        "Root cause",
        "Lessons learned",
    ] {
        assert!(html.contains(&format!("<h2>{section}</h2>")), "no {section} section");
    }
    assert!(html.contains("% &gt; 10%"), "the verdict's value is shown in its unit");
}

#[test]
fn report_prints_each_format_and_edit_keeps_the_text_in_the_log() {
    let p = Project::new();
    let dir = demo(&p);
    let md = run_in(&p, &dir, &["report"]);
    md.success();
    assert!(
        md.stdout().starts_with("# Incident inc-1: demo-quotes"),
        "{}",
        md.stdout()
    );
    assert!(md.stdout().contains("## Diagnostics (captured before the rollback)"));
    let json = run_in(&p, &dir, &["report", "inc-1", "--json"]);
    json.success();
    let v: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap();
    assert_eq!(v["verdict"]["rule"], "api-errors");
    run_in(&p, &dir, &["report", "inc-9"]).code_is(2);

    // An "editor" that fills in both sections.
    let editor = p.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/^## Root cause$/## Root cause\\n\\nA cold pricing cache./; s/^## Lessons learned$/## Lessons learned\\n\\nWarm caches before deploys./' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let edit = crate::Run(
        p.cmd(&["report", "--edit"])
            .current_dir(&dir)
            .env("EDITOR", &editor)
            .output()
            .unwrap(),
    );
    edit.success();
    let md = std::fs::read_to_string(dir.join(".backout/reports/inc-1/report.md")).unwrap();
    assert!(md.contains("## Root cause\n\nA cold pricing cache."), "{md}");
    assert!(md.contains("## Lessons learned\n\nWarm caches before deploys."), "{md}");
    let html = std::fs::read_to_string(dir.join(".backout/reports/inc-1/report.html")).unwrap();
    assert!(html.contains("A cold pricing cache."));
    // And the text lives in the operation log, not only in the files.
    let conn = rusqlite::Connection::open(dir.join(".backout/state.db")).unwrap();
    let detail: String = conn
        .query_row("SELECT detail FROM events WHERE kind = 'report_edit'", [], |r| r.get(0))
        .unwrap();
    assert!(detail.contains("A cold pricing cache."), "{detail}");
}

#[test]
fn show_explains_operations_checkpoints_and_incidents() {
    let p = Project::new();
    let dir = demo(&p);
    let ops: serde_json::Value =
        serde_json::from_str(&run_in(&p, &dir, &["log", "--json", "--kind", "rollback"]).stdout()).unwrap();
    let id = format!("op-{}", ops[0]["id"]);
    let op = run_in(&p, &dir, &["show", &id]);
    op.success();
    assert!(op.stdout().contains("rollback: ok"), "{}", op.stdout());
    assert!(op.stdout().contains("$ git revert --no-edit"), "{}", op.stdout());
    let cp = run_in(&p, &dir, &["show", "cp-1"]);
    cp.success();
    assert!(cp.stdout().contains("complete"), "{}", cp.stdout());
    let inc = run_in(&p, &dir, &["show", "inc-1"]);
    inc.success();
    assert!(inc.stdout().contains("recovered and verified"), "{}", inc.stdout());
    run_in(&p, &dir, &["show", "zz-1"]).code_is(2);
    run_in(&p, &dir, &["show", "op-999"]).code_is(2);
    // --since filters by time: nothing is older than a day, everything is newer than a second ago... minus the demo.
    let recent: serde_json::Value =
        serde_json::from_str(&run_in(&p, &dir, &["log", "--json", "--since", "1d"]).stdout()).unwrap();
    assert!(recent.as_array().unwrap().len() >= 6);
}
