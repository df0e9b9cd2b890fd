//! ArmoRM-style checkpoints of a given shape and decoder family with deterministic random weights,
//! written at bench time (never committed): by default SmolLM2-135M-shaped (hidden 576, 30 layers,
//! 9 heads / 3 kv heads, intermediate 1536, rope_theta 100000), vocab 128256 (the Llama-3
//! tokenizer), ArmoRM heads with gating width 1024 x 3. The Qwen3 and Gemma-2 shapes carry their
//! family's tensors and config keys (q/k norms; (1 + w) sandwich norms, soft cap, windows).

use std::io::Write;
use std::path::{Path, PathBuf};

pub const LLAMA3_TEMPLATE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

pub struct Shape {
    /// transformers' `model_type`: llama, qwen3 or gemma2.
    pub family: &'static str,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub rope_theta: f64,
    pub objectives: usize,
    pub gating_hidden: usize,
    pub gating_layers: usize,
}

/// Llama-3-8B: the real ArmoRM backbone's shape, for GPU runs.
pub const LLAMA3_8B: Shape = Shape {
    family: "llama",
    hidden: 4096,
    layers: 32,
    heads: 32,
    kv_heads: 8,
    intermediate: 14336,
    head_dim: 128,
    vocab: 128256,
    rope_theta: 500000.0,
    objectives: 19,
    gating_hidden: 1024,
    gating_layers: 3,
};

/// Llama-3.2-1B: the shape of a 1.2B-parameter ArmoRM (2.4 GB in bf16).
pub const LLAMA32_1B: Shape = Shape {
    family: "llama",
    hidden: 2048,
    layers: 16,
    heads: 32,
    kv_heads: 8,
    intermediate: 8192,
    head_dim: 64,
    vocab: 128256,
    rope_theta: 500000.0,
    objectives: 19,
    gating_hidden: 1024,
    gating_layers: 3,
};

pub const SMOLLM2_135M: Shape = Shape {
    family: "llama",
    hidden: 576,
    layers: 30,
    heads: 9,
    kv_heads: 3,
    intermediate: 1536,
    head_dim: 64,
    vocab: 128256,
    rope_theta: 100000.0,
    objectives: 19,
    gating_hidden: 1024,
    gating_layers: 3,
};

/// Qwen3-0.6B (Skywork-Reward-V2-Qwen3-0.6B's backbone): head_dim 128 where hidden / heads is 64.
pub const QWEN3_0_6B: Shape = Shape {
    family: "qwen3",
    hidden: 1024,
    layers: 28,
    heads: 16,
    kv_heads: 8,
    intermediate: 3072,
    head_dim: 128,
    vocab: 128256,
    rope_theta: 1000000.0,
    objectives: 19,
    gating_hidden: 1024,
    gating_layers: 3,
};

/// Gemma-2-2B, with the bench's Llama-3 vocabulary (128256, not 256000: the embedding table's
/// size does not change the forward pass's cost).
pub const GEMMA2_2B: Shape = Shape {
    family: "gemma2",
    hidden: 2304,
    layers: 26,
    heads: 8,
    kv_heads: 4,
    intermediate: 9216,
    head_dim: 256,
    vocab: 128256,
    rope_theta: 10000.0,
    objectives: 19,
    gating_hidden: 1024,
    gating_layers: 3,
};

/// The shapes by their `--shape` names, with the directory each is written to.
pub fn named(name: &str) -> Option<(&'static Shape, &'static str)> {
    Some(match name {
        "135m" => (&SMOLLM2_135M, "smollm2-135m-armorm"),
        "1b" => (&LLAMA32_1B, "llama32-1b-armorm"),
        "8b" => (&LLAMA3_8B, "llama3-8b-armorm"),
        "qwen3-0.6b" => (&QWEN3_0_6B, "qwen3-0.6b-armorm"),
        "gemma2-2b" => (&GEMMA2_2B, "gemma2-2b-armorm"),
        _ => return None,
    })
}

