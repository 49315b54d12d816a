use super::*;
use proptest::prelude::*;

fn args(o: &ClaudeOptions) -> Vec<String> {
    o.to_args().unwrap()
}

#[test]
fn nothing_set_adds_nothing() {
    assert!(args(&ClaudeOptions::default()).is_empty());
}

#[test]
fn every_option_maps_to_its_flag() {
    let o = ClaudeOptions {
        model: Some("claude-haiku-4-5".into()),
        fallback_models: vec!["a".into(), "b".into()],
        permission_mode: Some(PermissionMode::AcceptEdits),
        permission_prompts: Some(PermissionPrompts::Host),
        allowed_tools: vec!["Bash(git *)".into(), "Read".into()],
        disallowed_tools: vec!["WebFetch".into()],
        tools: Some(Tools::Named(vec!["Bash".into(), "Read".into()])),
        append_system_prompt: Some("be brief".into()),
        max_turns: Some(3),
        max_budget_usd: Some(0.5),
        json_schema: Some(r#"{"type":"object"}"#.into()),
        session_id: Some("0f8b2c3e-1d4a-4b5c-9e6f-7a8b9c0d1e2f".into()),
        no_session_persistence: true,
        add_dirs: vec![PathBuf::from("/srv/data")],
        mcp_config: vec![r#"{"mcpServers":{}}"#.into()],
        sdk_mcp_servers: vec!["calc".into()],
        strict_mcp_config: true,
        settings: Some(r#"{"cleanupPeriodDays":1}"#.into()),
        setting_sources: Some(vec![SettingSource::Project, SettingSource::Local]),
        agents: Some(r#"{"r":{"description":"d","prompt":"p"}}"#.into()),
        include_partial_messages: true,
        effort: Some(Effort::Low),
        ..ClaudeOptions::default()
    };
    let a = args(&o);
    let pairs = [
        ("--model", "claude-haiku-4-5"),
        ("--fallback-model", "a,b"),
        ("--permission-mode", "acceptEdits"),
        ("--permission-prompts", "host"),
        ("--permission-prompt-tool", "stdio"),
        ("--allowed-tools", "Bash(git *),Read"),
        ("--disallowed-tools", "WebFetch"),
        ("--tools", "Bash,Read"),
        ("--append-system-prompt", "be brief"),
        ("--max-turns", "3"),
        ("--max-budget-usd", "0.5"),
        ("--json-schema", r#"{"type":"object"}"#),
        ("--session-id", "0f8b2c3e-1d4a-4b5c-9e6f-7a8b9c0d1e2f"),
        ("--add-dir", "/srv/data"),
        ("--mcp-config", r#"{"mcpServers":{}}"#),
        (
            "--mcp-config",
            r#"{"mcpServers":{"calc":{"name":"calc","type":"sdk"}}}"#,
        ),
        ("--settings", r#"{"cleanupPeriodDays":1}"#),
        ("--setting-sources", "project,local"),
        ("--effort", "low"),
    ];
    for (flag, value) in pairs {
        let token = format!("{flag}={value}");
        assert!(a.contains(&token), "{token} missing: {a:?}");
    }
    for flag in [
        "--no-session-persistence",
        "--strict-mcp-config",
        "--include-partial-messages",
    ] {
        assert!(a.iter().any(|x| x == flag), "{flag} missing");
    }
}

#[test]
fn resume_continue_fork_and_empty_tools() {
    let resume = ClaudeOptions {
        conversation: Conversation::Resume("abc".into()),
        fork_session: true,
        session_id: Some("0f8b2c3e-1d4a-4b5c-9e6f-7a8b9c0d1e2f".into()),
        ..ClaudeOptions::default()
    };
    let a = args(&resume);
    assert!(a.contains(&"--resume=abc".to_owned()), "{a:?}");
    assert!(a.contains(&"--fork-session".to_owned()));
    let cont = ClaudeOptions {
        conversation: Conversation::Continue,
        tools: Some(Tools::None),
        ..ClaudeOptions::default()
    };
    assert_eq!(args(&cont), ["--tools=", "--continue"]);
}

fn with(change: impl FnOnce(&mut ClaudeOptions)) -> ClaudeOptions {
    let mut o = ClaudeOptions::default();
    change(&mut o);
    o
}

fn assert_refused(o: &ClaudeOptions, option: &str) {
    match o.to_args() {
        Err(e @ Error::InvalidOption { option: named, .. }) => {
            assert_eq!(named, option, "{e}");
            assert!(e.to_string().starts_with("claude option "), "{e}");
            assert!(e.is_permanent());
        }
        other => panic!("{option}: {other:?}"),
    }
}

const UUID: &str = "0f8b2c3e-1d4a-4b5c-9e6f-7a8b9c0d1e2f";

#[test]
fn bad_values_are_refused_by_name() {
    let cases = [
        (with(|o| o.model = Some(" ".into())), "model"),
        (with(|o| o.model = Some("a\0b".into())), "model"),
        (with(|o| o.max_turns = Some(0)), "max_turns"),
        (with(|o| o.max_budget_usd = Some(-1.0)), "max_budget_usd"),
        (
            with(|o| o.max_budget_usd = Some(f64::NAN)),
            "max_budget_usd",
        ),
        (with(|o| o.json_schema = Some("[1]".into())), "json_schema"),
        (with(|o| o.json_schema = Some("{".into())), "json_schema"),
        (with(|o| o.agents = Some("nope".into())), "agents"),
        (with(|o| o.settings = Some("{bad".into())), "settings"),
        (
            with(|o| o.session_id = Some("not-a-uuid".into())),
            "session_id",
        ),
        (with(|o| o.tools = Some(Tools::Named(vec![]))), "tools"),
        (
            with(|o| o.sdk_mcp_servers = vec!["two words".into()]),
            "sdk_mcp_servers",
        ),
    ];
    for (o, option) in &cases {
        assert_refused(o, option);
    }
}

#[test]
fn conflicting_options_are_refused_by_name() {
    let cases = [
        (with(|o| o.fork_session = true), "fork_session"),
        (
            with(|o| {
                o.conversation = Conversation::Continue;
                o.session_id = Some(UUID.into());
            }),
            "session_id with resume/continue",
        ),
        (with(|o| o.strict_mcp_config = true), "strict_mcp_config"),
        (
            with(|o| {
                o.allowed_tools = vec!["Bash".into()];
                o.disallowed_tools = vec!["Bash".into()];
            }),
            "allowed_tools",
        ),
        (
            with(|o| {
                o.system_prompt = Some("a".into());
                o.append_system_prompt = Some("b".into());
            }),
            "system_prompt and append_system_prompt",
        ),
    ];
    for (o, option) in &cases {
        assert_refused(o, option);
    }
}

proptest! {
    /// Any model, prompt and schema text is either refused by name or passed as one argument
    /// each: never split, never a panic.
    #[test]
    fn arbitrary_text_is_refused_or_passed_whole(model in ".{0,40}", prompt in ".{0,40}", schema in ".{0,40}") {
        let o = ClaudeOptions {
            model: Some(model.clone()),
            append_system_prompt: Some(prompt.clone()),
            json_schema: Some(schema),
            ..ClaudeOptions::default()
        };
        if let Ok(a) = o.to_args() {
            let want_model = format!("--model={}", model);
            let want_prompt = format!("--append-system-prompt={}", prompt);
            prop_assert!(a.contains(&want_model));
            prop_assert!(a.contains(&want_prompt));
        }
    }
}

#[test]
fn debug_hides_settings_and_mcp_configs() {
    let o = ClaudeOptions {
        settings: Some(r#"{"env":{"ANTHROPIC_API_KEY":"sk-ant-api03-secret"}}"#.into()),
        mcp_config: vec![
            r#"{"mcpServers":{"x":{"headers":{"Authorization":"Bearer tok-secret"}}}}"#.into(),
        ],
        ..ClaudeOptions::default()
    };
    let text = format!("{o:?}");
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("(given, not shown)"), "{text}");
}

/// A dash-leading value stays bound to its flag: it cannot become a flag of its own.
#[test]
fn a_dash_leading_value_cannot_inject_a_flag() {
    let o = ClaudeOptions {
        conversation: Conversation::Resume("--dangerously-skip-permissions".into()),
        model: Some("-p".into()),
        ..ClaudeOptions::default()
    };
    let a = args(&o);
    assert!(
        a.contains(&"--resume=--dangerously-skip-permissions".to_owned()),
        "{a:?}"
    );
    assert!(a.contains(&"--model=-p".to_owned()), "{a:?}");
    assert!(!a
        .iter()
        .any(|x| x == "--dangerously-skip-permissions" || x == "-p"));
}
