//! Llama 2 / 3 / 3.1 / 3.2 (`model_type: llama`): the plain block, with transformers' optional
//! biases (`attention_bias` on q, k, v and o; `mlp_bias` on gate, up and down).

use super::{Block, ConfigKeys};
use crate::error::Result;

pub(super) fn block(keys: &ConfigKeys, layers: usize, head_dim: usize) -> Result<Block> {
    let mut block = Block::llama(keys, layers, head_dim)?;
    let bias = keys.bool("attention_bias")?.unwrap_or(false);
    (block.qkv_bias, block.o_bias) = (bias, bias);
    block.mlp_bias = keys.bool("mlp_bias")?.unwrap_or(false);
    Ok(block)
}

/// Rotary caches that old conversions saved as buffers.
pub(super) fn may_ignore(tensor: &str) -> bool {
    tensor.ends_with(".self_attn.rotary_emb.inv_freq")
}
