//! The plan fuzzer: mutates real plans — the examples' and the starter plans
//! `backout init` writes — with byte flips, token swaps, huge numbers,
//! deletions, duplicated tables, nasty values and invalid UTF-8, and drives
//! every mutant through all that a plan meets before anything runs: UTF-8
//! decoding, TOML, validation, `check`'s summary (text and JSON), the steps and
//! worst case of every rollback level, and the runbook. Nothing may panic, and
//! every error must be located (`backout.toml:LINE:COL`) and carry a hint.
//!
//! `BACKOUT_FUZZ_CASES` (default 100,000) and `BACKOUT_FUZZ_SEED` set the run;
//! docs/development.md records a longer one. A failure prints the case's seed
//! and the mutant itself.

use std::path::Path;

use crate::context::Env;
use crate::output::Printer;
use crate::plan::starter::{self, Detected};
use crate::plan::{Plan, PlanError};
use crate::redact::Redactor;
use crate::resource::Resources;
use crate::rollback::select::{self, Selection};

const DEFAULT_CASES: u64 = 100_000;
const DEFAULT_SEED: u64 = 0x5eed_0b5e_55ed_b0a7;

/// splitmix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values for a string's content: out of range, malformed, or just odd.
const NASTY_STRINGS: &[&str] = &[
    "",
    " ",
    "0s",
    "0ms",
    "0.0000000001ms",
    "876000h",
    "876000h1ms",
    "18446744073709551616s",
    "5000000000000000000s5000000000000000000s",
    "99999999999999999999999999999999999999999w",
    "1e400s",
    "-1s",
    "1..2s",
    ".s",
    "5m5m5m5m",
    "1024TiB",
    "1025TiB",
    "18446744073709551616",
    "inf",
    "NaN",
    "-5%",
    "1e308%",
    "%",
    ">1e400%",
    ">=100%",
    "any",
    "9xx",
    "2xx",
    "${",
    "${}",
    "${UNSET_VARIABLE}",
    "$${EXCHANGE_TOKEN}",
    "${EXCHANGE_TOKEN}",
    "http://[::1",
    "http://u:p@127.0.0.1:99999/x",
    "http://127.0.0.1:1/",
    "ftp://x/",
    "(",
    "[a-",
    "*",
    "\\\\",
    "é\u{200b}\u{202e}",
    "a\\u0000b",
    "'",
    "\\\"",
    "api.error_rate > 5% over 18446744073709551616 samples",
    "api.error_rate > 5% over 100001 samples",
    "api.error_rate > 5% over 0 samples",
    "api.latency > 876001h",
    "api.latency.p95 > baseline * inf",
    "api.latency.p95 > baseline + 1e400%",
    "api.latency.p95 > baseline - 1e309ms",
    "api.rss > 99999999999999999TB",
    "api.status > 1e999",
    "api.rate > 1e400/s",
    "api.consecutive_failures >= 18446744073709551616",
    "api.up for 876000h",
    "api.count[",
    "api.value[job=\"x\"] > nan",
    "health.error_rate > 5% over 30s for 876000h",
    "rollback",
    "investigate",
    "restart",
    "checkpoint",
    "HEAD^",
    "revert",
    "all",
];

/// Numbers written bare or inside strings.
const NASTY_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1",
    "255",
    "256",
    "599",
    "600",
    "65535",
    "65536",
    "100000",
    "100001",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999999999999999999999",
    "1e308",
    "1e309",
    "-1e309",
    "inf",
    "-inf",
    "nan",
    "0.0000000001",
    "1.7976931348623157e308",
    "0x7fffffffffffffff",
    "1_000_000",
];

/// Whole lines dropped into a plan: keys with extreme values and bare headers.
const NASTY_LINES: &[&str] = &[
    "timeout = \"876001h\"",
    "timeout = \"876000h\"",
    "every = \"0.000001ms\"",
    "every = \"0s\"",
    "rto = \"18446744073709551616s\"",
    "time-scale = 1e308",
    "time-scale = 1000000",
    "time-scale = 0.5",
    "min-samples = 9223372036854775807",
    "min-samples = 0",
    "retries = 100",
    "retries = 4294967297",
    "retry-delay = \"876000h\"",
    "exit-code = 4294967296",
    "exit-code = -1",
    "lines = 99999999999",
    "count = 9223372036854775807",
    "pid = 9223372036854775807",
    "status = [0, 1000]",
    "status = \"0xx\"",
    "stable-for = \"876000h\"",
    "for = \"876000h\"",
    "at = \"876000h\"",
    "within = \"876000h\"",
    "estimate = \"876000h\"",
    "target = \"876000h\"",
    "keep = \"876000h\"",
    "[[probe]]",
    "[[phase]]",
    "[[component]]",
    "[[review]]",
    "[[rule]]",
    "[[service]]",
    "[[notify]]",
    "[verify]",
    "[rollback]",
    "[plan]",
    "[decision]",
    "[capture]",
    "[[decision.matrix]]",
    "x = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    "y = { a = { b = { c = { d = { e = { f = 1 } } } } } }",
    "steps = [{ wait = \"api\", timeout = \"876000h\" }, { wait = \"api\", timeout = \"876000h\" }, { run = \"true\", timeout = \"876000h\", retries = 100, retry-delay = \"876000h\" }]",
];

