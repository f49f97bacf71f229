//! The analysis document, schema `coconut-lens.analysis.v1`: what `analyze` prints, a view of
//! a [`RunAnalysis`] (its thoughts and the answer's first position). Session files of
//! schema v1 hold two of them.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::effect::{Effect, PatchSweep};
use super::graph::GraphAnalysis;
use super::run::{FedThought, RunAnalysis, RunParams, Runtime, Step, analyze_run};
use super::{BlockChoice, LensLayer, StepAnalysis, TokenProb};
use crate::model::{Hooks, Model, ModelInfo, Tokenizer};
use crate::thought::{Run, RunSpec, Sampling, StepKind, run};

pub const SCHEMA: &str = "coconut-lens.analysis.v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: u32,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThoughtAnalysis {
    pub index: usize,
    #[serde(flatten)]
    pub step: StepAnalysis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerAnalysis {
    pub ids: Vec<u32>,
    pub text: String,
    pub first: StepAnalysis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadImportance {
    pub method: String,
    /// The answer token (0-based) whose distribution is scored; earlier answer tokens are
    /// forced to the base run's.
    #[serde(default)]
    pub answer_step: usize,
    pub target: u32,
    /// `[layers][heads]`.
    pub values: Vec<Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Timings {
    pub load_ms: f64,
    pub compute_ms: f64,
    /// Peak resident memory of the process (Linux), in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
}

/// The process's peak resident set size (`VmHWM`), in MiB, where the OS reports it.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisDocument {
    pub schema: String,
    pub model: ModelInfo,
    #[serde(default)]
    pub runtime: Runtime,
    /// How the answer was decoded: `{"method": "greedy"}` or `{"method": "sample",
    /// "temperature": T, "top_p": P, "seed": S}`.
    #[serde(default)]
    pub sampling: Sampling,
    pub tokens: Vec<TokenInfo>,
    pub thoughts: Vec<ThoughtAnalysis>,
    pub answer: AnswerAnalysis,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<BlockChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_importance: Option<HeadImportance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_importance: Option<Vec<f32>>,
    /// The prompt's problem graph with every thought's and answer step's node probabilities
    /// at every layer (absent when the prompt states no recognisable problem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphAnalysis>,
    /// What the intervened thoughts' slots received (their own lens is in `thoughts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fed: Vec<FedThought>,
    /// The interventions' effect against the run without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_sweep: Option<PatchSweep>,
    pub timings: Timings,
}

impl AnalysisDocument {
    /// The document of an analysed run: its thoughts and the answer's first position, token
    /// texts as vocabulary strings (`tok`); no importance, timings zero.
    pub fn of_run(a: &RunAnalysis, tok: &Tokenizer) -> AnalysisDocument {
        let step = |s: &Step| StepAnalysis {
            position: s.position,
            entropy: s.entropy(),
            lens: s
                .lens
                .iter()
                .enumerate()
                .map(|(layer, cell)| LensLayer {
                    layer,
                    top: cell
                        .top
                        .iter()
                        .map(|t| TokenProb {
                            id: t.id,
                            text: tok.token_text(t.id),
                            prob: t.prob,
                        })
                        .collect(),
                })
                .collect(),
            angular: s.angular.clone(),
        };
        let thoughts = a
            .steps_where(|k| matches!(k, StepKind::Thought(_)))
            .enumerate()
            .map(|(i, s)| ThoughtAnalysis {
                index: i + 1,
                step: step(s),
            })
            .collect();
        let first = a
            .steps_where(|k| k == StepKind::Answer(0))
            .next()
            .map(step)
            .expect("every run has an answer step");
        AnalysisDocument {
            schema: SCHEMA.to_string(),
            model: a.model.clone(),
            runtime: a.runtime.clone(),
            sampling: a.params.sampling,
            tokens: a
                .input_ids
                .iter()
                .map(|&id| TokenInfo {
                    id,
                    text: tok.token_text(id),
                })
                .collect(),
            thoughts,
            answer: AnswerAnalysis {
                ids: a.summary.answer.iter().map(|t| t.id).collect(),
                text: a.summary.answer_text.clone(),
                first,
            },
            blocks: a.blocks.clone(),
            head_importance: None,
            layer_importance: None,
            graph: a.graph.clone(),
            fed: a.fed.clone(),
            effect: None,
            patch_sweep: None,
            timings: Timings::default(),
        }
    }
}

/// Runs and analyses a prompt; the document as `analyze` prints it (before importance and
/// timings). `hooks` are recorded in the analysis as no interventions.
pub fn analyze_prompt(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt: &str,
    spec: &RunSpec,
    hooks: &Hooks,
    top_k: usize,
) -> Result<(Run, AnalysisDocument)> {
    let ids = tokenizer.encode_prompt(prompt)?;
    let run = run(model, tokenizer, &ids, spec, hooks)?;
    let params = RunParams {
        prompt: prompt.to_string(),
        thoughts: spec.thoughts,
        mode: spec.mode,
        max_new_tokens: spec.max_new_tokens,
        top_k,
        context_tokens: spec.context_rows.saturating_sub(1),
        interventions: Default::default(),
        thought_edits: Default::default(),
        sampling: spec.sampling,
    };
    let analysed = analyze_run(model, tokenizer, &run, params, None)?;
    let doc = AnalysisDocument::of_run(&analysed.analysis, tokenizer);
    Ok((run, doc))
}
