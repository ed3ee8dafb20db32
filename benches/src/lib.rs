//! Criterion benches (placeholder until the benches land).
