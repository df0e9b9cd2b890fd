//! The benches' support modules (benches/support), compiled into the check rather than copied: the
//! 8B-shaped checkpoint writer, token-budget batching, the load generator, medians.

#[allow(dead_code)] // the CPU benches' shapes and helpers
#[path = "../../../benches/support/checkpoint.rs"]
pub mod checkpoint;

#[path = "../../../benches/support/batches.rs"]
pub mod batches;

#[allow(dead_code)] // the CPU benches' memory readings
#[path = "../../../benches/support/load.rs"]
pub mod load;

#[path = "../../../benches/support/stats.rs"]
pub mod stats;
