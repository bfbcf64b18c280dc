//! Human durations for flags: `500ms`, `1s`, `1.5s`, `2m`, `1h`, `1d`, `2w`.

use std::time::Duration;

/// Parses a duration: a non-negative decimal number followed by a unit (`ms`, `s`, `m`, `h`,
/// `d`, `w`; also `sec`, `secs`, `min`, `mins`). A bare `0` is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(format!("`{text}`: a duration cannot be negative"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "`{text}`: expected a number followed by a unit, e.g. 500ms, 1s, 2m"
        ));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: `{number}` is not a number"))?;
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 7.0 * 86_400.0,
        "" => return Err(format!("`{text}`: missing unit (ms, s, m, h, d or w)")),
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use ms, s, m, h, d or w)"
            ));
        }
    };
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("`{text}`: duration out of range"))
}

/// Milliseconds of `d`, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("1s", Duration::from_secs(1)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("2w", Duration::from_secs(14 * 86_400)),
            ("1d", Duration::from_secs(86_400)),
            ("1h", Duration::from_secs(3600)),
            ("15secs", Duration::from_secs(15)),
            ("3min", Duration::from_secs(180)),
            (" 20ms ", Duration::from_millis(20)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        for text in ["", "s", "10", "-1s", "1x", "1..5s", "ms5", "1e400s"] {
            assert!(parse_duration(text).is_err(), "{text} should be rejected");
        }
        let err = parse_duration("5 parsecs").err().unwrap_or_default();
        assert!(err.contains("unknown unit"), "{err}");
        let err = parse_duration("-1s").err().unwrap_or_default();
        assert_eq!(err, "`-1s`: a duration cannot be negative");
    }

    #[test]
    fn millis_saturates() {
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
