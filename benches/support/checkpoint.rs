//! A SmolLM2-135M-shaped ArmoRM checkpoint with deterministic random weights, written at bench time
//! (never committed): hidden 576, 30 layers, 9 heads / 3 kv heads, intermediate 1536, rope_theta
//! 100000, vocab 128256 (the Llama-3 tokenizer), ArmoRM heads with gating width 1024 x 3.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

pub const LLAMA3_TEMPLATE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

pub struct Shape {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub rope_theta: f64,
    pub objectives: usize,
    pub gating_hidden: usize,
    pub gating_layers: usize,
}

/// Llama-3-8B: the real ArmoRM backbone's shape, for GPU runs.
pub const LLAMA3_8B: Shape = Shape {
    hidden: 4096,
    layers: 32,
    heads: 32,
    kv_heads: 8,
    intermediate: 14336,
    vocab: 128256,
    rope_theta: 500000.0,
    objectives: 19,
    gating_hidden: 1024,
    gating_layers: 3,
};

pub const SMOLLM2_135M: Shape = Shape {
    hidden: 576,
    layers: 30,
    heads: 9,
    kv_heads: 3,
    intermediate: 1536,
    vocab: 128256,
    rope_theta: 100000.0,
    objectives: 19,
    gating_hidden: 1024,
    gating_layers: 3,
};

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

    fn tensor(&mut self, shape: &[usize], scale: f32, offset: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| offset + scale * self.next()).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).expect("shape matches data")
    }
}

/// Writes the checkpoint into `dir` (skipped when already there) and returns it. `tokenizer` must
/// carry Llama-3's special tokens (the real one, or the fixtures' tiny one for token-id-only runs).
pub fn write(dir: &Path, s: &Shape, tokenizer: &Path) -> anyhow::Result<PathBuf> {
    if dir.join("model.safetensors").is_file() {
        return Ok(dir.to_path_buf());
    }
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng(0xA4E0_4A11);
    let hd = s.hidden / s.heads;
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let lin = |rng: &mut Rng, out: usize, inp: usize| rng.tensor(&[out, inp], (3.0 / inp as f32).sqrt(), 0.0);
    // The published checkpoint stores the backbone in bf16 and the heads in f32; converting each
    // tensor as it is made keeps an 8B model's generation within ~2x its bf16 size.
    let bf16 = |t: Tensor| t.to_dtype(DType::BF16).expect("f32 converts to bf16");
    t.insert("model.embed_tokens.weight".into(), bf16(rng.tensor(&[s.vocab, s.hidden], 1.0, 0.0)));
    for l in 0..s.layers {
        let p = format!("model.layers.{l}");
        t.insert(format!("{p}.input_layernorm.weight"), bf16(rng.tensor(&[s.hidden], 0.1, 1.0)));
        t.insert(format!("{p}.post_attention_layernorm.weight"), bf16(rng.tensor(&[s.hidden], 0.1, 1.0)));
        t.insert(format!("{p}.self_attn.q_proj.weight"), bf16(lin(&mut rng, s.heads * hd, s.hidden)));
        t.insert(format!("{p}.self_attn.k_proj.weight"), bf16(lin(&mut rng, s.kv_heads * hd, s.hidden)));
        t.insert(format!("{p}.self_attn.v_proj.weight"), bf16(lin(&mut rng, s.kv_heads * hd, s.hidden)));
        t.insert(format!("{p}.self_attn.o_proj.weight"), bf16(lin(&mut rng, s.hidden, s.heads * hd)));
        t.insert(format!("{p}.mlp.gate_proj.weight"), bf16(lin(&mut rng, s.intermediate, s.hidden)));
        t.insert(format!("{p}.mlp.up_proj.weight"), bf16(lin(&mut rng, s.intermediate, s.hidden)));
        t.insert(format!("{p}.mlp.down_proj.weight"), bf16(lin(&mut rng, s.hidden, s.intermediate)));
    }
    t.insert("model.norm.weight".into(), bf16(rng.tensor(&[s.hidden], 0.1, 1.0)));
    let k = s.objectives;
    t.insert("regression_layer.weight".into(), lin(&mut rng, k, s.hidden));
    t.insert(
        "reward_transform_matrix".into(),
        rng.tensor(&[k, k], 0.1, 0.0).add(&Tensor::eye(k, DType::F32, &Device::Cpu)?)?,
    );
    let mut dims = vec![s.hidden];
    dims.extend(std::iter::repeat_n(s.gating_hidden, s.gating_layers));
    dims.push(k);
    for (i, io) in dims.windows(2).enumerate() {
        t.insert(format!("gating.layers.{i}.weight"), lin(&mut rng, io[1], io[0]));
        t.insert(format!("gating.layers.{i}.bias"), rng.tensor(&[io[1]], 0.1, 0.0));
    }
    t.insert("gating.logit_scale".into(), Tensor::new(&[1.0f32], &Device::Cpu)?);
    candle_core::safetensors::save(&t, dir.join("model.safetensors"))?;
    let config = serde_json::json!({
        "architectures": ["LlamaForRewardModelWithGating"], "model_type": "llama",
        "hidden_size": s.hidden, "intermediate_size": s.intermediate, "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads, "vocab_size": s.vocab,
        "rms_norm_eps": 1e-5, "rope_theta": s.rope_theta, "max_position_embeddings": 8192,
        "hidden_act": "silu", "tie_word_embeddings": false, "bos_token_id": 128000, "eos_token_id": 128009,
        "pad_token_id": s.vocab, "num_objectives": k, "gating_temperature": 10,
        "gating_hidden_dim": s.gating_hidden, "gating_n_hidden": s.gating_layers, "torch_dtype": "bfloat16",
    });
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    std::fs::copy(tokenizer, dir.join("tokenizer.json"))?;
    let tokenizer_config = serde_json::json!({
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    std::fs::write(dir.join("tokenizer_config.json"), serde_json::to_string_pretty(&tokenizer_config)?)?;
    Ok(dir.to_path_buf())
}
