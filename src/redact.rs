//! The redaction layer: every sink (terminal, logs, the operation log, reports)
//! passes text through a [`Redactor`] holding the plan's secrets, so a value that
//! came from `${ENV}` never leaves the process in plain, URL-encoded or base64 form.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

/// What a secret is replaced with.
pub const MASK: &str = "********";

/// Shared, cheap to clone; secrets are added once the plan is loaded.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    needles: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
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
        out
    }

    /// Redacts every string inside a JSON value.
    pub fn redact_json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| self.redact_json(x)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|x| self.redact_json(x)),
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
    }
}
