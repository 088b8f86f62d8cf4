//! Sizes as users write them: `1G`, `512M`, `1.5G`, `1024` (MiB).

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A size in mebibytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size {
    /// Mebibytes.
    pub mib: u64,
}

impl Size {
    /// A size of `mib` mebibytes.
    pub const fn mib(mib: u64) -> Self {
        Size { mib }
    }

    /// Bytes, for `qemu-img` and comparisons with file sizes.
    pub fn bytes(self) -> u64 {
        self.mib * 1024 * 1024
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mib >= 1024 && self.mib.is_multiple_of(1024) {
            write!(f, "{}G", self.mib / 1024)
        } else {
            write!(f, "{}M", self.mib)
        }
    }
}

/// What a size may look like, for error messages.
pub const SIZE_FORMS: &str =
    "a number of MiB (1024) or a string such as \"512M\", \"1G\", \"1.5G\", \"1T\"";

/// The largest size env takes, in MiB (1 PiB): larger ones are typos, and
/// would overflow the arithmetic of QEMU's and qemu-img's arguments.
pub const MAX_MIB: u64 = 1 << 30;

fn too_large(text: &str) -> String {
    format!("`{text}` is larger than 1P: env takes sizes up to that")
}

/// Parses `1G`, `512M`, `512MiB`, `1.5G`, `2T`, `1024` (MiB), up to 1 PiB.
pub fn parse_size(text: &str) -> Result<Size, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => 1.0,
        "G" | "GB" | "GIB" => 1024.0,
        "T" | "TB" | "TIB" => 1024.0 * 1024.0,
        "K" | "KB" | "KIB" => 1.0 / 1024.0,
        _ => return Err(format!("`{text}` is not a size: use {SIZE_FORMS}")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size: use {SIZE_FORMS}"))?;
    let mib = value * factor;
    if !mib.is_finite() || mib > MAX_MIB as f64 {
        return Err(too_large(text));
    }
    if mib < 1.0 || mib.fract() != 0.0 {
        return Err(format!(
            "`{text}` is not a whole number of MiB (at least 1M)"
        ));
    }
    Ok(Size::mib(mib as u64))
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE_FORMS)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                if v < 1 {
                    return Err(E::custom(format!("{v} is not a size: use {SIZE_FORMS}")));
                }
                if v as u64 > MAX_MIB {
                    return Err(E::custom(too_large(&v.to_string())));
                }
                Ok(Size::mib(v as u64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                self.visit_i64(v.min(i64::MAX as u64) as i64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_bounded() {
        assert!(
            parse_size("99999999999999999999T")
                .unwrap_err()
                .contains("larger than 1P")
        );
        assert!(parse_size("1e400G").is_err());
        assert_eq!(parse_size("1024T").unwrap().mib, MAX_MIB);
        assert!(parse_size("1025T").is_err());
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(parse_size("1024"), Ok(Size::mib(1024)));
        assert_eq!(parse_size("512M"), Ok(Size::mib(512)));
        assert_eq!(parse_size("512MiB"), Ok(Size::mib(512)));
        assert_eq!(parse_size("1G"), Ok(Size::mib(1024)));
        assert_eq!(parse_size("1g"), Ok(Size::mib(1024)));
        assert_eq!(parse_size("1.5G"), Ok(Size::mib(1536)));
        assert_eq!(parse_size("2T"), Ok(Size::mib(2 * 1024 * 1024)));
        assert_eq!(parse_size(" 8 G "), Ok(Size::mib(8192)));
        assert_eq!(parse_size("2048K"), Ok(Size::mib(2)));
    }

    #[test]
    fn rejected_forms() {
        for bad in ["", "G", "1X", "-1G", "0", "0.1M", "1..2G", "1K", "one"] {
            assert!(parse_size(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["1G", "512M", "1536M", "8G"] {
            assert_eq!(parse_size(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn bytes() {
        assert_eq!(Size::mib(2).bytes(), 2 * 1024 * 1024);
    }
}