const EXAMPLES: [&str; 4] = [
    include_str!("../../examples/dependency-upgrade/backout.toml"),
    include_str!("../../examples/exchange-endpoint/backout.toml"),
    include_str!("../../examples/microservices-migration/backout.toml"),
    include_str!("../../examples/rest-client-refactor/backout.toml"),
];

/// An example cut into smaller real plans: its `[plan]` table with each
/// other table on its own (and every probe and service, when that table is a
/// rule, a review or a check that names them). A mutation is local, so most
/// cases need not pay for parsing a whole 10-17 KB example.
fn fragments(plan: &str) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    for line in plan.split_inclusive('\n') {
        match tables.last_mut() {
            Some(t) if !line.starts_with('[') => t.push_str(line),
            _ => tables.push(line.to_string()),
        }
    }
    let named = |t: &String, prefix: &str| t.starts_with(prefix);
    let head: String = tables
        .iter()
        .filter(|t| named(t, "[plan]") || named(t, "[capture]"))
        .cloned()
        .collect();
    let probes: String = tables
        .iter()
        .filter(|t| named(t, "[[probe]]") || named(t, "[[service]]"))
        .cloned()
        .collect();
    tables
        .iter()
        .filter(|t| t.starts_with('[') && !named(t, "[plan]") && !named(t, "[capture]"))
        .map(|t| {
            let needs = [
                "[[rule]]",
                "[[review]]",
                "[verify]",
                "[success]",
                "[rollback]",
                "[[phase]]",
                "[decision]",
            ];
            let more = if needs.iter().any(|n| named(t, n)) && !named(t, "[[probe]]") {
                probes.as_str()
            } else {
                ""
            };
            format!("{head}{more}{t}")
        })
        .collect()
}

/// The plans mutants start from, in three pools: the examples whole (one case
/// in ten), their fragments (six in ten) and the starter plans of a few kinds
/// of project (three in ten).
struct Seeds {
    whole: Vec<String>,
    fragments: Vec<String>,
    starters: Vec<String>,
}

impl Seeds {
    fn pick(&self, rng: &mut Rng) -> &str {
        let pool = match rng.below(10) {
            0 => &self.whole,
            1..=3 => &self.starters,
            _ => &self.fragments,
        };
        rng.pick(pool).as_str()
    }
}

fn seeds() -> Seeds {
    Seeds {
        whole: EXAMPLES.iter().map(|s| s.to_string()).collect(),
        fragments: EXAMPLES.iter().flat_map(|e| fragments(e)).collect(),
        starters: starters(),
    }
}

/// The starter plans `backout init` writes for a bare directory, a project with
/// everything it detects, and a Python service; with and without a health URL.
fn starters() -> Vec<String> {
    let mut out = Vec::new();
    let bare = Detected {
        name: "app".into(),
        ..Detected::default()
    };
    let everything = Detected {
        git: true,
        python: Some("requirements.txt".into()),
        node: true,
        cargo: true,
        compose_file: Some("compose.yaml".into()),
        compose_services: vec!["web".into(), "worker".into(), "db".into()],
        venv: Some(".venv".into()),
        name: "shop".into(),
    };
    let python = Detected {
        git: true,
        python: Some("pyproject.toml".into()),
        venv: Some("api/venv".into()),
        name: "api".into(),
        ..Detected::default()
    };
    for d in [&bare, &everything, &python] {
        out.push(starter::render(d, None));
        out.push(starter::render(d, Some("http://127.0.0.1:8000/health")));
    }
    out
}

/// What the example plans read from the environment.
fn env() -> Env {
    Env::from_pairs([
        ("EXCHANGE_TOKEN", "tok-1234567890"),
        ("TRADEUL_DB_URL", "postgres://app:pw@127.0.0.1:5432/tradeul"),
        ("TRADEUL_REDIS_URL", "redis://127.0.0.1:6379/0"),
    ])
}

