//! Conversions between value shapes of the Gateway API and our own.

use serde::{Deserialize, Serialize};

/// Converts between two types of the same JSON shape: the generated Gateway
/// API types repeat one shape under many names (a rule's filters and a
/// backend's, an HTTPRoute's parentRefs and a TCPRoute's), and this lets
/// one function serve them all.
pub fn reshape<T: Serialize, U: for<'de> Deserialize<'de>>(value: &T) -> Option<U> {
    serde_json::to_value(value)
        .ok()
        .and_then(|json| serde_json::from_value(json).ok())
}

/// Parses a Gateway API duration (`1h`, `30s`, `500ms`, `1m30s`) into
/// milliseconds.
pub fn parse_duration_ms(value: &str) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total = total.checked_add(number.checked_mul(unit)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        for (text, expected) in [
            ("1s", Some(1000)),
            ("1m30s", Some(90_000)),
            ("500ms", Some(500)),
            ("1h", Some(3_600_000)),
            ("", None),
            ("1x", None),
            ("s", None),
            ("99999999999999999999h", None),
        ] {
            assert_eq!(parse_duration_ms(text), expected, "{text}");
        }
    }
}
