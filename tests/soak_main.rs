//! `cargo xtask soak`: the full soak, with a report.
#![expect(clippy::print_stdout, reason = "a command-line tool prints its report")]

use workspace_tests::soak::{run, SoakConfig, BEHAVIOURS};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(default)
    };
    let config = SoakConfig {
        cycles: arg("--cycles", 10_000),
        concurrency: arg("--concurrency", 8),
        seed: arg("--seed", 7) as u64,
        only: args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1)?.parse().ok()),
    };
    let _ = claude_manager::proc::become_subreaper();
    println!(
        "soak: {} cycles, {} at once, seed {}, behaviours: {}",
        config.cycles,
        config.concurrency,
        config.seed,
        BEHAVIOURS.map(|b| b.0).join(", ")
    );
    let report = run(config).await;
    println!("faults injected: {:?}", report.faults);
    println!("stops requested mid-run: {}", report.stops);
    println!("zombies left: {}", report.zombies);
    println!("orphans left: {:?}", report.orphans_left);
    println!("cgroups left: {:?}", report.cgroups_left);
    println!("session dirs left: {:?}", report.tempdirs_left);
    println!(
        "descriptors: {} before, {} after",
        report.fds.0, report.fds.1
    );
    println!(
        "manager RSS: {} KiB after warm-up, {} KiB at the end",
        report.rss_kib.0, report.rss_kib.1
    );
    println!("elapsed: {:.1}s", report.elapsed.as_secs_f64());
    if report.clean() {
        println!("soak: clean");
        std::process::ExitCode::SUCCESS
    } else {
        println!("soak: LEFTOVERS");
        std::process::ExitCode::FAILURE
    }
}
