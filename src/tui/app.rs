//! The application state. Changed only by [`super::update::update`]; read by the views.

use std::path::PathBuf;
use std::sync::Arc;

use tui_input::{Input, InputRequest};

use super::data::{ModelSummary, WorkerMsg};
use super::keymap::{Command, Context};
use super::tab::Tab;
use crate::analysis::effect::PatchSweep;
use crate::analysis::importance::{Importance, ImportanceMethod};
use crate::analysis::run::{RunAnalysis, RunParams, Step};
use crate::session::{Session, ViewState};
use crate::thought::StepKind;

/// Everything the user or the machinery can do to the state. Terminal events are mapped to
/// these first (see [`super::events`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A command of the key table.
    Cmd(Command),
    /// An edit of the line being typed (prompt, save name).
    Edit(InputRequest),
    /// A click on something the screen shows.
    Click(Hit),
    Resize(u16, u16),
    /// Time passes (spinner).
    Tick,
    /// Text pasted into the terminal.
    Paste(String),
    Worker(WorkerMsg),
}

/// What a mouse click landed on (the views' hit test says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Tab(Tab),
    Step(usize),
    Cell {
        step: usize,
        layer: usize,
    },
    Head {
        layer: usize,
        head: usize,
    },
    /// A node of the Graph tab's problem graph.
    Node(usize),
}

/// Which overlay has the keyboard.
#[derive(Debug, Clone, Default)]
pub enum Overlay {
    #[default]
    None,
    Help,
    /// Editing the prompt.
    Input(Input),
    /// Editing the second prompt (the patch source).
    PatchPrompt(Input),
    /// Typing the name to save the session under (empty: the default name).
    SaveAs(Input),
    /// The session file exists: overwrite it?
    Overwrite {
        path: PathBuf,
        export: bool,
    },
}

/// Head importance for the current generation.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportanceState {
    /// Not asked for yet (or made stale by a new run).
    Idle,
    Running {
        generation: u64,
        request: u64,
        method: ImportanceMethod,
        done: usize,
        total: usize,
    },
    Cancelled,
    Failed(String),
}

/// The patching sweep of the current generation.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchState {
    Idle,
    Running {
        generation: u64,
        request: u64,
        done: usize,
        total: usize,
    },
    Cancelled,
    Failed(String),
}

/// A line in the status bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

pub struct App {
    /// What is being loaded, until the worker reports the model.
    pub source: String,
    pub model: Option<ModelSummary>,
    /// The settings the user asked for; a run of them is shown or under way.
    pub params: RunParams,
    /// Bumped by every change of `params`; results of older generations are dropped.
    pub generation: u64,
    /// Whether a run of the current generation is under way.
    pub running: bool,
    /// The last good result, and its baseline (the run without interventions).
    pub run: Option<Arc<RunAnalysis>>,
    pub baseline: Option<Arc<RunAnalysis>>,
    pub importance: ImportanceState,
    /// The last good importance, with the generation it belongs to.
    pub importance_result: Option<(u64, Importance)>,
    pub importance_method: ImportanceMethod,
    /// The number of the last sweep asked for.
    pub importance_requests: u64,
    pub patch: PatchState,
    /// The last patching sweep, with the generation it belongs to.
    pub patch_result: Option<(u64, Arc<PatchSweep>)>,
    /// Soft Thinking's (top-k, top-p), used when `m` reaches soft mode.
    pub soft: (usize, f32),
    pub tab: Tab,
    /// Selected step (column) in the run.
    pub step: usize,
    /// Selected layer row in the Lens and Layers tabs (0..=L).
    pub layer: usize,
    /// The head cursor `(layer, head)`.
    pub head: (usize, usize),
    /// The graph node clicked in the Graph tab: its probabilities are shown beside the graph.
    pub graph_node: Option<usize>,
    pub overlay: Overlay,
    pub status: Option<Status>,
    /// Ticks while something runs (spinner frames).
    pub ticks: u64,
    /// Terminal size, for mouse hit-testing.
    pub size: (u16, u16),
    pub should_quit: bool,
    /// Set when the model failed to load: the runtime leaves and prints it.
    pub fatal: Option<String>,
    /// `--model` as given (what a saved session records), and `--base`.
    pub model_arg: String,
    pub base_arg: Option<String>,
    /// The session reopened with `--session`: shown read-only if the model does not load.
    pub opened: Option<Box<Session>>,
    /// The view to restore when the first result arrives.
    pub restore: Option<ViewState>,
    /// Why the screen shows saved results read-only (the model is not available).
    pub read_only: Option<String>,
    /// The last session file written or opened, with what it holds.
    pub saved: Option<(PathBuf, Box<Session>)>,
    /// A save or export is under way.
    pub file_job: bool,
}

