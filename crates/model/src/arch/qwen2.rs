//! Qwen2 and Qwen2.5 (`model_type: qwen2`): the Llama block with biases on q, k and v (never on o
//! or the MLP), and sliding-window attention in the upper layers when `use_sliding_window` is set.

use super::{activation, qwen_windows, Activation, Block, ConfigKeys};
use crate::error::{ModelError, Result};

pub(super) fn block(keys: &ConfigKeys, layers: usize, head_dim: usize) -> Result<Block> {
    if activation("hidden_act", keys.str("hidden_act")?.unwrap_or("silu"))? != Activation::Silu {
        return Err(ModelError::UnsupportedConfig(
            "hidden_act: a Qwen2 MLP other than SwiGLU is not implemented".into(),
        ));
    }
    let mut block = Block::llama(head_dim, layers);
    block.qkv_bias = true;
    block.windows = qwen_windows(keys, layers)?;
    Ok(block)
}
