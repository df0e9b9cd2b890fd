//! Request and response bodies of the native API, and the per-request options that shape a result.

use std::collections::BTreeMap;

use armorm_model::{Conversation, RawMessage, RewardOutput};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::input::{ConversationInput, Whole};

/// Options every scoring route accepts.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScoreOptions {
    /// Cut the earliest turns from the left instead of rejecting an over-long conversation.
    #[serde(default)]
    pub truncate: bool,
    /// Add the `top_k` objectives by |coefficient|.
    #[serde(default, deserialize_with = "crate::input::present")]
    pub top_k: Option<Whole<usize>>,
    /// Add `custom_score = sum(weights[name] * rewards[name])`.
    #[serde(default, deserialize_with = "crate::input::present")]
    pub weights: Option<BTreeMap<String, f32>>,
    /// Fields neither the route nor these options know: refused, since a misspelled `weights` or
    /// `truncate` would silently change the result.
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

/// The fields every native route's options add to its own.
const OPTION_FIELDS: [&str; 3] = ["truncate", "top_k", "weights"];

impl ScoreOptions {
    /// 422 naming the first unknown field and the closest of the route's `fields` or the options.
    pub fn reject_unknown(&self, fields: &[&str]) -> Result<(), ApiError> {
        let Some(name) = self.unknown.keys().next() else { return Ok(()) };
        let closest = fields
            .iter()
            .chain(&OPTION_FIELDS)
            .map(|known| (strsim::damerau_levenshtein(name, known), *known))
            .min()
            .filter(|&(distance, _)| distance <= 3)
            .map(|(_, known)| format!(" (did you mean {known:?}?)"))
            .unwrap_or_default();
        let mut all: Vec<&str> = fields.iter().chain(&OPTION_FIELDS).copied().collect();
        all.sort_unstable();
        Err(ApiError::InvalidRequest(format!("unknown field {name:?}{closest}; this route takes {}", all.join(", "))))
    }
}

/// `POST /score`: one conversation (`messages`, or `prompt` + `response`) or many (`conversations`).
#[derive(Debug, Deserialize)]
pub struct ScoreRequest {
    #[serde(default, deserialize_with = "crate::input::present")]
    pub messages: Option<Vec<RawMessage>>,
    #[serde(default, deserialize_with = "crate::input::present")]
    pub prompt: Option<String>,
    #[serde(default, deserialize_with = "crate::input::present")]
    pub response: Option<String>,
    #[serde(default, deserialize_with = "crate::input::present")]
    pub conversations: Option<Vec<Vec<RawMessage>>>,
    #[serde(flatten)]
    pub options: ScoreOptions,
}

/// What a `/score` body asked for, once its shape is known to be one of the three.
pub enum ScoreTarget {
    One(Conversation),
    Many(Vec<Conversation>),
}

impl ScoreRequest {
    pub fn into_target(self) -> Result<(ScoreTarget, ScoreOptions), ApiError> {
        let target = match (self.messages, self.prompt, self.response, self.conversations) {
            (Some(messages), None, None, None) => {
                ScoreTarget::One(ConversationInput::Messages { messages }.into_conversation()?)
            }
            (None, Some(prompt), Some(response), None) => {
                ScoreTarget::One(ConversationInput::PromptResponse { prompt, response }.into_conversation()?)
            }
            (None, None, None, Some(conversations)) => {
                ScoreTarget::Many(ApiError::per_item("conversations", conversations, |m| Ok(Conversation::new(m)?))?)
            }
            _ => {
                return Err(ApiError::InvalidRequest(
                    "give exactly one of: \"messages\", \"prompt\" with \"response\", or \"conversations\"".into(),
                ))
            }
        };
        Ok((target, self.options))
    }
}

/// Largest |weight| accepted: far beyond any useful re-weighting, and small enough that a custom score
/// over finite rewards stays finite.
pub const MAX_WEIGHT: f32 = 1e6;

/// Options checked against the model's objectives: weights aligned to objective order.
#[derive(Debug, Clone, Default)]
pub struct ResultShape {
    top_k: Option<usize>,
    weights: Option<Vec<f32>>,
}

