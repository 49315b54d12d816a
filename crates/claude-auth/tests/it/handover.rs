//! Credentials reach a child by variable or by descriptor, with competitors removed.

use std::sync::Arc;
use std::time::Duration;

use claude_auth::{Credential, CredentialHook, CredentialKind, Delivery, Secret};
use claude_proc::{spawn, OutputEvent, OutputMode, ProcessConfig};

const TOKEN: &str = "sk-ant-oat01-handover-token-gggggggg";

fn oauth() -> Credential {
    Credential::new(CredentialKind::OAuthAccessToken, Secret::new(TOKEN))
}

async fn lines_of(child: &mut claude_proc::Child, n: usize) -> Vec<String> {
    let mut out = child.take_stdout().unwrap();
    let mut lines = Vec::new();
    while lines.len() < n {
        match out.recv().await {
            Some(OutputEvent::Line(l)) => lines.push(String::from_utf8(l).unwrap()),
            Some(_) => {}
            None => break,
        }
    }
    lines
}

#[tokio::test]
async fn by_variable_with_competitors_removed() {
    let config = ProcessConfig::builder("/bin/sh")
        .args([
            "-c",
            "env | grep -E '^(ANTHROPIC|CLAUDE_API|CLAUDE_CODE)' | sort",
        ])
        .env("ANTHROPIC_API_KEY", "sk-ant-api03-competing-key-hhhhhhh")
        .env("ANTHROPIC_AUTH_TOKEN", "competing-bearer-iiiiiiiiii")
        .env("CLAUDE_API_KEY", "sk-ant-api03-competing-fallback-jjj")
        .stdout(OutputMode::lines())
        .hook(Arc::new(CredentialHook::new(oauth(), Delivery::Env)))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let lines = lines_of(&mut child, 10).await;
    assert_eq!(lines, vec![format!("CLAUDE_CODE_OAUTH_TOKEN={TOKEN}")]);
    child.wait().await.unwrap();
}

#[tokio::test]
async fn by_descriptor_the_secret_is_not_in_the_environment() {
    let config = ProcessConfig::builder("/bin/sh")
        .args(["-c", "cat <&3; echo; echo fd=$CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR; while :; do sleep 1; done"])
        .env("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-competing-kkkkkkkkkkk")
        .stdout(OutputMode::lines())
        .hook(Arc::new(CredentialHook::new(oauth(), Delivery::Fd(3))))
        .grace(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let lines = lines_of(&mut child, 2).await;
    assert_eq!(lines, vec![TOKEN.to_owned(), "fd=3".to_owned()]);
    let environ = std::fs::read(format!("/proc/{}/environ", child.pid())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        !environ.contains("sk-ant-"),
        "secret in /proc/<pid>/environ"
    );
    assert!(environ.contains("CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR=3"));
    child.stop().await.unwrap();
}

#[tokio::test]
async fn a_bearer_token_cannot_go_by_descriptor_and_nothing_starts() {
    let bearer = Credential::new(
        CredentialKind::BearerToken,
        Secret::new("gateway-token-llllllllllll"),
    );
    let config = ProcessConfig::builder("/bin/true")
        .hook(Arc::new(CredentialHook::new(bearer, Delivery::Fd(3))))
        .build()
        .unwrap();
    match spawn(&config).await {
        Err(e @ claude_proc::Error::Hook { .. }) => {
            let source = std::error::Error::source(&e).unwrap().to_string();
            assert!(
                source.contains("bearer token cannot be passed by descriptor"),
                "{source}"
            );
            assert!(!source.contains("gateway-token"));
        }
        other => panic!("{other:?}"),
    }
}
