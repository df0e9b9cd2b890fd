//! A checkpoint's safetensors shards, read one tensor at a time.
//!
//! Memory-mapping the shards (what candle's loader does) makes every page of the file resident in
//! the process while the converted copy is built beside it, so loading peaked at the checkpoint's
//! size plus its converted weights (2.3x the checkpoint for bf16). Here each tensor is read with a
//! positioned read straight into an owned buffer of its stored type, converted (in parallel) when
//! the compute dtype differs, and the stored copy dropped before the next tensor: the file's pages
//! stay in the page cache, never in the process, and at most one tensor exists twice.
//!
//! bf16 weights that a kernel can use in their stored layout ([`Weights::bf16_rows`]) are not read
//! at all: they are used from a read-only memory map of the shard, the page cache's own pages, as
//! PyTorch uses safetensors. Copying them into fresh memory was most of a bf16 load, because first
//! touching anonymous pages is slow (and on a VM, slower still).

use std::collections::HashMap;
use std::fs::File;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};
use memmap2::Mmap;
use rayon::prelude::*;
use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::kernels::simd::filled;
use crate::kernels::transpose::transpose_into;
use crate::load::dtype::ComputeDType;

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

struct Located {
    shard: usize,
    /// `None` for a type that cannot be loaded (refused if a weight of that type is asked for).
    stored: Option<StoredType>,
    /// Offset of the tensor's first byte in the file.
    offset: u64,
    entry: Entry,
    /// Whether the loader has read it: a checkpoint whose tensors are not all read is not what
    /// its config says ([`Weights::unread`]).
    read: AtomicBool,
}

/// Tensors to stack, each with its entry.
type Parts<'a> = Vec<(&'a str, &'a Located)>;

/// The tensors of a checkpoint, by name, and the device they go to.
pub struct Weights {
    shards: Vec<(PathBuf, File)>,
    /// Each shard's read-only map, made when a tensor is first used from it.
    maps: Vec<OnceLock<Arc<Mmap>>>,
    /// Bytes of tensors used from the maps.
    mapped: AtomicU64,
    tensors: HashMap<String, Located>,
    device: Device,
    /// Where tensors that need converting or transposing are read, kept from one tensor to the
    /// next: a fresh buffer per tensor cost a page fault and a kernel zeroing of every page read
    /// (a sixth of a bf16 load). u64 elements keep it aligned for every stored type.
    scratch: Mutex<Vec<u64>>,
}

/// Reads larger than this get a buffer of their own, freed at once, so that one large tensor
/// (a vocabulary-sized embedding converted to f32) does not stay resident for the rest of the load.
const MAX_SCRATCH_BYTES: usize = 256 << 20;

/// Safetensors headers are JSON of at most this size (the format's own limit).
const MAX_HEADER: u64 = 100 << 20;

/// The element types weights can be stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoredType {
    F32,
    Bf16,
    F16,
}

impl StoredType {
    /// From a safetensors header's dtype; `None` for types weights are never stored as.
    fn parse(dtype: &str) -> Option<Self> {
        match dtype {
            "F32" => Some(Self::F32),
            "BF16" => Some(Self::Bf16),
            "F16" => Some(Self::F16),
            _ => None,
        }
    }

    fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Bf16 | Self::F16 => 2,
        }
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
                let stored = StoredType::parse(&entry.dtype);
                let expected = stored.map(|t| (elements * t.size()) as u64);
                if end < start || data_start + end > len || expected.is_some_and(|b| b != end - start) {
                    return Err(bad(format!("{name}: data offsets {start}..{end} do not fit its shape or the file")));
                }
                tensors.insert(
                    name,
                    Located { shard, stored, offset: data_start + start, entry, read: AtomicBool::new(false) },
                );
            }
            shards.push((path.clone(), file));
        }
        let maps = shards.iter().map(|_| OnceLock::new()).collect();
        Ok(Self {
            shards,
            maps,
            mapped: AtomicU64::new(0),
            tensors,
            device: device.clone(),
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// Where loaded tensors go.
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// A tensor's stored shape, without reading it.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.entry.shape.as_slice())
    }

    /// The tensors no load has read yet, sorted by name.
    pub fn unread(&self) -> Vec<&str> {
        let mut names: Vec<&str> =
            self.tensors.iter().filter(|(_, t)| !t.read.load(Ordering::Relaxed)).map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names
    }

    /// Elements of every tensor in the checkpoint.
    pub fn parameters(&self) -> usize {
        self.tensors.values().map(|t| t.entry.shape.iter().product::<usize>()).sum()
    }

    /// The type most of the checkpoint's elements are stored as (`None` for a checkpoint without
    /// loadable tensors).
    pub fn stored_dtype(&self) -> Option<ComputeDType> {
        let mut elements: HashMap<ComputeDType, usize> = HashMap::new();
        for t in self.tensors.values() {
            let dtype = match t.stored {
                Some(StoredType::F32) => ComputeDType::F32,
                Some(StoredType::Bf16) => ComputeDType::Bf16,
                Some(StoredType::F16) => ComputeDType::F16,
                None => continue,
            };
            *elements.entry(dtype).or_default() += t.entry.shape.iter().product::<usize>();
        }
        elements.into_iter().filter(|&(_, n)| n > 0).max_by_key(|&(d, n)| (n, d.size())).map(|(d, _)| d)
    }

    /// Bytes the checkpoint's tensors take on disk.
    pub fn stored_bytes(&self) -> u64 {
        self.tensors.values().map(|t| t.entry.data_offsets[1] - t.entry.data_offsets[0]).sum()
    }

    /// Bytes of tensors used in place from the memory-mapped shards so far.
    pub fn mapped_bytes(&self) -> u64 {
        self.mapped.load(Ordering::Relaxed)
    }

    /// Reads `name`, checks its shape, and converts it to `dtype` on the target device.
    pub fn get(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        self.get_stacked(&[(name, shape)], dtype)
    }

    /// Tensors whose shapes differ only in their first dimension, stacked along it (fused q/k/v,
    /// gate/up) and converted to `dtype`: each part is read or converted straight into its rows
    /// of the one output buffer, never concatenated afterwards.
    pub fn get_stacked(&self, parts: &[(&str, &[usize])], dtype: DType) -> Result<Tensor> {
        let (located, shape) = self.locate(parts)?;
        let tensor = match dtype {
            DType::F32 => Tensor::from_vec(self.stacked::<f32>(&located)?, shape, &Device::Cpu)?,
            DType::BF16 => Tensor::from_vec(self.stacked::<bf16>(&located)?, shape, &Device::Cpu)?,
            DType::F16 => Tensor::from_vec(self.stacked::<f16>(&located)?, shape, &Device::Cpu)?,
            other => return Err(ModelError::Checkpoint(format!("cannot load weights as {other:?}"))),
        };
        Ok(tensor.to_device(&self.device)?)
    }

    /// Rows `picks` of the (rows, cols) matrix `name`, as an f32 (picks, cols) tensor on the target
    /// device; only those rows are read (two rows of a vocabulary-sized language-model head, not
    /// the gigabyte around them).
    pub fn get_rows(&self, name: &str, shape: &[usize], picks: &[usize]) -> Result<Tensor> {
        let (located, _) = self.locate(&[(name, shape)])?;
        let t = located[0].1;
        let &[rows, cols] = shape else {
            return Err(ModelError::Checkpoint(format!("{name} is not a matrix")));
        };
        let mut out = vec![0f32; picks.len() * cols];
        for (&row, dst) in picks.iter().zip(out.chunks_mut(cols.max(1))) {
            if row >= rows {
                return Err(ModelError::Checkpoint(format!("{name} has {rows} rows; row {row} was asked for")));
            }
            self.with_stored_at(name, t, row * cols, cols, |stored| match stored {
                StoredData::F32(v) => convert_into(v, dst, f32::from_f32),
                StoredData::Bf16(v) => convert_into(v, dst, f32::from_bf16),
                StoredData::F16(v) => convert_into(v, dst, f32::from_f16),
            })?;
        }
        Ok(Tensor::from_vec(out, (picks.len(), cols), &Device::Cpu)?.to_device(&self.device)?)
    }

    /// Matrices (rows_i, cols) stacked by rows, then transposed: (cols, sum of rows_i), contiguous,
    /// on the CPU. Each part is converted and transposed straight from its stored buffer into its
    /// columns of the output, so the weight is materialised once, in its final layout.
    pub fn get_stacked_transposed(&self, parts: &[(&str, &[usize])], dtype: DType) -> Result<Tensor> {
        let (located, shape) = self.locate(parts)?;
        let [rows, cols] = shape[..] else {
            return Err(ModelError::Checkpoint(format!("{:?} is not a matrix", parts[0].0)));
        };
        Ok(match dtype {
            DType::F32 => {
                Tensor::from_vec(self.stacked_transposed::<f32>(&located, rows, cols)?, (cols, rows), &Device::Cpu)?
            }
            DType::BF16 => {
                Tensor::from_vec(self.stacked_transposed::<bf16>(&located, rows, cols)?, (cols, rows), &Device::Cpu)?
            }
            DType::F16 => {
                Tensor::from_vec(self.stacked_transposed::<f16>(&located, rows, cols)?, (cols, rows), &Device::Cpu)?
            }
            other => return Err(ModelError::Checkpoint(format!("cannot load weights as {other:?}"))),
        })
    }

    /// A (rows, cols) matrix as bf16 rows in its stored layout, for the kernels that read W row by
    /// row ([`crate::layers::linear::dot`]): a view of the shard's memory map when stored as bf16 (no copy),
    /// otherwise read and converted into memory of its own.
    pub fn bf16_rows(&self, name: &str, rows: usize, cols: usize) -> Result<Bf16Rows> {
        let (located, _) = self.locate(&[(name, &[rows, cols])])?;
        match self.map_bf16(located[0].1, rows, cols)? {
            Some(mapped) => Ok(mapped),
            None => Ok(Bf16Rows::owned(self.stacked::<bf16>(&located)?, rows, cols)),
        }
    }

    /// A (rows, cols) matrix stored as bf16, as a view of its shard's memory map; `None` when it is
    /// stored as another type (or unaligned, which no safetensors writer produces).
    pub fn mapped_bf16(&self, name: &str, rows: usize, cols: usize) -> Result<Option<Bf16Rows>> {
        let (located, _) = self.locate(&[(name, &[rows, cols])])?;
        self.map_bf16(located[0].1, rows, cols)
    }

    /// `mapped_bf16` for a located tensor of `rows * cols` elements.
    fn map_bf16(&self, t: &Located, rows: usize, cols: usize) -> Result<Option<Bf16Rows>> {
        if t.stored != Some(StoredType::Bf16) || !t.offset.is_multiple_of(2) {
            return Ok(None);
        }
        let (path, file) = &self.shards[t.shard];
        let map = match self.maps[t.shard].get() {
            Some(map) => map.clone(),
            None => {
                // SAFETY: the map is read-only and private; it stays valid while the file is not
                // truncated, the same condition under which safetensors' and PyTorch's memory-mapped
                // loading work (checkpoints are not rewritten under a running server; the hub
                // cache's blobs never are). A truncated file would fault the process on access.
                let map = unsafe { Mmap::map(file) }.map_err(|e| ModelError::io(path, e))?;
                self.maps[t.shard].get_or_init(|| Arc::new(map)).clone()
            }
        };
        let (start, bytes) = (t.offset as usize, rows * cols * 2);
        prefetch(&map, start, bytes);
        self.mapped.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(Some(Bf16Rows { data: Bf16Data::Mapped { map, start }, rows, cols }))
    }

    /// Each part's entry, checked against its expected shape, and the stacked shape.
    fn locate<'a>(&'a self, parts: &[(&'a str, &[usize])]) -> Result<(Parts<'a>, Vec<usize>)> {
        let Some(&(_, first)) = parts.first() else {
            return Err(ModelError::Checkpoint("no tensors to stack".into()));
        };
        let rest = first.get(1..).unwrap_or_default();
        let mut located = Vec::with_capacity(parts.len());
        for &(name, shape) in parts {
            let t = self.tensors.get(name).ok_or_else(|| ModelError::Checkpoint(format!("missing tensor {name}")))?;
            if t.entry.shape != shape || shape.get(1..).unwrap_or_default() != rest {
                return Err(ModelError::Checkpoint(format!(
                    "tensor {name} has shape {:?}, the config implies {shape:?}",
                    t.entry.shape
                )));
            }
            t.read.store(true, Ordering::Relaxed);
            located.push((name, t));
        }
        let mut shape = first.to_vec();
        if let Some(rows) = shape.first_mut() {
            *rows = parts.iter().map(|(_, s)| s.first().copied().unwrap_or(1)).sum();
        }
        Ok((located, shape))
    }

    fn stacked_transposed<T: Stored>(&self, parts: &[(&str, &Located)], rows: usize, cols: usize) -> Result<Vec<T>> {
        let mut result = Ok(());
        // SAFETY: the parts' row counts sum to `rows` (locate checked their shapes), so their column
        // ranges [first_col, first_col + part_rows) tile the output and transpose_into writes every
        // element of each; on a read error the buffer is discarded below, never read.
        let out = unsafe {
            filled(rows * cols, |out| {
                let mut first_col = 0;
                for &(name, t) in parts {
                    let part_rows = t.entry.shape[0];
                    if let Err(e) = self.transpose_part(name, t, cols, out, rows, first_col) {
                        result = Err(e);
                        // Leave nothing uninitialised, as `filled` requires.
                        out.iter_mut().for_each(|o| {
                            o.write(T::zeroed());
                        });
                        return;
                    }
                    first_col += part_rows;
                }
            })
        };
        result.map(|()| out)
    }

    fn transpose_part<T: Stored>(
        &self,
        name: &str,
        t: &Located,
        cols: usize,
        out: &mut [MaybeUninit<T>],
        out_cols: usize,
        first_col: usize,
    ) -> Result<()> {
        let rows = t.entry.shape[0];
        self.with_stored(name, t, rows * cols, |stored| match stored {
            StoredData::F32(v) => transpose_into(v, rows, cols, out, out_cols, first_col, T::from_f32),
            StoredData::Bf16(v) => transpose_into(v, rows, cols, out, out_cols, first_col, T::from_bf16),
            StoredData::F16(v) => transpose_into(v, rows, cols, out, out_cols, first_col, T::from_f16),
        })
    }

    fn stacked<T: Stored>(&self, parts: &[(&str, &Located)]) -> Result<Vec<T>> {
        let total: usize = parts.iter().map(|(_, t)| t.entry.shape.iter().product::<usize>()).sum();
        let mut out = vec![T::zeroed(); total];
        let mut rest = out.as_mut_slice();
        for &(name, t) in parts {
            let (mine, others) = rest.split_at_mut(t.entry.shape.iter().product());
            self.read_into(name, t, mine)?;
            rest = others;
        }
        Ok(out)
    }

    /// One tensor into `out` (its exact length), converted from its stored type to `T`.
    fn read_into<T: Stored>(&self, name: &str, t: &Located, out: &mut [T]) -> Result<()> {
        if t.stored == Some(T::STORED) {
            let (path, file) = &self.shards[t.shard];
            return read_at(file, bytemuck::cast_slice_mut(out), t.offset).map_err(|e| ModelError::io(path, e));
        }
        self.with_stored(name, t, out.len(), |stored| match stored {
            StoredData::F32(v) => convert_into(v, out, T::from_f32),
            StoredData::Bf16(v) => convert_into(v, out, T::from_bf16),
            StoredData::F16(v) => convert_into(v, out, T::from_f16),
        })
    }

    /// Calls `use_data` with a tensor's `n` elements in the type it is stored as, read into the
    /// scratch buffer.
    fn with_stored<R>(&self, name: &str, t: &Located, n: usize, use_data: impl FnOnce(StoredData) -> R) -> Result<R> {
        self.with_stored_at(name, t, 0, n, use_data)
    }

    /// [`Self::with_stored`] for the `n` elements from element `first` on.
    fn with_stored_at<R>(
        &self,
        name: &str,
        t: &Located,
        first: usize,
        n: usize,
        use_data: impl FnOnce(StoredData) -> R,
    ) -> Result<R> {
        let (path, file) = &self.shards[t.shard];
        let Some(stored) = t.stored else {
            return Err(unsupported(path, name, &t.entry.dtype));
        };
        let size = stored.size();
        let bytes = n * size;
        let mut kept = self.scratch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut own = Vec::new();
        let words = if bytes <= MAX_SCRATCH_BYTES { &mut *kept } else { &mut own };
        if words.len() * 8 < bytes {
            *words = vec![0u64; bytes.div_ceil(8)];
        }
        let buf = &mut bytemuck::cast_slice_mut::<u64, u8>(words)[..bytes];
        read_at(file, buf, t.offset + (first * size) as u64).map_err(|e| ModelError::io(path, e))?;
        Ok(use_data(match stored {
            StoredType::F32 => StoredData::F32(bytemuck::cast_slice(buf)),
            StoredType::Bf16 => StoredData::Bf16(bytemuck::cast_slice(buf)),
            StoredType::F16 => StoredData::F16(bytemuck::cast_slice(buf)),
        }))
    }
}

/// Reads a mapped range's pages in now, not during the first request (best effort).
#[cfg(unix)]
fn prefetch(map: &Mmap, start: usize, bytes: usize) {
    #[cfg(target_os = "linux")]
    if map.advise_range(memmap2::Advice::PopulateRead, start, bytes).is_ok() {
        return;
    }
    // Kernels before 5.14 and other Unixes: a read-ahead hint.
    let _ = map.advise_range(memmap2::Advice::WillNeed, start, bytes);
}

#[cfg(not(unix))]
fn prefetch(_: &Mmap, _: usize, _: usize) {}

fn unsupported(path: &std::path::Path, name: &str, stored: &str) -> ModelError {
    ModelError::Checkpoint(format!(
        "{}: tensor {name} is {stored}; checkpoints must store F32, BF16 or F16",
        path.display()
    ))
}

/// A row-major bf16 matrix, in memory of its own or inside a shard's memory map.
pub struct Bf16Rows {
    data: Bf16Data,
    rows: usize,
    cols: usize,
}

enum Bf16Data {
    Owned(Vec<bf16>),
    /// `rows * cols` values from byte `start` of the map (2-aligned: checked when made).
    Mapped {
        map: Arc<Mmap>,
        start: usize,
    },
}

impl Bf16Rows {
    /// # Panics
    /// When `values` is not `rows * cols` long.
    pub fn owned(values: Vec<bf16>, rows: usize, cols: usize) -> Self {
        assert_eq!(values.len(), rows * cols, "not a ({rows}, {cols}) matrix");
        Self { data: Bf16Data::Owned(values), rows, cols }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Whether the values are the shard's mapped pages rather than a copy.
    pub fn is_mapped(&self) -> bool {
        matches!(self.data, Bf16Data::Mapped { .. })
    }

    pub fn as_slice(&self) -> &[bf16] {
        match &self.data {
            Bf16Data::Owned(v) => v,
            Bf16Data::Mapped { map, start } => bytemuck::cast_slice(&map[*start..][..self.rows * self.cols * 2]),
        }
    }
}

/// A tensor as read from its file, before any conversion.
enum StoredData<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
    F16(&'a [f16]),
}

/// A compute element type weights are loaded as, and how each stored type converts to it.
trait Stored: bytemuck::Pod + Send + Sync + candle_core::WithDType {
    /// Stored as this, a tensor is read with no conversion.
    const STORED: StoredType;
    fn from_f32(x: f32) -> Self;
    fn from_bf16(x: bf16) -> Self;
    fn from_f16(x: f16) -> Self;
}

impl Stored for f32 {
    const STORED: StoredType = StoredType::F32;
    fn from_f32(x: f32) -> Self {
        x
    }
    fn from_bf16(x: bf16) -> Self {
        x.to_f32()
    }
    fn from_f16(x: f16) -> Self {
        x.to_f32()
    }
}

impl Stored for bf16 {
    const STORED: StoredType = StoredType::Bf16;
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
    fn from_bf16(x: bf16) -> Self {
        x
    }
    fn from_f16(x: f16) -> Self {
        bf16::from_f32(x.to_f32())
    }
}

impl Stored for f16 {
    const STORED: StoredType = StoredType::F16;
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    fn from_bf16(x: bf16) -> Self {
        f16::from_f32(x.to_f32())
    }
    fn from_f16(x: f16) -> Self {
        x
    }
}

/// Element-wise conversion across the rayon pool (single-threaded conversion made f32 loading of a
/// bf16 checkpoint three times slower than PyTorch's).
fn convert_into<A: Copy + Sync, B: Send>(stored: &[A], out: &mut [B], f: impl Fn(A) -> B + Sync) {
    out.par_iter_mut().zip(stored.par_iter()).with_min_len(1 << 16).for_each(|(o, &x)| *o = f(x));
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
        let stacked = w.get_stacked(&[("a", &[30, 100]), ("b", &[30, 100])], DType::F32).unwrap();
        let cat = Tensor::cat(&[f32s.clone(), bf16s.to_dtype(DType::F32).unwrap()], 0).unwrap();
        assert_eq!(stacked.dims(), &[60, 100]);
        assert!(same(&stacked, &cat));
        for dtype in [DType::F32, DType::BF16] {
            let t = w.get_stacked_transposed(&[("a", &[30, 100]), ("b", &[30, 100])], dtype).unwrap();
            assert_eq!(t.dims(), &[100, 60]);
            assert!(same(&t, &cat.to_dtype(dtype).unwrap().t().unwrap()), "{dtype:?}");
        }
        assert!(w.get("a", &[100, 30], DType::F32).unwrap_err().to_string().contains("the config implies"));
        assert!(w.get("zzz", &[1], DType::F32).unwrap_err().to_string().contains("missing tensor"));
    }

    #[test]
    fn bf16_rows_are_the_mapped_file_when_stored_as_bf16_and_a_converted_copy_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<f32> = (0..600).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let f32s = Tensor::from_vec(values, (20, 30), &Device::Cpu).unwrap();
        let bf16s = f32s.to_dtype(DType::BF16).unwrap();
        let path = write(dir.path(), vec![("a", f32s), ("b", bf16s.clone())]);
        let w = Weights::open(&[path], &Device::Cpu).unwrap();
        let want = bf16s.flatten_all().unwrap().to_vec1::<bf16>().unwrap();
        let (a, b) = (w.bf16_rows("a", 20, 30).unwrap(), w.bf16_rows("b", 20, 30).unwrap());
        assert!(!a.is_mapped() && b.is_mapped());
        assert_eq!((b.rows(), b.cols()), (20, 30));
        assert_eq!(a.as_slice(), &want[..], "f32 rounded to bf16 as candle rounds it");
        assert_eq!(b.as_slice(), &want[..]);
        assert_eq!(w.mapped_bytes(), 600 * 2);
        assert!(w.bf16_rows("b", 30, 20).is_err(), "shape checked");
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
