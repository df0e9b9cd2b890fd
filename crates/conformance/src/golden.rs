//! A fixture checkpoint scored as its reference scored it: the conversation suite's text, token ids
//! and refusals, then every output (score, logits, rewards, gating, coefficients) within a
//! tolerance of the recorded one, in one batch whose shared prompts are computed once, and each
//! conversation alone with the very bits it got in the batch.

use anyhow::{bail, ensure, Context};
use armorm_model::{
    ComputeDType, DeviceChoice, Encoded, LoadOptions, ModelError, ModelSource, RewardModel, RewardOutput,
};
use serde::Serialize;
use serde_json::Value;

use crate::fixtures::{floats, ids, Fixtures};

#[derive(Debug, Clone, Copy)]
pub enum Tol {
    Absolute(f32),
    /// A fraction of the largest magnitude in the reference vector (at least 1).
    OfVectorScale(f32),
}

impl Tol {
    fn bound(self, reference: &[f32]) -> f32 {
        match self {
            Tol::Absolute(t) => t,
            Tol::OfVectorScale(f) => f * reference.iter().fold(1.0f32, |m, x| m.max(x.abs())),
        }
    }
}

/// Which recorded outputs a run is held to, and how closely.
#[derive(Debug, Clone, Copy)]
pub struct Against {
    pub key: &'static str,
    pub tol: Tol,
}

impl Against {
    /// f32 compute against the reference's f32 forward.
    pub const F32: Against = Against { key: "f32", tol: Tol::Absolute(1e-4) };
    /// bf16 compute against the reference's bf16 forward. bf16 rounds every activation to 8 bits of
    /// mantissa, in another order than PyTorch's; on these fixtures (random weights with norms far
    /// from 1, which amplify rounding) PyTorch's own bf16 forward is up to 0.099 from its f32 one on
    /// rewards of magnitude ~6, so the bound is 5% of the vector's largest magnitude, at least 0.05.
    pub const BF16: Against = Against { key: "bf16", tol: Tol::OfVectorScale(0.05) };
    /// bf16 compute against the f32 forward, within the bf16 bound.
    pub const BF16_NEAR_F32: Against = Against { key: "f32", tol: Tol::OfVectorScale(0.05) };
}

/// What one check found.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub model: String,
    pub dtype: String,
    pub reference: &'static str,
    pub conversations: usize,
    pub max_err: f32,
    pub tokens: usize,
    /// Tokens computed: fewer than `tokens` when prompts were shared.
    pub computed_tokens: usize,
}

pub fn load(fx: &Fixtures, name: &str, options: &LoadOptions) -> anyhow::Result<RewardModel> {
    RewardModel::load(&ModelSource::Local(fx.model(name)), options).with_context(|| format!("loading {name}"))
}

/// `name` loaded on `device` in `dtype` (`None`: the checkpoint's own) and checked.
pub fn check_on(
    fx: &Fixtures,
    name: &str,
    device: DeviceChoice,
    dtype: Option<ComputeDType>,
    against: Against,
) -> anyhow::Result<Checked> {
    let model = load(fx, name, &LoadOptions { device, dtype, ..Default::default() })?;
    check(fx, name, &model, against)
}

/// Every scored fixture in f32, and in bf16 where a bf16 reference was recorded, on `device`; each
/// must also have computed its shared prompts once.
pub fn every(fx: &Fixtures, device: DeviceChoice) -> anyhow::Result<Vec<(String, anyhow::Result<Checked>)>> {
    let mut out = Vec::new();
    for name in fx.scored()? {
        let has_bf16 = fx.expected(&name)?.get("bf16").is_some();
        let runs = [(ComputeDType::F32, Against::F32)]
            .into_iter()
            .chain(has_bf16.then_some((ComputeDType::Bf16, Against::BF16)));
        for (dtype, against) in runs {
            let result = check_on(fx, &name, device, Some(dtype), against).and_then(|c| {
                ensure!(c.computed_tokens < c.tokens, "{name}: the suite's shared prompts were not computed once");
                Ok(c)
            });
            out.push((format!("{name} {dtype:?} vs {}", against.key), result));
        }
    }
    Ok(out)
}

/// The refusal code of a conversation, as the CLI and the server name it.
fn code(e: &ModelError) -> anyhow::Result<&'static str> {
    match e {
        ModelError::Conversation(c) => Ok(c.code()),
        // A template that raises (Gemma's on a system turn) refuses the conversation.
        ModelError::Template(_) => Ok("invalid_request"),
        other => bail!("{other}"),
    }
}

