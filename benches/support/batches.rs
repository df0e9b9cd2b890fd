//! Packed batches as the server forms them: consecutive conversations up to a token budget.

use armorm_model::Encoded;

/// `encoded` in order, split where the next conversation would take a batch past `budget` tokens
/// (a longer conversation gets a batch of its own).
pub fn by_tokens<'a>(encoded: impl IntoIterator<Item = &'a Encoded>, budget: usize) -> Vec<Vec<&'a Encoded>> {
    let mut batches: Vec<Vec<&Encoded>> = vec![Vec::new()];
    let mut tokens = 0;
    for e in encoded {
        if tokens + e.len() > budget && !batches.last().is_some_and(Vec::is_empty) {
            batches.push(Vec::new());
            tokens = 0;
        }
        tokens += e.len();
        batches.last_mut().expect("one batch at least").push(e);
    }
    batches
}