impl ResultShape {
    pub fn new(options: &ScoreOptions, objectives: &[String]) -> Result<Self, ApiError> {
        let needs_objectives = options.top_k.is_some() || options.weights.is_some();
        if needs_objectives && objectives.is_empty() {
            return Err(ApiError::InvalidRequest(
                "top_k and weights need a multi-objective model; this one returns a single score".into(),
            ));
        }
        let weights = match &options.weights {
            None => None,
            Some(map) => {
                if let Some(unknown) = map.keys().find(|k| !objectives.contains(k)) {
                    return Err(ApiError::InvalidRequest(format!(
                        "unknown objective {unknown:?} in weights; GET /info lists the objectives"
                    )));
                }
                if let Some((name, w)) = map.iter().find(|(_, w)| !(w.is_finite() && w.abs() <= MAX_WEIGHT)) {
                    return Err(ApiError::InvalidRequest(format!(
                        "weights[{name:?}] = {w} is outside [-{MAX_WEIGHT:e}, {MAX_WEIGHT:e}] (numbers beyond f32's \
                         range read as infinite)"
                    )));
                }
                Some(objectives.iter().map(|name| map.get(name).copied().unwrap_or(0.0)).collect())
            }
        };
        Ok(Self { top_k: options.top_k.map(|Whole(k)| k), weights })
    }

    pub fn result(
        &self,
        output: RewardOutput,
        truncated: bool,
        special_tokens_in_content: bool,
        objectives: &[String],
    ) -> ScoreResult {
        let explained = output.objectives.as_ref();
        let top_objectives = self.top_k.zip(explained).map(|(k, o)| {
            let mut top: Vec<TopObjective> = objectives
                .iter()
                .zip(o.coefficients.iter().zip(&o.rewards))
                .map(|(name, (&coefficient, &reward))| TopObjective {
                    name: name.clone(),
                    coefficient,
                    reward,
                    contribution: coefficient * reward,
                })
                .collect();
            // Stable sort: equal magnitudes keep objective order, so the output is deterministic.
            top.sort_by(|a, b| b.coefficient.abs().total_cmp(&a.coefficient.abs()));
            top.truncate(k);
            top
        });
        let custom_score = self
            .weights
            .as_ref()
            .zip(explained)
            .map(|(w, o)| w.iter().zip(&o.rewards).map(|(&w, &r)| f64::from(w) * f64::from(r)).sum::<f64>() as f32);
        ScoreResult { output, truncated, special_tokens_in_content, top_objectives, custom_score }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TopObjective {
    pub name: String,
    pub coefficient: f32,
    pub reward: f32,
    pub contribution: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreResult {
    #[serde(flatten)]
    pub output: RewardOutput,
    pub truncated: bool,
    /// Some message content held special-token text (`--content-special-tokens` says what became of it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub special_tokens_in_content: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_objectives: Option<Vec<TopObjective>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_score: Option<f32>,
}

#[derive(Debug, Serialize)]
pub struct ScoreResults {
    pub results: Vec<ScoreResult>,
}

#[cfg(test)]
mod tests {
    use armorm_model::ObjectiveScores;

    use super::*;

    fn names() -> Vec<String> {
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
    }

    fn output() -> RewardOutput {
        RewardOutput {
            score: 0.5,
            num_tokens: 7,
            objectives: Some(ObjectiveScores {
                rewards: vec![1.0, -2.0, 4.0],
                gating: vec![0.2, 0.3, 0.5],
                coefficients: vec![0.1, -0.4, 0.1],
            }),
            logits: None,
        }
    }

    #[test]
    fn top_k_orders_by_magnitude_with_ties_in_objective_order() {
        let options = ScoreOptions { top_k: Some(Whole(2)), ..Default::default() };
        let r = ResultShape::new(&options, &names()).unwrap().result(output(), false, false, &names());
        let top = r.top_objectives.unwrap();
        assert_eq!(top.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert!((top[0].contribution - 0.8).abs() < 1e-6);
    }

    #[test]
    fn weights_give_a_custom_score_and_unknown_names_are_refused() {
        let mut weights = BTreeMap::new();
        weights.insert("a".to_string(), 2.0);
        weights.insert("c".to_string(), -0.5);
        let options = ScoreOptions { weights: Some(weights.clone()), ..Default::default() };
        let r = ResultShape::new(&options, &names()).unwrap().result(output(), false, false, &names());
        assert_eq!(r.custom_score, Some(2.0 * 1.0 - 0.5 * 4.0));
        for bad_weight in [f32::INFINITY, f32::NAN, -2e6] {
            let mut bad = weights.clone();
            bad.insert("b".into(), bad_weight);
            let err = ResultShape::new(&ScoreOptions { weights: Some(bad), ..Default::default() }, &names());
            assert!(err.unwrap_err().to_string().contains("weights[\"b\"]"), "{bad_weight}");
        }
        weights.insert("zzz".into(), 1.0);
        let bad = ScoreOptions { weights: Some(weights), ..Default::default() };
        assert!(ResultShape::new(&bad, &names()).is_err());
        assert!(ResultShape::new(&ScoreOptions { top_k: Some(Whole(1)), ..Default::default() }, &[]).is_err());
    }
}
