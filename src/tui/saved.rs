//! Sessions in the explorer: the session of the state shown (for `s` and `e`), the state of a
//! reopened session (its inputs and view), the read-only view of its saved results when the
//! model is not available, and the file jobs (save, export) that run on their own thread.
//!
//! Everything here but [`run_file_job`] is pure.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::app::{App, ImportanceState};
use super::data::{
    Comparison, Documents, ExportReport, Importance, Job, LensCell, ModelSummary, RunParams,
    RunSummary, RunView, SaveOutcome, Step, StepKind, TokProb, WorkerMsg,
};
use super::tab::Tab;
use crate::analysis::StepAnalysis;
use crate::analysis::document::{AnalysisDocument, HeadImportance};
use crate::analysis::importance::ImportanceMethod;
use crate::session::cli::default_plot_dir;
use crate::session::{RunSettings, Session, SessionInputs, ViewState};
use crate::thought::{ThoughtCount, ThoughtMode};

/// Where sessions go by default.
pub const SESSIONS_DIR: &str = "sessions";

/// The path a typed name stands for: bare names go into `sessions/` and get `.json`; an empty
/// name is the default name (`None`).
pub fn save_path(text: &str) -> Option<PathBuf> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut path = PathBuf::from(text);
    if path.extension().is_none() {
        path.set_extension("json");
    }
    if path.components().count() == 1 {
        path = Path::new(SESSIONS_DIR).join(path);
    }
    Some(path)
}

/// The `thoughts` field of a session (`"6"` or `"auto"`) and its entropy stop.
fn thoughts_field(t: ThoughtCount) -> (String, Option<f32>) {
    match t {
        ThoughtCount::Fixed { n } => (n.to_string(), None),
        ThoughtCount::Auto { entropy_stop, .. } => ("auto".into(), Some(entropy_stop)),
    }
}

fn head_importance_of(imp: &Importance) -> HeadImportance {
    HeadImportance {
        method: imp.method.name().to_string(),
        answer_step: imp.step,
        target: imp.target_id,
        values: imp.heads.clone(),
    }
}

/// The session of what is on screen: the inputs of the result shown (not of a run still under
/// way), the view, and the result's documents with the head importance when it was computed
/// for this result. `saved_at` is left at 0 for the writer to fill (no clock here).
pub fn session_of(app: &App) -> Result<Session, String> {
    let view = ViewState {
        tab: app.tab.name().to_string(),
        step: app.step,
        layer: app.layer,
        head: app.head.1,
    };
    let view = ViewState {
        // The head cursor's layer is the Heads tab's row; the lens row is `layer`.
        layer: if app.tab == Tab::Heads || app.tab == Tab::Attention {
            app.head.0
        } else {
            view.layer
        },
        ..view
    };
    if app.read_only.is_some() {
        let opened = app
            .opened
            .as_ref()
            .ok_or("nothing to save: no result yet")?;
        let mut s = (**opened).clone();
        s.view = view;
        s.saved_at = 0;
        return Ok(s);
    }
    let run = app.run.as_ref().ok_or("nothing to save: no result yet")?;
    let docs = run
        .documents
        .as_ref()
        .ok_or("this result has no analysis document to save")?;
    let model = app.model.as_ref().ok_or("nothing to save: no model")?;
    let p = &run.params;
    let (thoughts, entropy_stop) = thoughts_field(p.thoughts);
    let soft = match p.mode {
        ThoughtMode::Soft { top_k, top_p } => Some((top_k, top_p)),
        _ => None,
    };
    let mut current = docs.current.clone();
    let imp = app
        .current_importance()
        .filter(|_| !app.running && run.params == app.params);
    if let Some(imp) = imp {
        current.head_importance = Some(head_importance_of(imp));
        current.layer_importance = Some(imp.layers.clone());
    }
    Ok(Session {
        schema: crate::session::SCHEMA.to_string(),
        saved_at: 0,
        inputs: SessionInputs {
            model: app.model_arg.clone(),
            base: app.base_arg.clone(),
            revision: None,
            device: model.device.clone(),
            dtype: model.dtype.clone(),
            prompt: p.prompt.clone(),
            mode: p.mode.name().to_string(),
            thoughts,
            entropy_stop,
            ablations: p.interventions.clone(),
            importance_method: imp.map(|i| i.method.name().to_string()),
            settings: Some(RunSettings {
                max_new_tokens: Some(p.max_new_tokens),
                top_k: Some(p.top_k),
                context_tokens: Some(p.context_tokens),
                soft_top_k: soft.map(|s| s.0),
                soft_top_p: soft.map(|s| s.1),
            }),
        },
        view,
        baseline: docs.baseline.clone(),
        current,
    })
}

