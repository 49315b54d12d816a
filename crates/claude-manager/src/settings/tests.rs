use std::time::Duration;

use claude_proc::RestartMode;

use super::*;

fn applied(s: &Settings) -> (SessionSpec, ManagerConfig) {
    let mut spec = SessionSpec::claude("t", Vec::<String>::new());
    let mut manager = ManagerConfig::default();
    s.apply(&mut spec, &mut manager).unwrap();
    (spec, manager)
}

#[test]
fn errors_name_the_key_as_the_operator_wrote_it() {
    let mut s = Settings::default();
    let e = s.set("memory", "lots", &SettingsSource::Flag).unwrap_err();
    assert!(
        e.to_string().contains("--memory") && e.to_string().contains("\"lots\""),
        "{e}"
    );
    let e = s.set("disk-io", "1", &SettingsSource::Env).unwrap_err();
    assert!(e.to_string().contains("CLAUDE_PM_DISK_IO"), "{e}");
    let file = SettingsSource::File("/etc/pm.toml".into());
    let e = s.set("timeout", "30", &file).unwrap_err();
    assert!(
        e.to_string().contains("timeout in /etc/pm.toml") && e.to_string().contains("unit"),
        "{e}"
    );
    let e = s.set("colour", "red", &file).unwrap_err();
    assert!(e.to_string().contains("unknown setting"), "{e}");
    assert!(s
        .set("restart", "sometimes", &SettingsSource::Flag)
        .is_err());
    assert!(s.set("nice", "30", &SettingsSource::Flag).is_err());
    assert!(s.set("cpus", "NaN", &SettingsSource::Flag).is_err());
    assert!(s.set("env", "1BAD=x", &SettingsSource::Flag).is_err());
    assert!(s.set("env", "novalue", &SettingsSource::Flag).is_err());
    assert!(s.is_empty(), "a refused value is not kept");
}

#[test]
fn ranges_come_from_the_type_that_owns_them() {
    let mut s = Settings::default();
    let e = s.set("memory", "1M", &SettingsSource::Flag).unwrap_err();
    assert!(e.to_string().contains("must be at least 16 MiB"), "{e}");
    let e = s.set("nofile", "3", &SettingsSource::Flag).unwrap_err();
    assert!(e.to_string().contains("must be at least 16"), "{e}");
    let e = s.set("nice", "-21", &SettingsSource::Flag).unwrap_err();
    assert!(e.to_string().contains("-20..=19"), "{e}");
    // Exactly the minimum passes.
    let min = claude_limits::ResourceLimits::MIN_MEMORY.to_string();
    s.set("memory", &min, &SettingsSource::Flag).unwrap();
}

#[test]
fn a_secret_in_an_env_value_never_reaches_an_error_or_debug() {
    let mut s = Settings::default();
    let e = s
        .set("env", "1TOKEN=sk-ant-secret", &SettingsSource::Flag)
        .unwrap_err();
    assert!(!e.to_string().contains("sk-ant-secret"), "{e}");
    s.set("env", "TOKEN=sk-ant-secret", &SettingsSource::Flag)
        .unwrap();
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("sk-ant-secret") && debug.contains("TOKEN"),
        "{debug}"
    );
}

#[test]
fn file_env_and_flags_layer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pm.toml");
    std::fs::write(
        &path,
        "memory = \"2G\"\ncpus = 1.5\ntimeout = \"10m\"\nrestart = \"on-failure\"\nmax_live = 3\npass_env = [\"TERM\"]\n[env]\nFOO = \"bar\"\n",
    )
    .unwrap();
    let file = Settings::from_file(&path).unwrap();
    let env = Settings::from_env(&|k| (k == "CLAUDE_PM_MEMORY").then(|| "300M".into())).unwrap();
    let mut flags = Settings::default();
    flags.set("timeout", "30s", &SettingsSource::Flag).unwrap();
    flags.set("env", "BAZ=1", &SettingsSource::Flag).unwrap();
    let (spec, manager) = applied(&file.merged(env).merged(flags));
    assert_eq!(spec.limits.max_memory, Some(300 << 20));
    assert_eq!(spec.limits.max_cpu, Some(1.5));
    assert_eq!(spec.limits.timeout, Some(Duration::from_secs(30)));
    assert_eq!(spec.restart.mode, RestartMode::OnFailure);
    assert_eq!(manager.max_live, 3);
    assert_eq!(
        spec.env,
        vec![("FOO".into(), "bar".into()), ("BAZ".into(), "1".into())]
    );
    assert_eq!(spec.pass_env, vec![OsString::from("TERM")]);
}

#[test]
fn broken_files_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pm.toml");
    std::fs::write(&path, "memory = [1, 2]\n").unwrap();
    let e = Settings::from_file(&path).unwrap_err().to_string();
    assert!(
        e.contains("memory in") && e.contains("string or a number"),
        "{e}"
    );
    std::fs::write(&path, "memory = \n").unwrap();
    assert!(matches!(
        Settings::from_file(&path),
        Err(Error::ConfigSyntax { .. })
    ));
    assert!(matches!(
        Settings::from_file(&dir.path().join("missing.toml")),
        Err(Error::ConfigFile { .. })
    ));
    // A file far too large to be a config is refused after reading at most the cap.
    match Settings::from_file(Path::new("/dev/zero")) {
        Err(e @ Error::ConfigSyntax { .. }) => {
            assert!(e.to_string().contains("larger than 1024 KiB"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_setting_has_a_flag_a_variable_and_a_toml_key() {
    for s in SETTINGS {
        assert_eq!(s.flag(), format!("--{}", s.key.replace('_', "-")));
        assert!(s.variable().starts_with("CLAUDE_PM_"), "{}", s.variable());
        assert_eq!(setting(s.key).map(|x| x.key), Some(s.key));
        assert_eq!(setting(&s.long()).map(|x| x.key), Some(s.key));
        assert!(!s.help.is_empty() && !s.value_name.is_empty());
    }
    // The claude binary keeps the variable the README and claude-proc document.
    assert_eq!(
        setting("claude_binary").unwrap().variable(),
        "CLAUDE_PM_CLAUDE_BIN"
    );
}

#[test]
fn a_non_utf8_variable_is_refused_by_name() {
    use std::os::unix::ffi::OsStringExt;
    let e = Settings::from_env(&|k| {
        (k == "CLAUDE_PM_TIMEOUT").then(|| OsString::from_vec(b"1s\xff".to_vec()))
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("CLAUDE_PM_TIMEOUT") && e.to_string().contains("UTF-8"),
        "{e}"
    );
}

#[test]
fn restart_delay_reaches_the_backoff_and_zero_means_at_once() {
    let mut s = Settings::default();
    s.set("restart_delay", "0s", &SettingsSource::Flag).unwrap();
    let (spec, _) = applied(&s);
    assert_eq!(spec.restart.backoff.initial, Duration::ZERO);
    assert!(spec.restart.validate().is_ok());
    s.set("restart_delay", "2s", &SettingsSource::Flag).unwrap();
    assert_eq!(
        applied(&s).0.restart.backoff.initial,
        Duration::from_secs(2)
    );
    let e = s
        .set("restart_delay", "2m", &SettingsSource::Flag)
        .unwrap_err();
    assert!(e.to_string().contains("at most 60s"), "{e}");
}
