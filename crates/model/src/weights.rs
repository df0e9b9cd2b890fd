//! A checkpoint's safetensors shards, read one tensor at a time.
//!
//! Memory-mapping the shards (what candle's loader does) makes every page of the file resident in
//! the process while the converted copy is built beside it, so loading peaked at the checkpoint's
//! size plus its converted weights (2.3x the checkpoint for bf16). Here each tensor is read with a
//! positioned read straight into an owned buffer of its stored type, converted (in parallel) when
//! the compute dtype differs, and the stored copy dropped before the next tensor: the file's pages
//! stay in the page cache, never in the process, and at most one tensor exists twice.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;
use serde::Deserialize;

use crate::error::{ModelError, Result};

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

struct Located {
    shard: usize,
    /// Offset of the tensor's first byte in the file.
    offset: u64,
    entry: Entry,
}

/// The tensors of a checkpoint, by name, and the device they go to.
pub struct Weights {
    shards: Vec<(PathBuf, File)>,
    tensors: HashMap<String, Located>,
    device: Device,
}

/// Safetensors headers are JSON of at most this size (the format's own limit).
const MAX_HEADER: u64 = 100 << 20;

fn element_size(dtype: &str) -> Option<usize> {
    match dtype {
        "F32" => Some(4),
        "BF16" | "F16" => Some(2),
        _ => None,
    }
}