/// Byte offsets where lines start.
fn line_starts(b: &[u8]) -> Vec<usize> {
    std::iter::once(0)
        .chain(memchr::memchr_iter(b'\n', b).map(|i| i + 1))
        .collect()
}

/// The spans of `"..."` literals on one line (no escapes considered).
fn strings(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut open = None;
    for i in memchr::memchr2_iter(b'"', b'\n', b) {
        match (b[i], open) {
            (b'"', None) => open = Some(i + 1),
            (b'"', Some(s)) => {
                out.push((s, i));
                open = None;
            }
            _ => open = None,
        }
    }
    out
}

/// Spans of runs of digits.
fn numbers(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in b.iter().enumerate() {
        match (c.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, b.len()));
    }
    out
}

/// Tokens: runs of word characters, or single other bytes.
fn tokens(b: &[u8]) -> Vec<(usize, usize)> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let s = i;
        if word(b[i]) {
            while i < b.len() && word(b[i]) {
                i += 1;
            }
        } else {
            i += 1;
        }
        if !b[s].is_ascii_whitespace() {
            out.push((s, i));
        }
    }
    out
}

fn splice(b: &mut Vec<u8>, (s, e): (usize, usize), with: &[u8]) {
    b.splice(s..e, with.iter().copied());
}

/// One mutation of `b`, chosen by `rng`.
fn mutate(b: &mut Vec<u8>, rng: &mut Rng) {
    let len = b.len();
    match rng.below(14) {
        // A byte flipped to anything, invalid UTF-8 included.
        0 if len > 0 => {
            let i = rng.below(len);
            b[i] = rng.next() as u8;
        }
        // A byte inserted.
        1 => {
            let i = rng.below(len + 1);
            let c = *rng.pick(b"\0\n\r\t\"'[]{}=,.#$%\\\x7f\x80\xc3\xff");
            b.insert(i, c);
        }
        // A range deleted.
        2 if len > 0 => {
            let s = rng.below(len);
            let e = (s + 1 + rng.below(64)).min(len);
            b.drain(s..e);
        }
        // A line deleted, or duplicated.
        3 | 4 => {
            let starts = line_starts(b);
            let i = rng.below(starts.len());
            let (s, e) = (starts[i], starts.get(i + 1).copied().unwrap_or(len));
            if rng.below(2) == 0 {
                b.drain(s..e);
            } else {
                let line = b[s..e].to_vec();
                splice(b, (e, e), &line);
            }
        }
        // A table duplicated (header to the next header), somewhere else.
        5 => {
            let starts = line_starts(b);
            let headers: Vec<usize> = starts.iter().copied().filter(|&s| b.get(s) == Some(&b'[')).collect();
            if let Some(&h) = headers.get(rng.below(headers.len())) {
                let end = headers.iter().copied().find(|&x| x > h).unwrap_or(len);
                let mut table = b[h..end].to_vec();
                if table.last() != Some(&b'\n') {
                    table.push(b'\n');
                }
                let at = *rng.pick(&starts);
                splice(b, (at, at), &table);
            }
        }
        // Two tokens swapped.
        6 => {
            let t = tokens(b);
            if t.len() >= 2 {
                let (mut x, mut y) = (t[rng.below(t.len())], t[rng.below(t.len())]);
                if x.0 > y.0 {
                    std::mem::swap(&mut x, &mut y);
                }
                if x.1 <= y.0 {
                    let (tx, ty) = (b[x.0..x.1].to_vec(), b[y.0..y.1].to_vec());
                    splice(b, y, &tx);
                    splice(b, x, &ty);
                }
            }
        }
        // A string's content replaced with a nasty value.
        7 | 8 => {
            let s = strings(b);
            if !s.is_empty() {
                let span = s[rng.below(s.len())];
                splice(b, span, rng.pick(NASTY_STRINGS).as_bytes());
            }
        }
        // A number replaced with a huge or odd one, or a long run of digits.
        9 | 10 => {
            let n = numbers(b);
            if !n.is_empty() {
                let span = n[rng.below(n.len())];
                let with = if rng.below(4) == 0 {
                    let digits = 1 + rng.below(400);
                    (0..digits)
                        .map(|i| if i == 0 { b'9' } else { b'0' + rng.below(10) as u8 })
                        .collect()
                } else {
                    rng.pick(NASTY_NUMBERS).as_bytes().to_vec()
                };
                splice(b, span, &with);
            }
        }
        // A commented-out line switched on (the starter plans are mostly those).
        11 => {
            let starts = line_starts(b);
            let commented: Vec<usize> = starts.iter().copied().filter(|&s| b.get(s) == Some(&b'#')).collect();
            if let Some(&s) = commented.get(rng.below(commented.len())) {
                let n = if b.get(s + 1) == Some(&b' ') { 2 } else { 1 };
                b.drain(s..s + n);
            }
        }
        // A nasty line dropped in at a line start.
        12 => {
            let starts = line_starts(b);
            let at = *rng.pick(&starts);
            let line = format!("{}\n", rng.pick(NASTY_LINES));
            splice(b, (at, at), line.as_bytes());
        }
        // Cut short, or invalid UTF-8 sequences (lone continuation, truncated,
        // overlong, surrogate) put anywhere.
        _ => {
            if rng.below(3) == 0 {
                b.truncate(rng.below(len + 1));
            } else {
                let bad: &[&[u8]] = &[
                    b"\x80",
                    b"\xc3",
                    b"\xe2\x82",
                    b"\xc0\x80",
                    b"\xed\xa0\x80",
                    b"\xf8\x88\x80\x80\x80",
                ];
                let i = rng.below(len + 1);
                let seq = *rng.pick(bad);
                splice(b, (i, i), seq);
            }
        }
    }
}

