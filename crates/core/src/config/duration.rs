//! Go `time.Duration` strings as used by `metav1.Duration` in KubeletConfiguration files and by
//! the kubelet's duration flags: "20s", "1m30s", "2m0s", "100ms", "1.5h", "0".

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}: empty string")]
    Empty(String),
    #[error("invalid duration {0:?}: negative durations are not allowed")]
    Negative(String),
    #[error("invalid duration {input:?}: missing unit (valid units are \"ns\", \"us\", \"ms\", \"s\", \"m\", \"h\")")]
    MissingUnit { input: String },
    #[error(
        "invalid duration {input:?}: unknown unit {unit:?} (valid units are \"ns\", \"us\", \"ms\", \"s\", \"m\", \"h\")"
    )]
    UnknownUnit { input: String, unit: String },
    #[error("invalid duration {0:?}: expected a number followed by a unit, e.g. \"20s\" or \"1m30s\"")]
    Syntax(String),
    #[error("invalid duration {0:?}: out of range")]
    Overflow(String),
}

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => NANOS_PER_MICRO,
        "ms" => NANOS_PER_MILLI,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// Parses a Go duration string (`time.ParseDuration` syntax): a sequence of decimal numbers, each
/// with an optional fraction and a unit suffix ("ns", "us"/"µs", "ms", "s", "m", "h"). "0" is
/// accepted without a unit. Unlike Go, negative durations are rejected: no kubelet duration
/// setting may be negative.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let owned = || input.to_owned();
    let mut s = input;
    if s.is_empty() {
        return Err(DurationError::Empty(owned()));
    }
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    } else if s.starts_with('-') {
        return Err(DurationError::Negative(owned()));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::Syntax(owned()));
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        // Integer part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, rest) = s.split_at(int_len);
        s = rest;
        // Fraction.
        let mut frac_digits = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (digits, rest) = rest.split_at(frac_len);
            frac_digits = digits;
            s = rest;
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(DurationError::Syntax(owned()));
        }
        // Unit: everything up to the next digit or '.'.
        let unit_len = s.char_indices().find(|(_, c)| c.is_ascii_digit() || *c == '.').map_or(s.len(), |(i, _)| i);
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        if unit.is_empty() {
            return Err(DurationError::MissingUnit { input: owned() });
        }
        let scale =
            unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit { input: owned(), unit: unit.to_owned() })?;
        let overflow = || DurationError::Overflow(owned());
        let int_value: u128 = if int_digits.is_empty() { 0 } else { int_digits.parse().map_err(|_| overflow())? };
        let mut value = int_value.checked_mul(scale).ok_or_else(overflow)?;
        if !frac_digits.is_empty() {
            // Like Go, extra precision beyond nanoseconds is truncated.
            let digits = frac_digits.get(..30).unwrap_or(frac_digits);
            let frac: u128 = digits.parse().map_err(|_| overflow())?;
            let denom = 10u128.checked_pow(digits.len() as u32).ok_or_else(overflow)?;
            value = value.checked_add(frac.checked_mul(scale).ok_or_else(overflow)? / denom).ok_or_else(overflow)?;
        }
        total = total.checked_add(value).ok_or_else(overflow)?;
    }
    // Go durations are int64 nanoseconds (~292 years).
    if total > i64::MAX as u128 {
        return Err(DurationError::Overflow(owned()));
    }
    let secs = (total / NANOS_PER_SEC) as u64;
    let nanos = (total % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration the way Go's `time.Duration.String` does: "0s", "100ms", "1.5s", "2m0s",
/// "1h0m0s".
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < NANOS_PER_SEC {
        let (unit, scale) = if nanos < NANOS_PER_MICRO {
            ("ns", 1)
        } else if nanos < NANOS_PER_MILLI {
            ("\u{b5}s", NANOS_PER_MICRO)
        } else {
            ("ms", NANOS_PER_MILLI)
        };
        return format!("{}{unit}", fixed(nanos, scale));
    }
    let hours = nanos / (3600 * NANOS_PER_SEC);
    let minutes = (nanos / (60 * NANOS_PER_SEC)) % 60;
    let secs = fixed(nanos % (60 * NANOS_PER_SEC), NANOS_PER_SEC);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / scale` as a decimal with trailing fractional zeros removed.
fn fixed(value: u128, scale: u128) -> String {
    let int = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return int.to_string();
    }
    let width = scale.ilog10() as usize;
    let frac = format!("{frac:0width$}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// `#[serde(with = "go_duration")]` helpers for `std::time::Duration` fields.
pub mod serde_go_duration {
    use super::{format_duration, parse_duration};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m0s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("100ms"), Ok(ms(100)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("1h2m3s4ms5us6ns"), Ok(Duration::new(3723, 4_005_006)));
        assert_eq!(parse_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("+5s"), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse_duration(""), Err(DurationError::Empty(_))));
        assert!(matches!(parse_duration("20"), Err(DurationError::MissingUnit { .. })));
        assert!(matches!(parse_duration("20x"), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!(parse_duration("-1s"), Err(DurationError::Negative(_))));
        assert!(matches!(parse_duration("s"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_duration("1s."), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_duration("abc"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_duration("99999999999h"), Err(DurationError::Overflow(_))));
        let err = parse_duration("20 seconds").map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("\"20 seconds\""), "{err}");
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(20)), "20s");
        assert_eq!(format_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m0s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_duration(ms(100)), "100ms");
        assert_eq!(format_duration(ms(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_nanos(1500)), "1.5µs");
        assert_eq!(format_duration(Duration::from_nanos(7)), "7ns");
        for s in ["20s", "1m30s", "2m0s", "100ms", "1h0m0s", "1.5s"] {
            assert_eq!(parse_duration(s).map(format_duration).as_deref(), Ok(s));
        }
    }
}
