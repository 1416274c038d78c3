//! The live terminal view of `backout watch`: one row per probe (status, last
//! value, baseline, threshold, a sparkline of the recent window) and the latest
//! verdicts and reviews below, redrawn in place with ANSI codes.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::oplog::SampleRow;
use crate::plan::rule::{self, Field};
use crate::plan::{Plan, Rule};
use crate::watch::{BaselineStats, Outcome, WatchEvent};

/// How many recent values a sparkline shows.
const SPARK: usize = 24;
/// How often the view redraws at most.
const FRAME: Duration = Duration::from_millis(200);
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

struct Row {
    probe: String,
    /// The field shown: the first rule's on this probe, else latency.
    field: Field,
    threshold: String,
    baseline: Option<f64>,
    ok: Option<bool>,
    last: Option<f64>,
    error: Option<String>,
    recent: VecDeque<f64>,
}

pub struct LiveView {
    rows: Vec<Row>,
    /// Each review: name, when it is due (ms), and its result once run.
    reviews: Vec<(String, i64, Option<bool>)>,
    notes: VecDeque<String>,
    drawn: usize,
    last_draw: Option<Instant>,
    started: Instant,
}

/// The number a sample gives for `field`, for display.
pub fn sample_value(s: &SampleRow, field: Field) -> Option<f64> {
    match field {
        Field::Up | Field::ErrorRate | Field::ConsecutiveFailures => Some(if s.ok { 1.0 } else { 0.0 }),
        Field::Latency => s.latency_ms,
        Field::Status => s.status.map(f64::from),
        Field::Size => s.size.map(|v| v as f64),
        Field::Value => s.value,
        f => s.fields.get(f.key()?).copied(),
    }
}

impl LiveView {
    pub fn new(plan: &Plan, baselines: &HashMap<String, BaselineStats>, schedule: &crate::watch::Schedule) -> Self {
        let reviews = plan
            .reviews
            .iter()
            .map(|r| {
                let due = schedule.deploy_at.saturating_add(crate::context::millis(r.at));
                let done = schedule.done.contains(&r.name).then_some(true);
                (r.name.clone(), due, done)
            })
            .collect();
        let rows = plan
            .probes
            .iter()
            .map(|p| {
                let rule: Option<&Rule> = plan.rules.iter().find(|r| r.condition.metric.probe == p.name);
                let (field, agg) = rule.map_or((Field::Latency, rule::Agg::Mean), |r| {
                    (r.condition.metric.field, r.condition.metric.agg)
                });
                let field = match field {
                    // A rate or share is a property of a window; show what each sample gives.
                    Field::Rate => Field::Count,
                    Field::ErrorRate | Field::ConsecutiveFailures => Field::Latency,
                    f => f,
                };
                Row {
                    probe: p.name.clone(),
                    field,
                    threshold: rule.map_or("-".into(), |r| {
                        format!(
                            "{} {} {}",
                            r.condition.metric,
                            r.condition.op.symbol(),
                            rule::format_threshold(r.condition.metric.field, &r.condition.threshold)
                        )
                    }),
                    baseline: baselines.get(&p.name).and_then(|b| b.value(field, agg)),
                    ok: None,
                    last: None,
                    error: None,
                    recent: VecDeque::new(),
                }
            })
            .collect();
        LiveView {
            rows,
            reviews,
            notes: VecDeque::new(),
            drawn: 0,
            last_draw: None,
            started: Instant::now(),
        }
    }

    /// Takes an event in; returns whether the view should redraw now.
    pub fn update(&mut self, e: &WatchEvent) -> bool {
        match e {
            WatchEvent::Sample(s) => {
                if let Some(row) = self.rows.iter_mut().find(|r| r.probe == s.probe) {
                    row.ok = Some(s.ok);
                    row.error = s.error.clone();
                    if let Some(v) = sample_value(s, row.field) {
                        row.last = Some(v);
                        row.recent.push_back(v);
                        if row.recent.len() > SPARK {
                            row.recent.pop_front();
                        }
                    }
                }
                self.last_draw.is_none_or(|t| t.elapsed() >= FRAME)
            }
            WatchEvent::Verdict(v) => {
                let mark = match v.outcome {
                    Outcome::Rollback => "✗",
                    Outcome::Investigate => "!",
                    Outcome::Inconclusive => "?",
                    Outcome::Pass => "✓",
                };
                self.note(format!("{mark} {}", v.explanation));
                true
            }
            WatchEvent::Review(r) => {
                if let Some(x) = self.reviews.iter_mut().find(|x| x.0 == r.name) {
                    x.2 = Some(r.passed);
                }
                self.note(format!("{} {}", if r.passed { "✓" } else { "✗" }, r.summary()));
                true
            }
            WatchEvent::FirstBadSample(_) | WatchEvent::Success { .. } => true,
        }
    }