impl App {
    pub fn new(source: String, params: RunParams, size: (u16, u16)) -> Self {
        App {
            source: source.clone(),
            model: None,
            params,
            generation: 0,
            running: false,
            run: None,
            baseline: None,
            importance: ImportanceState::Idle,
            importance_result: None,
            importance_method: ImportanceMethod::Ablation,
            importance_requests: 0,
            patch: PatchState::Idle,
            patch_result: None,
            soft: (5, 0.95),
            tab: Tab::Lens,
            step: 0,
            layer: 0,
            head: (0, 0),
            graph_node: None,
            overlay: Overlay::None,
            status: None,
            ticks: 0,
            size,
            should_quit: false,
            fatal: None,
            model_arg: source.clone(),
            base_arg: None,
            opened: None,
            restore: None,
            read_only: None,
            saved: None,
            file_job: false,
        }
    }

    pub fn context(&self) -> Context {
        match self.overlay {
            Overlay::None => Context::Main(self.tab),
            Overlay::Help => Context::Help,
            Overlay::Input(_) | Overlay::PatchPrompt(_) => Context::Input,
            Overlay::SaveAs(_) => Context::SaveAs,
            Overlay::Overwrite { .. } => Context::Confirm,
        }
    }

    /// Whether the worker has something of ours under way.
    pub fn busy(&self) -> bool {
        self.model.is_none() && self.fatal.is_none()
            || self.running
            || matches!(self.importance, ImportanceState::Running { .. })
            || matches!(self.patch, PatchState::Running { .. })
            || self.file_job
    }

    /// The importance to show: the current generation's if there is one.
    pub fn current_importance(&self) -> Option<&Importance> {
        self.importance_result
            .as_ref()
            .filter(|(g, i)| *g == self.generation && i.method == self.importance_method)
            .map(|(_, i)| i)
    }

    /// Importance of an older generation or method, shown dimmed while the new one computes.
    pub fn stale_importance(&self) -> Option<&Importance> {
        self.importance_result.as_ref().map(|(_, i)| i)
    }

    pub fn layers(&self) -> usize {
        self.model.as_ref().map_or(0, |m| m.layers)
    }

    pub fn heads(&self) -> usize {
        self.model.as_ref().map_or(0, |m| m.heads)
    }

    /// The selected step of the shown run.
    pub fn selected_step(&self) -> Option<&Step> {
        self.run.as_ref().and_then(|r| r.steps.get(self.step))
    }

    /// Indices of the steps that are thoughts or answer tokens (the Attention tab's rows).
    pub fn query_steps(&self) -> Vec<usize> {
        self.run.as_ref().map_or(vec![], |r| {
            r.steps
                .iter()
                .enumerate()
                .filter(|(_, s)| s.kind != StepKind::Prompt)
                .map(|(i, _)| i)
                .collect()
        })
    }

    pub fn is_head_ablated(&self, layer: usize, head: usize) -> bool {
        self.params
            .interventions
            .ablated_heads
            .contains(&(layer, head))
    }

    /// The patching sweep to show: the current generation's if there is one.
    pub fn current_patch(&self) -> Option<&PatchSweep> {
        self.patch_result
            .as_ref()
            .filter(|(g, _)| *g == self.generation)
            .map(|(_, p)| &**p)
    }

    pub fn is_layer_skipped(&self, layer: usize) -> bool {
        self.params.interventions.skipped_layers.contains(&layer)
    }
}
