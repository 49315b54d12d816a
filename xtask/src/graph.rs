//! The crate graph is a DAG written down in ARCHITECTURE.md; this checks it with
//! `cargo metadata` (run by `cargo test -p xtask`, so by `cargo xtask ci`).

/// Allowed dependency edges between workspace crates (normal and build dependencies).
/// Any edge between workspace crates that is not listed here is a failure.
pub(crate) const ALLOWED_EDGES: &[(&str, &str)] = &[
    ("claude-auth", "claude-proc"),
    ("claude-health", "claude-proc"),
    ("claude-limits", "claude-proc"),
    ("claude-limits", "claude-health"),
    ("claude-testkit", "claude-proc"),
    ("claude-manager", "claude-proc"),
    ("claude-manager", "claude-auth"),
    ("claude-manager", "claude-health"),
    ("claude-manager", "claude-limits"),
    ("claude-pm", "claude-manager"),
    ("claude-pm", "claude-testkit"),
];

/// Edges between workspace crates found in `cargo metadata` output that the table forbids.
pub(crate) fn forbidden_edges(metadata: &serde_json::Value) -> Vec<(String, String)> {
    let empty = Vec::new();
    let members: Vec<&serde_json::Value> = metadata["packages"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter(|p| p["source"].is_null())
        .collect();
    let names: Vec<&str> = members.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut bad = Vec::new();
    for package in &members {
        let from = package["name"].as_str().unwrap_or_default();
        if matches!(from, "xtask" | "workspace-tests" | "benches") {
            continue;
        }
        for dep in package["dependencies"].as_array().unwrap_or(&empty) {
            let to = dep["name"].as_str().unwrap_or_default();
            let dev = dep["kind"].as_str() == Some("dev");
            if dev || !names.contains(&to) {
                continue;
            }
            if !ALLOWED_EDGES.contains(&(from, to)) {
                bad.push((from.to_owned(), to.to_owned()));
            }
        }
    }
    bad
}

/// Run `cargo metadata` and check every edge; the error lists the forbidden ones.
pub(crate) fn check() -> Result<(), String> {
    let out = crate::cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err("cargo metadata failed".into());
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))?;
    let bad = forbidden_edges(&metadata);
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "crate graph edges not allowed by ARCHITECTURE.md: {bad:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_graph_matches_architecture() {
        let out = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(crate::root())
            .output()
            .unwrap();
        assert!(out.status.success());
        let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let bad = forbidden_edges(&metadata);
        assert!(
            bad.is_empty(),
            "edges not allowed by ARCHITECTURE.md: {bad:?}"
        );
        // The check itself must be able to fail.
        let fake = serde_json::json!({"packages": [
            {"name": "claude-health", "source": null, "dependencies": [{"name": "claude-limits", "kind": null}]},
            {"name": "claude-limits", "source": null, "dependencies": []}
        ]});
        assert_eq!(
            forbidden_edges(&fake),
            vec![("claude-health".to_owned(), "claude-limits".to_owned())]
        );
    }

    #[test]
    fn architecture_md_lists_every_edge() {
        let text = std::fs::read_to_string(crate::root().join("ARCHITECTURE.md")).unwrap();
        for (from, to) in ALLOWED_EDGES {
            assert!(
                text.contains(&format!("{from} -> {to}")),
                "ARCHITECTURE.md does not name the edge {from} -> {to}"
            );
        }
    }
}
