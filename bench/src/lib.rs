//! Benchmark suite (being written).
