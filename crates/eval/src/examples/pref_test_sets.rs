//! The preference test sets (`allenai/pref-test-sets`, RewardBench's Prior Sets): `prompt` the
//! turns before two answer strings `chosen` and `rejected`. Each Hub split is a subset of its own,
//! whatever the rows' `subset` column says (anthropic_hhh's rows carry their sub-subset there,
//! kept as the example's sub-subset), as reward-bench reads them; a row of these sets read from a
//! local file is an ordinary v1 row.

use armorm_data::{Pair, Row};

use super::{id, own_subset, Example, Format, Layout};
use crate::error::Result;
use crate::rewardbench::PREF_TEST_SETS;

pub struct PrefTestSets;

impl Layout for PrefTestSets {
    fn describe(&self) -> &'static str {
        "a preference test set's row (from one of allenai/pref-test-sets' splits: a prompt message list, \
         chosen and rejected strings)"
    }

    fn read(&self, row: &Row, split: Option<&str>) -> Option<Result<Example>> {
        let split = split.filter(|s| PREF_TEST_SETS.contains(s))?;
        Some(Pair::from_row(row).map_err(Into::into).map(|pair| Example {
            id: id(row),
            subset: split.to_string(),
            subsubset: own_subset(row),
            format: Format::V1,
            chosen: vec![pair.chosen],
            rejected: vec![pair.rejected],
            at: row.at.to_string(),
        }))
    }
}
