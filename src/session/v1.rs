//! Session files of schema `coconut-lens.session.v1`, read and upgraded to the current schema.
//!
//! A v1 file holds two analysis documents (`coconut-lens.analysis.v1`), which keep only the
//! thoughts and the answer's first position, the model's own entropy there, and vocabulary
//! strings for token texts. Upgraded, what they lack stays unknown and the views say so:
//! prompt steps, attention, later answer steps, lens entropies below the last layer, the
//! tracked token's rank, the probabilities of later answer tokens, and KL.

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};

use super::{SessionInputs as Inputs, ViewState};
use crate::analysis::StepAnalysis;
use crate::analysis::TokenProb;
use crate::analysis::document::AnalysisDocument;
use crate::analysis::importance::Importance;
use crate::analysis::run::{
    Comparison, LensCell, RunAnalysis, RunParams, RunSummary, SCHEMA as RUN_SCHEMA, Step,
};
use crate::model::Interventions;
use crate::thought::{StepKind, ThoughtCount, ThoughtMode};

pub const SCHEMA: &str = "coconut-lens.session.v1";

/// The settings a v1 file may leave out, at the command line's defaults.
const MAX_NEW_TOKENS: usize = 16;
const TOP_K: usize = 5;
const CONTEXT_TOKENS: usize = 3;
const SOFT: (usize, f32) = (5, 0.95);
/// The cap of `--thoughts auto`, which v1 files do not record.
const MAX_THOUGHTS: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInputs {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub device: String,
    pub dtype: String,
    pub prompt: String,
    /// coconut, soft, token or pause.
    pub mode: String,
    /// `"6"` or `"auto"`.
    pub thoughts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy_stop: Option<f32>,
    pub ablations: Interventions,
    /// ablation or gradient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importance_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<RunSettings>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_top_k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_top_p: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub schema: String,
    pub saved_at: u64,
    pub inputs: SessionInputs,
    #[serde(default)]
    pub view: ViewState,
    pub baseline: AnalysisDocument,
    pub current: AnalysisDocument,
}

/// The run settings of v1 inputs; what the file does not record is at the defaults above.
fn params_of(inputs: &SessionInputs) -> Result<RunParams> {
    let set = inputs.settings.clone().unwrap_or_default();
    let invalid = |e: anyhow::Error| anyhow!("the session's inputs: {e}");
    let soft = (
        set.soft_top_k.unwrap_or(SOFT.0),
        set.soft_top_p.unwrap_or(SOFT.1),
    );
    let mode = ThoughtMode::parse(&inputs.mode, soft).map_err(invalid)?;
    let thoughts = ThoughtCount::parse(&inputs.thoughts, inputs.entropy_stop, MAX_THOUGHTS)
        .map_err(invalid)?;
    if set.top_k == Some(0) {
        return Err(anyhow!("the session's top-k is out of range"));
    }
    if inputs.prompt.trim().is_empty() {
        return Err(anyhow!("the session's prompt is empty"));
    }
    Ok(RunParams {
        prompt: inputs.prompt.clone(),
        thoughts,
        mode,
        max_new_tokens: set.max_new_tokens.unwrap_or(MAX_NEW_TOKENS),
        top_k: set.top_k.unwrap_or(TOP_K),
        context_tokens: set.context_tokens.unwrap_or(CONTEXT_TOKENS),
        interventions: inputs.ablations.clone(),
        thought_edits: Default::default(),
        sampling: Default::default(),
    })
}

/// A vocabulary string as shown: GPT-2's `Ġ` and `Ċ`, SentencePiece's `▁` made readable (v1
/// documents keep no display texts, and without the model there is no tokenizer to ask).
fn readable(text: &str) -> String {
    let t = text.replace(['Ġ', '▁'], " ").replace('Ċ', "⏎");
    let trimmed = t.trim();
    if trimmed.is_empty() {
        if t.is_empty() {
            "∅".into()
        } else {
            "␣".into()
        }
    } else {
        trimmed.to_string()
    }
}

fn token(t: &TokenProb) -> TokenProb {
    TokenProb {
        id: t.id,
        text: readable(&t.text),
        prob: t.prob,
    }
}

/// The text of a token id in a document, where any lens cell or input token names it.
fn token_text(doc: &AnalysisDocument, id: u32) -> Option<String> {
    doc.thoughts
        .iter()
        .map(|t| &t.step)
        .chain([&doc.answer.first])
        .flat_map(|s| s.lens.iter().flat_map(|l| l.top.iter()))
        .find(|t| t.id == id)
        .map(|t| readable(&t.text))
        .or_else(|| {
            doc.tokens
                .iter()
                .find(|t| t.id == id)
                .map(|t| readable(&t.text))
        })
}

