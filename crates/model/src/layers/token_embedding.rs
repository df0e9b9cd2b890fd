//! The token embedding table. On the CPU a bf16 checkpoint's table (vocab x hidden: a fifth of a
//! Llama-3.2-1B, 1 GB of an 8B) is used from the shard's memory map, and only the rows a batch
//! looks up are converted to the compute dtype (bf16 -> f32 is exact), so loading neither copies
//! nor widens it.

use candle_core::{DType, Device, Tensor};
use half::f16;

use crate::error::{ModelError, Result};
use crate::load::weights::{Bf16Rows, Weights};

pub enum TokenEmbedding {
    /// The whole table in the compute dtype, on its device.
    Table(Tensor),
    /// bf16 rows in the mapped file; looked-up rows become `dtype` on the CPU.
    Mapped { rows: Bf16Rows, dtype: DType },
}

impl TokenEmbedding {
    pub fn load(w: &Weights, name: &str, vocab: usize, hidden: usize, dtype: DType) -> Result<Self> {
        if matches!(w.device(), Device::Cpu) && matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            if let Some(rows) = w.mapped_bf16(name, vocab, hidden)? {
                return Ok(Self::Mapped { rows, dtype });
            }
        }
        Ok(Self::Table(w.get(name, &[vocab, hidden], dtype)?))
    }

    /// (tokens,) u32 ids -> (tokens, hidden) in the compute dtype.
    pub fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
        let (rows, dtype) = match self {
            Self::Table(table) => return Ok(table.index_select(ids, 0)?),
            Self::Mapped { rows, dtype } => (rows, *dtype),
        };
        let ids = ids.to_vec1::<u32>()?;
        let (vocab, hidden) = (rows.rows(), rows.cols());
        let table = rows.as_slice();
        let mut picked = Vec::with_capacity(ids.len() * hidden);
        for &id in &ids {
            let id = id as usize;
            if id >= vocab {
                // As index_select on the table would fail (the scorer rejects such ids before this).
                let why = format!("token id {id} is outside the vocabulary of {vocab}");
                return Err(ModelError::Compute(candle_core::Error::Msg(why)));
            }
            picked.extend_from_slice(&table[id * hidden..][..hidden]);
        }
        let shape = (ids.len(), hidden);
        Ok(match dtype {
            DType::BF16 => Tensor::from_vec(picked, shape, &Device::Cpu)?,
            DType::F32 => Tensor::from_vec(picked.iter().map(|x| x.to_f32()).collect::<Vec<_>>(), shape, &Device::Cpu)?,
            _ => Tensor::from_vec(
                picked.iter().map(|x| f16::from_f32(x.to_f32())).collect::<Vec<_>>(),
                shape,
                &Device::Cpu,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_bf16_table_looks_up_exact_rows_in_every_compute_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let table = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((4, 3)).unwrap();
        let stored = table.to_dtype(DType::BF16).unwrap();
        candle_core::safetensors::save(&[("e".to_string(), stored)].into_iter().collect(), &path).unwrap();
        let w = Weights::open(&[path], &Device::Cpu).unwrap();
        let ids = Tensor::new(&[2u32, 0, 2], &Device::Cpu).unwrap();
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let e = TokenEmbedding::load(&w, "e", 4, 3, dtype).unwrap();
            assert!(matches!(e, TokenEmbedding::Mapped { .. }));
            let got = e.lookup(&ids).unwrap();
            assert_eq!(got.dtype(), dtype);
            let want = table.index_select(&ids, 0).unwrap();
            assert_eq!(got.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap(), want.to_vec2::<f32>().unwrap());
        }
        let e = TokenEmbedding::load(&w, "e", 4, 3, DType::F32).unwrap();
        let err = e.lookup(&Tensor::new(&[4u32], &Device::Cpu).unwrap()).err().unwrap().to_string();
        assert!(err.contains("outside the vocabulary"), "{err}");
    }
}
