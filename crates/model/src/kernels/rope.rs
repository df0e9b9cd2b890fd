//! Rotary position embedding tables, with the frequency scalings Llama checkpoints use.
//!
//! Computed in f32 the way transformers does (inverse frequencies, then `pos * inv_freq`, then
//! cos/sin), so long positions round the same way as the reference.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Every frequency divided by `factor`.
    Linear {
        factor: f64,
    },
    /// Llama-3.1's frequency-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// The rotary embedding's table.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    pub head_dim: usize,
    pub theta: f64,
    pub scaling: RopeScaling,
    pub max_positions: usize,
}

pub struct Rope {
    table: RopeTable,
    /// (max_positions, head_dim / 2), for the tensor-op path.
    cos: Tensor,
    sin: Tensor,
}

/// The same tables as plain f32 values (rounded through the compute dtype, as the tensors are), for
/// the CPU kernels.
pub struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// cos and sin of every frequency at `position`.
    #[inline]
    pub fn at(&self, position: usize) -> (&[f32], &[f32]) {
        let at = position * self.half;
        (&self.cos[at..at + self.half], &self.sin[at..at + self.half])
    }
}

impl Rope {
    pub fn new(cfg: &RopeConfig, dtype: DType, device: &Device) -> Result<Self> {
        let inv_freq = inverse_frequencies(cfg);
        let half = inv_freq.len();
        let max = cfg.max_positions;
        let mut cos = Vec::with_capacity(max * half);
        let mut sin = Vec::with_capacity(max * half);
        for pos in 0..max {
            for &f in &inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (max, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (max, half), device)?.to_dtype(dtype)?;
        let values = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?) };
        Ok(Self { table: RopeTable { half, cos: values(&cos)?, sin: values(&sin)? }, cos, sin })
    }

    pub fn max_positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    pub fn table(&self) -> &RopeTable {
        &self.table
    }

    /// Rotates `x` (1, tokens, heads, head_dim) where token i sits at `positions[i]` (on x's device).
    #[cfg(feature = "flash-attn")]
    pub fn apply_thd(&self, x: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let cos = self.cos.index_select(positions, 0)?;
        let sin = self.sin.index_select(positions, 0)?;
        Ok(candle_nn::rotary_emb::rope_thd(&x.contiguous()?, &cos, &sin)?)
    }

    /// Rotates `x` (1, heads, tokens, head_dim) where token i sits at `positions[i]` (on x's device).
    pub fn apply(&self, x: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let cos = self.cos.index_select(positions, 0)?;
        let sin = self.sin.index_select(positions, 0)?;
        Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)?)
    }
}

fn inverse_frequencies(cfg: &RopeConfig) -> Vec<f32> {
    let dim = cfg.head_dim;
    let base = cfg.theta as f32;
    let plain = (0..dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / dim as f32));
    match cfg.scaling {
        RopeScaling::None => plain.collect(),
        RopeScaling::Linear { factor } => plain.map(|f| f / factor as f32).collect(),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
            let old_len = original_max_position_embeddings;
            let low_freq_wavelen = old_len / low_freq_factor;
            let high_freq_wavelen = old_len / high_freq_factor;
            plain
                .map(|f| {
                    let f = f as f64;
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    let scaled = if wavelen < high_freq_wavelen {
                        f
                    } else if wavelen > low_freq_wavelen {
                        f / factor
                    } else {
                        let smooth = (old_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    };
                    scaled as f32
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(scaling: RopeScaling) -> RopeConfig {
        RopeConfig { head_dim: 8, theta: 10000.0, scaling, max_positions: 4 }
    }

    #[test]
    fn default_frequencies_match_the_closed_form() {
        // 1 / 10000^(i/8) for i = 0, 2, 4, 6
        let f = inverse_frequencies(&cfg(RopeScaling::None));
        for (got, want) in f.iter().zip([1.0, 0.1, 0.01, 0.001]) {
            assert!((got - want).abs() < 1e-7, "{got} vs {want}");
        }
    }

    #[test]
    fn llama3_scaling_keeps_high_divides_low_and_blends_middle() {
        // wavelengths 2pi, 62.8, 628, 6283 against an old context of 1000 with factors 1 and 4:
        // high band (< 250) kept, low band (> 1000) divided by 8, 628 blended with smooth = 0.197.
        let scaled = inverse_frequencies(&cfg(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 1000.0,
        }));
        let smooth = (1000.0 / (2.0 * std::f64::consts::PI / 0.01) - 1.0) / 3.0;
        let blended = ((1.0 - smooth) * 0.01 / 8.0 + smooth * 0.01) as f32;
        let want = [1.0, 0.1, blended, 0.001 / 8.0];
        for (got, want) in scaled.iter().zip(want) {
            assert!((got - want).abs() < 1e-7, "{got} vs {want}");
        }
    }
}
