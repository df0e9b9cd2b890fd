//! Feature matrices on disk as NumPy `.npy` files (`numpy.load` reads them, with `mmap_mode="r"` for
//! the large ones), written by appending rows and read back memory-mapped.
//!
//! The header has a fixed size, so the row count can be rewritten in place as rows are appended:
//! after every [`NpyWriter::sync`] the file is a valid array of the rows written so far, which is
//! what makes feature extraction resumable.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Result, TrainError};

/// Header bytes, magic included; a multiple of 64 as the format asks, and room for any shape.
const HEADER_LEN: usize = 128;
const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// Element types the feature files use.
pub trait Element: bytemuck::Pod {
    const DESCR: &'static str;
}

impl Element for f32 {
    const DESCR: &'static str = "<f4";
}

impl Element for u64 {
    const DESCR: &'static str = "<u8";
}

#[cfg(not(target_endian = "little"))]
compile_error!("feature files are little-endian and read by casting the mapped bytes");

fn header(descr: &str, rows: usize, cols: Option<usize>) -> Vec<u8> {
    let shape = match cols {
        Some(c) => format!("({rows}, {c})"),
        None => format!("({rows},)"),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let mut out = MAGIC.to_vec();
    let body_len = HEADER_LEN - MAGIC.len() - 2;
    out.extend_from_slice(&(body_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(HEADER_LEN - 1, b' ');
    out.push(b'\n');
    out
}

/// Appends rows of `cols` elements (`None`: a 1-D array) to an `.npy` file.
pub struct NpyWriter<T: Element> {
    path: PathBuf,
    file: BufWriter<File>,
    cols: Option<usize>,
    rows: usize,
    _element: std::marker::PhantomData<T>,
}

impl<T: Element> NpyWriter<T> {
    pub fn create(path: &Path, cols: Option<usize>) -> Result<Self> {
        Self::resume(path, cols, 0)
    }

    /// Opens an existing file keeping its first `rows` rows (anything after them, written after the
    /// last sync, is cut off), or creates it when `rows` is 0.
    pub fn resume(path: &Path, cols: Option<usize>, rows: usize) -> Result<Self> {
        let io = |e| TrainError::io(path, e);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(rows == 0).open(path).map_err(io)?;
        let width = cols.unwrap_or(1) * std::mem::size_of::<T>();
        let end = (HEADER_LEN + rows * width) as u64;
        if rows > 0 && file.metadata().map_err(io)?.len() < end {
            return Err(TrainError::corrupt(path, format!("shorter than the {rows} rows its manifest records")));
        }
        file.set_len(end).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header(T::DESCR, rows, cols)).map_err(io)?;
        file.seek(SeekFrom::Start(end)).map_err(io)?;
        Ok(Self { path: path.to_path_buf(), file: BufWriter::new(file), cols, rows, _element: Default::default() })
    }

    pub fn push(&mut self, row: &[T]) -> Result<()> {
        debug_assert_eq!(row.len(), self.cols.unwrap_or(1));
        self.file.write_all(bytemuck::cast_slice(row)).map_err(|e| TrainError::io(&self.path, e))?;
        self.rows += 1;
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes the row count into the header and flushes everything to disk.
    pub fn sync(&mut self) -> Result<()> {
        let io = |e| TrainError::io(&self.path, e);
        self.file.flush().map_err(io)?;
        let file = self.file.get_mut();
        let end = file.stream_position().map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header(T::DESCR, self.rows, self.cols)).map_err(io)?;
        file.seek(SeekFrom::Start(end)).map_err(io)?;
        file.sync_data().map_err(io)
    }
}

/// A memory-mapped `.npy` array of rows.
pub struct NpyMatrix<T: Element> {
    map: Mmap,
    rows: usize,
    cols: usize,
    _element: std::marker::PhantomData<T>,
}

impl<T: Element> NpyMatrix<T> {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
        // SAFETY: read-only mapping of a file this crate wrote and no longer writes; a file changed
        // underneath the process is outside what any reader can guard against.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| TrainError::io(path, e))?;
        let bad = |why: &str| TrainError::corrupt(path, format!("not a feature file written by armorm: {why}"));
        if map.len() < HEADER_LEN || &map[..MAGIC.len()] != MAGIC {
            return Err(bad("no .npy header"));
        }
        let dict = std::str::from_utf8(&map[MAGIC.len() + 2..HEADER_LEN]).map_err(|_| bad("header is not text"))?;
        if !dict.contains(&format!("'descr': '{}'", T::DESCR)) {
            return Err(bad(&format!("element type is not {}", T::DESCR)));
        }
        let shape = dict.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).ok_or_else(|| bad("no shape"))?;
        let dims: Vec<usize> = shape
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("bad shape"))?;
        let (rows, cols) = match dims.as_slice() {
            [r] => (*r, 1),
            [r, c] => (*r, *c),
            _ => return Err(bad("not one- or two-dimensional")),
        };
        if map.len() < HEADER_LEN + rows * cols * std::mem::size_of::<T>() {
            return Err(bad("shorter than its shape"));
        }
        Ok(Self { map, rows, cols, _element: Default::default() })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All elements, row-major.
    pub fn data(&self) -> &[T] {
        let bytes = &self.map[HEADER_LEN..HEADER_LEN + self.rows * self.cols * std::mem::size_of::<T>()];
        bytemuck::cast_slice(bytes)
    }

    pub fn row(&self, i: usize) -> &[T] {
        &self.data()[i * self.cols..(i + 1) * self.cols]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_a_resume_and_unsynced_rows_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let mut w = NpyWriter::<f32>::create(&path, Some(3)).unwrap();
        w.push(&[1.0, 2.0, 3.0]).unwrap();
        w.push(&[4.0, 5.0, 6.0]).unwrap();
        w.sync().unwrap();
        w.push(&[7.0, 8.0, 9.0]).unwrap();
        drop(w); // the third row reached the file but not the header
        let m = NpyMatrix::<f32>::open(&path).unwrap();
        assert_eq!((m.rows(), m.cols()), (2, 3));
        let mut w = NpyWriter::<f32>::resume(&path, Some(3), 2).unwrap();
        w.push(&[0.5, 0.5, 0.5]).unwrap();
        w.sync().unwrap();
        let m = NpyMatrix::<f32>::open(&path).unwrap();
        assert_eq!(m.data(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.5, 0.5, 0.5]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), (HEADER_LEN + 9 * 4) as u64);
    }

    #[test]
    fn header_is_the_npy_format() {
        let h = header("<f4", 12, Some(4096));
        assert_eq!(h.len(), 128);
        assert_eq!(&h[..8], MAGIC);
        assert_eq!(u16::from_le_bytes([h[8], h[9]]), 118);
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (12, 4096), }"));
        assert!(text.ends_with(" \n"));
        let one_d = header("<u8", 3, None);
        assert!(std::str::from_utf8(&one_d[10..]).unwrap().contains("'shape': (3,)"));
    }
}
