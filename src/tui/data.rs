//! What the UI and the worker exchange: jobs, reports, and the model's summary. Results are the
//! engine's own plain data ([`RunAnalysis`], [`Importance`]); nothing here refers to candle,
//! so the views and the state update are tested without weights.

use std::path::PathBuf;
use std::sync::Arc;

use crate::analysis::effect::PatchSweep;
use crate::analysis::importance::{Importance, ImportanceMethod};
use crate::analysis::run::{RunAnalysis, RunParams, Runtime};
use crate::model::{Family, ModelInfo};
use crate::session::Session;

/// What the header needs to know about the loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    /// Short name: the folder, hub id or checkpoint file name.
    pub name: String,
    pub arch: String,
    /// How its thoughts are fed back (the header names CODI models).
    pub family: Family,
    pub layers: usize,
    pub heads: usize,
    pub d_model: usize,
    pub device: String,
    pub dtype: String,
    /// Whether the tokenizer has `<|start-latent|>`, `<|end-latent|>`, `<|latent|>`.
    pub coconut_tokens: bool,
}

impl ModelSummary {
    /// The header line of a model named `name` that runs on `runtime`.
    pub fn new(name: String, info: &ModelInfo, runtime: Runtime, coconut_tokens: bool) -> Self {
        ModelSummary {
            name,
            arch: info.arch.label().to_string(),
            family: info.family,
            layers: info.layers,
            heads: info.heads,
            d_model: info.d_model,
            device: runtime.device,
            dtype: runtime.dtype,
            coconut_tokens,
        }
    }
}

/// An error as one status-bar line: its causes joined, newlines as spaces.
pub fn error_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// A finished run and its baseline (the same analysis when the run has no interventions).
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub current: Arc<RunAnalysis>,
    pub baseline: Arc<RunAnalysis>,
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
        /// The greedy answer of the run shown (the sweep scores one of its tokens).
        answer: Vec<u32>,
        method: ImportanceMethod,
    },
    /// The activation-patching sweep from the params' second prompt.
    PatchSweep {
        generation: u64,
        request: u64,
        params: RunParams,
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
        result: Result<RunResult, String>,
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
    PatchDone {
        generation: u64,
        request: u64,
        result: Result<PatchSweep, String>,
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
