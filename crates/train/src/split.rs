//! The seeded 80/20 train/validation split, defined so that any tool can reproduce it: each record
//! index gets a key from SplitMix64, records are ordered by (key, index), and the first
//! ceil(0.2 n) of them validate (scikit-learn's `test_size=0.2` count). It depends only on the seed
//! and on which records take part, not on file order, shard layout or thread count.

/// SplitMix64's output function (Steele, Lea and Flood, 2014).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn split_key(seed: u64, record: u64) -> u64 {
    splitmix64(splitmix64(seed) ^ record)
}

/// For each of `records`, whether it validates.
pub fn validation_mask(seed: u64, records: &[u64]) -> Vec<bool> {
    let n_val = (records.len() as f64 * 0.2).ceil() as usize;
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| (split_key(seed, records[i]), records[i]));
    let mut mask = vec![false; records.len()];
    for &i in &order[..n_val] {
        mask[i] = true;
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The first outputs of the reference SplitMix64 generator seeded with 0 (state advances by
        // the golden gamma before each output).
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn twenty_percent_rounded_up_independent_of_order() {
        let records: Vec<u64> = (0..11).collect();
        let mask = validation_mask(7, &records);
        assert_eq!(mask.iter().filter(|&&v| v).count(), 3);
        let reversed: Vec<u64> = records.iter().rev().copied().collect();
        let mask_rev = validation_mask(7, &reversed);
        let val: Vec<u64> = records.iter().zip(&mask).filter(|(_, &v)| v).map(|(r, _)| *r).collect();
        let mut val_rev: Vec<u64> = reversed.iter().zip(&mask_rev).filter(|(_, &v)| v).map(|(r, _)| *r).collect();
        val_rev.sort();
        assert_eq!(val, val_rev);
        assert_ne!(validation_mask(8, &records), mask, "the seed changes the split");
    }
}
