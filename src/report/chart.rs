//! Inline SVG charts for the HTML report: each probe's latency over time with
//! failed samples marked, the threshold and the baseline band, and the deploy,
//! verdict and recovery moments; and the incident timeline as a bar.
//! Hand-written SVG keeps the report one self-contained file with no scripts.

use std::fmt::Write as _;

use crate::oplog::SampleRow;
use crate::watch::BaselineStats;

/// A horizontal line on a probe's chart (a rule's threshold).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Limit {
    pub probe: String,
    /// Milliseconds of latency.
    pub value: f64,
    pub label: String,
}

/// A moment marked on every chart.
#[derive(Debug, Clone)]
pub struct Marker {
    pub at: i64,
    pub label: &'static str,
    pub color: &'static str,
}

const W: f64 = 760.0;
const H: f64 = 220.0;
const L: f64 = 56.0; // left margin for the axis labels
const R: f64 = 12.0;
const T: f64 = 24.0;
const B: f64 = 34.0;

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// The latency chart of one probe.
pub fn probe_chart(
    probe: &str,
    samples: &[&SampleRow],
    baseline: Option<&BaselineStats>,
    limits: &[&Limit],
    markers: &[Marker],
    span: (i64, i64),
) -> String {
    let (t0, t1) = (span.0, span.1.max(span.0 + 1));
    let lat: Vec<f64> = samples.iter().filter_map(|s| s.latency_ms).collect();
    let mut top = lat.iter().copied().fold(0.0, f64::max);
    for l in limits {
        top = top.max(l.value);
    }
    if let Some(p95) = baseline.and_then(|b| b.latency_p95) {
        top = top.max(p95);
    }
    let top = nice_ceiling(top * 1.1);
    let x = |t: i64| L + (t - t0) as f64 / (t1 - t0) as f64 * (W - L - R);
    let y = |v: f64| T + (1.0 - v / top) * (H - T - B);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{p} latency">"#,
        p = esc(probe)
    );
    let _ = write!(
        s,
        r##"<rect x="{L}" y="{T}" width="{}" height="{}" fill="#fbfbfd" stroke="#d0d4dc"/>"##,
        W - L - R,
        H - T - B
    );
    // Axis ticks.
    for i in 0..=4 {
        let v = top * i as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{L}" x2="{}" y1="{y}" y2="{y}" stroke="#eceef2"/><text x="{}" y="{}" font-size="11" text-anchor="end" fill="#555">{}</text>"##,
            W - R,
            L - 6.0,
            y(v) + 4.0,
            fmt_ms(v),
            y = y(v)
        );
    }
    let secs = (t1 - t0) as f64 / 1000.0;
    for i in 0..=5 {
        let t = t0 + ((t1 - t0) as f64 * i as f64 / 5.0) as i64;
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="#555">+{:.1}s</text>"##,
            x(t),
            H - B + 16.0,
            secs * i as f64 / 5.0
        );
    }
    // Baseline band: median to p95.
    if let (Some(med), Some(p95)) = (
        baseline.and_then(|b| b.latency_median),
        baseline.and_then(|b| b.latency_p95),
    ) {
        let _ = write!(
            s,
            r##"<rect x="{L}" y="{}" width="{}" height="{}" fill="#3a7bd5" opacity="0.12"><title>baseline median {} to p95 {}</title></rect>"##,
            y(p95),
            W - L - R,
            (y(med) - y(p95)).max(1.5),
            fmt_ms(med),
            fmt_ms(p95)
        );
    }
    for l in limits {
        let _ = write!(
            s,
            r##"<line x1="{L}" x2="{}" y1="{v}" y2="{v}" stroke="#d9822b" stroke-dasharray="6 4"/><text x="{}" y="{}" font-size="11" text-anchor="end" fill="#b36200">{}</text>"##,
            W - R,
            W - R - 4.0,
            y(l.value) - 4.0,
            esc(&l.label),
            v = y(l.value)
        );
    }
    let mut label_end = f64::MIN;
    let mut row = 0;
    for m in markers.iter().filter(|m| m.at >= t0 && m.at <= t1) {
        let mx = x(m.at);
        // Near the right edge the label goes left of its line; labels that would
        // overlap the previous one drop to the next row inside the plot.
        let width = m.label.len() as f64 * 6.5;
        let (lx, anchor) = if mx + width > W - R {
            (mx - 3.0, "end")
        } else {
            (mx + 3.0, "start")
        };
        let start = if anchor == "end" { lx - width } else { lx };
        row = if start < label_end { row + 1 } else { 0 };
        label_end = start + width;
        let _ = write!(
            s,
            r##"<line x1="{mx}" x2="{mx}" y1="{T}" y2="{}" stroke="{c}" stroke-width="1.5"/><text x="{lx}" y="{}" font-size="11" text-anchor="{anchor}" fill="{c}">{}</text>"##,
            H - B,
            T - 8.0 + 14.0 * row as f64,
            m.label,
            c = m.color
        );
    }
    // The line through healthy and failed samples alike, then the points.
    let pts: Vec<String> = samples
        .iter()
        .filter_map(|sm| sm.latency_ms.map(|l| format!("{:.1},{:.1}", x(sm.at), y(l))))
        .collect();
    if !pts.is_empty() {
        let _ = write!(
            s,
            r##"<polyline fill="none" stroke="#3a7bd5" stroke-width="1.2" points="{}"/>"##,
            pts.join(" ")
        );
    }
    for sm in samples {
        let v = sm.latency_ms.unwrap_or(top);
        if !sm.ok {
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3.2" fill="#d64545"><title>{}</title></circle>"##,
                x(sm.at),
                y(v),
                esc(sm.error.as_deref().unwrap_or("failed"))
            );
        }
    }
    let _ = write!(
        s,
        r##"<text x="{L}" y="14" font-size="12" font-weight="600" fill="#222">{} latency (red: failed samples)</text></svg>"##,
        esc(probe)
    );
    s
}