/// Whether two sessions hold the same run and results (the view and the time aside), as
/// written to a file: fields the file does not keep (the model's context length and end
/// tokens) do not count.
pub fn same_results(a: &Session, b: &Session) -> bool {
    let saved = |s: &Session| serde_json::to_value((&s.inputs, &s.baseline, &s.current)).ok();
    a.inputs == b.inputs && saved(a).is_some() && saved(a) == saved(b)
}

/// The run settings of saved inputs. What the file does not record (older files: answer
/// length, top-k, context, Soft Thinking's parameters; always: the auto-thought cap) comes from
/// `defaults`, `soft` and `max_thoughts`.
pub fn params_of(
    inputs: &SessionInputs,
    defaults: &RunParams,
    soft: (usize, f32),
    max_thoughts: usize,
) -> Result<RunParams, String> {
    let set = inputs.settings.clone().unwrap_or_default();
    let soft = (
        set.soft_top_k.unwrap_or(soft.0),
        set.soft_top_p.unwrap_or(soft.1),
    );
    if set.top_k == Some(0) {
        return Err("the session's top-k is out of range".into());
    }
    let invalid = |e: anyhow::Error| format!("the session's inputs: {e}");
    let mode = ThoughtMode::parse(&inputs.mode, soft).map_err(invalid)?;
    let thoughts = ThoughtCount::parse(&inputs.thoughts, inputs.entropy_stop, max_thoughts)
        .map_err(invalid)?;
    if inputs.prompt.trim().is_empty() {
        return Err("the session's prompt is empty".into());
    }
    Ok(RunParams {
        prompt: inputs.prompt.clone(),
        thoughts,
        mode,
        max_new_tokens: set.max_new_tokens.unwrap_or(defaults.max_new_tokens),
        top_k: set.top_k.unwrap_or(defaults.top_k),
        context_tokens: set.context_tokens.unwrap_or(defaults.context_tokens),
        interventions: inputs.ablations.clone(),
    })
}

/// Puts the cursor where the session had it, within the shown result's bounds.
pub fn restore_view(app: &mut App, view: &ViewState) {
    app.tab = Tab::of_name(&view.tab);
    let steps = app.run.as_ref().map_or(0, |r| r.steps.len());
    app.step = view.step.min(steps.saturating_sub(1));
    let (layers, heads) = (app.layers(), app.heads());
    let head = view.head.min(heads.saturating_sub(1));
    match app.tab {
        Tab::Heads | Tab::Attention => {
            app.head = (view.layer.min(layers.saturating_sub(1)), head);
        }
        _ => {
            app.layer = view.layer.min(layers);
            app.head = (0, head);
        }
    }
}

