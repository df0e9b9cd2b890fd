//! Rows of JSON Lines or Parquet files as JSON objects, streamed (one file, or several read in
//! order as one dataset, such as a split's Parquet shards), each with where it came from.
//!
//! The format follows the extension (`.parquet` / `.pq` is Parquet, anything else JSON Lines). Blank
//! JSON Lines lines are skipped but still counted, so a location is the line an editor shows. A file
//! without a single row yields [`DataError::Empty`] instead of silently producing nothing.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{DataError, Result};

/// Where a row sits: the file, its index among the dataset's rows (0-based, counting on across
/// files: the record number), its index in the file, and for JSON Lines the 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRef {
    pub file: Arc<PathBuf>,
    pub index: usize,
    pub row: usize,
    pub line: Option<usize>,
}

impl fmt::Display for RowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}: row {}", self.file.display(), self.row + 1),
        }
    }
}

/// One row: a JSON object's fields.
#[derive(Debug, Clone)]
pub struct Row {
    pub at: RowRef,
    pub fields: Map<String, Value>,
}

impl Row {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key).filter(|v| !v.is_null())
    }

    /// An error located at this row.
    pub fn error(&self, message: impl Into<String>) -> DataError {
        DataError::row(&self.at, message)
    }

    pub fn str_field(&self, key: &str) -> Result<&str> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.error(format!("field {key:?} must be a string, found {}", kind(other)))),
            None => Err(self.error(format!("missing field {key:?}"))),
        }
    }
}

/// A JSON value's kind, for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A streaming reader of the rows of one file or of several in order.
pub struct Rows {
    file: Arc<PathBuf>,
    source: Source,
    /// Files still to read after this one.
    rest: std::collections::VecDeque<PathBuf>,
    /// Rows yielded so far, over every file; and in this file.
    count: usize,
    in_file: usize,
    done: bool,
}

enum Source {
    Lines { lines: std::io::Lines<BufReader<std::fs::File>>, line: usize },
    Parquet(parquet::record::reader::RowIter<'static>),
}

impl Rows {
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_all(&[path.to_path_buf()])
    }

    /// The rows of `files` in order, as one dataset: the first is opened now, the others when
    /// reached. No rows at all is [`DataError::Empty`] (naming the first file).
    pub fn open_all(files: &[PathBuf]) -> Result<Self> {
        let (first, rest) = files.split_first().ok_or_else(|| DataError::Empty { path: PathBuf::new() })?;
        let (source, rest) = (open_source(first)?, rest.iter().cloned().collect());
        Ok(Self { source, file: Arc::new(first.clone()), rest, count: 0, in_file: 0, done: false })
    }

    /// The next row of this file, else of the next file with any.
    fn next_row(&mut self) -> Option<Result<Row>> {
        loop {
            if let Some(item) = self.next_in_file() {
                return Some(item);
            }
            let next = self.rest.pop_front()?;
            match open_source(&next) {
                Ok(source) => (self.file, self.source, self.in_file) = (Arc::new(next), source, 0),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn next_in_file(&mut self) -> Option<Result<Row>> {
        let (index, row) = (self.count, self.in_file);
        match &mut self.source {
            Source::Lines { lines, line } => loop {
                *line += 1;
                let text = match lines.next()? {
                    Ok(text) => text,
                    Err(e) => return Some(Err(DataError::io(&self.file, e))),
                };
                if text.trim().is_empty() {
                    continue;
                }
                let at = RowRef { file: self.file.clone(), index, row, line: Some(*line) };
                return Some(match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(fields)) => Ok(Row { at, fields }),
                    Ok(other) => Err(DataError::row(&at, format!("expected a JSON object, found {}", kind(&other)))),
                    Err(e) => Err(DataError::row(&at, format!("invalid JSON: {e}"))),
                });
            },
            Source::Parquet(rows) => {
                let at = RowRef { file: self.file.clone(), index, row, line: None };
                Some(match rows.next()? {
                    Ok(row) => match row.to_json_value() {
                        Value::Object(fields) => Ok(Row { at, fields }),
                        other => Err(DataError::row(&at, format!("expected a record, found {}", kind(&other)))),
                    },
                    Err(e) => Err(DataError::Parquet { path: self.file.to_path_buf(), message: e.to_string() }),
                })
            }
        }
    }
}

impl Iterator for Rows {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        if self.done {
            return None;
        }
        match self.next_row() {
            Some(item) => {
                self.count += 1;
                self.in_file += 1;
                Some(item)
            }
            None => {
                self.done = true;
                (self.count == 0).then(|| Err(DataError::Empty { path: self.file.to_path_buf() }))
            }
        }
    }
}

