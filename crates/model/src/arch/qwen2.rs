//! Qwen2 and Qwen2.5 (`model_type: qwen2`): the Llama block with biases on q, k and v (never on o
//! or the MLP), and sliding-window attention in the upper layers when `use_sliding_window` is set.

use super::{qwen_windows, Block, ConfigKeys};
use crate::error::Result;

pub(super) fn block(keys: &ConfigKeys, layers: usize, head_dim: usize) -> Result<Block> {
    let mut block = Block::llama(keys, layers, head_dim)?;
    block.qkv_bias = true;
    block.windows = qwen_windows(keys, layers)?;
    Ok(block)
}
