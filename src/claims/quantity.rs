//! Kubernetes resource quantities (`500m`, `1.5`, `512Mi`, `1e3`, `2Gi`).

/// The value of a quantity in base units, or None if it is not a quantity.
pub fn parse(s: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 15] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (num, scale) = SUFFIXES
        .iter()
        .find_map(|(suf, scale)| s.strip_suffix(suf).map(|n| (n, *scale)))
        .unwrap_or((s, 1.0));
    let digits = num.strip_prefix(['+', '-']).unwrap_or(num);
    let (mantissa, exponent) = match digits.split_once(['e', 'E']) {
        Some((m, e)) if scale == 1.0 => (m, Some(e)),
        _ => (digits, None),
    };
    let mantissa_ok = !mantissa.is_empty()
        && mantissa != "."
        && mantissa.bytes().filter(|&b| b == b'.').count() <= 1
        && mantissa.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    if !mantissa_ok || !exponent_ok {
        return None;
    }
    num.parse::<f64>().ok().map(|v| v * scale)
}

/// A quantity given as a YAML number or string.
pub fn of_json(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => parse(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("512Mi"), Some(512.0 * 1048576.0));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("1.5Gi"), Some(1.5 * 1073741824.0));
        for bad in ["", "Mi", "1.2.3", "abc", "1 Gi", "10GB", ".", "1e"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
