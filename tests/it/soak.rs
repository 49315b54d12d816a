//! The soak's quick form, part of every `cargo xtask ci`.

use workspace_tests::soak::{run, SoakConfig, BEHAVIOURS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_soak_leaves_nothing_behind() {
    let report = run(SoakConfig {
        cycles: 400,
        concurrency: 8,
        seed: 11,
        only: None,
    })
    .await;
    assert_eq!(report.faults.len(), BEHAVIOURS.len(), "{report:?}");
    assert!(report.stops > 0, "{report:?}");
    assert!(report.clean(), "{report:#?}");
    // 400 cycles must not grow the manager by more than 8 MiB.
    assert!(report.rss_kib.1 < report.rss_kib.0 + 8 * 1024, "{report:?}");
}
