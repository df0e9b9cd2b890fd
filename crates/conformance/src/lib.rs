//! What must hold of a loaded model on every device, as checks that return what they found rather
//! than panic: the committed fixtures scored as transformers scores them ([`golden`], [`pairwise`])
//! and every conversation's bits the same alone and in any batch ([`invariance`]). The integration
//! tests run them on the CPU under each kernel path ([`caps`]); the GPU check (`armorm-gpu-check`)
//! runs the same functions on CUDA.

pub mod caps;
pub mod fixtures;
pub mod golden;
pub mod invariance;
pub mod pairwise;
