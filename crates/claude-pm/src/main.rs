//! `claude-pm`: the operator CLI (issue #6). Not implemented yet: it only says so.

use std::io::Write;

fn main() -> std::process::ExitCode {
    let _ = writeln!(
        std::io::stderr(),
        "claude-pm {}: not implemented yet (tracked in issue #6); the library crate claude-proc is usable today",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::from(125)
}
