//! Qwen3 (`model_type: qwen3`; Skywork-Reward-V2-Qwen3): the Llama block with a per-head RMSNorm
//! of queries and keys before the rotary embedding, a `head_dim` of its own (128 where hidden /
//! heads is 64), `attention_bias` on q, k, v and o, and Qwen2's sliding-window rule.

use super::{qwen_windows, Block, ConfigKeys};
use crate::error::Result;

pub(super) fn block(keys: &ConfigKeys, layers: usize, head_dim: usize) -> Result<Block> {
    let mut block = Block::llama(keys, layers, head_dim)?;
    let bias = keys.bool("attention_bias")?.unwrap_or(false);
    (block.qkv_bias, block.o_bias) = (bias, bias);
    block.qk_norm = true;
    block.windows = qwen_windows(keys, layers)?;
    Ok(block)
}
