//! Resource quantities (upstream `resource.Quantity`: "100m", "1.5Gi", "2e3") as exact nano-unit counts.

use std::str::FromStr;

/// Why a quantity string was rejected; every variant names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity {0:?} is not a valid quantity (expected e.g. 64Mi, 1G, 500k, 1e9, 1024)")]
    Invalid(String),
    #[error("quantity {0:?} is negative")]
    Negative(String),
    #[error("quantity {0:?} is out of range")]
    OutOfRange(String),
}

/// A parsed quantity: its exact value in nano-units (10⁻⁹), as upstream stores it after parsing.
///
/// The grammar is upstream's:
/// `[+-] (<digits> | <digits>. | .<digits> | <digits>.<digits>) <suffix>`, the suffix being a
/// binary one (`Ki Mi Gi Ti Pi Ei`), a decimal one (`n u m "" k M G T P E`) or a decimal exponent
/// (`e`/`E` and a signed integer). Like upstream, precision below 10⁻⁹ is rounded up (away from
/// zero), so any non-zero quantity stays non-zero. Unlike upstream's implementation, a bare `.`,
/// `+` or `-` (which it reads as 0) is rejected and values are not capped at 2⁶³−1 units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ParsedQuantity {
    nanos: i128,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;
const NANOS_PER_MILLI: i128 = 1_000_000;

impl ParsedQuantity {
    /// Parses `s`; [`QuantityError::OutOfRange`] when its nano value does not fit an `i128`.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let (negative, magnitude) = parse_magnitude(s)?;
        let magnitude = magnitude.ok_or_else(|| QuantityError::OutOfRange(s.to_owned()))?;
        Ok(Self::signed(negative, magnitude))
    }

    /// Like [`parse`](Self::parse), but a value beyond `i128` nano-units saturates to
    /// `±i128::MAX` instead of failing.
    pub fn parse_saturating(s: &str) -> Result<Self, QuantityError> {
        let (negative, magnitude) = parse_magnitude(s)?;
        Ok(Self::signed(negative, magnitude.unwrap_or(i128::MAX)))
    }

    fn signed(negative: bool, magnitude: i128) -> Self {
        Self { nanos: if negative { -magnitude } else { magnitude } }
    }

    /// The value in nano-units: `"1"` is 10⁹, `"1m"` is 10⁶, `"1n"` is 1.
    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// The value in whole units rounded up (away from zero), like upstream's `Value()`:
    /// `"100m"` → 1, `"1.5k"` → 1500, `"64Mi"` → 67108864.
    pub fn value(self) -> i128 {
        div_round_up(self.nanos, NANOS_PER_UNIT)
    }

    /// The value in milli-units rounded up (away from zero), like upstream's `MilliValue()`:
    /// `"1"` → 1000, `"0.1m"` → 1.
    pub fn milli_value(self) -> i128 {
        div_round_up(self.nanos, NANOS_PER_MILLI)
    }
}

impl FromStr for ParsedQuantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, QuantityError> {
        Self::parse(s)
    }
}

/// A quantity as a byte count (upstream `Value()`), e.g. for an emptyDir `sizeLimit`:
/// [`QuantityError::Negative`] below zero (`"-0"` is 0), [`QuantityError::OutOfRange`] beyond `u64`.
pub fn parse_bytes(s: &str) -> Result<u64, QuantityError> {
    let value = ParsedQuantity::parse_saturating(s)?.value();
    u64::try_from(value).map_err(|_| {
        if value < 0 { QuantityError::Negative(s.to_owned()) } else { QuantityError::OutOfRange(s.to_owned()) }
    })
}

/// `n / d` rounded away from zero (`d > 0`).
fn div_round_up(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 { q } else { q + n.signum() }
}

/// The suffix's decimal exponent and binary shift: `"k"` → (3, 0), `"Mi"` → (0, 20), `"e-2"` → (-2, 0).
fn suffix_scale(suffix: &str) -> Option<(i32, u32)> {
    Some(match suffix {
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "" => (0, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            // Decimal exponent: e3, E-2, e+6.
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (exp.parse().ok()?, 0)
        }
    })
}

