//! docs/RELIABILITY.md and docs/SECURITY.md stay true to the code: every test a row names exists, and the README
//! counts the rows right.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.rs` file below `dir` (skipping build output).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::module::[tests::]name` references in backticks: every quoted text that starts with a
/// package of this workspace and a `::`. Kept loose on purpose, so a typo is reported as missing
/// rather than skipped.
fn cited_tests(text: &str) -> Vec<(String, String, String)> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|quoted| {
            let parts: Vec<&str> = quoted.split("::").collect();
            let ours = parts[0].starts_with("claude-") || parts[0] == "workspace-tests";
            (ours && parts.len() >= 2).then(|| {
                (
                    parts[0].to_string(),
                    parts[1].to_string(),
                    parts[parts.len() - 1].to_string(),
                )
            })
        })
        .collect()
}

#[test]
fn every_test_the_reliability_table_names_exists() {
    let root = workspace();
    let mut table = std::fs::read_to_string(root.join("docs/RELIABILITY.md")).unwrap();
    table.push_str(&std::fs::read_to_string(root.join("docs/SECURITY.md")).unwrap());
    let cited = cited_tests(&table);
    assert!(cited.len() >= 30, "only {} references found", cited.len());
    let mut missing = Vec::new();
    for (krate, module, name) in &cited {
        let dir = if krate == "workspace-tests" {
            root.join("tests")
        } else {
            root.join("crates").join(krate)
        };
        let mut files = Vec::new();
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        let defined = files
            .iter()
            .filter(|f| {
                // `module.rs`, or any file of a `module/` directory (`mod.rs`, `tests.rs`).
                f.file_stem().is_some_and(|s| s == module.as_str())
                    || f.parent()
                        .and_then(|d| d.file_name())
                        .is_some_and(|d| d == module.as_str())
            })
            .any(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .contains(&format!("fn {name}("))
            });
        if !defined {
            missing.push(format!("{krate}::{module}::{name}"));
        }
    }
    assert!(missing.is_empty(), "named but not found: {missing:?}");
}

#[test]
fn the_readme_counts_the_reliability_rows() {
    let root = workspace();
    let table = std::fs::read_to_string(root.join("docs/RELIABILITY.md")).unwrap();
    let rows = table
        .lines()
        .filter(|l| {
            l.strip_prefix("| ")
                .and_then(|rest| rest.split(' ').next())
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("lists {rows} bad inputs and faults")),
        "README.md should say the table lists {rows} rows"
    );
}

#[test]
fn references_are_read_loosely_so_a_typo_is_checked_not_skipped() {
    let cited = cited_tests(
        "| 1 | x | y | `claude-proc::stop::No_such_Test` and `crate::module::test`, `claude-pm run` |",
    );
    assert_eq!(
        cited,
        vec![(
            "claude-proc".to_string(),
            "stop".to_string(),
            "No_such_Test".to_string()
        )]
    );
}
