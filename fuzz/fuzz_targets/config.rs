//! The settings input: any TOML text, and any value for any setting of the table through the
//! flag parser. Never a panic; either settings that apply to a session, or an error that names
//! the key as written.
#![no_main]

use claude_manager::{ManagerConfig, SessionSpec, Settings, SettingsSource, SETTINGS};
use libfuzzer_sys::fuzz_target;

fn applies(settings: &Settings) {
    let mut spec = SessionSpec::claude("fuzz", Vec::<String>::new());
    let mut manager = ManagerConfig::default();
    if let Err(e) = settings.apply(&mut spec, &mut manager) {
        panic!("checked settings failed to apply: {e}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(settings) = Settings::from_toml(text, std::path::Path::new("fuzz.toml")) {
        applies(&settings);
    }
    if let Some((&first, rest)) = data.split_first() {
        if let Ok(value) = std::str::from_utf8(rest) {
            let setting = &SETTINGS[usize::from(first) % SETTINGS.len()];
            let mut s = Settings::default();
            match s.set(setting.key, value, &SettingsSource::Flag) {
                Ok(()) => applies(&s),
                Err(e) => assert!(
                    e.to_string().contains(&setting.flag()),
                    "error without the key: {e}"
                ),
            }
        }
    }
});
