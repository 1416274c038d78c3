//! The redaction layer: every sink (terminal, logs, the operation log, reports
//! and their diagnostics, notifications) passes text through a [`Redactor`]. It
//! masks the plan's secrets (values that came from `${ENV}`, header credentials,
//! URL passwords) in plain, URL-encoded and base64 form, and anything matching
//! a pattern: credentials in `Authorization:`/`Cookie:` headers and passwords
//! in URLs wherever they appear, plus the plan's own `[redact] patterns`.
//!
//! A sink's writer takes [`Redacted`] values, which only a [`Redactor`] makes:
//! text that skipped redaction does not compile into a sink. The sinks and
//! their one writer each: [`crate::output::Printer`] (terminal), [`crate::output::LogWriter`]
//! (`tracing` logs), [`crate::oplog::Oplog`] (`state.db`), [`crate::report::write`]
//! (report files, diagnostics included) and [`crate::notify::Notifier`] (webhooks).

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, RwLock};

use regex::Regex;

/// Text or JSON that has been through a [`Redactor`]. Its only constructors
/// are the redactor's, so a sink that takes it cannot be handed raw text.
#[derive(Debug, Clone, PartialEq)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    pub fn get(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Redacted<String> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Redacted<serde_json::Value> {
    /// The value as JSON text: serializing adds no text of its own, so it is
    /// still redacted.
    pub fn to_text(&self, pretty: bool) -> Redacted<String> {
        let text = if pretty {
            serde_json::to_string_pretty(&self.0)
        } else {
            serde_json::to_string(&self.0)
        };
        Redacted(text.unwrap_or_default())
    }
}

impl std::fmt::Display for Redacted<String> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Redacted<serde_json::Value> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl rusqlite::ToSql for Redacted<String> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

/// What a secret is replaced with.
pub const MASK: &str = "********";

/// Shared, cheap to clone; secrets are added once the plan is loaded.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    needles: Arc<RwLock<Vec<String>>>,
    /// The plan's patterns, applied after [`BUILT_IN`]. Each match's last
    /// capture group (or the whole match) is masked.
    patterns: Arc<RwLock<Vec<Regex>>>,
}

/// Always on: header credentials and URL passwords, wherever they appear.
/// Each with a word it cannot match without, in lower case: text without the
/// word (compared ignoring ASCII case) skips the pattern.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "authorization",
        r#"(?i)\b(?:proxy-)?authorization\s*[:=]\s*"?(?:(?:bearer|basic|token)\s+)?([^\s"',;]+)"#,
    ),
    ("cookie", r#"(?i)\b(?:set-)?cookie\s*[:=]\s*"?([^\r\n"']+)"#),
    ("x-api-key", r#"(?i)\bx-api-key\s*[:=]\s*"?([^\s"',;]+)"#),
    ("://", r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:([^@\s/]+)@"),
];

/// [`BUILT_IN`], compiled the first time a text may hold what one matches:
/// compiling them took a tenth of the CPU of a small checkpoint, whose output
/// never holds a header or a URL.
static BUILT_IN_RES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    BUILT_IN
        .iter()
        .map(|(_, p)| Regex::new(p).expect("built-in patterns are valid"))
        .collect()
});

