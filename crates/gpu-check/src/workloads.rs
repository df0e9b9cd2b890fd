//! The 8B-shaped model's workloads as token ids (the workloads' lengths, no tokenizer needed):
//! ~256-token and ~1024-token conversations, a mix of 64 to 2048 tokens, and best-of-8 (16 prompts
//! of ~1000 tokens with 8 answers each, so prompt sharing has something to share).

use armorm_model::{Encoded, RewardModel};

pub struct Workload {
    pub name: &'static str,
    pub conversations: Vec<Encoded>,
}

/// Pseudo-random token ids below Llama-3's special tokens (128000..).
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        1000 + ((self.0 >> 33) % 100_000) as u32
    }

    fn fresh(&mut self, n: usize) -> Vec<u32> {
        (0..n).map(|_| self.next()).collect()
    }
}

pub fn all(model: &RewardModel) -> anyhow::Result<Vec<Workload>> {
    let pattern: Vec<u32> = model.encoder().pattern().map(|p| p.ids().to_vec()).unwrap_or_default();
    let mut answers = Ids(0x5EED);
    let mut prompts = Ids(0xFACE);
    // prompt + gating pattern + answer, with distinct pseudo-random ids (no two conversations share
    // a prefix unless the workload means them to).
    let mut conversation = |prompt: &[u32], answer: usize| -> Vec<u32> {
        let mut v = prompt.to_vec();
        v.extend_from_slice(&pattern);
        v.extend(answers.fresh(answer));
        v
    };
    let mut ids: Vec<(&'static str, Vec<Vec<u32>>)> = Vec::new();
    ids.push(("256-token", (0..256).map(|_| conversation(&prompts.fresh(128), 120)).collect()));
    ids.push(("1024-token", (0..64).map(|_| conversation(&prompts.fresh(600), 415)).collect()));
    let mixed = [64, 2048, 128, 512, 96, 1024, 256, 1536, 80, 384, 768, 160];
    let mixed = mixed.iter().cycle().take(48).map(|&n| conversation(&prompts.fresh(n / 2), n / 2 - 9)).collect();
    ids.push(("mixed 64..2048", mixed));
    let mut best_of = Vec::new();
    for _ in 0..16 {
        let prompt = prompts.fresh(1000);
        best_of.extend((0..8).map(|_| conversation(&prompt, 128)));
    }
    ids.push(("best-of-8", best_of));
    ids.into_iter()
        .map(|(name, convs)| {
            let conversations = convs.into_iter().map(|c| model.encoder().encode_ids(c)).collect::<Result<_, _>>()?;
            Ok(Workload { name, conversations })
        })
        .collect()
}