/// What a user is owed for a plan that does not validate: each error points
/// at a line and column (or, for a table missing from the file, names it) and
/// gives a hint.
fn check_errors(errors: &[PlanError]) -> Result<(), String> {
    if errors.is_empty() {
        return Err("an invalid plan without a single error".into());
    }
    for e in errors {
        let text = e.to_string();
        let located = (e.line >= 1 && e.column >= 1 && text.contains(&format!("backout.toml:{}:{}", e.line, e.column)))
            || (e.line == 0 && e.message.starts_with("missing field"));
        if !located {
            return Err(format!("an error without a location:\n{text}"));
        }
        if e.hint.as_deref().is_none_or(|h| h.trim().is_empty()) {
            return Err(format!("an error without a hint:\n{text}"));
        }
    }
    Ok(())
}

/// Everything a valid plan goes through before anything runs. `check`'s
/// summary is printed as text or as JSON (every other case each).
fn exercise(plan: &Plan, json: bool) {
    let p = Printer::capturing(json, Redactor::new());
    crate::cli::check::summarize(&p, plan, "backout.toml");
    assert!(!p.captured().is_empty());
    let mut levels = vec![Selection::Full];
    for ph in &plan.phases {
        for o in &ph.options {
            levels.push(Selection::Phase {
                phase: ph.name.clone(),
                option: o.name.clone(),
            });
        }
    }
    for c in &plan.components {
        levels.push(Selection::Component {
            component: c.name.clone(),
        });
    }
    let target = Resources::default();
    for level in &levels {
        if let Ok(sel) = select::resolve(plan, level) {
            let _ = crate::plan::units::format_duration(sel.worst_case());
            for s in &sel.steps {
                let _ = crate::rollback::steps::describe(plan, s, &target);
            }
        }
    }
    let _ = crate::runbook::markdown(&crate::runbook::build(plan, None));
}

/// One case: decode, parse, validate, and exercise or check the errors.
fn run_case(bytes: Vec<u8>, env: &Env, json: bool) -> Result<bool, String> {
    let path = Path::new("backout.toml");
    let source = match crate::plan::utf8(path, bytes) {
        Ok(s) => s,
        Err(e) => return check_errors(&[e]).map(|()| false),
    };
    match Plan::parse(path, &source, env) {
        Ok(plan) => {
            exercise(&plan, json);
            Ok(true)
        }
        Err(errors) => check_errors(&errors.0).map(|()| false),
    }
}

