//! Resource quantities (`resource.Quantity`) as byte counts, for emptyDir `sizeLimit`.

/// Why a quantity could not be turned into bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity {0:?} is not a valid quantity (expected e.g. 64Mi, 1G, 500k, 1e9, 1024)")]
    Invalid(String),
    #[error("quantity {0:?} is negative")]
    Negative(String),
    #[error("quantity {0:?} is out of range")]
    OutOfRange(String),
}

enum Multiplier {
    /// 2^n
    Binary(u32),
    /// 10^n
    Decimal(i32),
}

fn suffix_multiplier(suffix: &str) -> Option<Multiplier> {
    use Multiplier::{Binary, Decimal};
    Some(match suffix {
        "" => Decimal(0),
        "Ki" => Binary(10),
        "Mi" => Binary(20),
        "Gi" => Binary(30),
        "Ti" => Binary(40),
        "Pi" => Binary(50),
        "Ei" => Binary(60),
        "n" => Decimal(-9),
        "u" => Decimal(-6),
        "m" => Decimal(-3),
        "k" => Decimal(3),
        "M" => Decimal(6),
        "G" => Decimal(9),
        "T" => Decimal(12),
        "P" => Decimal(15),
        "E" => Decimal(18),
        _ => {
            // Decimal exponent: e3, E-2, e+6.
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Decimal(rest.parse().ok()?)
        }
    })
}

/// The value of a quantity in whole units, rounded up like upstream's `Quantity.Value()`:
/// `"64Mi"` → 67108864, `"1G"` → 10^9, `"1.5k"` → 1500, `"1e3"` → 1000, `"100m"` → 1.
/// Negative quantities are an error (`"-0"` is 0).
pub fn parse_quantity_bytes(q: &str) -> Result<u64, QuantityError> {
    let invalid = || QuantityError::Invalid(q.to_string());
    let range = || QuantityError::OutOfRange(q.to_string());

    let (negative, rest) = match q.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, q.strip_prefix('+').unwrap_or(q)),
    };
    let num_len = rest.bytes().position(|b| !(b.is_ascii_digit() || b == b'.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at_checked(num_len).ok_or_else(invalid)?;
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(invalid());
    }
    let multiplier = suffix_multiplier(suffix).ok_or_else(invalid)?;

    // mantissa = int_part.frac_part as an integer scaled by 10^frac_digits.
    let frac_part = frac_part.trim_end_matches('0');
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let mantissa: u128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| range())? };
    if mantissa == 0 {
        return Ok(0);
    }
    if negative {
        return Err(QuantityError::Negative(q.to_string()));
    }
    let frac_digits = i64::try_from(frac_part.len()).map_err(|_| range())?;
    let (num, den) = match multiplier {
        Multiplier::Binary(shift) => {
            let num = mantissa.checked_mul(1u128 << shift).ok_or_else(range)?;
            (num, pow10(frac_digits).ok_or_else(range)?)
        }
        Multiplier::Decimal(exp) => {
            let exp = i64::from(exp) - frac_digits;
            if exp >= 0 {
                let num = mantissa.checked_mul(pow10(exp).ok_or_else(range)?).ok_or_else(range)?;
                (num, 1)
            } else {
                match pow10(-exp) {
                    Some(den) => (mantissa, den),
                    // Smaller than any representable divisor: a positive sliver rounds up to 1.
                    None => return Ok(1),
                }
            }
        }
    };
    let value = num.div_ceil(den);
    u64::try_from(value).map_err(|_| range())
}

fn pow10(exp: i64) -> Option<u128> {
    10u128.checked_pow(u32::try_from(exp).ok()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

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
            assert_eq!(parse_quantity_bytes(q), Ok(want), "{q}");
        }
    }

    #[test]
    fn rejects_bad_quantities() {
        for q in ["", "Mi", "1.2.3", "1 Gi", "1GB", "1mi", "e3", "1e", "1e+", "abc", "."] {
            assert!(matches!(parse_quantity_bytes(q), Err(QuantityError::Invalid(_))), "{q}");
        }
        assert!(matches!(parse_quantity_bytes("-1Mi"), Err(QuantityError::Negative(_))));
        for q in ["16Ei", "1e30", "99999999999999999999999999999999999999999"] {
            assert!(matches!(parse_quantity_bytes(q), Err(QuantityError::OutOfRange(_))), "{q}");
        }
    }
}
