//! The CPU compute kernels and what they share: SIMD helpers, the batch-invariant f32 product, AMX
//! tiles, packed batches, the rotary table and attention. Nothing here reads a checkpoint.

pub mod attention;
pub mod cpu_kernels;
pub mod matmul;
pub mod packed;
pub mod plan;
pub mod rope;
pub(crate) mod simd;
pub mod tiles;
pub mod transpose;
