//! Benchmark support: generators for large configurations shared by the criterion benches.
