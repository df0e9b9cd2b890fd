//! Which waiting items form the next batch.

use std::time::Duration;

/// How a batch's token cost grows with its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostModel {
    /// Sequences are concatenated (the CPU backend): cost is the sum of lengths.
    Packed,
    /// Sequences are padded to the longest (GPU backends without varlen attention).
    Padded,
}

impl CostModel {
    fn cost(self, count: usize, sum: usize, longest: usize) -> usize {
        match self {
            Self::Packed => sum,
            Self::Padded => count * longest,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BatchPolicy {
    pub max_batch_tokens: usize,
    pub max_batch_size: usize,
    /// How long the oldest item may wait for company before its batch runs anyway.
    pub max_batch_wait: Duration,
    pub max_queue_tokens: usize,
    pub max_queue_items: usize,
    pub cost: CostModel,
}

impl BatchPolicy {
    /// Enough is waiting to fill a batch, so there is no point waiting for more.
    pub(crate) fn is_full(&self, items: usize, tokens: usize) -> bool {
        items >= self.max_batch_size || tokens >= self.max_batch_tokens
    }

    /// Indices (ascending) of the items, given their lengths in arrival order, that form the next
    /// batch. The oldest item is always included, which bounds every item's wait by the number of
    /// items ahead of it; the rest are the ones closest to its length that fit the budget, so short
    /// and long inputs are not mixed when the queue holds both.
    pub fn select(&self, lengths: &[usize]) -> Vec<usize> {
        let Some(&anchor) = lengths.first() else { return Vec::new() };
        let mut candidates: Vec<usize> = (1..lengths.len()).collect();
        candidates.sort_by_key(|&i| (lengths[i].abs_diff(anchor), i));
        let mut chosen = vec![0];
        let (mut sum, mut longest) = (anchor, anchor);
        for i in candidates {
            if chosen.len() >= self.max_batch_size {
                break;
            }
            let (s, l) = (sum + lengths[i], longest.max(lengths[i]));
            if self.cost.cost(chosen.len() + 1, s, l) <= self.max_batch_tokens {
                chosen.push(i);
                (sum, longest) = (s, l);
            }
        }
        chosen.sort_unstable();
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(cost: CostModel, tokens: usize, size: usize) -> BatchPolicy {
        BatchPolicy {
            max_batch_tokens: tokens,
            max_batch_size: size,
            max_batch_wait: Duration::from_millis(1),
            max_queue_tokens: usize::MAX,
            max_queue_items: usize::MAX,
            cost,
        }
    }

    #[test]
    fn oldest_always_goes_and_neighbours_in_length_join_it() {
        let p = policy(CostModel::Packed, 1000, 8);
        // A long oldest item takes the longest of the rest first, then whatever still fits.
        assert_eq!(p.select(&[950, 10, 20, 30]), vec![0, 2, 3]);
        // Short items group together and leave the long one for its own batch.
        assert_eq!(p.select(&[10, 990, 12, 11]), vec![0, 2, 3]);
    }

    #[test]
    fn padded_cost_counts_the_longest_member() {
        let p = policy(CostModel::Padded, 100, 8);
        // 4 x 25 = 100 fits; adding the 40 would cost 5 x 40.
        assert_eq!(p.select(&[25, 40, 20, 25, 22]), vec![0, 2, 3, 4]);
    }

    #[test]
    fn batch_size_is_capped() {
        let p = policy(CostModel::Packed, 1000, 2);
        assert_eq!(p.select(&[5, 5, 5, 5]), vec![0, 1]);
        assert!(p.select(&[]).is_empty());
    }
}
