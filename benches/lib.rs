//! Criterion benchmarks; see `benches/*.rs` and BENCHMARKS.md.