    fn note(&mut self, line: String) {
        self.notes.push_back(line);
        if self.notes.len() > 5 {
            self.notes.pop_front();
        }
    }

    /// The view's lines at `now` (ms), for [`crate::output::Printer::redraw`].
    pub fn lines(&self, p: &crate::output::Printer, now: i64) -> Vec<String> {
        let recent = format!("recent ({}s)", self.started.elapsed().as_secs());
        let mut out = vec![p.bold(&format!(
            "{:<14} {:<6} {:>10} {:>10}  {:<32} {recent}",
            "probe", "status", "last", "baseline", "threshold",
        ))];
        for r in &self.rows {
            let status = match r.ok {
                None => p.dim("…    "),
                Some(true) => p.green("ok    "),
                Some(false) => p.red("FAIL  "),
            };
            let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| rule::format_value(r.field, v));
            let mut line = format!(
                "{:<14} {status} {:>10} {:>10}  {:<32} {}",
                truncate(&r.probe, 14),
                fmt(r.last),
                fmt(r.baseline),
                truncate(&r.threshold, 32),
                sparkline(&r.recent)
            );
            if let (Some(false), Some(e)) = (r.ok, &r.error) {
                line.push_str(&format!("  {}", p.dim(&truncate(e, 60))));
            }
            out.push(line);
        }
        if !self.reviews.is_empty() {
            let items: Vec<String> = self
                .reviews
                .iter()
                .map(|(name, due, done)| match done {
                    Some(true) => p.green(&format!("{name} ✓")),
                    Some(false) => p.red(&format!("{name} ✗")),
                    None if *due <= now => p.yellow(&format!("{name} due")),
                    None => format!(
                        "{name} in {}",
                        crate::plan::units::format_duration(Duration::from_secs(((due - now) / 1000).max(0) as u64))
                    ),
                })
                .collect();
            out.push(format!("reviews: {}", items.join("  ")));
        }
        out.extend(self.notes.iter().cloned());
        out
    }

    pub fn draw(&mut self, p: &crate::output::Printer, now: i64) {
        let lines = self.lines(p, now);
        p.redraw(self.drawn, &lines);
        self.drawn = lines.len();
        self.last_draw = Some(Instant::now());
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// Bars scaled between the window's min and max.
pub fn sparkline(values: &VecDeque<f64>) -> String {
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(*v), hi.max(*v))
    });
    values
        .iter()
        .map(|v| {
            if hi <= lo {
                BARS[0]
            } else {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_values_baselines_thresholds_and_the_review_countdown() {
        let src = "[plan]\nname = \"v\"\nrto = \"1m\"\n[[probe]]\nname = \"api\"\nevery = \"1s\"\ntimeout = \"1s\"\nhttp = { url = \"http://127.0.0.1:1/\" }\n[[rule]]\nwhen = \"api.latency.p95 > baseline + 25%\"\n[[review]]\nat = \"30m\"\nexpect = [\"api.up\"]\n[[review]]\nat = \"2h\"\nexpect = [\"api.up\"]\n";
        let plan = Plan::parse(
            std::path::Path::new("/p/backout.toml"),
            src,
            &crate::context::Env::default(),
        )
        .unwrap();
        let base = BaselineStats {
            count: 10,
            latency_p95: Some(100.0),
            ..Default::default()
        };
        let schedule = crate::watch::Schedule {
            deploy_at: 0,
            done: ["+30m".to_string()].into(),
        };
        let mut v = LiveView::new(&plan, &HashMap::from([("api".to_string(), base)]), &schedule);
        for (i, lat) in [80.0, 120.0, 300.0].into_iter().enumerate() {
            v.update(&WatchEvent::Sample(SampleRow {
                probe: "api".into(),
                at: i as i64,
                ok: true,
                latency_ms: Some(lat),
                ..Default::default()
            }));
        }
        let p = crate::output::Printer::new(
            false,
            crate::output::Verbosity::Normal,
            true,
            crate::redact::Redactor::new(),
        );
        let lines = v.lines(&p, 30 * 60_000);
        assert!(lines[1].starts_with("api"), "{lines:?}");
        assert!(lines[1].contains("300ms") && lines[1].contains("100ms"), "{lines:?}");
        assert!(lines[1].contains("api.latency.p95 > baseline + 25%"), "{lines:?}");
        assert!(lines[1].ends_with("▁▂█"), "{lines:?}");
        assert_eq!(lines[2], "reviews: +30m ✓  +2h in 1h30m");
    }

    #[test]
    fn sparkline_scales_to_the_window() {
        assert_eq!(sparkline(&VecDeque::from([1.0, 2.0, 8.0])), "▁▂█");
        assert_eq!(sparkline(&VecDeque::from([5.0, 5.0])), "▁▁");
        assert_eq!(sparkline(&VecDeque::new()), "");
    }
}
