//! The config loader: any TOML text, and any key/value through the flag parser.
#![no_main]

use claude_manager::{Settings, SettingsSource, SETTING_KEYS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Settings::from_toml(text, std::path::Path::new("fuzz.toml"));
    if let Some((&first, rest)) = data.split_first() {
        if let Ok(value) = std::str::from_utf8(rest) {
            let key = SETTING_KEYS[usize::from(first) % SETTING_KEYS.len()];
            let mut s = Settings::default();
            let _ = s.set(key, value, &SettingsSource::Flag);
        }
    }
});
