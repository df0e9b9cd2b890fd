//! Variable-length sequences laid end to end, and which tokens each one attends to.

use candle_core::{Device, Tensor};

use crate::error::Result;

/// Sequences laid end to end: token ids, their positions, and the segments they form. A segment may
/// continue another (its `prefix`): it then attends to the prefix's keys as if the prefix's tokens
/// were its own first tokens, which lets several responses share one computed prompt.
pub struct PackedBatch {
    pub(crate) ids: Tensor,
    /// Each token's position in its sequence (a continuation's count on from its prefix).
    pub(crate) positions: Vec<u32>,
    pub(crate) segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy)]
pub struct Segment {
    /// Offset in the packed token axis.
    pub start: usize,
    pub len: usize,
    /// Index of the segment whose tokens precede this one's (never itself a continuation).
    pub prefix: Option<usize>,
}

/// Collects segments; [`PackedBatchBuilder::build`] turns them into tensors.
#[derive(Default)]
pub struct PackedBatchBuilder {
    ids: Vec<u32>,
    positions: Vec<u32>,
    segments: Vec<Segment>,
}

impl PackedBatchBuilder {
    /// Adds a segment and returns its index. With a `prefix`, positions continue after it.
    pub fn push(&mut self, ids: &[u32], prefix: Option<usize>) -> usize {
        let prefix = prefix.filter(|&p| p < self.segments.len() && self.segments[p].prefix.is_none());
        let first = prefix.map_or(0, |p| self.segments[p].len) as u32;
        self.segments.push(Segment { start: self.ids.len(), len: ids.len(), prefix });
        self.ids.extend_from_slice(ids);
        self.positions.extend((0..ids.len() as u32).map(|i| first + i));
        self.segments.len() - 1
    }

    pub fn segment(&self, index: usize) -> Segment {
        self.segments[index]
    }

    /// Tokens packed so far: the rows a forward pass over the batch computes.
    pub fn tokens(&self) -> usize {
        self.ids.len()
    }

    pub fn build(self, device: &Device) -> Result<PackedBatch> {
        let n = self.ids.len();
        Ok(PackedBatch {
            ids: Tensor::from_vec(self.ids, n, device)?,
            positions: self.positions,
            segments: self.segments,
        })
    }
}

impl PackedBatch {
    /// Length of the sequence a segment ends: its prefix's tokens plus its own.
    pub(crate) fn sequence_len(&self, s: &Segment) -> usize {
        s.prefix.map_or(0, |p| self.segments[p].len) + s.len
    }
}
