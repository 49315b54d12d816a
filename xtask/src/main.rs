//! `cargo xtask`: the one automation entry point of the workspace.
//!
//! ```text
//! cargo xtask ci          fmt check, clippy -D warnings, tests (with the real CLI), doc tests,
//!                         the pool example, docs -D warnings, cargo deny check, benches compiled
//! cargo xtask demo        the main job (see README.md)
//! cargo xtask bench       run the criterion benches
//! cargo xtask bench-peers claude-pm serve against pm2 and supervisord (installed under target/)
//! cargo xtask bench-dashboards  the daemon's CPU with 500 sessions and five dashboards open
//! cargo xtask fuzz        run every fuzz target (cargo-fuzz) for --seconds N, report a table
//! cargo xtask soak        10,000 start/stop cycles of misbehaving children, then a leftover count
//! cargo xtask claude-cli  install the pinned real Claude CLI under target/ and print its path
//! ```
#![expect(
    clippy::disallowed_methods,
    reason = "xtask drives cargo, npm and the demo; it is a tool, not a library"
)]
#![expect(clippy::print_stdout, reason = "xtask reports to its user")]

mod graph;
mod peers;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("demo") => demo(args.get(1..).unwrap_or_default()),
        Some("bench") => bench(args.get(1..).unwrap_or_default()),
        Some("bench-peers") => peers::bench_peers(args.get(1..).unwrap_or_default()),
        Some("bench-dashboards") => peers::bench_dashboards(args.get(1..).unwrap_or_default()),
        Some("claude-cli") => claude_cli().map(|path| println!("{}", path.display())),
        Some("fuzz") => fuzz(args.get(1..).unwrap_or_default()),
        Some("soak") => soak(args.get(1..).unwrap_or_default()),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|demo|bench|bench-peers|bench-dashboards|fuzz|soak|claude-cli>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(step: &str, mut cmd: Command) -> Result {
    println!("\n==> {step}");
    let start = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: could not run {cmd:?}: {e}"))?;
    println!(
        "<== {step}: {} in {:.1}s",
        if status.success() { "ok" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn ci() -> Result {
    let total = Instant::now();
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run("cargo fmt --check", fmt)?;

    println!("\n==> crate graph (ARCHITECTURE.md)");
    graph::check()?;
    println!("<== crate graph: ok");

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run("cargo clippy -D warnings", clippy)?;

    let claude = claude_cli()?;
    ensure_browser()?;
    let mut test = cargo();
    test.args(["test", "--workspace", "--all-features", "--locked"])
        .env("CLAUDE_PM_CLAUDE_BIN", &claude)
        .env("CLAUDE_PM_STRICT", "1");
    let (passed, failed) = run_tests(test)?;

    // The example a reader follows must work: it checks its own outcome.
    let mut example = cargo();
    example
        .args([
            "run",
            "-q",
            "-p",
            "claude-manager",
            "--example",
            "pool",
            "--locked",
        ])
        .env("CLAUDE_PM_CLAUDE_BIN", &claude);
    run("example: a warm pool with a permission handler", example)?;

    let mut doc = cargo();
    doc.args([
        "doc",
        "--workspace",
        "--no-deps",
        "--all-features",
        "--locked",
    ])
    .env("RUSTDOCFLAGS", "-D warnings");
    run("cargo doc -D warnings", doc)?;

    ensure_cargo_deny()?;
    let mut deny = cargo();
    deny.args(["deny", "--locked", "check", "bans", "licenses", "sources"]);
    run("cargo deny check bans licenses sources", deny)?;
    advisories()?;

    let mut benches = cargo();
    benches.args(["bench", "--workspace", "--no-run", "--locked"]);
    run("benches compile", benches)?;

    // A short run of every fuzz target: nothing may panic.
    fuzz(&["--seconds".to_owned(), "15".to_owned()])?;

    println!(
        "\nxtask ci: all steps passed in {:.0}s",
        total.elapsed().as_secs_f64()
    );
    println!("tests: {passed} passed, {failed} failed");
    Ok(())
}

/// Run `cargo test`, echoing its output, and add up its "test result" lines.
fn run_tests(mut cmd: Command) -> Result<(u64, u64)> {
    use std::io::BufRead;
    let step = "cargo test (unit, integration, doc tests)";
    println!("\n==> {step}");
    let start = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{step}: {e}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                passed += count_before(rest, " passed");
                failed += count_before(rest, " failed");
            }
        }
    }
    let status = child.wait().map_err(|e| format!("{step}: {e}"))?;
    println!(
        "<== {step}: {} in {:.1}s ({passed} passed, {failed} failed)",
        if status.success() { "ok" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    if status.success() {
        Ok((passed, failed))
    } else {
        Err(format!(
            "{step} failed ({status}): {passed} passed, {failed} failed"
        ))
    }
}

/// The number just before `label` in a libtest summary ("ok. 12 passed; 0 failed; ...").
fn count_before(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label.trim_start())
                .map(str::trim)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// `cargo deny check advisories`, unless the advisory database cannot be fetched (it lives on
/// GitHub, which machines that reach only package registries cannot), which is reported.
fn advisories() -> Result {
    println!("\n==> cargo deny check advisories");
    let out = cargo()
        .args(["deny", "--locked", "check", "advisories"])
        .output()
        .map_err(|e| format!("cargo deny: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        println!("<== cargo deny check advisories: ok");
        Ok(())
    } else if stderr.contains("failed to fetch advisory database") {
        println!(
            "<== cargo deny check advisories: NOT RUN: the advisory database could not be fetched from this machine"
        );
        Ok(())
    } else {
        eprintln!("{stderr}");
        Err("cargo deny check advisories failed".into())
    }
}

/// Debian's Chromium and its WebDriver for the dashboard's browser test, installed with
/// apt-get when missing (the test fails under `CLAUDE_PM_STRICT` without them).
fn ensure_browser() -> Result {
    let present = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    if present {
        return Ok(());
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    run("apt-get update (for chromium)", update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq", "chromium", "chromium-driver"])
        .env("DEBIAN_FRONTEND", "noninteractive");
    run("install chromium and chromium-driver", install)
}

fn ensure_cargo_deny() -> Result {
    let present = cargo()
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    let mut install = cargo();
    install.args(["install", "cargo-deny", "--locked"]);
    run("install cargo-deny", install)
}

/// The pinned CLI through claude-testkit's `pinned_cli` (the one implementation of "find or
/// install with npm under target/"), built and run as `claude-testkit claude-cli`.
fn claude_cli() -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "-p", "claude-testkit", "--", "claude-cli"])
        .env_remove("CLAUDE_PM_CLAUDE_BIN")
        .stderr(std::process::Stdio::inherit());
    let out = cmd
        .output()
        .map_err(|e| format!("run claude-testkit claude-cli: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "claude-testkit claude-cli failed ({}): the pinned CLI could not be installed",
            out.status
        ));
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if path.is_empty() {
        return Err("claude-testkit claude-cli printed no path".into());
    }
    Ok(PathBuf::from(path))
}

/// `cargo xtask soak [--cycles N] [--concurrency N] [--seed N]`: the full soak (10,000 cycles
/// by default) in release mode; fails if anything is left behind.
fn soak(args: &[String]) -> Result {
    let mut cmd = cargo_run_release(&["-p", "workspace-tests", "--example", "soak"]);
    cmd.args(args);
    run("soak", cmd)
}

/// `cargo run --quiet --release TARGET --`: what follows goes to the program.
fn cargo_run_release(target: &[&str]) -> Command {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--release"])
        .args(target)
        .arg("--");
    cmd
}

/// The fuzz targets in `fuzz/` (cargo-fuzz; installed if missing).
const FUZZ_TARGETS: [&str; 5] = [
    "credentials",
    "stream_json",
    "config",
    "units",
    "proc_files",
];

/// `cargo xtask fuzz [--seconds N] [TARGET...]`: run each target for N seconds (default 60)
/// and print a table of time, executions and result; fails if any target found a crash.
fn fuzz(args: &[String]) -> Result {
    let mut seconds = 60u64;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seconds needs a whole number")?
            }
            t if FUZZ_TARGETS.contains(&t) => targets.push(t.to_owned()),
            other => {
                return Err(format!(
                    "unknown fuzz argument {other:?} (targets: {FUZZ_TARGETS:?})"
                ))
            }
        }
    }
    if targets.is_empty() {
        targets = FUZZ_TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    let fuzz_ok = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !fuzz_ok {
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        run("install cargo-fuzz", install)?;
    }
    // cargo-fuzz needs nightly's -Z flags: nightly if installed, else stable with
    // RUSTC_BOOTSTRAP (the same compiler features, no download).
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let fuzz_cmd = || {
        let mut cmd = Command::new("cargo");
        if nightly {
            cmd.arg("+nightly");
        } else {
            cmd.env("RUSTC_BOOTSTRAP", "1");
        }
        cmd.current_dir(root()).arg("fuzz");
        cmd
    };
    let mut build = fuzz_cmd();
    build.arg("build");
    run("fuzz targets build", build)?;
    let mut rows = Vec::new();
    for target in &targets {
        let started = Instant::now();
        let out = fuzz_cmd()
            .args(["run", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            .output()
            .map_err(|e| format!("cargo fuzz run {target}: {e}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let execs = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map_or("?".to_owned(), |n| n.trim().to_owned());
        let ok = out.status.success();
        if !ok {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        rows.push((target.clone(), started.elapsed().as_secs(), execs, ok));
    }
    println!(
        "\n{:<12} {:>8} {:>14}  result",
        "fuzz target", "seconds", "executions"
    );
    for (target, secs, execs, ok) in &rows {
        let result = if *ok {
            "no crash"
        } else {
            "CRASH (see fuzz/artifacts)"
        };
        println!("{target:<12} {secs:>8} {execs:>14}  {result}");
    }
    if rows.iter().all(|r| r.3) {
        println!("<== fuzz: ok ({} targets, {seconds}s each)", rows.len());
        Ok(())
    } else {
        Err("a fuzz target crashed".into())
    }
}

fn demo(args: &[String]) -> Result {
    let claude = claude_cli()?;
    let mut cmd = cargo_run_release(&["-p", "claude-pm"]);
    cmd.arg("demo")
        .args(args)
        .env("CLAUDE_PM_CLAUDE_BIN", claude);
    run("demo: claude-pm demo on the stand-in API", cmd)
}

fn bench(args: &[String]) -> Result {
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "benches"]).args(args);
    run("cargo bench", cmd)?;
    bench_table();
    Ok(())
}

/// (group, ours, baseline): each bench next to the baseline measured in the same run.
const BENCH_PAIRS: &[(&str, &str, &str)] = &[
    ("spawn_wait", "claude_proc", "std_command"),
    ("spawn_wait", "claude_proc_limits_hook", "std_command"),
    ("spawn_wait", "std_command_pre_exec", "std_command"),
    ("spawn_wait_1gib_parent", "claude_proc", "std_command"),
    (
        "spawn_wait_1gib_parent",
        "claude_proc_limits_hook",
        "std_command",
    ),
    (
        "spawn_wait_1gib_parent",
        "std_command_pre_exec",
        "std_command",
    ),
    (
        "exit_detection",
        "claude_proc_status_event",
        "tokio_process_wait",
    ),
    (
        "stop_100_children",
        "claude_proc_stop_tree",
        "std_sigterm_wait",
    ),
    ("isolation_spawn_wait", "user", "none"),
    ("isolation_spawn_wait", "sandbox", "none"),
    ("isolation_cli_ready", "sandbox", "none"),
    ("isolation_stop_100_trees", "sandbox", "none"),
    ("session_acquire", "warm_pool", "cold_start_to_ready"),
];

/// Print the medians of the last run (criterion's `estimates.json`) as a markdown table.
fn bench_table() {
    let median_us = |group: &str, name: &str| -> Option<f64> {
        let path = root()
            .join("target/criterion")
            .join(group)
            .join(name)
            .join("new/estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["median"]["point_estimate"].as_f64().map(|ns| ns / 1000.0)
    };
    println!("\n| group | bench | median | baseline | baseline median | ratio |");
    println!("|---|---|---:|---|---:|---:|");
    for (group, ours, base) in BENCH_PAIRS {
        if let (Some(a), Some(b)) = (median_us(group, ours), median_us(group, base)) {
            println!(
                "| {group} | {ours} | {:.3} us | {base} | {:.3} us | {:.2} |",
                a,
                b,
                a / b
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn libtest_summaries_are_counted() {
        let s =
            "ok. 40 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 10.60s";
        assert_eq!(count_before(s, " passed"), 40);
        assert_eq!(count_before(s, " failed"), 2);
        assert_eq!(
            count_before("FAILED. 3 passed; 1 failed; 0 ignored", " failed"),
            1
        );
    }
}
