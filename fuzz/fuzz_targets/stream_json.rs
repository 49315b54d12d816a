//! One line of the CLI's stream-json output: a message or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = claude_proc::parse_line(data);
});
