//! The exported checkpoint's model card (`README.md`, as Hub model repos carry one): what the model
//! scores, how to run it, the data it was trained on with their content hashes, and the metrics of
//! `train_report.json`.

use std::fmt::Write;
use std::path::Path;

use crate::checkpoint::MODELING_FILE;
use crate::error::{Result, TrainError};
use crate::report::{Stages, REPORT};

pub const CARD: &str = "README.md";

/// One training input as the card lists it.
pub struct Source {
    /// What the run used it for (`ratings`, `pairs`, `reference`).
    pub role: &'static str,
    pub file: String,
    pub sha256: String,
}

/// What the card says beyond the stages' results.
pub struct Card<'a> {
    /// The base checkpoint: a Hub repo id or a local path.
    pub base: String,
    /// Whether `base` is a Hub repo id (then named in the card's metadata).
    pub base_on_hub: bool,
    /// The exported class (`{Family}ForRewardModelWithGating`).
    pub class: String,
    pub sources: Vec<Source>,
    pub stages: &'a Stages<'a>,
}

pub fn write(card: &Card, dir: &Path) -> Result<()> {
    let path = dir.join(CARD);
    std::fs::write(&path, render(card)).map_err(|e| TrainError::io(&path, e))
}

fn render(card: &Card) -> String {
    let Stages { regression, debias, gating } = card.stages;
    let mut s = String::from("---\nlibrary_name: transformers\ntags:\n- reward-model\n- armorm\n");
    if card.base_on_hub {
        let _ = writeln!(s, "base_model: {}", card.base);
    }
    s.push_str("---\n\n");
    let _ = writeln!(s, "# An ArmoRM-style reward model on `{}`\n", card.base);
    let _ = writeln!(
        s,
        "Trained with armorm {} (stage 1: one ridge regression per objective on the frozen backbone's \
         last-token state; each debiased against the verbosity objective `{}`; stage 2: a gating network \
         over the state at the start of the final assistant turn). `score` is the gated mix of the debiased objectives; `rewards`, \
         `gating_output` and `coefficients` explain it.\n",
        env!("CARGO_PKG_VERSION"),
        debias.verbosity
    );
    s.push_str("## Use\n\n```python\nimport torch\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n");
    let _ = writeln!(
        s,
        "model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True, dtype=torch.bfloat16)\n\
         tokenizer = AutoTokenizer.from_pretrained(path)\n\
         ids = tokenizer.apply_chat_template(messages, return_tensors=\"pt\", return_dict=True)\n\
         out = model(**ids)  # out.score (= out.logits), out.rewards, out.gating_output, out.coefficients\n```\n"
    );
    let _ = writeln!(
        s,
        "`{MODELING_FILE}` holds `{}` (left or right padding; the heads run in f32 whatever the dtype). \
         Served by armorm: `armorm serve --model <this directory>`.\n",
        card.class
    );
    s.push_str("## Objectives\n\n| objective | ridge alpha | validation MSE | debiasing λ |\n|---|---|---|---|\n");
    for (fit, lambda) in regression.objectives.iter().zip(&debias.lambda) {
        let _ = writeln!(s, "| `{}` | {} | {:.4} | {} |", fit.name, fit.alpha, fit.val_mse, lambda);
    }
    s.push_str("\n## Data\n\n| used for | file | sha256 |\n|---|---|---|\n");
    for src in &card.sources {
        let _ = writeln!(s, "| {} | `{}` | `{}` |", src.role, src.file, src.sha256);
    }
    let _ = writeln!(
        s,
        "\n{} ratings rows; {} preference pairs ({} for training, {} for validation).\n",
        regression.rows,
        gating.train_pairs + gating.val_pairs,
        gating.train_pairs,
        gating.val_pairs
    );
    let _ = writeln!(
        s,
        "## Metrics\n\nGating network: validation pair accuracy {:.4}, training {:.4} ({} steps, batch {}, \
         learning rate {}). Every number of the run is in `{REPORT}`.",
        gating.val_accuracy,
        gating.train_accuracy,
        gating.settings.steps,
        gating.settings.batch_size,
        gating.settings.learning_rate
    );
    s
}
