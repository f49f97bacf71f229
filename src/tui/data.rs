//! Plain owned data the worker hands to the UI. Nothing here refers to candle: the views and
//! the state update work on these types only, so they are tested without weights.

use std::path::PathBuf;

use crate::analysis::BlockChoice;
use crate::analysis::document::AnalysisDocument;
use crate::analysis::importance::ImportanceMethod;
use crate::model::Interventions;
use crate::session::Session;
use crate::thought::{ThoughtCount, ThoughtMode};

/// What the header needs to know about the loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    /// Short name: the folder, hub id or checkpoint file name.
    pub name: String,
    pub arch: String,
    pub layers: usize,
    pub heads: usize,
    pub d_model: usize,
    pub device: String,
    pub dtype: String,
    /// Whether the tokenizer has `<|start-latent|>`, `<|end-latent|>`, `<|latent|>`.
    pub coconut_tokens: bool,
}

/// Everything that decides a run, apart from the model.
#[derive(Debug, Clone, PartialEq)]
pub struct RunParams {
    pub prompt: String,
    pub thoughts: ThoughtCount,
    pub mode: ThoughtMode,
    pub max_new_tokens: usize,
    /// Tokens per cell in the logit lens.
    pub top_k: usize,
    /// How many of the last prompt tokens appear as steps.
    pub context_tokens: usize,
    pub interventions: Interventions,
}

impl RunParams {
    /// The same run without interventions: the baseline.
    pub fn baseline(&self) -> RunParams {
        RunParams {
            interventions: Interventions::default(),
            ..self.clone()
        }
    }
}

/// A token with its probability.
#[derive(Debug, Clone, PartialEq)]
pub struct TokProb {
    pub id: u32,
    /// Display text (decoded, whitespace made visible).
    pub text: String,
    pub prob: f32,
}

/// One cell of the logit lens: one layer at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct LensCell {
    /// Top-k of softmax(W_U · final_norm(x^l)), largest first.
    pub top: Vec<TokProb>,
    /// Entropy (nats) of this layer's lens distribution.
    pub entropy: f32,
    /// 1-based rank of the tracked answer token in this distribution.
    pub target_rank: usize,
    pub target_prob: f32,
}

impl LensCell {
    pub fn top1(&self) -> Option<&TokProb> {
        self.top.first()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// A prompt position: what the model predicts after this prompt token.
    Prompt,
    /// Thought k (1-based).
    Thought(usize),
    /// The position predicting answer token i (0-based).
    Answer(usize),
}

/// One column of the run: a position whose residual stream is recorded at every layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    pub position: usize,
    /// Column label: the prompt token, `T1`, `A1`, ...
    pub label: String,
    /// Layers 0..=L.
    pub lens: Vec<LensCell>,
    /// d(x^l, x^{l+1}) for l = 0..L-1.
    pub angular: Vec<f32>,
    /// For thoughts and answer steps: per layer (`None` when skipped), per head, the attention
    /// over the prompt tokens.
    pub attention: Option<Vec<Option<Vec<Vec<f32>>>>>,
}

impl Step {
    /// The model's own prediction here (the last layer's top token).
    pub fn output(&self) -> Option<&TokProb> {
        self.lens.last().and_then(LensCell::top1)
    }

    /// The model's own entropy here.
    pub fn entropy(&self) -> f32 {
        self.lens.last().map_or(0.0, |c| c.entropy)
    }
}

/// What the Compare tab shows of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Per thought, its top tokens (model's own distribution).
    pub thoughts: Vec<Vec<TokProb>>,
    /// The greedy answer tokens with their probabilities.
    pub answer: Vec<TokProb>,
    pub answer_text: String,
}

impl RunSummary {
    /// Probability of the whole greedy answer (product over its tokens).
    pub fn answer_prob(&self) -> f32 {
        self.answer.iter().map(|t| t.prob as f64).product::<f64>() as f32
    }

    /// Probability of the first answer token.
    pub fn first_prob(&self) -> f32 {
        self.answer.first().map_or(0.0, |t| t.prob)
    }
}

