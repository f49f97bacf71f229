//! The interactive explorer (`coconut-lens` with no subcommand).
//!
//! Elm-style: [`app::App`] is the state, [`app::Action`] what can happen, [`update::update`] the
//! pure transition (returning a [`data::Job`] when the worker must compute), and
//! [`view::render`] draws the state. Terminal events become actions first ([`events`]); key
//! bindings are data ([`keymap`]). One channel carries input events and worker reports to the
//! loop here; the [`worker`] thread alone owns the model. Results are the engine's
//! [`crate::analysis::run::RunAnalysis`], shared as `Arc`; they carry a generation number and
//! stale ones are dropped.

pub mod app;
pub mod compute;
pub mod data;
pub mod events;
pub mod keymap;
pub mod sample;
pub mod saved;
pub mod tab;
pub mod terminal;
pub mod update;
pub mod view;
pub mod widgets;
pub mod worker;

#[cfg(test)]
mod tests;

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use ratatui::crossterm::event::{self, Event};

use crate::analysis::run::RunParams;
use crate::cli::TuiArgs;
use crate::cli::args::{CheckedRun, check_run};
use crate::model::{DeviceSpec, ModelSource, load_model, parse_dtype};
use crate::thought::ThoughtMode;
use app::{Action, App};
use data::{Job, WorkerMsg};
use terminal::TerminalGuard;
use worker::Worker;

/// `coconut-lens [OPTIONS]`: checks the arguments, then runs the explorer.
pub fn main(args: &TuiArgs) -> Result<()> {
    if let Some(path) = &args.session {
        return main_session(args, path);
    }
    let CheckedRun {
        source,
        prompt,
        mode,
        thoughts,
        interventions,
        thought_edits,
        sampling,
    } = check_run(&args.model, &args.prompt, &args.run, args.top_k)?;
    let device: DeviceSpec = args.model.device.parse()?;
    let dtype = args.model.dtype.as_deref().map(parse_dtype).transpose()?;
    if !std::io::stdout().is_terminal() {
        bail!(
            "the interactive explorer needs a terminal; for JSON output use `coconut-lens analyze`"
        );
    }
    let params = RunParams {
        prompt: prompt.trim_end().to_string(),
        thoughts,
        mode,
        max_new_tokens: args.run.max_new_tokens,
        top_k: args.top_k,
        context_tokens: args.context_tokens,
        interventions,
        thought_edits,
        sampling,
    };
    let soft = match mode {
        ThoughtMode::Soft { top_k, top_p } => (top_k, top_p),
        _ => (args.run.soft_top_k, args.run.soft_top_p),
    };
    let model_arg = args
        .model
        .model
        .clone()
        .unwrap_or_else(|| crate::cli::args::BUNDLED_MODEL.to_string());
    let setup = Setup {
        model_arg,
        base_arg: args.model.base.clone(),
        opened: None,
    };
    run(Ok(source), device, dtype, params, soft, setup)
}

/// `coconut-lens --session FILE`: everything is checked before the terminal is touched; a
/// model that does not load (missing, unreadable) leads to the read-only view.
fn main_session(args: &TuiArgs, path: &std::path::Path) -> Result<()> {
    if args.model.model.is_some() || args.model.base.is_some() || args.prompt.given() {
        bail!(
            "--session restores the model and the prompt of the session; drop --model, --base, --prompt and --prompt-file"
        );
    }
    if args.run.thoughts.is_some()
        || args.run.entropy_stop.is_some()
        || !args.run.ablate_heads.is_empty()
        || !args.run.ablate_layers.is_empty()
    {
        bail!(
            "--session restores the thoughts and ablations of the session; drop --thoughts, --entropy-stop and --ablate-*"
        );
    }
    let session = crate::session::Session::load(path)?;
    let inputs = &session.inputs;
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    // The session's own settings (a v1 file's missing ones are at the command line's defaults).
    let soft = (args.run.soft_top_k, args.run.soft_top_p);
    let params = session.params().clone();
    let soft = match params.mode {
        ThoughtMode::Soft { top_k, top_p } => (top_k, top_p),
        _ => soft,
    };
    // The session's device and dtype unless given.
    let device: DeviceSpec = if args.model.device == "auto" {
        inputs.device.parse().unwrap_or(DeviceSpec::Auto)
    } else {
        args.model.device.parse()?
    };
    let dtype = match &args.model.dtype {
        Some(d) => Some(parse_dtype(d)?),
        None => parse_dtype(&inputs.dtype).ok(),
    };
    if !std::io::stdout().is_terminal() {
        bail!(
            "the interactive explorer needs a terminal; for JSON output use `coconut-lens analyze`"
        );
    }
    let source = if inputs.model == crate::cli::args::BUNDLED_MODEL {
        Ok(ModelSource::Local(crate::cli::args::bundled_model_path()))
    } else {
        ModelSource::parse(&inputs.model, inputs.base.as_deref())
    };
    let setup = Setup {
        model_arg: inputs.model.clone(),
        base_arg: inputs.base.clone(),
        opened: Some((path.to_path_buf(), Box::new(session))),
    };
    run(source, device, dtype, params, soft, setup)
}

