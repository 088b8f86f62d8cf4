//! Durations as users write them: `90`, `"90s"`, `"5m"`, `"1h"`.

use std::time::Duration;

/// Parses `90`, `90s`, `5m`, `1h` into a duration of at least one second.
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
    if seconds == 0 {
        return Err("a duration must be at least 1 second".into());
    }
    Ok(Duration::from_secs(seconds * factor))
}
