//! The interactive explorer (`coconut-lens` with no subcommand).
//!
//! Elm-style: [`app::App`] is the state, [`app::Action`] what can happen, [`update::update`] the
//! pure transition (returning a [`data::Job`] when the worker must compute), and
//! [`view::render`] draws the state. Key bindings are data ([`keymap`]). One channel carries
//! input events and worker reports to the loop here; the [`worker`] thread alone owns the
//! model. Results carry a generation number and stale ones are dropped.

pub mod app;
pub mod compute;
pub mod data;
pub mod keymap;
pub mod sample;
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
use ratatui::crossterm::event::{self, Event, KeyEventKind};

use crate::cli::{TuiArgs, default_thoughts, demo_prompt, read_prompt};
use crate::model::{DeviceSpec, ModelSource, load_model, parse_dtype};
use crate::thought::ThoughtMode;
use app::{Action, App};
use data::{Job, RunParams, WorkerMsg};
use terminal::TerminalGuard;
use worker::Worker;

/// `coconut-lens [OPTIONS]`: checks the arguments, then runs the explorer.
pub fn main(args: &TuiArgs) -> Result<()> {
    let source = args.model.source()?;
    let prompt = if args.prompt.is_none() && args.prompt_file.is_none() {
        demo_prompt(&source).ok_or_else(|| {
            anyhow!(
                "no prompt: {source} has no demo prompt (coconut-lens.json); pass --prompt TEXT or --prompt-file FILE"
            )
        })?
    } else {
        read_prompt(&args.prompt, &args.prompt_file)?
    };
    if prompt.trim().is_empty() {
        bail!("the prompt is empty");
    }
    let mode = args.run.mode()?;
    let thoughts = args.run.thought_count(default_thoughts(&source))?;
    let interventions = args.run.interventions()?;
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
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
    };
    let soft = match mode {
        ThoughtMode::Soft { top_k, top_p } => (top_k, top_p),
        _ => (args.run.soft_top_k, args.run.soft_top_p),
    };
    run(source, device, dtype, params, soft)
}

/// The spinner's frame time, and the unit of [`update::SWEEP_DELAY_TICKS`].
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

fn input_action(ev: Event) -> Option<Action> {
    match ev {
        Event::Key(k) if k.kind != KeyEventKind::Release => Some(Action::Key(k)),
        Event::Mouse(m) => Some(Action::Mouse(m)),
        Event::Resize(w, h) => Some(Action::Resize(w, h)),
        Event::Paste(s) => Some(Action::Paste(s)),
        _ => None,
    }
}

fn run(
    source: ModelSource,
    device: DeviceSpec,
    dtype: Option<candle_core::DType>,
    params: RunParams,
    soft: (usize, f32),
) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Ev>();
    let load_source = source.clone();
    let worker_tx = tx.clone();
    let worker = Worker::spawn(
        move || {
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
    let mut app = App::new(source.to_string(), params, (size.width, size.height));
    app.soft = soft;
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
                Ev::Input(e, at) => match input_action(e) {
                    Some(a) => (a, Some(at)),
                    None => continue,
                },
                Ev::Worker(msg) => {
                    if let WorkerMsg::RunDone {
                        generation,
                        result: Ok(view),
                    } = &msg
                    {
                        finished = Some((*generation, view.compute_ms));
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
        // Ticks every 100 ms while something is under way (spinner, delayed sweep).
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
    drop(guard);
    drop(worker);
    match app.fatal {
        Some(e) => Err(anyhow!(e)),
        None => Ok(()),
    }
}
