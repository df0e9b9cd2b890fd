//! A pairwise preference model's verdict on one comparison, from the logits of "A" and "B" in both
//! orders, as reward-bench's `SlicPairPMPipeline` takes it: P(chosen) in each order by a softmax
//! at temperature 1 over the two logits, then their mean, which cancels the model's position bias.

use crate::error::{ModelError, Result};
use crate::scorer::RewardOutput;

/// What the model says of `chosen` against `rejected`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Verdict {
    /// The mean of the two orders' P(chosen).
    pub preference: f64,
    /// Its logit, ln(p / (1 - p)), from both orders' complementary probabilities (finite where 1 -
    /// p would round to 0).
    pub margin: f64,
    /// P(chosen) when it was response A.
    pub chosen_first: f64,
    /// P(chosen) when it was response B.
    pub chosen_second: f64,
    /// Chosen's log-odds in each order, exact in f64 from the f32 logits.
    #[serde(skip)]
    log_odds: (f64, f64),
}

impl Verdict {
    /// `first`: the logits ("A", "B") with chosen as response A; `second`: with chosen as B.
    pub fn new(first: [f32; 2], second: [f32; 2]) -> Self {
        Self::from_log_odds(f64::from(first[0]) - f64::from(first[1]), f64::from(second[1]) - f64::from(second[0]))
    }

    /// One verdict per two of a pairwise model's `outputs`, in order: each comparison's order with
    /// chosen as response A, then the one with chosen as B (as the encoder gives them).
    pub fn of_orders(outputs: &[RewardOutput]) -> Result<Vec<Self>> {
        let logits = |o: &RewardOutput| match o.logits.as_deref() {
            Some(&[a, b]) => Ok([a, b]),
            _ => Err(ModelError::Checkpoint("not a pairwise preference model's output: no \"A\"/\"B\" logits".into())),
        };
        if !outputs.len().is_multiple_of(2) {
            return Err(ModelError::Checkpoint(format!("{} outputs are not whole comparisons", outputs.len())));
        }
        outputs.chunks(2).map(|orders| Ok(Self::new(logits(&orders[0])?, logits(&orders[1])?))).collect()
    }

    /// The same comparison with the roles swapped: rejected's preference over chosen.
    pub fn reversed(&self) -> Self {
        Self::from_log_odds(-self.log_odds.0, -self.log_odds.1)
    }

    /// From chosen's log-odds as response A (`d1`) and as response B (`d2`).
    fn from_log_odds(d1: f64, d2: f64) -> Self {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let (chosen_first, chosen_second) = (sigmoid(d1), sigmoid(d2));
        let against = (sigmoid(-d1) + sigmoid(-d2)) / 2.0;
        let preference = (chosen_first + chosen_second) / 2.0;
        Self { preference, margin: preference.ln() - against.ln(), chosen_first, chosen_second, log_odds: (d1, d2) }
    }

    /// Chosen wins: the mean P(chosen) is above 1/2 (reward-bench's `> 0.5`), decided from the
    /// log-odds so that two identical orders (a pair of identical answers) tie exactly.
    pub fn chosen_wins(&self) -> bool {
        // σ(d1) + σ(d2) > 1  ⇔  σ(d1) > σ(-d2)  ⇔  d1 + d2 > 0.
        self.log_odds.0 + self.log_odds.1 > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict;

    #[test]
    fn both_orders_average_and_identical_answers_tie() {
        // Chosen is A with logits (2, 0), then B with logits (1, 0.5): P = σ(2) and σ(-0.5).
        let v = Verdict::new([2.0, 0.0], [1.0, 0.5]);
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        assert!((v.preference - (s(2.0) + s(-0.5)) / 2.0).abs() < 1e-15);
        assert!((v.margin - (v.preference / (1.0 - v.preference)).ln()).abs() < 1e-12);
        assert!(Verdict::new([2.0, 0.0], [1.0, 0.5]).chosen_wins());
        // The same text in both orders: the model's bias for A cancels exactly.
        assert!(!Verdict::new([0.3, -1.7], [0.3, -1.7]).chosen_wins());
        let (v, r) = (Verdict::new([2.0, 0.0], [1.0, 0.5]), Verdict::new([2.0, 0.0], [1.0, 0.5]).reversed());
        assert!((v.preference + r.preference - 1.0).abs() < 1e-15 && (v.margin + r.margin).abs() < 1e-12);
        assert!(Verdict::new([0.3, -1.7], [0.3, -1.7]).margin.abs() < 1e-12);
        assert!(Verdict::new([80.0, -80.0], [-80.0, 80.0]).margin.is_finite());
    }
}