fn open_source(path: &Path) -> Result<Source> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    Ok(if is_parquet(path) {
        use parquet::file::reader::SerializedFileReader;
        let reader = SerializedFileReader::new(file)
            .map_err(|e| DataError::Parquet { path: path.to_path_buf(), message: e.to_string() })?;
        Source::Parquet(parquet::record::reader::RowIter::from_file_into(Box::new(reader)))
    } else {
        Source::Lines { lines: BufReader::new(file).lines(), line: 0 }
    })
}

fn is_parquet(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e == "pq")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn json_lines_skip_blank_lines_but_count_them() {
        let (_d, path) = write("a.jsonl", "{\"x\": 1}\n\n  \n{\"x\": 2}\n[1]\n{oops\n");
        let rows: Vec<_> = Rows::open(&path).unwrap().collect();
        assert_eq!(rows.len(), 4);
        let second = rows[1].as_ref().unwrap();
        assert_eq!((second.at.index, second.at.line), (1, Some(4)));
        assert_eq!(second.fields["x"], 2);
        let err = rows[2].as_ref().unwrap_err().to_string();
        assert!(err.ends_with("a.jsonl:5: expected a JSON object, found an array"), "{err}");
        let err = rows[3].as_ref().unwrap_err().to_string();
        assert!(err.contains("a.jsonl:6: invalid JSON"), "{err}");
    }

    #[test]
    fn an_empty_file_is_an_error_not_zero_rows() {
        let (_d, path) = write("empty.jsonl", "\n\n");
        let rows: Vec<_> = Rows::open(&path).unwrap().collect();
        assert_eq!(rows.len(), 1);
        assert!(matches!(rows[0], Err(DataError::Empty { .. })));
        let missing = Rows::open(Path::new("/nonexistent/x.jsonl")).err().unwrap().to_string();
        assert!(missing.starts_with("/nonexistent/x.jsonl: "), "{missing}");
    }

    #[test]
    fn several_files_are_one_dataset_numbered_on_and_located_in_their_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
        std::fs::write(&a, "{\"x\": 1}\n{\"x\": 2}\n").unwrap();
        std::fs::write(&b, "\n{\"x\": 3}\n[]\n").unwrap();
        let rows: Vec<_> = Rows::open_all(&[a, b]).unwrap().collect();
        assert_eq!(rows.len(), 4);
        let third = rows[2].as_ref().unwrap();
        assert_eq!((third.at.index, third.at.row, third.at.line, third.fields["x"].as_i64()), (2, 0, Some(2), Some(3)));
        assert!(third.at.file.ends_with("b.jsonl"));
        let err = rows[3].as_ref().unwrap_err().to_string();
        assert!(err.ends_with("b.jsonl:3: expected a JSON object, found an array"), "{err}");
    }

    #[test]
    fn garbage_with_a_parquet_extension_is_a_parquet_error() {
        let (_d, path) = write("bad.parquet", "not parquet at all");
        let err = Rows::open(&path).err().unwrap().to_string();
        assert!(err.contains("bad.parquet: not a readable Parquet file"), "{err}");
    }
}
