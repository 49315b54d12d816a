//! The crate graph is a DAG written down in ARCHITECTURE.md; this checks it with
//! `cargo metadata` (run by `cargo test -p xtask`, so by `cargo xtask ci`).

/// The dependency edges between workspace crates (normal and build dependencies), exactly as
/// `cargo metadata` has them and ARCHITECTURE.md lists them: an edge missing here, or listed here
/// but absent, fails.
pub(crate) const EDGES: &[(&str, &str)] = &[
    ("claude-auth", "claude-proc"),
    ("claude-health", "claude-proc"),
    ("claude-limits", "claude-proc"),
    ("claude-limits", "claude-health"),
    ("claude-sandbox", "claude-proc"),
    ("claude-testkit", "claude-proc"),
    ("claude-manager", "claude-proc"),
    ("claude-manager", "claude-auth"),
    ("claude-manager", "claude-health"),
    ("claude-manager", "claude-limits"),
    ("claude-manager", "claude-sandbox"),
    ("claude-daemon", "claude-manager"),
    ("claude-pm", "claude-manager"),
    ("claude-pm", "claude-daemon"),
    ("claude-pm", "claude-testkit"),
];

type Edge = (String, String);

/// The edges between workspace crates in `cargo metadata` output (not dev-dependencies; not
/// from xtask, the cross-crate tests or the benches).
pub(crate) fn edges(metadata: &serde_json::Value) -> Vec<Edge> {
    let empty = Vec::new();
    let members: Vec<&serde_json::Value> = metadata["packages"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter(|p| p["source"].is_null())
        .collect();
    let names: Vec<&str> = members.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut out = Vec::new();
    for package in &members {
        let from = package["name"].as_str().unwrap_or_default();
        if matches!(from, "xtask" | "workspace-tests" | "benches") {
            continue;
        }
        for dep in package["dependencies"].as_array().unwrap_or(&empty) {
            let to = dep["name"].as_str().unwrap_or_default();
            let dev = dep["kind"].as_str() == Some("dev");
            let edge = (from.to_owned(), to.to_owned());
            if !dev && names.contains(&to) && !out.contains(&edge) {
                out.push(edge);
            }
        }
    }
    out
}

/// The edges ARCHITECTURE.md lists (`- claude-a -> claude-b (why)`).
pub(crate) fn documented(text: &str) -> Vec<Edge> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter_map(|l| {
            let (from, rest) = l.split_once(" -> ")?;
            let to = rest.split_whitespace().next()?;
            let crate_name = |n: &str| n.starts_with("claude-") && !n.contains(' ');
            (crate_name(from) && crate_name(to)).then(|| (from.to_owned(), to.to_owned()))
        })
        .collect()
}

/// What is in `found` but not in `table`, and what is in `table` but not in `found`.
pub(crate) fn differences(found: &[Edge], table: &[(&str, &str)]) -> (Vec<Edge>, Vec<Edge>) {
    let table: Vec<Edge> = table
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    let extra = found
        .iter()
        .filter(|e| !table.contains(e))
        .cloned()
        .collect();
    let missing = table
        .iter()
        .filter(|e| !found.contains(e))
        .cloned()
        .collect();
    (extra, missing)
}

fn compare(what: &str, found: &[Edge]) -> Result<(), String> {
    match differences(found, EDGES) {
        (extra, missing) if extra.is_empty() && missing.is_empty() => Ok(()),
        (extra, missing) => Err(format!(
            "{what} and the crate graph (xtask/src/graph.rs) differ: not in the graph {extra:?}, \
             missing from {what} {missing:?}"
        )),
    }
}

/// Run `cargo metadata` and compare its edges, and ARCHITECTURE.md's, with [`EDGES`].
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
    compare("cargo metadata", &edges(&metadata))?;
    let architecture = std::fs::read_to_string(crate::root().join("ARCHITECTURE.md"))
        .map_err(|e| format!("ARCHITECTURE.md: {e}"))?;
    compare("ARCHITECTURE.md", &documented(&architecture))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_graph_matches_cargo_metadata_and_architecture_md() {
        check().unwrap();
    }

    #[test]
    fn an_extra_or_a_missing_edge_fails() {
        let fake = serde_json::json!({"packages": [
            {"name": "claude-health", "source": null, "dependencies": [
                {"name": "claude-limits", "kind": null},
                {"name": "claude-proc", "kind": "dev"}
            ]},
            {"name": "claude-limits", "source": null, "dependencies": []},
            {"name": "claude-proc", "source": null, "dependencies": []}
        ]});
        let found = edges(&fake);
        assert_eq!(
            found,
            vec![("claude-health".into(), "claude-limits".into())]
        );
        let (extra, missing) = differences(&found, &[("claude-health", "claude-proc")]);
        assert_eq!(
            extra,
            vec![("claude-health".into(), "claude-limits".into())]
        );
        assert_eq!(
            missing,
            vec![("claude-health".into(), "claude-proc".into())]
        );
        let doc = "- claude-a -> claude-b (why)\n- not -> an edge\n  - claude-c -> claude-d\n";
        assert_eq!(
            documented(doc),
            vec![
                ("claude-a".into(), "claude-b".into()),
                ("claude-c".into(), "claude-d".into())
            ]
        );
    }
}
