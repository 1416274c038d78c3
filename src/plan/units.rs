//! Units a plan is written in: durations (`30s`, `5m`), sizes (`500MB`) and
//! percentages (`5%`). Parsed once, here; everything downstream sees typed values.

use std::fmt;
use std::time::Duration;

/// Why a unit failed to parse: the message and the hint shown under the caret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    pub message: String,
    pub hint: &'static str,
}

pub const DURATION_HINT: &str = "write a number and a unit: 250ms, 30s, 5m, 2h or 1d";
pub const SIZE_HINT: &str = "write a number and a unit: 512KB, 500MB, 2GB (or KiB, MiB, GiB)";
pub const PERCENT_HINT: &str = "write a number followed by %, like 5% or 0.5%";

/// Parses `250ms`, `30s`, `5m`, `2h`, `1d`, `1w`, also compound `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let err = || UnitError {
        message: format!("expected a duration like 30s or 5m, found {text:?}"),
        hint: DURATION_HINT,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" | "min" => value * 60.0,
            "h" => value * 3600.0,
            "d" => value * 86_400.0,
            "w" => value * 604_800.0,
            _ => return Err(err()),
        };
        total += Duration::from_secs_f64(secs);
    }
    Ok(total)
}

/// Parses `500MB`, `2GiB`, `512KB`, `100B`. Decimal units are powers of 1000,
/// binary ones (`KiB`) of 1024, as people read them.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let err = || UnitError {
        message: format!("expected a size like 500MB, found {text:?}"),
        hint: SIZE_HINT,
    };
    let s = text.trim();
    let num_len = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    if num_len == 0 {
        return Err(err());
    }
    let value: f64 = s[..num_len].parse().map_err(|_| err())?;
    let factor: f64 = match s[num_len..].trim() {
        "B" | "" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0f64.powi(4),
        _ => return Err(err()),
    };
    Ok((value * factor).round() as u64)
}

/// A percentage as written (`5%` is `Percent(5.0)`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percent(pub f64);

impl Percent {
    /// The fraction this percentage stands for: 5% is 0.05.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", trim_float(self.0))
    }
}

pub fn parse_percent(text: &str) -> Result<Percent, UnitError> {
    let err = || UnitError {
        message: format!("expected a percentage like 5%, found {text:?}"),
        hint: PERCENT_HINT,
    };
    let s = text.trim();
    let number = s.strip_suffix('%').ok_or_else(err)?;
    let value: f64 = number.trim().parse().map_err(|_| err())?;
    if !value.is_finite() || value < 0.0 {
        return Err(err());
    }
    Ok(Percent(value))
}

/// Formats a duration the way a plan writes it: `250ms`, `30s`, `5m`, `1h30m`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if !ms.is_multiple_of(1000) && ms < 60_000 {
        return format!("{}s", trim_float(d.as_secs_f64()));
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// Prints a float without a trailing `.0` and with at most three decimals.
pub fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["", "5", "5 minutes", "m5", "5x", "-1s", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 * 1024 * 1024 * 1024);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("500 mb").is_err());
        assert!(parse_size("MB").is_err());
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("5%").unwrap(), Percent(5.0));
        assert_eq!(parse_percent("0.5%").unwrap().fraction(), 0.005);
        assert!(parse_percent("5").is_err());
        assert!(parse_percent("-5%").is_err());
        assert_eq!(Percent(25.0).to_string(), "25%");
    }

    #[test]
    fn durations_round_trip_through_format() {
        for text in ["250ms", "30s", "5m", "2h", "1h30m", "1d", "1.5s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }
}