/// What the app records beside the run settings.
struct Setup {
    model_arg: String,
    base_arg: Option<String>,
    /// A session reopened with `--session`, and its file.
    opened: Option<(std::path::PathBuf, Box<crate::session::Session>)>,
}

/// The spinner's frame time.
const TICK: Duration = Duration::from_millis(100);

/// What the loop waits for.
enum Ev {
    Input(Event, Instant),
    Worker(WorkerMsg),
}

/// Appends latency measurements to the file named by `COCONUT_LENS_LATENCY_LOG`.
struct LatencyLog {
    file: Option<std::fs::File>,
}

impl LatencyLog {
    fn from_env() -> Self {
        let file = std::env::var_os("COCONUT_LENS_LATENCY_LOG").and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        LatencyLog { file }
    }

    fn line(&mut self, text: String) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{text}");
        }
    }
}

fn run(
    source: Result<ModelSource>,
    device: DeviceSpec,
    dtype: Option<candle_core::DType>,
    params: RunParams,
    soft: (usize, f32),
    setup: Setup,
) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Ev>();
    let shown_source = match &source {
        Ok(s) => s.to_string(),
        Err(_) => setup.model_arg.clone(),
    };
    let worker_tx = tx.clone();
    let worker = Worker::spawn(
        move || {
            let load_source = source?;
            let device = device.open()?;
            let dtype = dtype.unwrap_or_else(|| crate::model::load::default_dtype(&device));
            load_model(&load_source, &device, dtype)
        },
        move |msg| {
            let _ = worker_tx.send(Ev::Worker(msg));
        },
    );

    let mut guard = TerminalGuard::enter()?;
    std::thread::Builder::new()
        .name("coconut-lens-input".into())
        .spawn(move || {
            while let Ok(ev) = event::read() {
                if tx.send(Ev::Input(ev, Instant::now())).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the input thread")?;

    let size = guard.terminal.size()?;
    let mut app = App::new(shown_source, params, (size.width, size.height));
    app.soft = soft;
    app.model_arg = setup.model_arg;
    app.base_arg = setup.base_arg;
    if let Some((path, session)) = setup.opened {
        saved::reopen(&mut app, path, session);
    }
    let mut log = LatencyLog::from_env();
    // When each generation's job was asked for, and by which input.
    let mut asked: Option<(u64, Instant)> = None;

    let mut last_tick = Instant::now();
    guard.terminal.draw(|f| view::render(&app, f))?;
    loop {
        let timeout = if app.busy() {
            TICK.saturating_sub(last_tick.elapsed())
        } else {
            Duration::from_millis(1000)
        };
        let mut events = Vec::new();
        match rx.recv_timeout(timeout) {
            Ok(ev) => events.push(ev),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        // Whatever else has arrived is handled before the next frame.
        events.extend(rx.try_iter());
        let mut first_key: Option<Instant> = None;
        let mut finished: Option<(u64, f64)> = None;
        let busy_before = app.busy();
        for ev in events {
            let (action, at) = match ev {
                Ev::Input(e, at) => match events::action_of(&app, &e) {
                    Some(a) => (a, Some(at)),
                    None => continue,
                },
                Ev::Worker(msg) => {
                    if let WorkerMsg::RunDone {
                        generation,
                        result: Ok(result),
                    } = &msg
                    {
                        finished = Some((*generation, result.current.compute_ms));
                    }
                    (Action::Worker(msg), None)
                }
            };
            if let Some(at) = at {
                first_key.get_or_insert(at);
            }
            if let Some(job) = update::update(&mut app, action) {
                if let Job::Run { generation, .. } = &job {
                    asked = Some((*generation, at.unwrap_or_else(Instant::now)));
                }
                worker.submit(job);
            }
        }
        // Ticks every 100 ms while something is under way (spinner).
        if (busy_before || app.busy()) && last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            if let Some(job) = update::update(&mut app, Action::Tick) {
                worker.submit(job);
            }
        }
        if app.should_quit {
            break;
        }
        guard.terminal.draw(|f| view::render(&app, f))?;
        let drawn = Instant::now();
        if let Some(at) = first_key {
            log.line(format!(
                "key_to_frame_ms {:.2}",
                (drawn - at).as_secs_f64() * 1e3
            ));
        }
        if let (Some((g, compute_ms)), Some((ag, at))) = (finished, asked)
            && g == ag
            && g == app.generation
        {
            log.line(format!(
                "job_to_frame_ms {:.1} worker_ms {compute_ms:.1} generation {g}",
                (drawn - at).as_secs_f64() * 1e3
            ));
            asked = None;
        }
    }
    // A save or export under way finishes before leaving (a killed write would leave its
    // temporary file behind; the target file is never half-written either way).
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.file_job && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ev::Worker(msg @ (WorkerMsg::Saved { .. } | WorkerMsg::Exported { .. }))) => {
                let _ = update::update(&mut app, Action::Worker(msg));
                // An overwrite question cannot be answered any more.
                if matches!(app.overlay, app::Overlay::Overwrite { .. }) {
                    break;
                }
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    drop(guard);
    drop(worker);
    match app.fatal {
        Some(e) => Err(anyhow!(e)),
        None => Ok(()),
    }
}