/// The sign and the exact magnitude in nano-units of `s` (sub-nano precision rounded up), the
/// magnitude `None` when it does not fit an `i128`.
fn parse_magnitude(s: &str) -> Result<(bool, Option<i128>), QuantityError> {
    let invalid = || QuantityError::Invalid(s.to_owned());
    let (negative, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let num_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
    let (number, suffix) = rest.split_at_checked(num_len).ok_or_else(invalid)?;
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(invalid());
    }
    let (exp10, shift) = suffix_scale(suffix).ok_or_else(invalid)?;

    // The significant digits, without leading or trailing zeros, and the power of ten (in
    // nano-units) of the last one.
    let all = [int_part, frac_part].concat();
    let trimmed = all.trim_start_matches('0');
    let significant = trimmed.trim_end_matches('0');
    if significant.is_empty() {
        return Ok((negative, Some(0)));
    }
    let len = |s: &str| i64::try_from(s.len()).unwrap_or(i64::MAX);
    let exp = i64::from(exp10) + 9 - len(frac_part) + (len(trimmed) - len(significant));
    Ok((negative, scale(significant, exp, shift)))
}

/// `ceil(digits × 10^exp × 2^shift)` for a string of decimal digits, `None` beyond `i128`.
fn scale(digits: &str, exp: i64, shift: u32) -> Option<i128> {
    let factor = 1i128.checked_shl(shift)?;
    if exp >= 0 {
        let power = 10i128.checked_pow(u32::try_from(exp).ok()?)?;
        return digits.parse::<i128>().ok()?.checked_mul(power)?.checked_mul(factor);
    }
    // Split off the `k` sub-nano digits: whole nanos × factor, plus ceil(0.<fraction> × factor).
    let k = usize::try_from(exp.unsigned_abs()).unwrap_or(usize::MAX);
    let (whole, fraction) = digits.split_at(digits.len().saturating_sub(k));
    let whole = if whole.is_empty() { 0 } else { whole.parse::<i128>().ok()? };
    // Horner from the last digit: floor((q + d × factor) / 10) keeps the floor exact, and the
    // result is inexact as soon as any step leaves a remainder.
    let (mut q, mut inexact) = (0i128, false);
    for d in fraction.bytes().rev() {
        let t = q + i128::from(d - b'0') * factor;
        inexact |= t % 10 != 0;
        q = t / 10;
    }
    // The leading zeros of a fraction shorter than `k` (once `q` is 0 further ones change nothing).
    let mut padding = k - fraction.len();
    while q != 0 && padding > 0 {
        inexact |= q % 10 != 0;
        q /= 10;
        padding -= 1;
    }
    whole.checked_mul(factor)?.checked_add(q + i128::from(inexact))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Strict nano value, `None` on any error (the former `source::validation::parse_quantity`).
    fn parse_quantity(s: &str) -> Option<i128> {
        ParsedQuantity::parse(s).ok().map(ParsedQuantity::nanos)
    }

    /// Saturating nano value (the former `status::qos::parse_quantity_nanos`).
    fn parse_quantity_nanos(s: &str) -> Option<i128> {
        ParsedQuantity::parse_saturating(s).ok().map(ParsedQuantity::nanos)
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("1"), Some(1_000_000_000));
        assert_eq!(parse_quantity("100m"), Some(100_000_000));
        assert_eq!(parse_quantity("1.5Gi"), Some(1_610_612_736 * 1_000_000_000));
        assert_eq!(parse_quantity("1e3"), Some(1_000 * 1_000_000_000));
        assert_eq!(parse_quantity("-1k"), Some(-1_000_000_000_000));
        assert_eq!(parse_quantity("1n"), Some(1));
        assert_eq!(parse_quantity("0.1n"), Some(1), "rounds up");
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("1Qi"), None);
        assert_eq!(parse_quantity(""), None);
        assert_eq!(parse_quantity("1.2.3"), None);
    }

    #[test]
    fn saturating_quantities() {
        let n = |s: &str| parse_quantity_nanos(s);
        assert_eq!(n("1"), Some(1_000_000_000));
        assert_eq!(n("1"), n("1000m"));
        assert_eq!(n("0.5"), n("500m"));
        assert_eq!(n(".5"), n("500m"));
        assert_eq!(n("1k"), n("1e3"));
        assert_eq!(n("1k"), n("1E3"));
        assert_eq!(n("1Gi"), n("1073741824"));
        assert_eq!(n("1.5Gi"), n("1536Mi"));
        assert_eq!(n("1Ei"), Some(1_000_000_000i128 << 60));
        assert_eq!(n("1E"), Some(1_000_000_000_000_000_000_000_000_000));
        assert_eq!(n("100u"), Some(100_000));
        assert_eq!(n("1n"), Some(1));
        assert_eq!(n("1e-10"), Some(1)); // rounded up
        assert_eq!(n("-2m"), Some(-2_000_000));
        assert_eq!(n("+2"), n("2"));
        assert_eq!(n("0"), Some(0));
        assert_eq!(n(""), None);
        assert_eq!(n("abc"), None);
        assert_eq!(n("1.2.3"), None);
        assert_eq!(n("1Xi"), None);
        assert_eq!(n("1e"), None);
        assert_eq!(n("1e99"), Some(i128::MAX));
        assert_eq!(n("-1e99"), Some(-i128::MAX));
        assert_eq!(ParsedQuantity::parse("1e99"), Err(QuantityError::OutOfRange("1e99".into())));
    }

    #[test]
    fn parses_suffixes() {
        let cases = [
            ("0", 0),
            ("1024", 1024),
            ("+5", 5),
            ("1Ki", 1024),
            ("64Mi", 64 << 20),
            ("1Gi", 1 << 30),
            ("2Ti", 2 << 40),
            ("1Pi", 1 << 50),
            ("1Ei", 1 << 60),
            ("1k", 1000),
            ("1M", 1_000_000),
            ("1G", 1_000_000_000),
            ("1T", 1_000_000_000_000),
            ("1P", 1_000_000_000_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("1e3", 1000),
            ("1E3", 1000),
            ("2e+2", 200),
            ("1.5k", 1500),
            ("1.5Gi", 3 << 29),
            (".5Ki", 512),
            ("0.1", 1),
            ("100m", 1),
            ("1500m", 2),
            ("5n", 1),
            ("12e-1", 2),
            ("1e-50", 1),
            ("-0", 0),
            ("0.000", 0),
        ];
        for (q, want) in cases {
            assert_eq!(parse_bytes(q), Ok(want), "{q}");
        }
    }

    #[test]
    fn rejects_bad_quantities() {
        for q in ["", "Mi", "1.2.3", "1 Gi", "1GB", "1mi", "e3", "1e", "1e+", "abc", "."] {
            assert!(matches!(parse_bytes(q), Err(QuantityError::Invalid(_))), "{q}");
        }
        assert!(matches!(parse_bytes("-1Mi"), Err(QuantityError::Negative(_))));
        for q in ["16Ei", "1e30", "99999999999999999999999999999999999999999"] {
            assert!(matches!(parse_bytes(q), Err(QuantityError::OutOfRange(_))), "{q}");
        }
    }

    #[test]
    fn exact_beyond_nano_precision() {
        // The binary multiplier applies before rounding to nanos: 0.0000000005 × 1024 = 512n.
        assert_eq!(parse_quantity("0.0000000005Ki"), Some(512));
        assert_eq!(parse_quantity("1.0000000001Ki"), Some(1_024_000_000_103));
        // Zero stays zero whatever the exponent; tiny values round up to 1n.
        assert_eq!(parse_quantity("0e50"), Some(0));
        assert_eq!(parse_quantity("-0e-2147483648"), Some(0));
        assert_eq!(parse_quantity("1e-99"), Some(1));
        assert_eq!(parse_quantity("-.5e-2147483648"), Some(-1));
        assert_eq!(parse_quantity("0.0000000000000000000000000000000000001"), Some(1));
        // Long mantissas are exact when the exponent brings them into range.
        assert_eq!(parse_quantity("99999999999999999999999999999999999999999e-40"), Some(10_000_000_000));
        assert_eq!(parse_quantity("00012.3400"), Some(12_340_000_000));
        assert_eq!(parse_quantity("1e2147483647"), None);
        assert_eq!(parse_quantity("1e2147483648"), None, "exponent beyond i32");
    }

    #[test]
    fn accessors_round_away_from_zero() {
        let q = |s: &str| s.parse::<ParsedQuantity>().unwrap();
        assert_eq!((q("1.5").value(), q("1.5").milli_value(), q("1.5").nanos()), (2, 1500, 1_500_000_000));
        assert_eq!((q("-1.5").value(), q("-0.1m").milli_value()), (-2, -1));
        assert_eq!((q("100m").value(), q("0.1m").milli_value(), q("1n").milli_value()), (1, 1, 1));
        assert_eq!((q("64Mi").value(), q("2k").milli_value(), q("-0").value()), (64 << 20, 2_000_000, 0));
    }

    #[test]
    fn errors_name_the_input() {
        let err = |s: &str| ParsedQuantity::parse(s).unwrap_err().to_string();
        assert_eq!(err("lots"), r#"quantity "lots" is not a valid quantity (expected e.g. 64Mi, 1G, 500k, 1e9, 1024)"#);
        assert_eq!(err("1e40"), r#"quantity "1e40" is out of range"#);
        assert_eq!(parse_bytes("-1").unwrap_err().to_string(), r#"quantity "-1" is negative"#);
    }
}
