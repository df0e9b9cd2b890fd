//! The pairwise preference fixture read as reward-bench's `SlicPairPMPipeline` reads it: each
//! order's token ids, the "A"/"B" logits of both orders in one batch that shares their context,
//! and the averaged preference.

use anyhow::{ensure, Context};
use armorm_model::preference::Verdict;
use armorm_model::text::tokenize::share_common_prefix;
use armorm_model::{DeviceChoice, EncodeLimits, Encoded, HeadKind, LoadOptions, Prompt, RawMessage};
use serde_json::Value;

use crate::fixtures::{ids, Fixtures};
use crate::golden::{load, Checked};

pub const NAME: &str = "tiny-pairwise";
const TOL: f64 = 1e-4;

fn messages(v: &Value) -> anyhow::Result<Vec<RawMessage>> {
    Ok(serde_json::from_value(v.clone())?)
}

/// f32 on `device`, against transformers' LlamaForCausalLM run through the pipeline's steps.
pub fn check(fx: &Fixtures, device: DeviceChoice) -> anyhow::Result<Checked> {
    let options = LoadOptions { device, dtype: Some(armorm_model::ComputeDType::F32), ..Default::default() };
    let model = load(fx, NAME, &options)?;
    ensure!(model.head_kind() == HeadKind::Pairwise, "{NAME} loads as {:?}", model.head_kind());
    let exp = fx.expected(NAME)?;
    let comparisons = exp["comparisons"].as_array().context("comparisons")?;
    let limits = EncodeLimits::exact(model.max_positions());
    let mut batch: Vec<Encoded> = Vec::new();
    for case in comparisons {
        let prompt = Prompt::new(messages(&case["prompt"])?)?;
        let (chosen, rejected) =
            (case["chosen"].as_str().context("chosen")?, case["rejected"].as_str().context("rejected")?);
        let orders = model.encoder().encode_comparison(&prompt, (chosen, rejected), &limits)?;
        for (order, key) in orders.into_iter().zip(["chosen_first", "chosen_second"]) {
            ensure!(order.encoded.ids() == ids(&case[key]["ids"])?.as_slice(), "{key} of {chosen:?}: token ids differ");
            batch.push(order.encoded);
        }
    }
    share_common_prefix(&mut batch);
    let refs: Vec<&Encoded> = batch.iter().collect();
    let outputs = model.forward(&refs)?;
    let mut max_err = 0.0f64;
    let mut within = |what: &str, got: f64, want: &Value| -> anyhow::Result<()> {
        let want = want.as_f64().with_context(|| format!("{what}: no reference"))?;
        max_err = max_err.max((got - want).abs());
        ensure!((got - want).abs() < TOL, "{what}: {got} vs the pipeline's {want}");
        Ok(())
    };
    for (case, orders) in comparisons.iter().zip(outputs.chunks(2)) {
        let mut logits = Vec::new();
        for (order, key) in orders.iter().zip(["chosen_first", "chosen_second"]) {
            let got: [f32; 2] = order.logits.clone().context("A/B logits")?.try_into().ok().context("two logits")?;
            within(&format!("{key} logit_a"), got[0].into(), &case[key]["logit_a"])?;
            within(&format!("{key} logit_b"), got[1].into(), &case[key]["logit_b"])?;
            logits.push(got);
        }
        let verdict = Verdict::new(logits[0], logits[1]);
        within("preference", verdict.preference, &case["preference"])?;
        within("p_first", verdict.chosen_first, &case["chosen_first"]["p_first"])?;
    }
    for (enc, out) in refs.iter().zip(&outputs) {
        ensure!(model.forward(&[enc])?[0] == *out, "{NAME}: an order scored alone differs from its batch");
    }
    Ok(Checked {
        model: NAME.to_string(),
        dtype: "F32".into(),
        reference: "f32",
        conversations: batch.len(),
        max_err: max_err as f32,
        tokens: batch.iter().map(Encoded::len).sum(),
        computed_tokens: model.computed_tokens(&refs),
    })
}
