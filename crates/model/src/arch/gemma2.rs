//! Gemma-2 (`model_type: gemma2`; Skywork-Reward-Gemma-2-27B): RMSNorm as x̂ (1 + w) in f32,
//! embeddings times sqrt(hidden), a GeGLU MLP (tanh GELU), norms after attention and after the MLP
//! as well as before each, attention scaled by `query_pre_attn_scalar`^-1/2 and soft-capped at
//! `attn_logit_softcapping`, and sliding-window attention in every other layer (from layer 0).
//! `final_logit_softcapping` caps the language-model logits only, which a reward model never uses.

use super::{activation, layer_windows, Activation, Block, ConfigKeys, NormStyle};
use crate::error::{ModelError, Result};

pub(super) fn block(keys: &ConfigKeys, layers: usize, _head_dim: usize) -> Result<Block> {
    // transformers' Gemma2MLP reads `hidden_activation`; older configs spelled it `hidden_act`.
    let activation = match keys.str("hidden_activation")? {
        Some(name) => activation("hidden_activation", name)?,
        None => activation("hidden_act", keys.str("hidden_act")?.unwrap_or("gelu_pytorch_tanh"))?,
    };
    if activation != Activation::GeluTanh {
        return Err(ModelError::UnsupportedConfig(
            "hidden_activation: a Gemma-2 MLP other than GeGLU is not implemented".into(),
        ));
    }
    keys.refuse_if(
        "use_bidirectional_attention",
        |v| v.as_bool() == Some(true),
        "bidirectional attention is not implemented",
    )?;
    let scalar = keys.f64("query_pre_attn_scalar")?.unwrap_or(256.0);
    if scalar <= 0.0 {
        return Err(ModelError::UnsupportedConfig(format!("query_pre_attn_scalar {scalar} must be positive")));
    }
    // Absent, the config class's default; `null`, no capping.
    let softcap = if keys.present("attn_logit_softcapping") { keys.f64("attn_logit_softcapping")? } else { Some(50.0) };
    if softcap.is_some_and(|c| c <= 0.0) {
        return Err(ModelError::UnsupportedConfig("attn_logit_softcapping must be positive".into()));
    }
    let window = keys.usize("sliding_window")?.unwrap_or(4096);
    let bias = keys.bool("attention_bias")?.unwrap_or(false);
    Ok(Block {
        qkv_bias: bias,
        o_bias: bias,
        mlp_bias: false,
        qk_norm: false,
        norm: NormStyle::OnePlus,
        activation,
        sandwich_norms: true,
        embed_scale: true,
        query_scale: 1.0 / scalar.sqrt(),
        softcap,
        windows: layer_windows(keys, layers, Some(window), |i| i % 2 == 0)?,
    })
}
