//! Wrong tokens on the TCP listener, counted per client address: an address may get the
//! token wrong [`WRONG_TOKENS_ALLOWED`] times in a row (`claude-pm serve --token-attempts`;
//! 0 counts nothing), then one more try every [`WRONG_TOKEN_PAUSE`]; until then its attempts
//! are answered 429 without being checked. The token file is the operator's choice and may
//! be guessable; a wrong guess costs the guesser, not the other addresses (an attacker cannot
//! lock the operator out from elsewhere) and not a browser already signed in (its cookie is
//! not an attempt).
//!
//! The count is a theoretical arrival time per address (GCRA): each wrong token moves it
//! [`WRONG_TOKEN_PAUSE`] later; an address is held back while it lies more than
//! `(allowed - 1) * WRONG_TOKEN_PAUSE` ahead of now. One `Instant` per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens an address may send in a row before it is held back, by default.
pub const WRONG_TOKENS_ALLOWED: u32 = 10;
/// How long a held-back address waits for each further try.
pub const WRONG_TOKEN_PAUSE: Duration = Duration::from_secs(6);
/// Addresses remembered at most (the one due soonest is forgotten first).
const MAX_ADDRESSES: usize = 4096;

/// The wrong-token count of every address that sent one recently.
pub(crate) struct WrongTokens {
    /// Wrong tokens allowed in a row; 0 counts nothing.
    allowed: u32,
    due: Mutex<HashMap<IpAddr, Instant>>,
}

impl WrongTokens {
    /// `allowed` wrong tokens in a row per address; 0 holds nobody back.
    pub(crate) fn new(allowed: u32) -> WrongTokens {
        WrongTokens {
            allowed,
            due: Mutex::default(),
        }
    }

    fn due(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How far ahead of now an address's time may lie and it still gets a try.
    fn slack(&self) -> Duration {
        WRONG_TOKEN_PAUSE * self.allowed.saturating_sub(1)
    }

    /// `Err(wait)` if `from` is held back at `now`: it may try again after `wait`.
    pub(crate) fn check(&self, from: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.allowed == 0 {
            return Ok(());
        }
        let due = self.due();
        let ahead = due
            .get(&from)
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
        if ahead > self.slack() {
            Err(ahead - self.slack())
        } else {
            Ok(())
        }
    }

    /// `from` sent a wrong token at `now`.
    pub(crate) fn failed(&self, from: IpAddr, now: Instant) {
        if self.allowed == 0 {
            return;
        }
        let mut due = self.due();
        if due.len() >= MAX_ADDRESSES && !due.contains_key(&from) {
            due.retain(|_, at| *at > now);
            if due.len() >= MAX_ADDRESSES {
                let soonest = due.iter().min_by_key(|(_, at)| **at).map(|(ip, _)| *ip);
                if let Some(ip) = soonest {
                    due.remove(&ip);
                }
            }
        }
        let at = due.entry(from).or_insert(now);
        *at = (*at).max(now) + WRONG_TOKEN_PAUSE;
    }

    /// `from` sent the right token: its count starts again.
    pub(crate) fn succeeded(&self, from: IpAddr) {
        self.due().remove(&from);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.due().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_wrong_tokens_then_one_try_per_pause_and_other_addresses_are_not_held() {
        let w = WrongTokens::new(WRONG_TOKENS_ALLOWED);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        for _ in 0..WRONG_TOKENS_ALLOWED {
            assert_eq!(w.check(a, t0), Ok(()));
            w.failed(a, t0);
        }
        assert_eq!(w.check(a, t0), Err(WRONG_TOKEN_PAUSE));
        assert_eq!(w.check(b, t0), Ok(()), "another address is not held back");
        // One pause later, one more try; it fails and the address is held again.
        let t1 = t0 + WRONG_TOKEN_PAUSE;
        assert_eq!(w.check(a, t1), Ok(()));
        w.failed(a, t1);
        assert!(w.check(a, t1).is_err());
        // Wrong tokens sent slower than one a pause never hold an address back.
        let mut t = t1 + WRONG_TOKEN_PAUSE * 20;
        for _ in 0..50 {
            assert_eq!(w.check(b, t), Ok(()));
            w.failed(b, t);
            t += WRONG_TOKEN_PAUSE;
        }
        // The right token clears the count.
        w.succeeded(a);
        assert_eq!(w.check(a, t1), Ok(()));
        // Nothing is counted with 0 allowed.
        let off = WrongTokens::new(0);
        for _ in 0..100 {
            off.failed(a, t0);
        }
        assert_eq!(off.check(a, t0), Ok(()));
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn the_addresses_kept_are_bounded() {
        let w = WrongTokens::new(WRONG_TOKENS_ALLOWED);
        let now = Instant::now();
        for n in 0..(MAX_ADDRESSES as u32 + 100) {
            w.failed(IpAddr::from(n.to_be_bytes()), now);
        }
        assert!(w.len() <= MAX_ADDRESSES);
    }
}
