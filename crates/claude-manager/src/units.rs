//! SIZE and DUR values as operators write them: `512K`, `300M`, `2G` (binary units) or bytes;
//! `1500ms`, `30s`, `10m`, `2h`.
//!
//! SIZE is parsed here rather than by `bytesize` or `byte-unit`: those read `M`/`MB` as SI
//! (10^6) or make it a flag, while this CLI's contract is binary units for every spelling, as
//! `ulimit` and cgroup files use; the parser is twenty lines with a property test. DUR is
//! `humantime`'s.

use std::time::Duration;

/// Parse a size: a number of bytes, or a number with `K`, `M`, `G` or `T` (binary units, an
/// optional `i`/`iB`/`B` after the letter, any case). The error says what is wrong.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a size (like 512K, 300M, 2G or 1048576)"
        ));
    }
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "ki" | "kib" | "kb" => 10,
        "m" | "mi" | "mib" | "mb" => 20,
        "g" | "gi" | "gib" | "gb" => 30,
        "t" | "ti" | "tib" | "tb" => 40,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?} (use K, M, G or T)"
            ))
        }
    };
    if number.contains('.') {
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))?;
        let bytes = value * (1u64 << shift) as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(format!("{text:?} is too large"));
        }
        return Ok(bytes.round() as u64);
    }
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The longest duration a setting takes (365 days): longer is a typo, and an instant that far
/// ahead may not be representable.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parse a duration: a number with a unit (`1500ms`, `30s`, `10m`, `2h`, or `1h 30m`; parsed
/// by `humantime`). A bare number is refused: it is ambiguous.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{text:?} needs a unit (ms, s, m or h)"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{text:?} is not a duration like 1500ms, 30s or 10m ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("300M"), Ok(300 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("12X").unwrap_err().contains("unknown unit"));
        assert!(parse_size("99999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("17000000T").unwrap_err().contains("too large"));
        assert!(parse_size("-1M").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("30").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400s").is_err());
        assert!(parse_duration("..s").is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in ".{0,24}") {
            let _ = parse_size(&text);
            let _ = parse_duration(&text);
        }

        #[test]
        fn sizes_round_trip(n in 0u64..(1 << 40), unit in 0usize..4) {
            let (suffix, shift) = [("", 0), ("K", 10), ("M", 20), ("G", 30)][unit];
            let n = n >> shift;
            prop_assert_eq!(parse_size(&format!("{n}{suffix}")), Ok(n << shift));
        }
    }
}
