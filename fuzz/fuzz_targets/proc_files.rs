//! The `/proc` parsers: `stat` (one parser for the monitor and the stop path), `status`, `io`, and
//! `/proc/self/cgroup`. A child can put any bytes in its command name.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = claude_health::context_switches(data);
    let _ = claude_health::io_bytes(data);
    let _ = claude_proc::parse_proc_stat(data);
    let root = claude_limits::CgroupV1Root::new("/nonexistent", String::from_utf8_lossy(data));
    let _ = root.own_dir("memory");
});