/// splitmix64: fast, seedable, the same numbers on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    /// `n` values `offset + scale * U(-1, 1)`, written as `dtype` in chunks: an 8B checkpoint is
    /// generated with a few MB of memory.
    fn write(&mut self, out: &mut impl Write, n: usize, init: Init, dtype: Stored) -> std::io::Result<()> {
        const CHUNK: usize = 1 << 20;
        let mut bytes = Vec::with_capacity(CHUNK * 4);
        let mut done = 0;
        while done < n {
            bytes.clear();
            for i in done..n.min(done + CHUNK) {
                let x = match init {
                    Init::Uniform { scale, offset } => offset + scale * self.next(),
                    // Identity plus noise, for a k x k matrix.
                    Init::NearIdentity { k } => f32::from(i / k == i % k) + 0.1 * self.next(),
                };
                match dtype {
                    Stored::F32 => bytes.extend_from_slice(&x.to_le_bytes()),
                    Stored::Bf16 => bytes.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
                }
            }
            out.write_all(&bytes)?;
            done = n.min(done + CHUNK);
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Init {
    Uniform { scale: f32, offset: f32 },
    NearIdentity { k: usize },
}

#[derive(Clone, Copy)]
enum Stored {
    F32,
    Bf16,
}

struct Spec {
    name: String,
    shape: Vec<usize>,
    init: Init,
    dtype: Stored,
}

/// Every tensor of an ArmoRM of shape `s`, in file order. The published checkpoint stores the
/// backbone in bf16 and the heads in f32.
fn specs(s: &Shape) -> Vec<Spec> {
    let hd = s.head_dim;
    let mut t = Vec::new();
    let mut add =
        |name: String, shape: &[usize], init, dtype| t.push(Spec { name, shape: shape.to_vec(), init, dtype });
    let lin = |inp: usize| Init::Uniform { scale: (3.0 / inp as f32).sqrt(), offset: 0.0 };
    // Gemma multiplies by 1 + w: weights near 0 there.
    let norm = Init::Uniform { scale: 0.1, offset: if s.family == "gemma2" { 0.0 } else { 1.0 } };
    add(
        "model.embed_tokens.weight".into(),
        &[s.vocab, s.hidden],
        Init::Uniform { scale: 1.0, offset: 0.0 },
        Stored::Bf16,
    );
    for l in 0..s.layers {
        let p = format!("model.layers.{l}");
        add(format!("{p}.input_layernorm.weight"), &[s.hidden], norm, Stored::Bf16);
        add(format!("{p}.post_attention_layernorm.weight"), &[s.hidden], norm, Stored::Bf16);
        add(format!("{p}.self_attn.q_proj.weight"), &[s.heads * hd, s.hidden], lin(s.hidden), Stored::Bf16);
        add(format!("{p}.self_attn.k_proj.weight"), &[s.kv_heads * hd, s.hidden], lin(s.hidden), Stored::Bf16);
        add(format!("{p}.self_attn.v_proj.weight"), &[s.kv_heads * hd, s.hidden], lin(s.hidden), Stored::Bf16);
        add(format!("{p}.self_attn.o_proj.weight"), &[s.hidden, s.heads * hd], lin(s.heads * hd), Stored::Bf16);
        add(format!("{p}.mlp.gate_proj.weight"), &[s.intermediate, s.hidden], lin(s.hidden), Stored::Bf16);
        add(format!("{p}.mlp.up_proj.weight"), &[s.intermediate, s.hidden], lin(s.hidden), Stored::Bf16);
        add(format!("{p}.mlp.down_proj.weight"), &[s.hidden, s.intermediate], lin(s.intermediate), Stored::Bf16);
        if s.family == "qwen3" {
            add(format!("{p}.self_attn.q_norm.weight"), &[hd], norm, Stored::Bf16);
            add(format!("{p}.self_attn.k_norm.weight"), &[hd], norm, Stored::Bf16);
        }
        if s.family == "gemma2" {
            add(format!("{p}.pre_feedforward_layernorm.weight"), &[s.hidden], norm, Stored::Bf16);
            add(format!("{p}.post_feedforward_layernorm.weight"), &[s.hidden], norm, Stored::Bf16);
        }
    }
    add("model.norm.weight".into(), &[s.hidden], norm, Stored::Bf16);
    let k = s.objectives;
    add("regression_layer.weight".into(), &[k, s.hidden], lin(s.hidden), Stored::F32);
    add("reward_transform_matrix".into(), &[k, k], Init::NearIdentity { k }, Stored::F32);
    let mut dims = vec![s.hidden];
    dims.extend(std::iter::repeat_n(s.gating_hidden, s.gating_layers));
    dims.push(k);
    for (i, io) in dims.windows(2).enumerate() {
        add(format!("gating.layers.{i}.weight"), &[io[1], io[0]], lin(io[0]), Stored::F32);
        add(format!("gating.layers.{i}.bias"), &[io[1]], Init::Uniform { scale: 0.1, offset: 0.0 }, Stored::F32);
    }
    add("gating.logit_scale".into(), &[1], Init::Uniform { scale: 0.0, offset: 1.0 }, Stored::F32);
    t
}

/// Writes the safetensors file tensor by tensor (header first, from the specs' sizes), into a
/// temporary name renamed at the end, so an interrupted write never passes for a checkpoint.
fn write_safetensors(path: &Path, specs: &[Spec]) -> anyhow::Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for spec in specs {
        let (name, size) = match spec.dtype {
            Stored::F32 => ("F32", 4),
            Stored::Bf16 => ("BF16", 2),
        };
        let end = offset + spec.shape.iter().product::<usize>() * size;
        header.insert(
            spec.name.clone(),
            serde_json::json!({"dtype": name, "shape": spec.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&header)?;
    // The format wants the data 8-byte aligned; the header is padded with spaces.
    header.resize(header.len().next_multiple_of(8), b' ');
    let partial = path.with_extension("partial");
    let mut out = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(&partial)?);
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(&header)?;
    let mut rng = Rng(0xA4E0_4A11);
    for spec in specs {
        rng.write(&mut out, spec.shape.iter().product(), spec.init, spec.dtype)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(partial, path)?;
    Ok(())
}

/// Writes the checkpoint into `dir` (skipped when already there) and returns it. `tokenizer` must
/// carry Llama-3's special tokens (the real one, or the fixtures' tiny one for token-id-only runs).
pub fn write(dir: &Path, s: &Shape, tokenizer: &Path) -> anyhow::Result<PathBuf> {
    if dir.join("model.safetensors").is_file() {
        return Ok(dir.to_path_buf());
    }
    std::fs::create_dir_all(dir)?;
    write_safetensors(&dir.join("model.safetensors"), &specs(s))?;
    let k = s.objectives;
    let class = match s.family {
        "qwen3" => "Qwen3ForRewardModelWithGating",
        "gemma2" => "Gemma2ForRewardModelWithGating",
        _ => "LlamaForRewardModelWithGating",
    };
    let mut config = serde_json::json!({
        "architectures": [class], "model_type": s.family, "head_dim": s.head_dim,
        "hidden_size": s.hidden, "intermediate_size": s.intermediate, "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads, "vocab_size": s.vocab,
        "rms_norm_eps": 1e-5, "rope_theta": s.rope_theta, "max_position_embeddings": 8192,
        "hidden_act": "silu", "tie_word_embeddings": false, "bos_token_id": 128000, "eos_token_id": 128009,
        "pad_token_id": s.vocab, "num_objectives": k, "gating_temperature": 10,
        "gating_hidden_dim": s.gating_hidden, "gating_n_hidden": s.gating_layers, "torch_dtype": "bfloat16",
    });
    if s.family == "gemma2" {
        // Gemma-2-2B's own settings (its activation replaces Llama's silu).
        let gemma = serde_json::json!({
            "hidden_activation": "gelu_pytorch_tanh", "hidden_act": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6,
            "query_pre_attn_scalar": 256, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
            "sliding_window": 4096,
        });
        config.as_object_mut().expect("an object").extend(gemma.as_object().expect("an object").clone());
    }
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    std::fs::copy(tokenizer, dir.join("tokenizer.json"))?;
    let tokenizer_config = serde_json::json!({
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    std::fs::write(dir.join("tokenizer_config.json"), serde_json::to_string_pretty(&tokenizer_config)?)?;
    Ok(dir.to_path_buf())
}