/// The incident as one horizontal bar: healthy, impact, detection, recovery.
pub fn timeline_chart(segments: &[(i64, i64, &str, &str)], span: (i64, i64)) -> String {
    let (t0, t1) = (span.0, span.1.max(span.0 + 1));
    let h = 70.0;
    let x = |t: i64| L + (t - t0) as f64 / (t1 - t0) as f64 * (W - L - R);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="incident timeline">"#
    );
    for (a, b, label, color) in segments {
        let w = (x(*b) - x(*a)).max(2.0);
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="14" width="{w:.1}" height="22" fill="{color}"><title>{}: {}</title></rect>"##,
            x(*a),
            esc(label),
            fmt_ms((b - a) as f64)
        );
    }
    let mut last_end = f64::MIN;
    for (a, b, label, _) in segments {
        let lx = x(*a);
        // Labels go on a second row when they would overlap the previous one.
        let row = if lx < last_end { 62.0 } else { 50.0 };
        let text = format!("{label} {}", fmt_ms((b - a) as f64));
        last_end = lx + text.len() as f64 * 6.2;
        let _ = write!(
            s,
            r##"<text x="{lx:.1}" y="{row}" font-size="11" fill="#333">{}</text>"##,
            esc(&text)
        );
    }
    s.push_str("</svg>");
    s
}

fn fmt_ms(v: f64) -> String {
    use crate::plan::units::trim_float;
    if v >= 1000.0 {
        format!("{}s", trim_float((v / 100.0).round() / 10.0))
    } else if v >= 100.0 {
        format!("{}ms", trim_float(v.round()))
    } else {
        format!("{}ms", trim_float((v * 10.0).round() / 10.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis_bounds() {
        assert_eq!(nice_ceiling(43.0), 50.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }

    #[test]
    fn charts_are_well_formed_svg_with_escaped_text() {
        let s = SampleRow {
            probe: "a<b".into(),
            at: 10,
            ok: false,
            latency_ms: Some(5.0),
            status: Some(500),
            size: None,
            error: Some("x & y".into()),
            ..SampleRow::default()
        };
        let svg = probe_chart(
            "a<b",
            &[&s],
            None,
            &[],
            &[Marker {
                at: 10,
                label: "deploy",
                color: "#000",
            }],
            (0, 20),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("a&lt;b") && svg.contains("x &amp; y"));
        assert!(!svg.contains("a<b"));
        let t = timeline_chart(&[(0, 10, "impact", "#f00")], (0, 10));
        assert!(t.contains("impact 10ms"));
    }
}
