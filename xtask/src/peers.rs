//! `cargo xtask bench-peers [--quick]`: claude-pm serve against pm2 and supervisord in one run
//! (BENCHMARKS.md). Installs the peers itself, pinned, under `target/peers/`: pm2 with npm,
//! supervisord with pip in a virtual environment (Debian's python3-venv is installed if the
//! interpreter cannot make one).

use std::path::Path;
use std::process::Command;

use crate::{cargo, root, run, Result};

const PM2: &str = "pm2@7.0.4";
const SUPERVISOR: &str = "supervisor==4.3.0";

/// Build claude-pm and bench-peers in release mode; the release directory.
fn build_release() -> Result<std::path::PathBuf> {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "claude-pm",
        "-p",
        "benches",
        "--bin",
        "claude-pm",
        "--bin",
        "bench-peers",
    ]);
    run("build claude-pm and bench-peers (release)", build)?;
    Ok(root().join("target/release"))
}

/// `cargo xtask bench-dashboards [--quick]`: the daemon's CPU with 500 sessions, without and
/// with five dashboards open (BENCHMARKS.md).
pub(crate) fn bench_dashboards(args: &[String]) -> Result {
    let release = build_release()?;
    let mut bench = Command::new(release.join("bench-peers"));
    bench
        .arg("dashboards")
        .arg("--claude-pm")
        .arg(release.join("claude-pm"))
        .arg("--work")
        .arg(root().join("target/peers/dashboards"))
        .args(args);
    run("bench-peers dashboards", bench)
}

pub(crate) fn bench_peers(args: &[String]) -> Result {
    let dir = root().join("target/peers");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let pm2_module = dir.join("pm2/node_modules/pm2");
    if !installed(&pm2_module.join("package.json"), "\"version\": \"7.0.4\"") {
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir.join("pm2"))
            .arg(PM2);
        run("install pm2 (npm)", npm)?;
    }
    let venv = dir.join("venv");
    let supervisord = venv.join("bin/supervisord");
    if !supervisord.exists() {
        make_venv(&venv)?;
        let mut pip = Command::new(venv.join("bin/pip"));
        pip.args(["install", "--quiet", SUPERVISOR]);
        run("install supervisord (pip)", pip)?;
    }
    let release = build_release()?;
    let mut bench = Command::new(release.join("bench-peers"));
    bench
        .arg("--claude-pm")
        .arg(release.join("claude-pm"))
        .arg("--pm2")
        .arg(pm2_module.join("bin/pm2"))
        .arg("--pm2-module")
        .arg(&pm2_module)
        .arg("--pm2-script")
        .arg(root().join("benches/peers/pm2_api.js"))
        .arg("--supervisord")
        .arg(&supervisord)
        .arg("--work")
        .arg(dir.join("run"))
        .args(args);
    run("bench-peers", bench)
}

fn installed(file: &Path, marker: &str) -> bool {
    std::fs::read_to_string(file).is_ok_and(|t| t.contains(marker))
}

fn make_venv(venv: &Path) -> Result {
    let made = |venv: &Path| {
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .is_ok_and(|s| s.success())
    };
    if made(venv) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(venv);
    let mut update = Command::new("apt-get");
    update.arg("update");
    run("apt-get update", update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends", "python3-venv"])
        .env("DEBIAN_FRONTEND", "noninteractive");
    run("apt-get install python3-venv", install)?;
    if made(venv) {
        Ok(())
    } else {
        Err(format!("python3 -m venv {} failed", venv.display()))
    }
}