/// Baseline against current.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub baseline: RunSummary,
    /// KL(p_base ‖ p_current) in nats of the answer's first-token distribution.
    pub kl_first: f32,
    /// KL at each answer position as long as the two answers agree on every earlier token
    /// (the two distributions then condition on the same input).
    pub kl_aligned: Vec<f32>,
    /// The first answer position where the two greedy answers differ.
    pub divergence: Option<usize>,
}

/// The result of one run, ready to show.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    pub params: RunParams,
    /// Display texts of the prompt tokens.
    pub prompt_tokens: Vec<String>,
    /// Whether the run used the Coconut markers.
    pub markers: bool,
    /// Prompt context steps, thoughts, answer steps, in order.
    pub steps: Vec<Step>,
    pub summary: RunSummary,
    /// The answer token tracked in the lens (the baseline answer's last word).
    pub target: Option<TokProb>,
    pub blocks: Vec<BlockChoice>,
    pub comparison: Comparison,
    /// Worker time for this result.
    pub compute_ms: f64,
    /// The engine's analysis documents of this result (what a saved session holds); absent for
    /// results that were not computed by the engine (samples in tests).
    pub documents: Option<Box<Documents>>,
}

/// The analysis documents of a result: the baseline (no interventions) and the run shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Documents {
    pub baseline: AnalysisDocument,
    pub current: AnalysisDocument,
}

impl RunView {
    pub fn thought_count(&self) -> usize {
        self.summary.thoughts.len()
    }

    pub fn layers(&self) -> usize {
        self.steps.first().map_or(0, |s| s.angular.len())
    }
}

/// Head and layer importance for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    pub method: ImportanceMethod,
    /// The answer token (0-based) whose distribution (ablation) or log-probability (gradient)
    /// is measured; earlier answer tokens are forced to the run's own.
    pub step: usize,
    /// The greedy token at that step.
    pub target: String,
    /// Its token id.
    pub target_id: u32,
    /// `[layers][heads]`.
    pub heads: Vec<Vec<f32>>,
    /// `[layers]`: KL when the layer is skipped (ablation) or the sum over its heads (gradient).
    pub layers: Vec<f32>,
    pub compute_ms: f64,
}

/// A job for the worker. Every job carries the generation of the state it was made for.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    Run {
        generation: u64,
        params: RunParams,
    },
    Importance {
        generation: u64,
        /// Distinguishes sweeps of one generation (another method, a restart).
        request: u64,
        params: RunParams,
        method: ImportanceMethod,
    },
    /// Cancel the running sweep (not queued: handled at once).
    Cancel,
    /// Write a session file (off the worker: file jobs run on their own thread). `path: None`
    /// means the default name `sessions/<timestamp>-<slug>.json`, chosen when written.
    Save {
        session: Box<Session>,
        path: Option<PathBuf>,
        overwrite: bool,
        /// Export the plots once saved.
        export: bool,
    },
    /// Export the plots of a saved session into the folder named after its file.
    Export {
        session: Box<Session>,
        path: PathBuf,
    },
}

impl Job {
    /// Whether this is a file job (save, export) rather than a computation.
    pub fn is_file_job(&self) -> bool {
        matches!(self, Job::Save { .. } | Job::Export { .. })
    }
}

/// How a save went.
#[derive(Debug, Clone, PartialEq)]
pub enum SaveOutcome {
    Saved {
        path: PathBuf,
        ms: f64,
    },
    /// The file exists and overwriting was not asked for: nothing was written.
    Exists(PathBuf),
    Failed(String),
}

/// Where the plots went.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    pub dir: PathBuf,
    pub files: usize,
    pub ms: f64,
}

/// What the worker reports.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerMsg {
    Loaded(ModelSummary),
    LoadFailed(String),
    RunDone {
        generation: u64,
        result: Result<Box<RunView>, String>,
    },
    Progress {
        request: u64,
        done: usize,
        total: usize,
    },
    ImportanceDone {
        generation: u64,
        request: u64,
        result: Result<Importance, String>,
    },
    Cancelled {
        request: u64,
    },
    /// A save finished; `session` is what was (or was to be) written.
    Saved {
        session: Box<Session>,
        export: bool,
        outcome: SaveOutcome,
    },
    Exported {
        result: Result<ExportReport, String>,
    },
}
