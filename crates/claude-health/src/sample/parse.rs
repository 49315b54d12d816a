//! Parsers of the `/proc/<pid>` files a sample reads besides `stat` (whose parser is
//! claude-proc's [`claude_proc::parse_proc_stat`], shared with the stop path). Bytes in,
//! values out; no IO here.

/// The storage bytes read and written from `/proc/<pid>/io` bytes (`read_bytes`,
/// `write_bytes`); `None` unless both are there. Hand-written: `procfs-core`'s `Io` builds a
/// hash map of all seven lines per call, a sixth of a watched sample's cost (BENCHMARKS.md).
pub fn io_bytes(io: &[u8]) -> Option<(u64, u64)> {
    let (mut read, mut write) = (None, None);
    for line in io.split(|b| *b == b'\n') {
        let value = |prefix: &[u8]| {
            line.strip_prefix(prefix)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(v) = value(b"read_bytes:") {
            read = Some(v);
        } else if let Some(v) = value(b"write_bytes:") {
            write = Some(v);
        }
    }
    Some((read?, write?))
}

/// The voluntary and involuntary context-switch counts from `/proc/<pid>/status` bytes
/// (zero where a line is missing). Only these two lines are read: procfs-core's `Status`
/// rejects a file that lacks any of its ~40 fields.
pub fn context_switches(status: &[u8]) -> (u64, u64) {
    let text = String::from_utf8_lossy(status);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        value("voluntary_ctxt_switches:"),
        value("nonvoluntary_ctxt_switches:"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn io_and_switches_are_read_from_their_lines() {
        let io = b"rchar: 10\nwchar: 20\nread_bytes: 4096\nwrite_bytes: 8192\n";
        assert_eq!(io_bytes(io), Some((4096, 8192)));
        assert_eq!(io_bytes(b"read_bytes: 1\n"), None);
        let status = b"Name:\tx\nvoluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t2\n";
        assert_eq!(context_switches(status), (7, 2));
        assert_eq!(context_switches(b""), (0, 0));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = context_switches(&bytes);
            let _ = io_bytes(&bytes);
        }
    }
}
