//! Sessions in the explorer: the session of the state shown (for `s` and `e`), the state of a
//! reopened session (its settings and view), its saved results shown read-only when the model
//! is not available, and the file jobs (save, export) that run on their own thread. A session
//! holds the analyses the views read, so a reopened one shows what the live run showed.
//!
//! Everything here but [`run_file_job`] is pure.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::app::{App, ImportanceState};
use super::data::{ExportReport, Job, ModelSummary, SaveOutcome, WorkerMsg, error_line};
use super::tab::Tab;
use crate::analysis::run::Runtime;
use crate::session::cli::default_plot_dir;
use crate::session::{Session, SessionInputs, ViewState};

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

/// The session of what is on screen: the analyses of the result shown (not of a run still
/// under way), the view, and the head importance when it was computed for this result.
/// `saved_at` is left at 0 for the writer to fill (no clock here).
pub fn session_of(app: &App) -> Result<Session, String> {
    let view = ViewState {
        tab: app.tab.name().to_string(),
        step: app.step,
        // The head cursor's layer is the Heads and Attention tabs' row; the lens row is `layer`.
        layer: if app.tab == Tab::Heads || app.tab == Tab::Attention {
            app.head.0
        } else {
            app.layer
        },
        head: app.head.1,
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
    let baseline = app
        .baseline
        .as_ref()
        .ok_or("nothing to save: no result yet")?;
    let model = app.model.as_ref().ok_or("nothing to save: no model")?;
    let importance = app
        .current_importance()
        .filter(|_| !app.running && run.params == app.params);
    Ok(Session {
        schema: crate::session::SCHEMA.to_string(),
        saved_at: 0,
        inputs: SessionInputs {
            model: app.model_arg.clone(),
            base: app.base_arg.clone(),
            revision: None,
            device: model.device.clone(),
            dtype: model.dtype.clone(),
            importance_method: importance.map(|i| i.method),
        },
        view,
        baseline: (**baseline).clone(),
        current: (**run).clone(),
        importance: importance.cloned(),
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

/// The header's model line from a session.
pub fn model_summary_of(session: &Session) -> ModelSummary {
    let name = Path::new(&session.inputs.model).file_name().map_or_else(
        || session.inputs.model.clone(),
        |n| n.to_string_lossy().into(),
    );
    let runtime = Runtime {
        device: session.inputs.device.clone(),
        dtype: session.inputs.dtype.clone(),
    };
    ModelSummary::new(
        name,
        &session.current.model,
        runtime,
        session.current.markers,
    )
}

/// Prepares an app for a session reopened from `path`: its view is restored when the first
/// result arrives (or at once if the model fails to load), its importance method is used, and
/// `e` exports next to its file while the results are unchanged.
pub fn reopen(app: &mut App, path: PathBuf, session: Box<Session>) {
    app.model_arg = session.inputs.model.clone();
    app.base_arg = session.inputs.base.clone();
    app.restore = Some(session.view.clone());
    app.tab = Tab::of_name(&session.view.tab);
    if let Some(m) = session.inputs.importance_method {
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
    app.params = session.params().clone();
    app.run = Some(Arc::new(session.current.clone()));
    app.baseline = Some(Arc::new(session.baseline.clone()));
    app.running = false;
    app.generation += 1;
    if let Some(imp) = session.importance.clone() {
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
                    Err(e) => SaveOutcome::Failed(error_line(&e)),
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
    .map_err(|e| error_line(&e))?;
    Ok(ExportReport {
        dir,
        files: files.len(),
        ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}
