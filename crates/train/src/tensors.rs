//! f32 tensors in safetensors files: the stages' weight outputs and the exported heads.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Result, TrainError};

/// A named f32 tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct F32Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl F32Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    pub fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.data)
    }

    pub fn view(&self) -> Result<TensorView<'_>> {
        Ok(TensorView::new(Dtype::F32, self.shape.clone(), self.bytes())?)
    }
}

/// Writes `tensors` to `path` (through a temporary file, so a crash leaves no half file).
pub fn save(path: &Path, tensors: &BTreeMap<String, F32Tensor>) -> Result<()> {
    let views = tensors.iter().map(|(n, t)| Ok((n.clone(), t.view()?))).collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None)?;
    crate::store::write_atomic(path, &bytes)
}

/// Reads every tensor of `path`, which must all be f32.
pub fn load(path: &Path) -> Result<BTreeMap<String, F32Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| TrainError::corrupt(path, e.to_string()))?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            if view.dtype() != Dtype::F32 {
                return Err(TrainError::corrupt(path, format!("tensor {name} is {:?}, expected F32", view.dtype())));
            }
            let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            Ok((name, F32Tensor::new(view.shape().to_vec(), data)))
        })
        .collect()
}

/// The tensor `name` of a loaded file, with the shape the caller expects.
pub fn take(tensors: &mut BTreeMap<String, F32Tensor>, path: &Path, name: &str, shape: &[usize]) -> Result<F32Tensor> {
    let t = tensors.remove(name).ok_or_else(|| TrainError::corrupt(path, format!("no tensor {name}")))?;
    if t.shape != shape {
        return Err(TrainError::corrupt(path, format!("tensor {name} has shape {:?}, expected {shape:?}", t.shape)));
    }
    Ok(t)
}
