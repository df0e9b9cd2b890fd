//! Bench conversations of controlled token lengths, deterministic from a seed.

use armorm_model::{Conversation, Encoded, RewardModel};

const WORDS: &[&str] = &[
    "the",
    "model",
    "reward",
    "policy",
    "gradient",
    "answer",
    "question",
    "explain",
    "carefully",
    "because",
    "therefore",
    "function",
    "returns",
    "value",
    "python",
    "training",
    "human",
    "preference",
    "helpful",
    "honest",
    "safe",
    "concise",
    "example",
    "step",
    "first",
    "second",
    "result",
    "error",
    "data",
    "token",
];

pub struct Workload {
    pub name: &'static str,
    pub conversations: Vec<Conversation>,
}

struct Words(u64);

impl Words {
    fn text(&mut self, approx_tokens: usize) -> String {
        (0..approx_tokens)
            .map(|_| {
                self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                WORDS[(self.0 >> 33) as usize % WORDS.len()]
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn conversation(words: &mut Words, prompt_tokens: usize, response_tokens: usize) -> Conversation {
    Conversation::from_prompt_response(words.text(prompt_tokens), words.text(response_tokens))
}

/// ~256-token, ~1024-token, mixed 64..2048 and best-of-N (8 x ~128 tokens after one ~1024 prompt).
pub fn all(scale: usize) -> Vec<Workload> {
    let mut w = Words(7);
    let mixed_lengths = [64, 2048, 128, 512, 96, 1024, 256, 1536, 80, 384, 768, 160];
    let prompt = w.text(1000);
    vec![
        Workload {
            name: "256-token",
            conversations: (0..16 * scale).map(|_| conversation(&mut w, 128, 110)).collect(),
        },
        Workload {
            name: "1024-token",
            conversations: (0..4 * scale).map(|_| conversation(&mut w, 600, 400)).collect(),
        },
        Workload {
            name: "mixed 64..2048",
            conversations: mixed_lengths
                .iter()
                .cycle()
                .take(12 * scale)
                .map(|&n| conversation(&mut w, n / 2, n / 2 - 15))
                .collect(),
        },
        Workload {
            name: "best-of-8",
            conversations: (0..8 * scale)
                .map(|_| Conversation::from_prompt_response(prompt.clone(), w.text(120)))
                .collect(),
        },
    ]
}

pub fn encode(model: &RewardModel, w: &Workload) -> Vec<Encoded> {
    w.conversations.iter().map(|c| model.encode(c).expect("bench conversations are valid")).collect()
}
