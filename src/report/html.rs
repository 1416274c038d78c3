//! The HTML report: one self-contained file (inline CSS and SVG, no scripts, no
//! external assets) that reads well in a browser and prints well.

use std::fmt::Write as _;

use super::chart::{self, Marker, esc};
use super::{Incident, ms};

pub const CSS: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2330;max-width:820px;margin:24px auto;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #e3e6ec;padding-bottom:4px}
.sub{color:#5b6473;margin:0 0 16px}.ok{color:#1f7a3d;font-weight:600}.bad{color:#b42318;font-weight:600}
.cards{display:flex;gap:10px;flex-wrap:wrap}.card{border:1px solid #e3e6ec;border-radius:8px;padding:8px 12px;min-width:150px}
.card b{display:block;font-size:18px}.card span{color:#5b6473;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}td,th{border-bottom:1px solid #eceef2;padding:4px 6px;text-align:left;vertical-align:top}
th{color:#5b6473;font-weight:600}code,pre{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}pre{background:#f6f7f9;padding:8px;overflow:auto;white-space:pre-wrap}
details{margin:4px 0}svg{max-width:100%;height:auto}.todo{color:#8a93a3;font-style:italic}
";

/// Renders the incident as one HTML page.
pub fn render(i: &Incident) -> String {
    let mut h = String::new();
    let start = i.deploy_at.or(i.first_bad_at).unwrap_or(i.verdict_at);
    let end = i
        .rollback
        .healthy_at
        .unwrap_or(i.rollback.ended_at)
        .max(i.samples.last().map_or(0, |s| s.at));
    let first_sample = i.samples.first().map_or(start, |s| s.at).min(start);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Incident {id}: {plan}</title><style>{CSS}</style></head><body>",
        id = esc(&i.id),
        plan = esc(&i.plan)
    );
    let outcome = if i.verified() {
        "<span class=\"ok\">recovered and verified</span>"
    } else if i.rollback.ok {
        "<span class=\"bad\">rolled back, verification failed</span>"
    } else {
        "<span class=\"bad\">rollback failed</span>"
    };
    let when = jiff::Timestamp::from_millisecond(i.verdict_at)
        .map_or(String::new(), |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string());
    let _ = write!(
        h,
        "<h1>Incident {}: {}</h1><p class=\"sub\">{when} · {outcome}</p>",
        esc(&i.id),
        esc(&i.plan)
    );

    // The figures people ask first.
    h.push_str("<div class=\"cards\">");
    let card = |h: &mut String, v: String, label: &str| {
        let _ = write!(
            h,
            "<div class=\"card\"><b>{}</b><span>{}</span></div>",
            esc(&v),
            esc(label)
        );
    };
    // The same figures as the Markdown report and the console.
    for f in super::figures::figures(i) {
        let label = if f.span.is_empty() {
            f.name
        } else {
            format!("{} ({})", f.name, f.span)
        };
        card(&mut h, f.value, &label);
    }
    card(&mut h, i.rollback.checkpoint.clone(), "rolled back to");
    h.push_str("</div>");

    h.push_str("<h2>Summary</h2>");
    let v = &i.verdict;
    let _ = write!(
        h,
        "<p>Rule <code>{}</code> (<code>{}</code>) called for a rollback:</p><pre>{}</pre>",
        esc(&v.rule),
        esc(&v.when),
        esc(&v.explanation)
    );
    let [value, threshold, baseline] = super::verdict_values(v);
    let _ = write!(
        h,
        "<table><tr><th>window</th><th>samples</th><th>failed</th><th>value</th><th>threshold</th><th>baseline</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        esc(&v.window),
        v.samples,
        v.failed_samples,
        esc(&value),
        esc(&threshold),
        esc(&baseline)
    );

    h.push_str("<h2>Timeline</h2>");
    let mut segs: Vec<(i64, i64, &str, &str)> = Vec::new();
    if let (Some(d), Some(fb)) = (i.deploy_at, i.first_bad_at) {
        segs.push((d, fb, "after deploy, before the first bad sample", "#8fc79a"));
    }
    if let Some(fb) = i.first_bad_at {
        segs.push((fb, i.verdict_at, "detecting", "#e9a23b"));
    }
    segs.push((
        i.verdict_at,
        i.rollback.healthy_at.unwrap_or(i.rollback.ended_at),
        "recovering",
        "#d64545",
    ));
    h.push_str(&chart::timeline_chart(
        &segs,
        (start, i.rollback.healthy_at.unwrap_or(i.rollback.ended_at)),
    ));
    let _ = write!(h, "<table><tr><th>time</th><th>{}</th><th>event</th></tr>", i.since());
    for e in &i.timeline {
        let clock =
            jiff::Timestamp::from_millisecond(e.at).map_or(String::new(), |t| t.strftime("%H:%M:%S%.3f").to_string());
        let d = e.at - start;
        let _ = write!(
            h,
            "<tr><td>{clock}</td><td>{}{}</td><td>{}</td></tr>",
            if d < 0 { "-" } else { "+" },
            ms(d.abs()),
            esc(&e.what)
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Probes</h2>");
    let markers = [
        Marker {
            at: i.deploy_at.unwrap_or(start),
            label: "deploy",
            color: "#444",
        },
        Marker {
            at: i.verdict_at,
            label: "verdict",
            color: "#b42318",
        },
        Marker {
            at: i.rollback.healthy_at.unwrap_or(i.rollback.ended_at),
            label: "healthy",
            color: "#1f7a3d",
        },
    ];
    let mut probes: Vec<&str> = i.samples.iter().map(|s| s.probe.as_str()).collect();
    probes.sort_unstable();
    probes.dedup();
    if probes.is_empty() {
        h.push_str("<p class=\"todo\">No samples were recorded.</p>");
    }
    for p in probes {
        let samples: Vec<_> = i.samples.iter().filter(|s| s.probe == p).collect();
        let limits: Vec<_> = i.limits.iter().filter(|l| l.probe == p).collect();
        h.push_str(&chart::probe_chart(
            p,
            &samples,
            i.baselines.get(p),
            &limits,
            &markers,
            (first_sample, end),
        ));
    }

    h.push_str("<h2>Commands executed</h2><table><tr><th>#</th><th>step</th><th>command</th><th>result</th><th>duration</th></tr>");
    for s in &i.rollback.steps {
        let result = match (s.ok, s.exit_code) {
            (true, _) => "<span class=\"ok\">ok</span>".to_string(),
            (false, Some(c)) => format!("<span class=\"bad\">failed (exit {c})</span>"),
            (false, None) => "<span class=\"bad\">failed</span>".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{result}</td><td>{}ms</td></tr>",
            s.seq,
            esc(&s.name),
            esc(s.command.as_deref().unwrap_or("-")),
            s.duration_ms
        );
    }
    let first = i.rollback.steps.len() + 1;
    for (n, name) in i.rollback.not_run.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>-</td><td class=\"todo\">not run</td><td>-</td></tr>",
            first + n,
            esc(name)
        );
    }
    h.push_str("</table>");
    for s in i.rollback.steps.iter().filter(|s| !s.output.trim().is_empty()) {
        let _ = write!(
            h,
            "<details><summary>step {} output</summary><pre>{}</pre></details>",
            s.seq,
            esc(s.output.trim())
        );
    }

    if let Some(lines) = super::discarded_lines(&i.rollback) {
        h.push_str("<h2>Data discarded</h2><ul>");
        for l in lines {
            let _ = write!(h, "<li>{}</li>", esc(&l));
        }
        h.push_str("</ul>");
    }
    h.push_str("<h2>Validation</h2>");
    for line in super::figures::not_run(i) {
        let _ = write!(h, "<p class=\"todo\">{}</p>", esc(&line));
    }
    if !i.verification.is_empty() {
        h.push_str("<table><tr><th></th><th>check</th><th>evidence</th><th>duration</th></tr>");
        for c in &i.verification {
            let mark = if c.passed {
                "<span class=\"ok\">pass</span>"
            } else {
                "<span class=\"bad\">FAIL</span>"
            };
            let _ = write!(
                h,
                "<tr><td>{mark}</td><td>{}</td><td>{}</td><td>{}ms</td></tr>",
                esc(&c.name),
                esc(&c.evidence),
                c.duration_ms
            );
        }
        h.push_str("</table>");
    }

    if !i.diagnostics.is_empty() {
        h.push_str(
            "<h2>Diagnostics</h2><p class=\"sub\">Captured when the verdict fired, before any rollback step.</p>",
        );
        for d in &i.diagnostics {
            let _ = write!(
                h,
                "<details><summary>{}</summary><pre>{}</pre></details>",
                esc(&d.name),
                esc(d.content.trim_end())
            );
        }
    }
    let text = |s: &Option<String>| match s.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(t) => format!("<p>{}</p>", esc(t).replace("\n\n", "</p><p>")),
        None => "<p class=\"todo\">To be filled in (<code>backout report --edit</code>).</p>".into(),
    };
    let _ = write!(
        h,
        "<h2>Root cause</h2>{}<h2>Lessons learned</h2>{}",
        text(&i.root_cause),
        text(&i.lessons)
    );
    h.push_str("</body></html>\n");
    h
}