/// A vocabulary string as shown: GPT-2's `Ġ` and `Ċ`, SentencePiece's `▁` made readable.
pub fn readable(text: &str) -> String {
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

/// The text of a token id in a document, where any lens cell names it.
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
                top: l
                    .top
                    .iter()
                    .map(|t| TokProb {
                        id: t.id,
                        text: readable(&t.text),
                        prob: t.prob,
                    })
                    .collect(),
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

/// The summary of a document: per thought its top 3, the answer tokens (only the first has a
/// known probability; later ones are NaN, shown as n/a).
fn summary_of(doc: &AnalysisDocument) -> RunSummary {
    let own = |a: &StepAnalysis| -> Vec<TokProb> {
        a.lens.last().map_or(vec![], |l| {
            l.top
                .iter()
                .take(3)
                .map(|t| TokProb {
                    id: t.id,
                    text: readable(&t.text),
                    prob: t.prob,
                })
                .collect()
        })
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
                TokProb {
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

/// What the views can show of a saved session without the model: the thoughts and the first
/// answer step (lens top-k, the model's own entropy, angular distances), the answers, the
/// blocks and the first divergence. Not in the documents, so not shown: prompt steps,
/// attention, later answer steps, lens entropies below the last layer, target ranks and KL.
pub fn run_view_of(session: &Session, params: RunParams) -> RunView {
    let doc = &session.current;
    let mut steps: Vec<Step> = doc
        .thoughts
        .iter()
        .map(|t| step_of(&t.step, StepKind::Thought(t.index), format!("T{}", t.index)))
        .collect();
    steps.push(step_of(&doc.answer.first, StepKind::Answer(0), "A1".into()));
    let (base, cur) = (&session.baseline.answer.ids, &doc.answer.ids);
    let divergence = (0..base.len().max(cur.len())).find(|&i| base.get(i) != cur.get(i));
    RunView {
        params,
        prompt_tokens: doc.tokens.iter().map(|t| readable(&t.text)).collect(),
        markers: has_markers(doc),
        steps,
        summary: summary_of(doc),
        target: None,
        blocks: doc.blocks.clone(),
        comparison: Comparison {
            baseline: summary_of(&session.baseline),
            kl_first: f32::NAN,
            kl_aligned: vec![],
            divergence,
        },
        compute_ms: doc.timings.compute_ms,
        documents: Some(Box::new(Documents {
            baseline: session.baseline.clone(),
            current: session.current.clone(),
        })),
    }
}

fn has_markers(doc: &AnalysisDocument) -> bool {
    doc.tokens.iter().any(|t| t.text == "<|start-latent|>")
}

/// The header's model line from a session.
pub fn model_summary_of(session: &Session) -> ModelSummary {
    let info = &session.current.model;
    let name = Path::new(&session.inputs.model).file_name().map_or_else(
        || session.inputs.model.clone(),
        |n| n.to_string_lossy().into(),
    );
    ModelSummary {
        name,
        arch: info.arch.label().to_string(),
        layers: info.layers,
        heads: info.heads,
        d_model: info.d_model,
        device: session.inputs.device.clone(),
        dtype: session.inputs.dtype.clone(),
        coconut_tokens: has_markers(&session.current),
    }
}

/// The saved head importance, in the form the Heads tab shows.
fn importance_of(doc: &AnalysisDocument) -> Option<Importance> {
    let h = doc.head_importance.as_ref()?;
    let method: ImportanceMethod = h.method.parse().ok()?;
    Some(Importance {
        method,
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

/// Prepares an app for a session reopened from `path`: its view is restored when the first
/// result arrives (or at once if the model fails to load), its importance method is used, and
/// `e` exports next to its file while the results are unchanged.
pub fn reopen(app: &mut App, path: PathBuf, session: Box<Session>) {
    app.model_arg = session.inputs.model.clone();
    app.base_arg = session.inputs.base.clone();
    app.restore = Some(session.view.clone());
    app.tab = Tab::of_name(&session.view.tab);
    if let Some(m) = session
        .inputs
        .importance_method
        .as_deref()
        .and_then(|m| m.parse().ok())
    {
        app.importance_method = m;
    }
    app.saved = Some((path, session.clone()));
    app.opened = Some(session);
}

/// Shows the opened session's saved results read-only: the model could not be loaded
/// (`reason`).
pub fn open_read_only(app: &mut App, reason: &str) {
    let Some(session) = app.opened.clone() else {
        return;
    };
    app.model = Some(model_summary_of(&session));
    app.params.interventions = session.inputs.ablations.clone();
    app.run = Some(run_view_of(&session, app.params.clone()));
    app.running = false;
    app.generation += 1;
    if let Some(imp) = importance_of(&session.current) {
        app.importance_method = imp.method;
        app.importance_result = Some((app.generation, imp));
    }
    app.importance = ImportanceState::Idle;
    app.read_only = Some(reason.to_string());
    restore_view(app, &session.view);
    app.restore = None;
    app.status = Some(super::app::Status {
        text: format!("read-only: the model is not available ({reason})"),
        error: false,
    });
}

/// Runs a file job, reporting through `out`. Called on a thread of its own.
pub fn run_file_job(job: Job, out: &dyn Fn(WorkerMsg)) {
    match job {
        Job::Save {
            mut session,
            path,
            overwrite,
            export,
        } => {
            let t0 = Instant::now();
            session.saved_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let path =
                path.unwrap_or_else(|| Path::new(SESSIONS_DIR).join(session.default_file_name()));
            let outcome = if !overwrite && path.exists() {
                SaveOutcome::Exists(path.clone())
            } else {
                match session.save(&path, overwrite) {
                    Ok(()) => SaveOutcome::Saved {
                        path: path.clone(),
                        ms: t0.elapsed().as_secs_f64() * 1e3,
                    },
                    Err(e) => SaveOutcome::Failed(format!("{e:#}").replace('\n', " ")),
                }
            };
            let saved = matches!(outcome, SaveOutcome::Saved { .. });
            let export_now = export && saved;
            out(WorkerMsg::Saved {
                session: session.clone(),
                export,
                outcome,
            });
            if export_now {
                out(WorkerMsg::Exported {
                    result: export_plots(&session, &path),
                });
            }
        }
        Job::Export { session, path } => out(WorkerMsg::Exported {
            result: export_plots(&session, &path),
        }),
        _ => {}
    }
}

/// Exports PNG and SVG plots of `session` (saved at `path`) into the folder named after it.
pub fn export_plots(session: &Session, path: &Path) -> Result<ExportReport, String> {
    let t0 = Instant::now();
    let dir = default_plot_dir(path);
    let files = crate::plot::export(
        session,
        &dir,
        &[crate::plot::Format::Png, crate::plot::Format::Svg],
    )
    .map_err(|e| format!("{e:#}").replace('\n', " "))?;
    Ok(ExportReport {
        dir,
        files: files.len(),
        ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}
