//! What a pairwise preference model reads, as its authors format it (RLHFlow's SLiC-HF model;
//! reward-bench's `SlicPairPMPipeline` reproduces it): the prompt turns rendered as a context by
//! their own template, then `[CONTEXT] {context} [RESPONSE A] {a} [RESPONSE B] {b} \n` as one user
//! turn in the model's own chat template, the BOS text removed, tokenized without special tokens
//! added. The model's next token, "A" or "B", is its verdict.

use crate::error::Result;
use crate::text::conversation::Prompt;
use crate::text::template::ChatTemplate;

/// The context template, character for character as the pipeline sets it (rendered with
/// transformers' Jinja settings, so its block tags eat the newline after them).
const CONTEXT_TEMPLATE: &str = "\n{% for message in messages %}{% if loop.index0 % 2 == 0 %}\n\n<turn> user\n \
                                {{ message['content'] }}{% else %}\n\n<turn> assistant\n {{ message['content'] }}\
                                {% endif %}{% endfor %}\n\n\n";

/// The tokens whose logits give the verdict: response A or response B.
pub const VERDICTS: [&str; 2] = ["A", "B"];

pub struct ComparisonFormat {
    context: ChatTemplate,
}

impl ComparisonFormat {
    pub fn slic() -> Result<Self> {
        Ok(Self { context: ChatTemplate::new(CONTEXT_TEMPLATE.to_string(), String::new(), String::new())? })
    }

    /// The user turn that asks the model to compare `a` (response A) with `b` (response B).
    pub fn request(&self, prompt: &Prompt, a: &str, b: &str) -> Result<String> {
        let context = self.context.render(prompt.messages())?;
        Ok(format!("[CONTEXT] {context} [RESPONSE A] {a} [RESPONSE B] {b} \n"))
    }
}
