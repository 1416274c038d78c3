//! `${ENV}` references in plan values. A value that came from the environment is a
//! secret: the plan keeps it so the redactor can scrub it from every sink.

use std::ops::Range;

use crate::context::Env;

/// A plan string: as written (shown to people) and resolved (used to act).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// The text as written in the plan, `${VAR}` references intact.
    pub shown: String,
    /// The text with every reference replaced by its value.
    pub value: String,
}

impl Text {
    pub fn plain(s: impl Into<String>) -> Self {
        let s = s.into();
        Text {
            shown: s.clone(),
            value: s,
        }
    }

    /// Whether any part of the value came from the environment.
    pub fn has_secret(&self) -> bool {
        self.shown != self.value
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolateError {
    /// Byte range inside the input.
    pub span: Range<usize>,
    pub message: String,
    pub hint: String,
}

/// Replaces `${NAME}` with the environment's value; `$${` stands for a literal `${`.
/// Returns the text and the secret values it pulled in.
pub fn interpolate(input: &str, env: &Env) -> Result<(Text, Vec<String>), InterpolateError> {
    let mut value = String::with_capacity(input.len());
    let mut shown = String::with_capacity(input.len());
    let mut secrets = Vec::new();
    let mut rest = input;
    let mut offset = 0;
    while let Some(i) = rest.find('$') {
        value.push_str(&rest[..i]);
        shown.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            value.push_str("${");
            shown.push_str("$${");
            rest = tail;
            offset += i + 3;
            continue;
        }
        if let Some(body) = after.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                return Err(InterpolateError {
                    span: offset + i..input.len(),
                    message: "unclosed `${` in value".into(),
                    hint: "write ${NAME} to read the environment variable NAME".into(),
                });
            };
            let name = &body[..end];
            let span = offset + i..offset + i + end + 3;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(InterpolateError {
                    span,
                    message: format!("`{name}` is not an environment variable name"),
                    hint: "names hold letters, digits and _, like ${DATABASE_URL}".into(),
                });
            }
            let Some(v) = env.var(name) else {
                return Err(InterpolateError {
                    span,
                    message: format!("environment variable {name} is not set"),
                    hint: format!("export {name} before running backout, or write the value in place"),
                });
            };
            value.push_str(v);
            shown.push_str(&format!("${{{name}}}"));
            if !v.is_empty() {
                secrets.push(v.to_string());
            }
            rest = &body[end + 1..];
            offset += i + end + 3;
            continue;
        }
        value.push('$');
        shown.push('$');
        rest = &after[1..];
        offset += i + 1;
    }
    value.push_str(rest);
    shown.push_str(rest);
    Ok((Text { shown, value }, secrets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::from_pairs([("TOKEN", "s3cr3t"), ("EMPTY", "")])
    }

    #[test]
    fn replaces_and_remembers_secrets() {
        let (t, s) = interpolate("Bearer ${TOKEN}", &env()).unwrap();
        assert_eq!(t.value, "Bearer s3cr3t");
        assert_eq!(t.shown, "Bearer ${TOKEN}");
        assert_eq!(s, vec!["s3cr3t".to_string()]);
        assert!(t.has_secret());
    }

    #[test]
    fn escapes_and_plain_dollars() {
        let (t, s) = interpolate("cost $5 and $${LITERAL}", &env()).unwrap();
        assert_eq!(t.value, "cost $5 and ${LITERAL}");
        assert!(s.is_empty());
    }

    #[test]
    fn missing_variable_points_at_reference() {
        let e = interpolate("x ${NOPE} y", &env()).unwrap_err();
        assert_eq!(e.span, 2..9);
        assert!(e.message.contains("NOPE"));
        let e = interpolate("x ${BAD-NAME}", &env()).unwrap_err();
        assert_eq!(e.span, 2..13);
        assert_eq!(interpolate("x ${OPEN", &env()).unwrap_err().span, 2..8);
        assert_eq!(interpolate("${TOKEN} ${OPEN", &env()).unwrap_err().span, 9..15);
    }
}
