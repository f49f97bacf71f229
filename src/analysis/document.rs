//! The analysis document, schema `coconut-lens.analysis.v1`, shared by `analyze`, the TUI and sessions.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{BlockChoice, StepAnalysis, analyze_steps, prune_blocks, resid_host};
use crate::model::{Hooks, Model, ModelInfo, Tokenizer};
use crate::thought::{Run, RunSpec, run};

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

/// Where the analysis ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Runtime {
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// The model's dtype: `f32`, `f16` or `bf16`.
    pub dtype: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisDocument {
    pub schema: String,
    pub model: ModelInfo,
    #[serde(default)]
    pub runtime: Runtime,
    pub tokens: Vec<TokenInfo>,
    pub thoughts: Vec<ThoughtAnalysis>,
    pub answer: AnswerAnalysis,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<BlockChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_importance: Option<HeadImportance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_importance: Option<Vec<f32>>,
    pub timings: Timings,
}

/// Analyses a finished run.
pub fn document_of_run(
    model: &Model,
    tokenizer: &Tokenizer,
    run: &Run,
    top_k: usize,
) -> Result<AnalysisDocument> {
    let mut steps: Vec<_> = run.thoughts.iter().collect();
    steps.push(run.answer_first());
    let analyses = analyze_steps(model, tokenizer, &steps, top_k)?;
    document_from_analyses(model, tokenizer, run, analyses)
}

/// The analysis document of `run` from the analyses of its thoughts and of the answer's
/// first position, in that order (see [`crate::analysis::step_analysis`]).
pub fn document_from_analyses(
    model: &Model,
    tokenizer: &Tokenizer,
    run: &Run,
    mut analyses: Vec<StepAnalysis>,
) -> Result<AnalysisDocument> {
    if analyses.len() != run.thoughts.len() + 1 {
        anyhow::bail!(
            "{} step analyses for a run of {} thoughts and an answer",
            analyses.len(),
            run.thoughts.len()
        );
    }
    let first = analyses.pop().expect("answer step analysed");
    let thoughts = run
        .thoughts
        .iter()
        .zip(analyses)
        .enumerate()
        .map(|(i, (_, step))| ThoughtAnalysis { index: i + 1, step })
        .collect();
    let thought_resids = run
        .thoughts
        .iter()
        .map(resid_host)
        .collect::<Result<Vec<_>>>()?;
    Ok(AnalysisDocument {
        schema: SCHEMA.to_string(),
        model: model.info.clone(),
        runtime: Runtime {
            device: crate::model::load::device_label(model.device()),
            dtype: crate::model::load::dtype_label(model.dtype()).to_string(),
        },
        tokens: run
            .input_ids
            .iter()
            .map(|&id| TokenInfo {
                id,
                text: tokenizer.token_text(id),
            })
            .collect(),
        thoughts,
        answer: AnswerAnalysis {
            ids: run.answer_ids.clone(),
            text: tokenizer.decode(&run.answer_ids)?,
            first,
        },
        blocks: prune_blocks(&thought_resids),
        head_importance: None,
        layer_importance: None,
        timings: Timings::default(),
    })
}

/// Runs and analyses a prompt.
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
    let doc = document_of_run(model, tokenizer, &run, top_k)?;
    Ok((run, doc))
}
