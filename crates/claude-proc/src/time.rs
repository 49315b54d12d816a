//! Deadlines that never overflow.

use std::time::{Duration, Instant};

/// How far ahead a deadline too distant to represent is put: a setting's enormous value is a
/// long wait, never an overflow panic.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + d`, or about three decades on when that cannot be represented (`now` itself if even
/// that cannot). Every deadline a setting's duration feeds goes through here.
pub fn instant_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enormous_duration_is_a_distant_deadline_not_a_panic() {
        let now = Instant::now();
        assert_eq!(
            instant_after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(instant_after(now, Duration::MAX), now + FAR);
    }
}
