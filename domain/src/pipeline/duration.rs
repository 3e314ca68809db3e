//! Timeouts: whole seconds (`600`) or a duration string (`"10m"`, `"1h30m"`, `"45s"`).

use std::time::Duration;

use crate::error::ValidationError;

/// The longest timeout a pipeline may ask for: a day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

const FIELD: &str = "timeout";

/// Parses a timeout: whole seconds (`"600"`) or hours, minutes and seconds in that order, each
/// at most once (`"1h"`, `"10m"`, `"1h30m"`, `"2m30s"`). It must be positive and at most
/// [`MAX_TIMEOUT`].
pub fn parse_duration(raw: &str) -> Result<Duration, ValidationError> {
    let text = raw.trim();
    let bad = || {
        ValidationError::new(
            FIELD,
            format!(
                "{raw:?} is not a duration; use whole seconds (600) or hours, minutes and \
                 seconds like \"1h30m\", \"10m\" or \"45s\""
            ),
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return from_secs(text.parse().map_err(|_| too_long())?);
    }
    // Units, largest first; each may be given once, in this order.
    const UNITS: [(char, u64); 3] = [('h', 3600), ('m', 60), ('s', 1)];
    let mut next_unit = 0;
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        let mut chars = rest[digits..].chars();
        let unit = chars.next().ok_or_else(bad)?;
        let position = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(bad)?;
        let (_, factor) = UNITS[next_unit + position];
        next_unit += position + 1;
        total = number
            .checked_mul(factor)
            .and_then(|secs| secs.checked_add(total))
            .ok_or_else(too_long)?;
        rest = chars.as_str();
    }
    from_secs(total)
}

/// Checks a timeout given as whole seconds.
pub(crate) fn from_secs(secs: u64) -> Result<Duration, ValidationError> {
    let duration = Duration::from_secs(secs);
    if duration.is_zero() {
        return Err(ValidationError::new(FIELD, "must be longer than zero"));
    }
    if duration > MAX_TIMEOUT {
        return Err(too_long());
    }
    Ok(duration)
}

fn too_long() -> ValidationError {
    ValidationError::new(FIELD, "must be at most 24h")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(raw: &str) -> Result<u64, String> {
        parse_duration(raw).map(|d| d.as_secs()).map_err(|e| e.to_string())
    }

    #[test]
    fn durations_are_seconds_or_hours_minutes_and_seconds() {
        assert_eq!(secs("600"), Ok(600));
        assert_eq!(secs("45s"), Ok(45));
        assert_eq!(secs("10m"), Ok(600));
        assert_eq!(secs("1h"), Ok(3600));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("2m30s"), Ok(150));
        assert_eq!(secs("1h0m5s"), Ok(3605));
        assert_eq!(secs(" 24h "), Ok(86_400));
        assert_eq!(secs("90m"), Ok(5400));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in ["", "m", "1x", "10 m", "1.5h", "-5s", "30m1h", "1h1h", "h1", "5mm", "1d"] {
            let err = secs(bad).expect_err(bad);
            assert!(err.starts_with("invalid timeout: "), "{bad:?}: {err}");
            assert!(err.contains("is not a duration"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn durations_must_be_positive_and_at_most_a_day() {
        assert_eq!(
            secs("0").expect_err("refused"),
            "invalid timeout: must be longer than zero"
        );
        assert_eq!(
            secs("0m0s").expect_err("refused"),
            "invalid timeout: must be longer than zero"
        );
        assert_eq!(
            secs("25h").expect_err("refused"),
            "invalid timeout: must be at most 24h"
        );
        assert_eq!(
            secs("86401").expect_err("refused"),
            "invalid timeout: must be at most 24h"
        );
        assert_eq!(
            secs("99999999999999999999999h").expect_err("refused"),
            "invalid timeout: must be at most 24h"
        );
        assert_eq!(
            secs("9999999999999999h").expect_err("refused"),
            "invalid timeout: must be at most 24h"
        );
    }
}
