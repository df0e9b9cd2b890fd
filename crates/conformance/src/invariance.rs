//! Batch invariance, bit for bit: a conversation's score, rewards, gating and coefficients are the
//! same f32 bits scored alone or at any position of any batch, next to any neighbours, with its
//! prompt shared or not. Random batches over a generated checkpoint whose heads (head_dim 32) and
//! projections (multiples of 32) take every CPU kernel (AMX tiles, AVX512-BF16 strips and f32) and,
//! on a GPU, the CUDA ones.

use std::collections::HashMap;
use std::path::Path;

use anyhow::ensure;
use armorm_model::text::template::ChatTemplate;
use armorm_model::{
    ComputeDType, DeviceChoice, Encoded, GatingPattern, LoadOptions, ModelSource, RewardModel, RewardOutput,
};
use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::fixtures::Fixtures;

/// splitmix64: seeded, the same draws on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    /// Mostly short, sometimes up to `max`: lengths whose key tiles end anywhere.
    fn length(&mut self, max: usize) -> usize {
        match self.below(4) {
            0 => 1 + self.below(max),
            _ => 1 + self.below(40),
        }
    }
}

const HIDDEN: usize = 128;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const INTERMEDIATE: usize = 256;
const LAYERS: usize = 2;
const VOCAB: usize = 420;
const OBJECTIVES: usize = 19;
const GATING_HIDDEN: usize = 64;

/// The head on the generated backbone: ArmoRM's, or a sequence classifier's (which shares prompts
/// without reading a gate).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum HeadUnderTest {
    Armo,
    Classifier,
}

/// A Llama checkpoint with `head`, random weights (outputs O(1)) and the fixtures' tiny tokenizer.
fn write_checkpoint(fx: &Fixtures, dir: &Path, head: HeadUnderTest) -> anyhow::Result<()> {
    let fixture = fx.model("tiny-f32");
    for file in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
        std::fs::copy(fixture.join(file), dir.join(file))?;
    }
    let class = match head {
        HeadUnderTest::Armo => "LlamaForRewardModelWithGating",
        HeadUnderTest::Classifier => "LlamaForSequenceClassification",
    };
    let config = serde_json::json!({
        "architectures": [class], "model_type": "llama",
        "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 4096,
        "num_objectives": OBJECTIVES, "gating_temperature": 10, "gating_hidden_dim": GATING_HIDDEN,
        "gating_n_hidden": 2, "torch_dtype": "float32",
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let mut rng = Rng(0x5EED);
    let mut tensors = HashMap::new();
    let mut add = |name: String, shape: &[usize], scale: f32, offset: f32| {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| offset + scale * rng.uniform()).collect();
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu).expect("the shape's element count");
        tensors.insert(name, tensor);
    };
    let fan_in = |n: usize| 1.0 / (n as f32).sqrt();
    let hd = HIDDEN / HEADS;
    add("model.embed_tokens.weight".into(), &[VOCAB, HIDDEN], 1.0, 0.0);
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        add(format!("{p}.input_layernorm.weight"), &[HIDDEN], 0.2, 1.0);
        add(format!("{p}.post_attention_layernorm.weight"), &[HIDDEN], 0.2, 1.0);
        add(format!("{p}.self_attn.q_proj.weight"), &[HIDDEN, HIDDEN], 2.0 * fan_in(HIDDEN), 0.0);
        add(format!("{p}.self_attn.k_proj.weight"), &[KV_HEADS * hd, HIDDEN], 2.0 * fan_in(HIDDEN), 0.0);
        add(format!("{p}.self_attn.v_proj.weight"), &[KV_HEADS * hd, HIDDEN], fan_in(HIDDEN), 0.0);
        add(format!("{p}.self_attn.o_proj.weight"), &[HIDDEN, HIDDEN], fan_in(HIDDEN), 0.0);
        add(format!("{p}.mlp.gate_proj.weight"), &[INTERMEDIATE, HIDDEN], fan_in(HIDDEN), 0.0);
        add(format!("{p}.mlp.up_proj.weight"), &[INTERMEDIATE, HIDDEN], fan_in(HIDDEN), 0.0);
        add(format!("{p}.mlp.down_proj.weight"), &[HIDDEN, INTERMEDIATE], fan_in(INTERMEDIATE), 0.0);
    }
    add("model.norm.weight".into(), &[HIDDEN], 0.2, 1.0);
    if head == HeadUnderTest::Classifier {
        add("score.weight".into(), &[1, HIDDEN], fan_in(HIDDEN), 0.0);
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
        return Ok(());
    }
    add("regression_layer.weight".into(), &[OBJECTIVES, HIDDEN], fan_in(HIDDEN), 0.0);
    add("reward_transform_matrix".into(), &[OBJECTIVES, OBJECTIVES], 0.3, 0.0);
    let dims = [HIDDEN, GATING_HIDDEN, GATING_HIDDEN, OBJECTIVES];
    for (i, io) in dims.windows(2).enumerate() {
        add(format!("gating.layers.{i}.weight"), &[io[1], io[0]], fan_in(io[0]), 0.0);
        add(format!("gating.layers.{i}.bias"), &[io[1]], 0.1, 0.0);
    }
    add("gating.logit_scale".into(), &[1], 0.0, 1.0);
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    Ok(())
}

