//! Durations as users write them: `90`, `"90s"`, `"5m"`, `"1h"`.

use std::time::Duration;

/// The longest duration env takes: a day. Longer ones are typos, and an
/// unbounded one would overflow the clock arithmetic of a deadline.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Checks a number of seconds against [`MAX_DURATION`].
pub fn bounded_secs(seconds: u64) -> Result<Duration, String> {
    if seconds == 0 {
        return Err("a duration must be at least 1 second".into());
    }
    if seconds > MAX_DURATION.as_secs() {
        return Err(format!(
            "{seconds} s is longer than a day ({} s): env takes durations up to that",
            MAX_DURATION.as_secs()
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// Parses `90`, `90s`, `5m`, `1h` into a duration from one second to a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let seconds: u64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration: use seconds (120) or \"90s\", \"5m\", \"1h\"")
    })?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "`{text}` is not a duration: use seconds (120) or \"90s\", \"5m\", \"1h\""
            ));
        }
    };
    let total = seconds
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is longer than a day: env takes durations up to that"))?;
    bounded_secs(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded_and_never_wrap() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert!(
            parse_duration("25h")
                .unwrap_err()
                .contains("longer than a day")
        );
        assert!(
            parse_duration("307445734561825861m").is_err(),
            "wrapped to 44 s before"
        );
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(parse_duration("0").is_err());
        assert!(bounded_secs(9_223_372_036_854_775_807).is_err());
    }
}