/// Runs `cases` cases from `seed` on this many threads; panics with the first
/// failing mutant.
fn fuzz(seed: u64, cases: u64) -> u64 {
    let seeds = seeds();
    let env = env();
    for (i, s) in EXAMPLES.iter().enumerate() {
        if let Err(e) = Plan::parse(Path::new("backout.toml"), s, &env) {
            panic!("example plan {i} does not validate:\n{e}");
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) as u64;
    let valid: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (seeds, env) = (&seeds, &env);
                scope.spawn(move || {
                    let mut valid = 0;
                    for case in (t..cases).step_by(threads as usize) {
                        let case_seed = seed ^ case.wrapping_mul(0x2545_f491_4f6c_dd1d);
                        let mut rng = Rng(case_seed);
                        let mut bytes = seeds.pick(&mut rng).as_bytes().to_vec();
                        for _ in 0..1 + rng.below(3) {
                            mutate(&mut bytes, &mut rng);
                        }
                        let kept = bytes.clone();
                        let shown = || String::from_utf8_lossy(&kept).into_owned();
                        let json = case % 2 == 1;
                        let outcome =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(bytes, env, json)));
                        match outcome {
                            Ok(Ok(v)) => valid += u64::from(v),
                            Ok(Err(why)) => {
                                panic!("case {case} (BACKOUT_FUZZ_SEED={seed}): {why}\n--- mutant\n{}", shown())
                            }
                            Err(_) => panic!(
                                "case {case} (BACKOUT_FUZZ_SEED={seed}) panicked on\n--- mutant\n{}",
                                shown()
                            ),
                        }
                    }
                    valid
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .sum()
    });
    valid
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
#[allow(clippy::print_stderr)] // the figure the docs quote
fn mutated_plans_never_panic_and_every_error_is_located_with_a_hint() {
    let cases = env_number("BACKOUT_FUZZ_CASES", DEFAULT_CASES);
    let seed = env_number("BACKOUT_FUZZ_SEED", DEFAULT_SEED);
    let t = std::time::Instant::now();
    let valid = fuzz(seed, cases);
    // Mutants that still validate reach the summary, the levels and the
    // runbook: without enough of them the fuzzer would test only the parser.
    assert!(valid * 20 >= cases, "only {valid} of {cases} mutants validated");
    eprintln!(
        "plan fuzz: {cases} cases ({valid} valid) in {:.1}s, seed {seed}",
        t.elapsed().as_secs_f64()
    );
}

/// The cases that found the bugs, kept as a regression list.
#[test]
#[allow(clippy::print_stderr)]
fn most_fragments_of_the_examples_are_valid_plans() {
    let env = env();
    let all: Vec<String> = EXAMPLES.iter().flat_map(|e| fragments(e)).collect();
    let bad: Vec<String> = all
        .iter()
        .filter_map(|f| {
            Plan::parse(Path::new("backout.toml"), f, &env)
                .err()
                .map(|e| format!("{e}\n---\n{f}"))
        })
        .collect();
    let mean = all.iter().map(String::len).sum::<usize>() / all.len();
    eprintln!(
        "{} fragments, {} invalid, {mean} bytes each on average",
        all.len(),
        bad.len()
    );
    assert!(bad.len() * 4 <= all.len(), "{}", bad.join("\n===\n"));
}

#[test]
fn the_nastiest_plans_are_errors_not_panics() {
    let env = env();
    let base = "[plan]\nname = \"x\"\nrto = \"5m\"\n";
    for (text, wants) in [
        (
            format!(
                "{base}[rollback]\nsteps = [{{ run = \"true\", timeout = \"876000h\" }}, {{ run = \"true\", timeout = \"876000h\", retries = 100, retry-delay = \"876000h\" }}]\n"
            ),
            None,
        ),
        (base.replace("5m", "18446744073709551616s"), Some("too long")),
        (
            base.replace("5m", "5000000000000000000s5000000000000000000s"),
            Some("too long"),
        ),
        (format!("{base}time-scale = 1e308\n"), Some("too fast")),
        (
            format!(
                "{base}[[probe]]\nname = \"a\"\nevery = \"1s\"\ntcp = {{ address = \"127.0.0.1:1\" }}\n[[rule]]\nwhen = \"a.error_rate > 5% over 18446744073709551616 samples\"\n"
            ),
            Some("too many"),
        ),
        (
            format!(
                "{base}[[probe]]\nname = \"a\"\nevery = \"876000h\"\ntcp = {{ address = \"127.0.0.1:1\" }}\n[[rule]]\nwhen = \"a.error_rate > 5% over 100000 samples\"\nmin-samples = 100000\n"
            ),
            None,
        ),
    ] {
        let r = run_case(text.clone().into_bytes(), &env, false).and(run_case(text.clone().into_bytes(), &env, true));
        match (r, wants) {
            (Ok(true), None) => {}
            (Ok(false), Some(w)) => {
                let e = Plan::parse(Path::new("backout.toml"), &text, &env)
                    .unwrap_err()
                    .to_string();
                assert!(e.contains(w), "{e}");
            }
            (r, w) => panic!("{r:?} for {text} (wanted {w:?})"),
        }
    }
}