/// Families of conversations that answer one prompt (so a batch shares it), with lengths from one
/// token of prompt to about 2048 in all.
fn conversations(model: &RewardModel, pattern: &[u32], rng: &mut Rng) -> anyhow::Result<Vec<Encoded>> {
    let pool: Vec<u32> = (0..VOCAB as u32).filter(|id| !pattern.contains(id)).collect();
    let draw = |rng: &mut Rng, n: usize| -> Vec<u32> { (0..n).map(|_| pool[rng.below(pool.len())]).collect() };
    let mut out = Vec::new();
    for _ in 0..10 {
        let n = rng.length(1500);
        let mut prompt = draw(rng, n);
        prompt.extend(pattern);
        for _ in 0..1 + rng.below(4) {
            let response = match rng.below(8) {
                0 => Vec::new(),
                _ => {
                    let n = rng.length(500);
                    draw(rng, n)
                }
            };
            let ids: Vec<u32> = prompt.iter().chain(&response).copied().collect();
            let encoded = model.encoder().encode_ids(ids)?;
            let shared = (!response.is_empty()).then_some(prompt.len());
            ensure!(encoded.prompt_end() == shared, "the pattern occurs once");
            out.push(encoded);
        }
    }
    Ok(out)
}

fn bits(out: &RewardOutput) -> Vec<u32> {
    let objectives = out.objectives.iter().flat_map(|o| o.rewards.iter().chain(&o.gating).chain(&o.coefficients));
    std::iter::once(out.score).chain(objectives.copied()).map(f32::to_bits).collect()
}

/// What one configuration's check covered.
#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    pub head: HeadUnderTest,
    pub dtype: String,
    pub share_prefixes: bool,
    pub conversations: usize,
    pub batches: usize,
    pub batches_sharing_a_prompt: usize,
}

/// Each conversation alone, then in random batches (sizes 1 to 16, repeats and prompt siblings,
/// random order), compared bit for bit on `device`.
pub fn check(fx: &Fixtures, head: HeadUnderTest, options: &LoadOptions) -> anyhow::Result<Invariant> {
    let dir = tempfile::tempdir()?;
    write_checkpoint(fx, dir.path(), head)?;
    let (share_prefixes, each_alone) = (options.share_prefixes, options.batch_invariant);
    let dtype = options.dtype.unwrap_or(ComputeDType::F32);
    let options = LoadOptions { dtype: Some(dtype), ..options.clone() };
    let model = RewardModel::load(&ModelSource::Local(dir.path().to_path_buf()), &options)?;
    let template = ChatTemplate::from_files(&dir.path().join("tokenizer_config.json"), None)?;
    let tokenizer = armorm_model::text::load_tokenizer(&dir.path().join("tokenizer.json"))?;
    let pattern = GatingPattern::derive(&template, &tokenizer)?;
    let mut rng = Rng(0xBA7C4 + dtype as u64);
    let encoded = conversations(&model, pattern.ids(), &mut rng)?;
    let alone: Vec<Vec<u32>> =
        encoded.iter().map(|e| Ok(bits(&model.forward(&[e])?[0]))).collect::<anyhow::Result<_>>()?;
    const ROUNDS: usize = 12;
    let mut shared_rounds = 0;
    for round in 0..ROUNDS {
        let size = 1 + rng.below(16);
        let picks: Vec<usize> = (0..size).map(|_| rng.below(encoded.len())).collect();
        let batch: Vec<&Encoded> = picks.iter().map(|&i| &encoded[i]).collect();
        let total: usize = batch.iter().map(|e| e.len()).sum();
        let computed = model.computed_tokens(&batch);
        ensure!((share_prefixes && !each_alone) || computed == total, "nothing is shared when sharing is off");
        shared_rounds += usize::from(computed < total);
        for (position, (&i, out)) in picks.iter().zip(model.forward(&batch)?).enumerate() {
            ensure!(
                bits(&out) == alone[i],
                "{head:?} {dtype:?}, sharing {share_prefixes}, round {round}: conversation {i} ({} tokens) at position \
                 {position} of {picks:?} differs from its score alone",
                encoded[i].len()
            );
        }
    }
    ensure!(!share_prefixes || each_alone || shared_rounds > 0, "{head:?}: no batch shared a prompt");
    Ok(Invariant {
        head,
        dtype: format!("{dtype:?}"),
        share_prefixes,
        conversations: encoded.len(),
        batches: ROUNDS,
        batches_sharing_a_prompt: shared_rounds,
    })
}

/// Every head, dtype and sharing setting on `device`; with `batch_invariant`, each conversation
/// computed alone (what a GPU needs), else as the device's kernels batch it.
pub fn every(fx: &Fixtures, device: DeviceChoice, batch_invariant: bool) -> Vec<(String, anyhow::Result<Invariant>)> {
    let mut out = Vec::new();
    for head in [HeadUnderTest::Armo, HeadUnderTest::Classifier] {
        for dtype in [ComputeDType::F32, ComputeDType::Bf16, ComputeDType::F16] {
            for share_prefixes in [true, false] {
                let name = format!("{head:?} {dtype:?} sharing {share_prefixes}, alone {batch_invariant}");
                let options =
                    LoadOptions { device, dtype: Some(dtype), share_prefixes, batch_invariant, ..Default::default() };
                out.push((name, check(fx, head, &options)));
            }
        }
    }
    out
}
