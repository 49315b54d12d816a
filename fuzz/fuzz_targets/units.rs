//! SIZE and DUR values.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = claude_manager::parse_size(text);
        let _ = claude_manager::parse_duration(text);
    }
});
