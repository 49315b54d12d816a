//! The one parser of `/proc/<pid>/stat` in the workspace: the stop path's tree scan reads it
//! here, and claude-health's sampler uses the same function.
//!
//! Hand-written rather than `procfs-core`'s `Stat`: that parser panics on a command name holding
//! invalid UTF-8 or a `)` before the `(` (found by a property test), and any child can set such
//! a name with `PR_SET_NAME`; a supervisor must not crash on its children's names. It also
//! allocates nothing: the name is borrowed from the bytes.

use crate::error::{Error, Result};

/// The fields of `/proc/<pid>/stat` the workspace uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcStat<'a> {
    /// The pid.
    pub pid: u32,
    /// The command name as the kernel holds it (any bytes; at most 15 on Linux).
    pub comm: &'a [u8],
    /// The state letter (`R`, `S`, `D`, `Z`, `T`, ...).
    pub state: char,
    /// The parent's pid.
    pub ppid: u32,
    /// The process group id.
    pub pgrp: u32,
    /// User time in clock ticks.
    pub utime: u64,
    /// System time in clock ticks.
    pub stime: u64,
    /// Threads.
    pub num_threads: u64,
    /// Start time in clock ticks since boot.
    pub starttime: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

impl ProcStat<'_> {
    /// Whether the process is alive (not a zombie, not dead).
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parse `/proc/<pid>/stat` bytes: one pass over the fields after the last `)` (the name may
/// hold spaces and parentheses). Garbage is [`Error::MalformedProcStat`], never a panic.
pub fn parse_proc_stat(bytes: &[u8]) -> Result<ProcStat<'_>> {
    let bad = |why: &'static str| Error::MalformedProcStat { why };
    let open = bytes.iter().position(|b| *b == b'(').ok_or(bad("no '('"))?;
    let close = bytes
        .iter()
        .rposition(|b| *b == b')')
        .ok_or(bad("no ')'"))?;
    if close < open {
        return Err(bad("')' before '('"));
    }
    let pid = std::str::from_utf8(bytes.get(..open).unwrap_or_default())
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .ok_or(bad("no pid"))?;
    let comm = bytes.get(open + 1..close).unwrap_or_default();
    let rest = std::str::from_utf8(bytes.get(close + 1..).unwrap_or_default())
        .map_err(|_| bad("fields after the name are not UTF-8"))?;
    // Fields after the name, counted from 0 (the state); the ones kept, by index.
    // Each with what is wrong when it is missing or not a number.
    const WANTED: [(usize, &str); 7] = [
        (1, "field ppid missing or not a number"),
        (2, "field pgrp missing or not a number"),
        (11, "field utime missing or not a number"),
        (12, "field stime missing or not a number"),
        (17, "field num_threads missing or not a number"),
        (19, "field starttime missing or not a number"),
        (21, "field rss missing or not a number"),
    ];
    let mut values = [None::<u64>; 7];
    let mut state = None;
    for (i, field) in rest.split_ascii_whitespace().enumerate().take(22) {
        if i == 0 {
            state = field.chars().next();
        } else if let Some(slot) = WANTED.iter().position(|(at, _)| *at == i) {
            if let Some(value) = values.get_mut(slot) {
                *value = field.parse::<u64>().ok();
            }
        }
    }
    let state = state.ok_or(bad("no state"))?;
    let value = |slot: usize| -> Result<u64> {
        let missing = WANTED
            .get(slot)
            .map_or("a field is missing", |(_, why)| why);
        values.get(slot).copied().flatten().ok_or(bad(missing))
    };
    let pid32 = |slot: usize| -> Result<u32> {
        u32::try_from(value(slot)?).map_err(|_| bad("a pid field is out of range"))
    };
    Ok(ProcStat {
        pid,
        comm,
        state,
        ppid: pid32(0)?,
        pgrp: pid32(1)?,
        utime: value(2)?,
        stime: value(3)?,
        num_threads: value(4)?,
        starttime: value(5)?,
        rss_pages: value(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_hostile_command_name_is_read_not_fatal() {
        let line =
            b"4242 (a) b (c) S 1 4242 4242 0 -1 4194560 0 0 0 0 5 6 0 0 20 0 2 0 987654 1000 10\n";
        let s = parse_proc_stat(line).unwrap();
        assert_eq!(
            (s.pid, s.ppid, s.pgrp, s.utime, s.stime, s.num_threads),
            (4242, 1, 4242, 5, 6, 2)
        );
        assert_eq!(
            (s.starttime, s.rss_pages, s.comm),
            (987654, 10, &b"a) b (c"[..])
        );
        assert!(s.alive());
        let mut raw = b"77 (".to_vec();
        raw.extend_from_slice(&[0xff, 0xfe, b')', b' ', b'(']);
        raw.extend_from_slice(b") R 1 77 77 0 -1 0 0 0 0 0 5 6 0 0 20 0 2 0 9 100 33 0\n");
        let s = parse_proc_stat(&raw).unwrap();
        assert_eq!((s.pid, s.state, s.rss_pages), (77, 'R', 33));
    }

    #[test]
    fn garbage_names_what_is_missing() {
        let zombie = b"7 (z) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n";
        assert!(!parse_proc_stat(zombie).unwrap().alive());
        assert!(matches!(
            parse_proc_stat(b"7 (z) S 1 7"),
            Err(Error::MalformedProcStat { why }) if why.contains("utime")
        ));
        assert!(parse_proc_stat(b"").is_err());
        assert!(parse_proc_stat(b"1 )x( S").is_err());
    }

    #[test]
    fn this_process_parses() {
        let bytes = std::fs::read("/proc/self/stat").unwrap();
        let s = parse_proc_stat(&bytes).unwrap();
        assert_eq!(s.pid, std::process::id());
        assert!(s.starttime > 0 && s.rss_pages > 0 && s.num_threads >= 1);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_proc_stat(&bytes);
        }

        #[test]
        fn generated_lines_parse(pid in 1u32..4_000_000, ppid in 0u32..4_000_000,
                                 start in any::<u64>(), ticks in 0u64..1_000_000,
                                 comm in "[ -~]{0,15}") {
            let line = format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 0 0 0 0 0 {ticks} {ticks} 0 0 20 0 1 0 {start} 0 7 0\n");
            let s = parse_proc_stat(line.as_bytes()).unwrap();
            prop_assert_eq!((s.pid, s.ppid, s.pgrp, s.starttime), (pid, ppid, pid, start));
            prop_assert_eq!((s.utime, s.rss_pages, s.comm), (ticks, 7, comm.as_bytes()));
        }
    }
}
