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

/// The longest duration a plan (or a command-line option) may hold: 100 years.
/// Anything longer is a typo, and every deadline, sum and product of
/// durations downstream stays far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);
pub const MAX_DURATION_HINT: &str = "a duration is at most 100 years (876000h)";
/// The largest size a plan may hold: 1 PiB.
pub const MAX_SIZE: u64 = 1 << 50;
pub const MAX_SIZE_HINT: &str = "a size is at most 1024TiB";

/// The most samples a window (`over N samples`) or `min-samples` may count: a
/// watch keeps that many per probe in memory.
pub const MAX_SAMPLES: usize = 100_000;
pub const MAX_SAMPLES_HINT: &str =
    "a window counts at most 100000 samples; for longer, write a duration like `over 1h`";
/// Numbers in rules must be finite: `inf` and `NaN` compare with nothing sensibly.
pub const FINITE_HINT: &str = "write an ordinary number, like 3 or 0.5 (not inf or NaN)";

/// Parses `250ms`, `30s`, `5m`, `2h`, `1d`, `1w`, also compound `1h30m`; at
/// most [`MAX_DURATION`], each part and the sum.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let err = || UnitError {
        message: format!("expected a duration like 30s or 5m, found {text:?}"),
        hint: DURATION_HINT,
    };
    let too_long = || UnitError {
        message: format!("the duration {text:?} is too long"),
        hint: MAX_DURATION_HINT,
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
        // A number of 400 digits parses as infinity: too long, like any other.
        if !secs.is_finite() || secs > MAX_DURATION.as_secs_f64() {
            return Err(too_long());
        }
        let part = Duration::try_from_secs_f64(secs).map_err(|_| too_long())?;
        total = total
            .checked_add(part)
            .filter(|t| *t <= MAX_DURATION)
            .ok_or_else(too_long)?;
    }
    Ok(total)
}

/// Parses `500MB`, `2GiB`, `512KB`, `100B`. Decimal units are powers of 1000,
/// binary ones (`KiB`) of 1024, as people read them. At most [`MAX_SIZE`].
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
    let bytes = (value * factor).round();
    // A number of 400 digits parses as infinity: too large, like any other.
    if !bytes.is_finite() || bytes > MAX_SIZE as f64 {
        return Err(UnitError {
            message: format!("the size {text:?} is too large"),
            hint: MAX_SIZE_HINT,
        });
    }
    Ok(bytes as u64)
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
    fn durations_past_100_years_are_refused_not_a_panic() {
        assert_eq!(parse_duration("876000h").unwrap(), MAX_DURATION);
        for long in [
            "18446744073709551616s",
            "876000h1ms",
            "5000000000000000000s5000000000000000000s",
            "60000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000w",
            "5218w",
        ] {
            let e = parse_duration(long).unwrap_err();
            assert_eq!(e.hint, MAX_DURATION_HINT, "{long}");
            assert!(e.message.contains(long), "{}", e.message);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 * 1024 * 1024 * 1024);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("500 mb").is_err());
        assert!(parse_size("MB").is_err());
        assert_eq!(parse_size("1024TiB").unwrap(), MAX_SIZE);
        for big in ["1025TiB", "18446744073709551616", "99999999999999999999999TB"] {
            assert_eq!(parse_size(big).unwrap_err().hint, MAX_SIZE_HINT, "{big}");
        }
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