/// The built-in patterns `text` may match. Text that is not all ASCII may
/// match every one: Unicode case folding matches more than ASCII case does
/// (the Kelvin sign is a `k`).
fn built_in_for(text: &str) -> Vec<&'static Regex> {
    // Every built-in pattern needs a `:` or an `=` (`Authorization:`,
    // `key=`, `://`), in any case folding: most text (names, numbers,
    // messages) is ruled out here without lowering its case.
    if memchr::memchr2(b':', b'=', text.as_bytes()).is_none() {
        return Vec::new();
    }
    let lower = text.is_ascii().then(|| text.to_ascii_lowercase());
    let may = |needs: &str| {
        lower
            .as_ref()
            .is_none_or(|l| memchr::memmem::find(l.as_bytes(), needs.as_bytes()).is_some())
    };
    // Compiled only if one is wanted: the map runs for wanted ones only.
    (0..BUILT_IN.len())
        .filter(|&i| may(BUILT_IN[i].0))
        .map(|i| &BUILT_IN_RES[i])
        .collect()
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds patterns (the plan's `[redact] patterns`).
    pub fn add_patterns<I: IntoIterator<Item = Regex>>(&self, patterns: I) {
        let mut all = self.patterns.write().unwrap_or_else(|e| e.into_inner());
        for p in patterns {
            if BUILT_IN.iter().all(|(_, b)| *b != p.as_str()) && all.iter().all(|q| q.as_str() != p.as_str()) {
                all.push(p);
            }
        }
    }

    /// Adds secrets; each is masked in its plain, URL-encoded and base64 forms.
    pub fn add<I: IntoIterator<Item = String>>(&self, secrets: I) {
        let mut needles = self.needles.write().unwrap_or_else(|e| e.into_inner());
        for s in secrets {
            // Very short values would mask ordinary text everywhere.
            if s.len() < 3 {
                continue;
            }
            for form in [url_encode(&s), base64(s.as_bytes()), s] {
                if !needles.contains(&form) {
                    needles.push(form);
                }
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let needles = self.needles.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Cow::Borrowed(text);
        for n in needles.iter() {
            if out.contains(n.as_str()) {
                out = Cow::Owned(out.replace(n.as_str(), MASK));
            }
        }
        let built_in = built_in_for(&out);
        let patterns = self.patterns.read().unwrap_or_else(|e| e.into_inner());
        for re in built_in.into_iter().chain(patterns.iter()) {
            if !re.is_match(&out) {
                continue;
            }
            let replaced = re.replace_all(&out, |c: &regex::Captures<'_>| {
                let whole = c.get(0).expect("group 0 always matches");
                match (1..c.len()).rev().find_map(|i| c.get(i)) {
                    Some(g) if !g.as_str().is_empty() && g.as_str() != MASK => {
                        let (s, e) = (g.start() - whole.start(), g.end() - whole.start());
                        format!("{}{MASK}{}", &whole.as_str()[..s], &whole.as_str()[e..])
                    }
                    Some(_) => whole.as_str().to_string(),
                    None => MASK.to_string(),
                }
            });
            out = Cow::Owned(replaced.into_owned());
        }
        out
    }

    /// `text`, redacted, for a sink.
    pub fn text(&self, text: &str) -> Redacted<String> {
        Redacted(self.redact(text).into_owned())
    }

    /// `v` with every string (keys too) redacted, for a sink.
    pub fn json(&self, mut v: serde_json::Value) -> Redacted<serde_json::Value> {
        self.redact_json(&mut v);
        Redacted(v)
    }

    /// Any serializable value as redacted JSON, for a sink. A value that does
    /// not serialize is `null`.
    pub fn value(&self, v: &impl serde::Serialize) -> Redacted<serde_json::Value> {
        self.json(serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
    }

    /// Redacts every string inside a JSON value, object keys included (a
    /// map keyed by header or label can carry a secret in its keys).
    pub fn redact_json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| self.redact_json(x)),
            serde_json::Value::Object(o) => {
                if o.keys().any(|k| matches!(self.redact(k), Cow::Owned(_))) {
                    let old = std::mem::take(o);
                    for (k, x) in old {
                        o.insert(self.redact(&k).into_owned(), x);
                    }
                }
                o.values_mut().for_each(|x| self.redact_json(x));
            }
            _ => {}
        }
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    // Without padding too: tokens are often embedded unpadded.
    out.trim_end_matches('=').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_form() {
        let r = Redactor::new();
        r.add(["p@ss word".to_string()]);
        assert_eq!(r.redact("x p@ss word y"), format!("x {MASK} y"));
        assert_eq!(r.redact("u=p%40ss%20word"), format!("u={MASK}"));
        assert_eq!(
            r.redact(&format!("Basic {}", base64(b"p@ss word"))),
            format!("Basic {MASK}")
        );
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn patterns_mask_header_credentials_and_url_passwords() {
        let r = Redactor::new();
        assert_eq!(
            r.redact("curl -H 'Authorization: Bearer abc.def'"),
            format!("curl -H 'Authorization: Bearer {MASK}'")
        );
        assert_eq!(r.redact("authorization=tok123"), format!("authorization={MASK}"));
        assert_eq!(r.redact("Cookie: session=1; user=2"), format!("Cookie: {MASK}"));
        assert_eq!(
            r.redact("postgres://app:pa55@db:5432/x"),
            format!("postgres://app:{MASK}@db:5432/x")
        );
        assert_eq!(
            r.redact("http://example.com/a:b@c"),
            "http://example.com/a:b@c",
            "not a userinfo"
        );
        assert_eq!(r.redact("nothing to hide"), "nothing to hide");
        r.add_patterns([Regex::new(r"sk_live_[0-9a-zA-Z]+").unwrap()]);
        assert_eq!(r.redact("key sk_live_ABC123 used"), format!("key {MASK} used"));
        // Masking is idempotent.
        let once = r.redact("Authorization: Bearer abc").into_owned();
        assert_eq!(r.redact(&once), once);
    }

    /// The built-in patterns are skipped for text without the words they
    /// need; the skip must never let a credential through.
    #[test]
    fn built_in_patterns_are_skipped_only_when_they_cannot_match() {
        let r = Redactor::new();
        for (text, want) in [
            ("AUTHORIZATION: Basic dXNlcg==", format!("AUTHORIZATION: Basic {MASK}")),
            ("X-Api-Key=k3y", format!("X-Api-Key={MASK}")),
            ("HTTPS://user:pw@host/x", format!("HTTPS://user:{MASK}@host/x")),
            // Unicode case folding: the Kelvin sign is a `k` to the pattern.
            ("coo\u{212A}ie: s=1", format!("coo\u{212A}ie: {MASK}")),
            ("café Set-Cookie: id=7", format!("café Set-Cookie: {MASK}")),
        ] {
            assert_eq!(r.redact(text), want, "{text}");
        }
        let applied = |text| built_in_for(text).len();
        assert_eq!(applied("checkpoint cp-3 complete: 1.2 MiB captured"), 0);
        assert_eq!(applied("authorization cookie x-api-key naïve"), 0, "no `:` or `=`");
        // Every built-in pattern needs one of them.
        for (_, pattern) in BUILT_IN {
            assert!(pattern.contains(":") || pattern.contains("="), "{pattern}");
        }
        assert_eq!(applied("see http://h"), 1);
        assert_eq!(applied("naïve: x"), BUILT_IN.len());
        // Each pattern's word is in its source, lower case as compared.
        for (needs, pattern) in BUILT_IN {
            assert!(pattern.to_ascii_lowercase().contains(needs), "{pattern}");
        }
        // A plan pattern equal to a built-in one is not applied twice.
        r.add_patterns([Regex::new(BUILT_IN[3].1).unwrap()]);
        assert!(r.patterns.read().unwrap().is_empty());
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b"hello"), "aGVsbG8");
        assert_eq!(base64(b"hi!"), "aGkh");
    }

    #[test]
    fn json_strings_are_masked() {
        let r = Redactor::new();
        r.add(["topsecret".to_string()]);
        let mut v = serde_json::json!({"a": ["x topsecret"], "b": {"c": "topsecret"}});
        r.redact_json(&mut v);
        assert_eq!(v, serde_json::json!({"a": [format!("x {MASK}")], "b": {"c": MASK}}));
        // Keys too: a map keyed by a header value or a label.
        let v = r.json(serde_json::json!({"topsecret": {"k topsecret": 1}}));
        assert_eq!(v.get(), &serde_json::json!({MASK: {format!("k {MASK}"): 1}}));
    }
}
