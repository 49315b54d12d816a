//! The setting's values: the isolation level and the uid range sessions get their uids from.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// How far a session is kept from the host and from other sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Level {
    /// The manager's user, the host's namespaces (what an unisolated process gets).
    #[default]
    None,
    /// Its own uid and gid from the range, no supplementary groups, `no_new_privs`, a home and
    /// config directory only it can enter, its working directory granted by ACL for its life.
    User,
    /// `User` plus its own mount, PID, IPC and UTS namespaces: the host read-only, private
    /// `/tmp`, `/var/tmp`, `/dev/shm` and `/run`, only its own directories writable, a
    /// `/proc` with only its own processes; the tree ends with its namespace.
    Sandbox,
}

impl Level {
    /// The setting's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::User => "user",
            Level::Sandbox => "sandbox",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim() {
            "none" => Ok(Level::None),
            "user" => Ok(Level::User),
            "sandbox" => Ok(Level::Sandbox),
            _ => Err(Error::InvalidLevel { text: s.into() }),
        }
    }
}

/// An inclusive range of uids (the same numbers serve as gids) for sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    first: u32,
    last: u32,
}

impl UidRange {
    /// The default, systemd's range for `DynamicUser=`: 61184-65519.
    pub const DEFAULT: UidRange = UidRange {
        first: 61184,
        last: 65519,
    };

    /// `first..=last`; both above 999 (system ids) and below 2^31 - 1.
    pub fn new(first: u32, last: u32) -> Result<Self, Error> {
        let text = || format!("{first}-{last}");
        if first > last {
            return Err(Error::InvalidRange {
                text: text(),
                why: "the first uid is above the last",
            });
        }
        if first < 1000 {
            return Err(Error::InvalidRange {
                text: text(),
                why: "uids below 1000 belong to the system",
            });
        }
        if last >= i32::MAX as u32 {
            return Err(Error::InvalidRange {
                text: text(),
                why: "uids must stay below 2147483647",
            });
        }
        Ok(UidRange { first, last })
    }

    /// The first uid.
    pub fn first(&self) -> u32 {
        self.first
    }

    /// The last uid.
    pub fn last(&self) -> u32 {
        self.last
    }

    /// How many uids it holds.
    pub fn count(&self) -> u32 {
        self.last - self.first + 1
    }

    /// Whether `id` is in it.
    pub fn contains(&self, id: u32) -> bool {
        (self.first..=self.last).contains(&id)
    }
}

impl Default for UidRange {
    fn default() -> Self {
        UidRange::DEFAULT
    }
}

impl fmt::Display for UidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for UidRange {
    type Err = Error;

    /// `FIRST-LAST`, for example `61184-65519`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why| Error::InvalidRange {
            text: s.into(),
            why,
        };
        let (a, b) = s.trim().split_once('-').ok_or(bad("expected FIRST-LAST"))?;
        let first = a
            .trim()
            .parse()
            .map_err(|_| bad("the first uid is not a number"))?;
        let last = b
            .trim()
            .parse()
            .map_err(|_| bad("the last uid is not a number"))?;
        UidRange::new(first, last).map_err(|e| match e {
            Error::InvalidRange { why, .. } => bad(why),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_ranges_parse_and_name_their_problem() {
        assert_eq!("sandbox".parse::<Level>().unwrap(), Level::Sandbox);
        assert!("jail"
            .parse::<Level>()
            .unwrap_err()
            .to_string()
            .contains("none, user or sandbox"));
        let r: UidRange = "61184-65519".parse().unwrap();
        assert_eq!((r.first(), r.last(), r.count()), (61184, 65519, 4336));
        assert_eq!(r.to_string(), "61184-65519");
        for (text, why) in [
            ("5-10", "system"),
            ("70000-60000", "above the last"),
            ("x-70000", "not a number"),
            ("70000", "FIRST-LAST"),
            ("70000-4294967295", "below 2147483647"),
        ] {
            let e = text.parse::<UidRange>().unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(text), "{e}");
        }
    }
}
