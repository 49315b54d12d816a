//! Tidy checks over the crates' sources, run as tests (`cargo test -p xtask`, so by
//! `cargo xtask ci`): no function longer than [`MAX_FN_LINES`], no file longer than
//! [`MAX_FILE_LINES`]. A long function hides its stages; a long file mixes concerns.

use std::path::{Path, PathBuf};

/// The longest function allowed, in lines (signature to closing brace).
pub(crate) const MAX_FN_LINES: usize = 100;
/// The longest source file allowed, in lines.
pub(crate) const MAX_FILE_LINES: usize = 600;

/// Every `.rs` file under `crates/*/src`.
pub(crate) fn sources(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("src"))
        .collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `(name, first line, length)` of every function in rustfmt-formatted `text`: from the `fn`
/// line to the closing brace at the same indentation.
pub(crate) fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let Some(name) = fn_name(trimmed) else {
            continue;
        };
        if trimmed.ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = lines.iter().skip(i + 1).position(|l| *l == close) {
            out.push((name, i + 1, end + 2));
        }
    }
    out
}

/// The name if `line` starts a function (`pub(crate) async fn name(`).
fn fn_name(line: &str) -> Option<String> {
    let mut rest = line;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_and_files_stay_small() {
        let root = crate::root();
        let mut problems = Vec::new();
        for path in sources(&root) {
            let text = std::fs::read_to_string(&path).unwrap();
            let shown = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let lines = text.lines().count();
            if lines > MAX_FILE_LINES {
                problems.push(format!("{shown}: {lines} lines (at most {MAX_FILE_LINES})"));
            }
            for (name, at, len) in functions(&text) {
                if len > MAX_FN_LINES {
                    problems.push(format!(
                        "{shown}:{at}: fn {name} is {len} lines (at most {MAX_FN_LINES})"
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        assert!(sources(&root).len() > 50, "the scan found the sources");
    }

    #[test]
    fn the_measure_counts_a_function_from_signature_to_brace() {
        let text = "fn a() {\n    x();\n}\n\n    pub(crate) async fn b(\n        y: u8,\n    ) {\n        if y {\n        }\n    }\n    fn c();\n";
        assert_eq!(
            functions(text),
            vec![("a".to_owned(), 1, 3), ("b".to_owned(), 5, 6)]
        );
    }
}
