//! The data files users bring to `armorm train` and `armorm eval`: rows from JSON Lines or Parquet,
//! each with its location, parsed into conversations and preference pairs; plus the rank statistics
//! both commands compute over those rows.
//!
//! Every error names the file and the line (JSON Lines) or row (Parquet) it comes from. Nothing here
//! loads a model or computes a forward pass.

pub mod digest;
pub mod error;
pub mod messages;
pub mod pairs;
pub mod rows;
pub mod source;
pub mod stats;

pub use error::{DataError, Result};
pub use pairs::Pair;
pub use rows::{Row, RowRef, Rows};
pub use source::{DataSource, Dataset};