/// Encodes the suite, holding text, ids, gate positions and refusals to the reference; returns the
/// scorable conversations with their reference case.
pub fn encode_all<'a>(
    fx: &Fixtures,
    model: &RewardModel,
    cases: &'a [Value],
) -> anyhow::Result<Vec<(Encoded, &'a Value)>> {
    let mut out = Vec::new();
    for (conv, case) in fx.conversations()?.iter().zip(cases) {
        let idx = &case["index"];
        let encoded = match conv {
            Err(code) => Err(code.clone()),
            Ok(c) => match model.encoder().render(c) {
                Err(e) => Err(code(&e)?.to_string()),
                Ok(text) => {
                    ensure!(
                        Some(text.as_str()) == case["text"].as_str(),
                        "case {idx}: text differs from the reference"
                    );
                    match model.encode(c) {
                        Ok(enc) => Ok(enc),
                        Err(e) => Err(code(&e)?.to_string()),
                    }
                }
            },
        };
        match encoded {
            Err(got) => ensure!(
                case["error"].as_str() == Some(got.as_str()),
                "case {idx}: refused as {got}, reference {}",
                case["error"]
            ),
            Ok(enc) => {
                ensure!(case.get("error").is_none(), "case {idx}: the reference refuses it");
                ensure!(enc.ids() == ids(&case["ids"])?.as_slice(), "case {idx}: token ids differ from the reference");
                if let Some(gate) = case.get("gate_pos") {
                    ensure!(
                        Some(enc.gate_pos() as u64) == gate.as_u64(),
                        "case {idx}: gate position {}, reference {gate}",
                        enc.gate_pos()
                    );
                }
                out.push((enc, case));
            }
        }
    }
    Ok(out)
}

/// Checks a loaded fixture model against `against`'s recorded outputs.
pub fn check(fx: &Fixtures, name: &str, model: &RewardModel, against: Against) -> anyhow::Result<Checked> {
    let exp = fx.expected(name)?;
    let cases = exp[against.key].as_array().with_context(|| format!("{name}: no {} reference", against.key))?;
    if let Some(class) = exp.get("architecture").and_then(Value::as_str) {
        ensure!(model.architecture().class == class, "{name}: loaded as {}, not {class}", model.architecture().class);
    }
    if let (Some(pattern), Some(derived)) = (exp.get("pattern"), model.encoder().pattern()) {
        ensure!(derived.ids() == ids(pattern)?.as_slice(), "{name}: derived gating pattern differs");
    }
    let encoded = encode_all(fx, model, cases)?;
    ensure!(encoded.len() >= 10, "{name}: only {} scorable conversations", encoded.len());
    let batch: Vec<&Encoded> = encoded.iter().map(|(e, _)| e).collect();
    let outputs = model.forward(&batch)?;
    let mut max_err = 0.0f32;
    for ((enc, case), out) in encoded.iter().zip(&outputs) {
        let what = format!("{name} {:?} case {}", model.dtype(), case["index"]);
        max_err = max_err.max(compare(&what, out, case, against.tol)?);
        let alone = model.forward(&[enc])?;
        ensure!(alone[0] == *out, "{what}: scored alone {:?}, in the batch {:?}", alone[0].score, out.score);
    }
    Ok(Checked {
        model: name.to_string(),
        dtype: format!("{:?}", model.dtype()),
        reference: against.key,
        conversations: encoded.len(),
        max_err,
        tokens: batch.iter().map(|e| e.len()).sum(),
        computed_tokens: model.computed_tokens(&batch),
    })
}

/// One output against its reference case; returns the largest error.
pub fn compare(what: &str, out: &RewardOutput, case: &Value, tol: Tol) -> anyhow::Result<f32> {
    ensure!(
        Some(out.num_tokens as u64) == case["num_tokens"].as_u64(),
        "{what}: {} tokens, reference {}",
        out.num_tokens,
        case["num_tokens"]
    );
    let mut worst = 0.0f32;
    let mut within = |part: &str, got: &[f32], want: &[f32]| -> anyhow::Result<()> {
        ensure!(got.len() == want.len(), "{what} {part}: {} values, reference {}", got.len(), want.len());
        let bound = tol.bound(want);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let err = (g - w).abs();
            worst = worst.max(err);
            ensure!(err <= bound, "{what} {part}[{i}]: got {g}, reference {w}, |err| {err} > {bound}");
        }
        Ok(())
    };
    match case.get("logits") {
        Some(logits) => {
            let got = out.logits.as_deref().with_context(|| format!("{what}: no logits"))?;
            within("logits", got, &floats(logits)?)?;
            ensure!(out.score == got[0], "{what}: the score is not the first logit");
        }
        None => {
            ensure!(out.logits.is_none(), "{what}: one label, yet logits");
            within("score", &[out.score], &[case["score"].as_f64().context("score")? as f32])?;
        }
    }
    match (&out.objectives, case.get("rewards")) {
        (Some(o), Some(rewards)) => {
            within("rewards", &o.rewards, &floats(rewards)?)?;
            within("gating", &o.gating, &floats(&case["gating"])?)?;
            within("coefficients", &o.coefficients, &floats(&case["coefficients"])?)?;
        }
        (None, None) => {}
        _ => bail!("{what}: head kind differs from the reference"),
    }
    Ok(worst)
}
