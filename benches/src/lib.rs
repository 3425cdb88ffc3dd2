//! Criterion benchmarks of the Seawall crates beside their peers; see `benches/`.
//!
//! Run them with `cargo bench -p seawall-benches`, or one file with
//! `cargo bench -p seawall-benches --bench circuit_breaker`.