fn step_of(a: &StepAnalysis, kind: StepKind, label: String) -> Step {
    let last = a.lens.len().saturating_sub(1);
    Step {
        kind,
        position: a.position,
        label,
        lens: a
            .lens
            .iter()
            .enumerate()
            .map(|(i, l)| LensCell {
                top: l.top.iter().map(token).collect(),
                // The document keeps the entropy of the model's own distribution only.
                entropy: if i == last { a.entropy } else { f32::NAN },
                target_rank: 0,
                target_prob: f32::NAN,
            })
            .collect(),
        angular: a.angular.clone(),
        attention: None,
    }
}

/// Per thought its top 3, the answer tokens (only the first has a known probability).
fn summary_of(doc: &AnalysisDocument) -> RunSummary {
    let own = |a: &StepAnalysis| -> Vec<TokenProb> {
        a.lens
            .last()
            .map_or(vec![], |l| l.top.iter().take(3).map(token).collect())
    };
    let first = own(&doc.answer.first);
    RunSummary {
        thoughts: doc.thoughts.iter().map(|t| own(&t.step)).collect(),
        answer: doc
            .answer
            .ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let known = (i == 0)
                    .then(|| first.iter().find(|t| t.id == id))
                    .flatten();
                TokenProb {
                    id,
                    text: known
                        .map(|t| t.text.clone())
                        .or_else(|| token_text(doc, id))
                        .unwrap_or_else(|| format!("<{id}>")),
                    prob: known.map_or(f32::NAN, |t| t.prob),
                }
            })
            .collect(),
        answer_text: doc.answer.text.clone(),
    }
}

/// The analysis of one document, compared against `baseline`.
fn analysis_of(
    doc: &AnalysisDocument,
    baseline: &AnalysisDocument,
    params: RunParams,
) -> RunAnalysis {
    let mut steps: Vec<Step> = doc
        .thoughts
        .iter()
        .map(|t| step_of(&t.step, StepKind::Thought(t.index), format!("T{}", t.index)))
        .collect();
    steps.push(step_of(&doc.answer.first, StepKind::Answer(0), "A1".into()));
    let (base, cur) = (&baseline.answer.ids, &doc.answer.ids);
    let divergence = (0..base.len().max(cur.len())).find(|&i| base.get(i) != cur.get(i));
    RunAnalysis {
        schema: RUN_SCHEMA.to_string(),
        params,
        model: doc.model.clone(),
        runtime: doc.runtime.clone(),
        input_ids: doc.tokens.iter().map(|t| t.id).collect(),
        prompt_tokens: doc.tokens.iter().map(|t| readable(&t.text)).collect(),
        markers: doc.tokens.iter().any(|t| t.text == "<|start-latent|>"),
        steps,
        summary: summary_of(doc),
        target: None,
        blocks: doc.blocks.clone(),
        comparison: Comparison {
            baseline: summary_of(baseline),
            kl_first: f32::NAN,
            kl_aligned: vec![],
            divergence,
        },
        graph: doc.graph.clone(),
        fed: Vec::new(),
        effect: None,
        compute_ms: doc.timings.compute_ms,
    }
}

/// The saved head importance, as the current schema keeps it.
fn importance_of(doc: &AnalysisDocument) -> Option<Importance> {
    let h = doc.head_importance.as_ref()?;
    Some(Importance {
        method: h.method.parse().ok()?,
        step: h.answer_step,
        target: token_text(doc, h.target).unwrap_or_else(|| format!("<{}>", h.target)),
        target_id: h.target,
        heads: h.values.clone(),
        layers: doc
            .layer_importance
            .clone()
            .unwrap_or_else(|| h.values.iter().map(|r| r.iter().sum()).collect()),
        compute_ms: 0.0,
    })
}

/// The current schema's session of a v1 file.
pub fn upgrade(old: Session) -> Result<super::Session> {
    let params = params_of(&old.inputs)?;
    let baseline = analysis_of(&old.baseline, &old.baseline, params.baseline());
    let current = analysis_of(&old.current, &old.baseline, params);
    let i = old.inputs;
    Ok(super::Session {
        schema: super::SCHEMA.to_string(),
        saved_at: old.saved_at,
        inputs: Inputs {
            model: i.model,
            base: i.base,
            revision: i.revision,
            device: i.device,
            dtype: i.dtype,
            importance_method: i.importance_method.and_then(|m| m.parse().ok()),
        },
        view: old.view,
        importance: importance_of(&old.current),
        baseline,
        current,
    })
}