impl Weights {
    /// Reads every shard's header; no tensor data yet.
    pub fn open(files: &[PathBuf], device: &Device) -> Result<Self> {
        let mut shards = Vec::with_capacity(files.len());
        let mut tensors = HashMap::new();
        for (shard, path) in files.iter().enumerate() {
            let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
            let len = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
            let bad = |why: String| ModelError::Checkpoint(format!("{}: {why}", path.display()));
            let mut n = [0u8; 8];
            read_at(&file, &mut n, 0).map_err(|e| ModelError::io(path, e))?;
            let header_len = u64::from_le_bytes(n);
            if header_len > MAX_HEADER || 8 + header_len > len {
                return Err(bad(format!("not a safetensors file (header of {header_len} bytes)")));
            }
            let mut header = vec![0u8; header_len as usize];
            read_at(&file, &mut header, 8).map_err(|e| ModelError::io(path, e))?;
            let entries: HashMap<String, serde_json::Value> =
                serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
            let data_start = 8 + header_len;
            for (name, value) in entries {
                if name == "__metadata__" {
                    continue;
                }
                let entry: Entry = serde_json::from_value(value).map_err(|e| bad(format!("{name}: {e}")))?;
                let [start, end] = entry.data_offsets;
                let elements: usize = entry.shape.iter().product();
                let expected = element_size(&entry.dtype).map(|s| (elements * s) as u64);
                if end < start || data_start + end > len || expected.is_some_and(|b| b != end - start) {
                    return Err(bad(format!("{name}: data offsets {start}..{end} do not fit its shape or the file")));
                }
                tensors.insert(name, Located { shard, offset: data_start + start, entry });
            }
            shards.push((path.clone(), file));
        }
        Ok(Self { shards, tensors, device: device.clone() })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Elements of every tensor in the checkpoint.
    pub fn parameters(&self) -> usize {
        self.tensors.values().map(|t| t.entry.shape.iter().product::<usize>()).sum()
    }

    /// Bytes the checkpoint's tensors take on disk.
    pub fn stored_bytes(&self) -> u64 {
        self.tensors.values().map(|t| t.entry.data_offsets[1] - t.entry.data_offsets[0]).sum()
    }

    /// Reads `name`, checks its shape, and converts it to `dtype` on the target device.
    pub fn get(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let t = self.tensors.get(name).ok_or_else(|| ModelError::Checkpoint(format!("missing tensor {name}")))?;
        if t.entry.shape != shape {
            return Err(ModelError::Checkpoint(format!(
                "tensor {name} has shape {:?}, the config implies {shape:?}",
                t.entry.shape
            )));
        }
        let (path, file) = &self.shards[t.shard];
        let n: usize = shape.iter().product();
        let io = |e| ModelError::io(path, e);
        let tensor = match (t.entry.dtype.as_str(), dtype) {
            ("F32", DType::F32) => {
                Tensor::from_vec(read_typed::<f32>(file, n, t.offset).map_err(io)?, shape, &Device::Cpu)?
            }
            ("BF16", DType::BF16) => {
                Tensor::from_vec(read_typed::<bf16>(file, n, t.offset).map_err(io)?, shape, &Device::Cpu)?
            }
            ("F16", DType::F16) => {
                Tensor::from_vec(read_typed::<f16>(file, n, t.offset).map_err(io)?, shape, &Device::Cpu)?
            }
            ("BF16", DType::F32) => {
                let stored = read_typed::<bf16>(file, n, t.offset).map_err(io)?;
                Tensor::from_vec(convert(&stored, bf16::to_f32), shape, &Device::Cpu)?
            }
            ("F16", DType::F32) => {
                let stored = read_typed::<f16>(file, n, t.offset).map_err(io)?;
                Tensor::from_vec(convert(&stored, f16::to_f32), shape, &Device::Cpu)?
            }
            ("F32", DType::BF16) => {
                let stored = read_typed::<f32>(file, n, t.offset).map_err(io)?;
                Tensor::from_vec(convert(&stored, bf16::from_f32), shape, &Device::Cpu)?
            }
            ("F32", DType::F16) => {
                let stored = read_typed::<f32>(file, n, t.offset).map_err(io)?;
                Tensor::from_vec(convert(&stored, f16::from_f32), shape, &Device::Cpu)?
            }
            ("BF16", DType::F16) => {
                let stored = read_typed::<bf16>(file, n, t.offset).map_err(io)?;
                Tensor::from_vec(convert(&stored, |x| f16::from_f32(x.to_f32())), shape, &Device::Cpu)?
            }
            ("F16", DType::BF16) => {
                let stored = read_typed::<f16>(file, n, t.offset).map_err(io)?;
                Tensor::from_vec(convert(&stored, |x| bf16::from_f32(x.to_f32())), shape, &Device::Cpu)?
            }
            (stored, _) => {
                return Err(ModelError::Checkpoint(format!(
                    "{}: tensor {name} is {stored}; checkpoints must store F32, BF16 or F16",
                    path.display()
                )))
            }
        };
        Ok(tensor.to_device(&self.device)?)
    }
}

/// Element-wise conversion across the rayon pool (single-threaded conversion made f32 loading of a
/// bf16 checkpoint three times slower than PyTorch's).
fn convert<A: Copy + Sync, B: Send>(stored: &[A], f: impl Fn(A) -> B + Sync) -> Vec<B> {
    stored.par_iter().with_min_len(1 << 16).map(|&x| f(x)).collect()
}

/// `n` elements of `T` from `offset` of `file`, read straight into their final buffer.
fn read_typed<T: bytemuck::Pod>(file: &File, n: usize, offset: u64) -> std::io::Result<Vec<T>> {
    let mut values = vec![T::zeroed(); n];
    read_at(file, bytemuck::cast_slice_mut(&mut values), offset)?;
    Ok(values)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn write(dir: &Path, tensors: Vec<(&str, candle_core::Tensor)>) -> PathBuf {
        let path = dir.join("model.safetensors");
        candle_core::safetensors::save(&tensors.into_iter().map(|(n, t)| (n.to_string(), t)).collect(), &path).unwrap();
        path
    }

    #[test]
    fn tensors_read_and_convert_like_candles_own_loader() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<f32> = (0..3000).map(|i| (i as f32 * 0.37).sin() * 10.0).collect();
        let f32s = Tensor::from_vec(values, (30, 100), &Device::Cpu).unwrap();
        let bf16s = f32s.to_dtype(DType::BF16).unwrap();
        let path = write(dir.path(), vec![("a", f32s.clone()), ("b", bf16s.clone())]);
        let w = Weights::open(&[path], &Device::Cpu).unwrap();
        assert_eq!(w.parameters(), 6000);
        assert_eq!(w.stored_bytes(), 3000 * 4 + 3000 * 2);
        let same = |x: &Tensor, y: &Tensor| {
            let (x, y) = (x.to_dtype(DType::F32).unwrap(), y.to_dtype(DType::F32).unwrap());
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap() == y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        for (name, stored) in [("a", &f32s), ("b", &bf16s)] {
            for dtype in [DType::F32, DType::BF16, DType::F16] {
                let got = w.get(name, &[30, 100], dtype).unwrap();
                assert_eq!(got.dtype(), dtype);
                assert!(same(&got, &stored.to_dtype(dtype).unwrap()), "{name} as {dtype:?}");
            }
        }
        assert!(w.get("a", &[100, 30], DType::F32).unwrap_err().to_string().contains("the config implies"));
        assert!(w.get("zzz", &[1], DType::F32).unwrap_err().to_string().contains("missing tensor"));
    }

    #[test]
    fn truncated_files_are_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::zeros((10, 10), DType::F32, &Device::Cpu).unwrap();
        let path = write(dir.path(), vec![("a", t)]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let err = Weights::open(&[path], &Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("do not fit"), "{err}");
    }
}
