//! QoS class (upstream's `pkg/apis/core/v1/helper/qos`) and a Kubernetes quantity parser.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub const BEST_EFFORT: &str = "BestEffort";
pub const BURSTABLE: &str = "Burstable";
pub const GUARANTEED: &str = "Guaranteed";

const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// Upstream's `GetPodQOS`: the class already recorded in `status.qosClass` (it is immutable once
/// set), else [`compute_pod_qos`].
pub fn get_pod_qos(pod: &Pod) -> String {
    match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        Some(q) if !q.is_empty() => q.to_string(),
        _ => compute_pod_qos(pod).to_string(),
    }
}

/// Upstream's `ComputePodQOS`: BestEffort when no container (regular or init) requests or limits
/// cpu/memory; Guaranteed when every container limits both cpu and memory and the summed
/// requests equal the summed limits; Burstable otherwise. Pod-level resources
/// (`spec.resources`), when set, replace the per-container ones.
pub fn compute_pod_qos(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return BEST_EFFORT;
    };
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;

    if let Some(pod_res) = spec.resources.as_ref() {
        add_positive(&mut requests, pod_res.requests.as_ref());
        if pod_res.limits.as_ref().is_some_and(|l| !l.is_empty()) && !add_positive(&mut limits, pod_res.limits.as_ref())
        {
            guaranteed = false;
        }
    } else {
        let all = spec.containers.iter().chain(spec.init_containers.iter().flatten());
        for c in all {
            let res = c.resources.as_ref();
            add_positive(&mut requests, res.and_then(|r| r.requests.as_ref()));
            if !add_positive(&mut limits, res.and_then(|r| r.limits.as_ref())) {
                guaranteed = false;
            }
        }
    }

    if requests.is_empty() && limits.is_empty() {
        return BEST_EFFORT;
    }
    if guaranteed && requests.iter().all(|(name, req)| limits.get(name) == Some(req)) && requests.len() == limits.len()
    {
        return GUARANTEED;
    }
    BURSTABLE
}

/// Adds the positive cpu/memory quantities of `list` into `acc`; returns whether both cpu and
/// memory were among them.
fn add_positive(acc: &mut BTreeMap<&'static str, i128>, list: Option<&BTreeMap<String, Quantity>>) -> bool {
    let mut found = 0;
    for name in QOS_RESOURCES {
        let Some(q) = list.and_then(|l| l.get(name)) else {
            continue;
        };
        let v = parse_quantity_nanos(&q.0).unwrap_or(0);
        if v > 0 {
            found += 1;
            let slot = acc.entry(name).or_insert(0);
            *slot = slot.saturating_add(v);
        }
    }
    found == QOS_RESOURCES.len()
}

/// Parses a Kubernetes quantity (`<sign><digits>[.<digits>]<suffix>`; suffixes n u m k M G T P E,
/// Ki Mi Gi Ti Pi Ei, or a decimal exponent `e<n>`/`E<n>`) into units of 10⁻⁹ (so `1` is
/// 1_000_000_000 and `1m` is 1_000_000). Precision below 10⁻⁹ is rounded up (away from zero), as
/// Kubernetes does; values too large saturate. `None` for malformed input.
pub fn parse_quantity_nanos(s: &str) -> Option<i128> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let number = rest.get(..num_end)?;
    let suffix = rest.get(num_end..)?;

    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if frac_part.contains('.') {
        return None;
    }

    let (dec_exp, bin_exp): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
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
        other => {
            let exp = other.strip_prefix('e').or_else(|| other.strip_prefix('E'))?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (exp.parse::<i32>().ok()?, 0)
        }
    };

    let mut mantissa: i128 = 0;
    let mut saturated = false;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        let d = i128::from(b - b'0');
        match mantissa.checked_mul(10).and_then(|m| m.checked_add(d)) {
            Some(m) => mantissa = m,
            None => {
                saturated = true;
                break;
            }
        }
    }
    let frac_len = i32::try_from(frac_part.len()).ok()?;
    let pow10 = dec_exp.saturating_add(9).saturating_sub(frac_len);

    let mut value = if saturated {
        i128::MAX
    } else if pow10 >= 0 {
        10i128.checked_pow(pow10.unsigned_abs()).and_then(|p| mantissa.checked_mul(p)).unwrap_or(if mantissa == 0 {
            0
        } else {
            i128::MAX
        })
    } else {
        match 10i128.checked_pow(pow10.unsigned_abs()) {
            // Ceiling division: sub-nano precision rounds up.
            Some(p) => mantissa / p + i128::from(mantissa % p != 0),
            None => i128::from(mantissa != 0),
        }
    };
    if bin_exp > 0 && value != 0 {
        value = value.checked_mul(1i128 << bin_exp).unwrap_or(i128::MAX);
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn quantities() {
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
    }
}
