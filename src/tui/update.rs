//! The state update: `update(&mut App, Action) -> Option<Job>`. No I/O, no clock: what needs the
//! worker comes back as a job for the runtime to send.

use tui_input::{Input, InputRequest};

use super::app::{Action, App, Hit, ImportanceState, Overlay, PatchState, Status};
use super::data::{Job, SaveOutcome, WorkerMsg};
use super::keymap::Command;
use super::saved::{restore_view, session_of};
use super::tab::Tab;
use crate::analysis::importance::ImportanceMethod;
use crate::analysis::run::RunAnalysis;
use crate::thought::{StepKind, ThoughtCount, ThoughtMode, ThoughtOp};

/// The most thoughts `+` goes to.
pub const MAX_THOUGHTS: usize = 64;

pub fn update(app: &mut App, action: Action) -> Option<Job> {
    match action {
        Action::Edit(req) => {
            if let Overlay::Input(input) | Overlay::PatchPrompt(input) | Overlay::SaveAs(input) =
                &mut app.overlay
            {
                input.handle(req);
            }
            None
        }
        Action::Paste(text) => {
            if let Overlay::Input(input) | Overlay::PatchPrompt(input) | Overlay::SaveAs(input) =
                &mut app.overlay
            {
                for c in text.chars() {
                    let c = if c.is_control() { ' ' } else { c };
                    input.handle(InputRequest::InsertChar(c));
                }
            }
            None
        }
        Action::Click(hit) => click(app, hit),
        Action::Cmd(cmd) => command(app, cmd),
        Action::Resize(w, h) => {
            app.size = (w, h);
            None
        }
        Action::Tick => {
            app.ticks = app.ticks.wrapping_add(1);
            None
        }
        Action::Worker(msg) => worker(app, msg),
    }
}

fn set_status(app: &mut App, text: impl Into<String>, error: bool) {
    app.status = Some(Status {
        text: text.into(),
        error,
    });
}

/// The settings changed: a new generation and a run of it.
fn new_run(app: &mut App) -> Option<Job> {
    app.model.as_ref()?;
    if app.read_only.is_some() {
        return None;
    }
    app.generation += 1;
    app.running = true;
    app.importance = ImportanceState::Idle;
    app.patch = PatchState::Idle;
    app.status = None;
    Some(Job::Run {
        generation: app.generation,
        params: app.params.clone(),
    })
}

/// Starts the head sweep when the Heads tab needs it and it is not there yet.
fn want_importance(app: &mut App, force: bool) -> Option<Job> {
    app.model.as_ref()?;
    if app.read_only.is_some() {
        return None;
    }
    let answer = match &app.run {
        Some(r) if r.params == app.params => r.summary.answer.iter().map(|t| t.id).collect(),
        _ => return None,
    };
    if app.tab != Tab::Heads || app.running {
        return None;
    }
    let idle = matches!(app.importance, ImportanceState::Idle);
    if !force && (!idle || app.current_importance().is_some()) {
        return None;
    }
    app.importance_requests += 1;
    app.importance = ImportanceState::Running {
        generation: app.generation,
        request: app.importance_requests,
        method: app.importance_method,
        done: 0,
        total: 0,
    };
    Some(Job::Importance {
        generation: app.generation,
        request: app.importance_requests,
        params: app.params.clone(),
        answer,
        method: app.importance_method,
    })
}

/// How the status bar names an operation.
fn describe_op(op: ThoughtOp) -> String {
    match op {
        ThoughtOp::Zero => "a zero vector".into(),
        ThoughtOp::Mean => "the mean (input embedding, or --means)".into(),
        ThoughtOp::Noise(s) => format!("itself plus noise ({s}x its RMS)"),
        ThoughtOp::Patch => "the second prompt's thought".into(),
        other => other.to_string(),
    }
}

/// Starts the patching sweep of the run shown.
fn want_patch(app: &mut App) -> Option<Job> {
    app.model.as_ref()?;
    if app.read_only.is_some() || app.running {
        return None;
    }
    if app.params.thought_edits.patch_prompt.is_none() {
        set_status(
            app,
            "the patching sweep copies from a second prompt: P sets it",
            true,
        );
        return None;
    }
    app.importance_requests += 1;
    app.patch = PatchState::Running {
        generation: app.generation,
        request: app.importance_requests,
        done: 0,
        total: 0,
    };
    Some(Job::PatchSweep {
        generation: app.generation,
        request: app.importance_requests,
        params: app.params.clone(),
    })
}

fn steps_len(app: &App) -> usize {
    app.run.as_ref().map_or(0, |r| r.steps.len())
}

fn move_step(app: &mut App, to: usize) {
    let n = steps_len(app);
    if n > 0 {
        app.step = to.min(n - 1);
    }
}

/// The Attention tab's rows are the thoughts and answer steps.
fn move_query_step(app: &mut App, delta: isize, absolute: Option<bool>) {
    let rows = app.query_steps();
    if rows.is_empty() {
        return;
    }
    let at = rows.iter().position(|&s| s == app.step);
    let next = match (absolute, at) {
        (Some(true), _) => 0,
        (Some(false), _) => rows.len() - 1,
        (None, Some(i)) => (i as isize + delta).clamp(0, rows.len() as isize - 1) as usize,
        (None, None) => 0,
    };
    app.step = rows[next];
}

fn move_head_linear(app: &mut App, delta: isize) {
    let (layers, heads) = (app.layers(), app.heads());
    if layers == 0 || heads == 0 {
        return;
    }
    let i = (app.head.0 * heads + app.head.1) as isize + delta;
    let i = i.clamp(0, (layers * heads) as isize - 1) as usize;
    app.head = (i / heads, i % heads);
}

/// Bounds of the lens-row cursor (0..=L). The Layers tab's rows are the L blocks, x^l -> x^{l+1}
/// shown at the row of their output x^{l+1}, so there the cursor starts at 1.
fn layer_bounds(app: &App) -> (usize, usize) {
    let l = app.layers();
    match app.tab {
        Tab::Layers => (1.min(l), l),
        _ => (0, l),
    }
}

fn clamp_layer(app: &mut App) {
    let (lo, hi) = layer_bounds(app);
    app.layer = app.layer.clamp(lo, hi);
}

/// Commands that change the run: refused when the saved results are shown read-only.
fn changes_the_run(cmd: Command) -> bool {
    matches!(
        cmd,
        Command::ToggleHead
            | Command::ToggleLayer
            | Command::Reset
            | Command::MoreThoughts
            | Command::FewerThoughts
            | Command::CycleMode
            | Command::EditPrompt
            | Command::SwitchImportance
            | Command::Sweep
            | Command::CycleThought
            | Command::EditPatchPrompt
            | Command::PatchSweep
    )
}

/// The save job of the state shown (`path: None`: the default name).
fn save_job(
    app: &mut App,
    path: Option<std::path::PathBuf>,
    overwrite: bool,
    export: bool,
) -> Option<Job> {
    match session_of(app) {
        Ok(session) => {
            app.file_job = true;
            set_status(
                app,
                if export {
                    "saving, then exporting the plots…"
                } else {
                    "saving…"
                },
                false,
            );
            Some(Job::Save {
                session: Box::new(session),
                path,
                overwrite,
                export,
            })
        }
        Err(e) => {
            set_status(app, e, true);
            None
        }
    }
}

fn command(app: &mut App, cmd: Command) -> Option<Job> {
    if changes_the_run(cmd)
        && let Some(why) = &app.read_only
    {
        let text = format!(
            "read-only session: the model is not available ({why}); reopen with the model to change the run"
        );
        set_status(app, text, true);
        return None;
    }
    match cmd {
        Command::Save => {
            if app.run.is_none() {
                set_status(app, "nothing to save yet", true);
                return None;
            }
            app.overlay = Overlay::SaveAs(Input::default());
            None
        }
        Command::SubmitSave => {
            let Overlay::SaveAs(input) = std::mem::take(&mut app.overlay) else {
                return None;
            };
            let path = super::saved::save_path(input.value());
            save_job(app, path, false, false)
        }
        Command::ExportPlots => {
            let session = match session_of(app) {
                Ok(s) => s,
                Err(e) => {
                    set_status(app, e, true);
                    return None;
                }
            };
            match &app.saved {
                Some((path, saved)) if saved.same_results(&session) => {
                    let path = path.clone();
                    app.file_job = true;
                    set_status(app, "exporting the plots…", false);
                    Some(Job::Export {
                        session: Box::new(session),
                        path,
                    })
                }
                // Not saved yet (or changed since): save under the default name first.
                _ => save_job(app, None, false, true),
            }
        }
        Command::ConfirmYes => {
            let Overlay::Overwrite { path, export } = std::mem::take(&mut app.overlay) else {
                return None;
            };
            save_job(app, Some(path), true, export)
        }
        Command::ConfirmNo => {
            if let Overlay::Overwrite { path, .. } = std::mem::take(&mut app.overlay) {
                set_status(
                    app,
                    format!("not saved: kept the existing {}", path.display()),
                    false,
                );
            }
            None
        }
        Command::Quit => {
            app.should_quit = true;
            None
        }
        Command::Help => {
            app.overlay = Overlay::Help;
            None
        }
        Command::CloseHelp => {
            app.overlay = Overlay::None;
            None
        }
        Command::NextTab | Command::PrevTab | Command::GoTab(_) => {
            let i = app.tab.index();
            app.tab = match cmd {
                Command::NextTab => Tab::ALL[(i + 1) % Tab::ALL.len()],
                Command::PrevTab => Tab::ALL[(i + Tab::ALL.len() - 1) % Tab::ALL.len()],
                Command::GoTab(t) => t,
                _ => unreachable!(),
            };
            clamp_layer(app);
            let query_tab = matches!(app.tab, Tab::Attention | Tab::Graph);
            if query_tab && !app.query_steps().contains(&app.step) {
                move_query_step(app, 0, Some(true));
            }
            want_importance(app, false)
        }
        Command::Left | Command::Right | Command::Up | Command::Down => {
            movement(app, cmd);
            None
        }
        Command::First | Command::Last => {
            let first = cmd == Command::First;
            match app.tab {
                Tab::Heads => {
                    app.head.0 = if first {
                        0
                    } else {
                        app.layers().saturating_sub(1)
                    }
                }
                Tab::Attention | Tab::Graph => move_query_step(app, 0, Some(first)),
                _ => move_step(app, if first { 0 } else { usize::MAX }),
            }
            None
        }
        Command::ToggleHead => {
            app.model.as_ref()?;
            let (l, h) = app.head;
            let set = &mut app.params.interventions.ablated_heads;
            if !set.remove(&(l, h)) {
                set.insert((l, h));
            }
            new_run(app)
        }
        Command::ToggleLayer => {
            app.model.as_ref()?;
            let l = app.head.0;
            let set = &mut app.params.interventions.skipped_layers;
            if !set.remove(&l) {
                set.insert(l);
            }
            new_run(app)
        }
        Command::Reset => {
            if !app.params.intervened() {
                set_status(
                    app,
                    "nothing to reset: no head, layer or thought is intervened on",
                    false,
                );
                return None;
            }
            app.params.interventions = Default::default();
            app.params.thought_edits.ops.clear();
            app.params.thought_edits.resid.clear();
            new_run(app)
        }
        Command::MoreThoughts | Command::FewerThoughts => {
            let now = match app.params.thoughts {
                ThoughtCount::Fixed { n } => n,
                ThoughtCount::Auto { .. } => app.run.as_ref().map_or(0, |r| r.thought_count()),
            };
            let n = if cmd == Command::MoreThoughts {
                (now + 1).min(MAX_THOUGHTS)
            } else {
                now.saturating_sub(1)
            };
            if app.params.thoughts == (ThoughtCount::Fixed { n }) {
                return None;
            }
            app.params.thoughts = ThoughtCount::Fixed { n };
            new_run(app)
        }
        Command::CycleMode => {
            let markers = app.model.as_ref().is_some_and(|m| m.coconut_tokens);
            app.params.mode = match app.params.mode {
                ThoughtMode::Coconut => ThoughtMode::Soft {
                    top_k: app.soft.0,
                    top_p: app.soft.1,
                },
                ThoughtMode::Soft { .. } => ThoughtMode::Token,
                ThoughtMode::Token if markers => ThoughtMode::Pause,
                ThoughtMode::Token | ThoughtMode::Pause => ThoughtMode::Coconut,
            };
            new_run(app)
        }
        Command::EditPrompt => {
            app.overlay = Overlay::Input(Input::new(app.params.prompt.clone()));
            None
        }
        Command::CycleThought => {
            let Some(StepKind::Thought(k)) = app.selected_step().map(|s| s.kind) else {
                set_status(
                    app,
                    "select a thought (T1, T2, ...) to intervene on it",
                    false,
                );
                return None;
            };
            let edits = &mut app.params.thought_edits;
            let next = match edits.ops.get(&k) {
                None => Some(ThoughtOp::Zero),
                Some(ThoughtOp::Zero) => Some(ThoughtOp::Mean),
                Some(ThoughtOp::Mean) => Some(ThoughtOp::Noise(1.0)),
                Some(ThoughtOp::Noise(_)) if edits.patch_prompt.is_some() => Some(ThoughtOp::Patch),
                Some(_) => None,
            };
            let text = match next {
                Some(op) => {
                    edits.ops.insert(k, op);
                    let tip = if op == ThoughtOp::Noise(1.0) && edits.patch_prompt.is_none() {
                        " (P sets a second prompt to patch from)"
                    } else {
                        ""
                    };
                    format!("T{k} feeds {}{tip}", describe_op(op))
                }
                None => {
                    edits.ops.remove(&k);
                    format!("T{k} feeds itself again")
                }
            };
            let job = new_run(app);
            set_status(app, text, false);
            job
        }
        Command::EditPatchPrompt => {
            let now = app
                .params
                .thought_edits
                .patch_prompt
                .clone()
                .unwrap_or_default();
            app.overlay = Overlay::PatchPrompt(Input::new(now));
            None
        }
        Command::PatchSweep => want_patch(app),
        Command::SubmitPrompt => {
            if let Overlay::PatchPrompt(input) = &app.overlay {
                let text = input.value().trim().to_string();
                app.overlay = Overlay::None;
                let edits = &mut app.params.thought_edits;
                let new = (!text.is_empty()).then_some(text);
                if new == edits.patch_prompt {
                    return None;
                }
                edits.patch_prompt = new;
                if edits.patch_prompt.is_none() {
                    edits.ops.retain(|_, op| *op != ThoughtOp::Patch);
                    edits.resid.clear();
                }
                let job = new_run(app);
                let said = match &app.params.thought_edits.patch_prompt {
                    Some(_) => "second prompt set: x reaches patch, S on Compare sweeps",
                    None => "second prompt cleared",
                };
                set_status(app, said, false);
                return job;
            }
            let Overlay::Input(input) = std::mem::take(&mut app.overlay) else {
                return None;
            };
            let text = input.value().trim().to_string();
            if text.is_empty() {
                set_status(app, "the prompt is empty; kept the previous one", true);
                return None;
            }
            if text == app.params.prompt {
                return None;
            }
            app.params.prompt = text;
            app.graph_node = None;
            new_run(app)
        }
        Command::CancelPrompt => {
            if matches!(app.overlay, Overlay::SaveAs(_)) {
                set_status(app, "not saved", false);
            }
            app.overlay = Overlay::None;
            None
        }
        Command::SwitchImportance => {
            app.importance_method = match app.importance_method {
                ImportanceMethod::Ablation => ImportanceMethod::Gradient,
                ImportanceMethod::Gradient => ImportanceMethod::Ablation,
            };
            set_status(
                app,
                format!("head importance: {}", app.importance_method.name()),
                false,
            );
            if matches!(app.importance, ImportanceState::Running { .. }) {
                // The running sweep is for the other method: the new job supersedes it.
                app.importance = ImportanceState::Idle;
            }
            if app.tab == Tab::Heads {
                want_importance(app, true)
            } else {
                app.importance = ImportanceState::Idle;
                None
            }
        }
        Command::Sweep => want_importance(app, true),
        Command::Cancel => {
            if matches!(app.importance, ImportanceState::Running { .. }) {
                set_status(app, "cancelling the head sweep…", false);
                Some(Job::Cancel)
            } else if matches!(app.patch, PatchState::Running { .. }) {
                set_status(app, "cancelling the patching sweep…", false);
                Some(Job::Cancel)
            } else {
                None
            }
        }
    }
}

fn movement(app: &mut App, cmd: Command) {
    let dx: isize = match cmd {
        Command::Left => -1,
        Command::Right => 1,
        _ => 0,
    };
    let dy: isize = match cmd {
        Command::Up => -1,
        Command::Down => 1,
        _ => 0,
    };
    match app.tab {
        Tab::Heads => {
            let (layers, heads) = (app.layers(), app.heads());
            if layers == 0 || heads == 0 {
                return;
            }
            app.head.0 = (app.head.0 as isize + dy).clamp(0, layers as isize - 1) as usize;
            app.head.1 = (app.head.1 as isize + dx).clamp(0, heads as isize - 1) as usize;
        }
        Tab::Attention => {
            if dx != 0 {
                move_query_step(app, dx, None);
            }
            if dy != 0 {
                move_head_linear(app, dy);
            }
        }
        // The graph's steps are the thoughts and answer steps; ↑↓ move the lens layer.
        Tab::Graph => {
            if dx != 0 {
                move_query_step(app, dx, None);
            }
            if dy != 0 {
                let (lo, hi) = layer_bounds(app);
                app.layer = (app.layer as isize + dy).clamp(lo as isize, hi as isize) as usize;
            }
        }
        Tab::Lens | Tab::Layers | Tab::Compare => {
            if dx != 0 {
                move_step(app, (app.step as isize + dx).max(0) as usize);
            }
            if dy != 0 {
                let (lo, hi) = layer_bounds(app);
                app.layer = (app.layer as isize + dy).clamp(lo as isize, hi as isize) as usize;
            }
        }
    }
}

fn click(app: &mut App, hit: Hit) -> Option<Job> {
    match hit {
        Hit::Tab(t) => command(app, Command::GoTab(t)),
        Hit::Step(s) => {
            move_step(app, s);
            None
        }
        Hit::Cell { step, layer } => {
            move_step(app, step);
            app.layer = layer;
            clamp_layer(app);
            None
        }
        Hit::Head { layer, head } => {
            app.head = (layer, head);
            None
        }
        // A second click on the same node closes its panel.
        Hit::Node(node) => {
            app.graph_node = (app.graph_node != Some(node)).then_some(node);
            None
        }
    }
}

/// Where the selection goes in a new run: the same thought or answer token when it exists.
fn remap_step(old: &RunAnalysis, old_step: usize, new: &RunAnalysis) -> usize {
    let last = new.steps.len().saturating_sub(1);
    let Some(kind) = old.steps.get(old_step).map(|s| s.kind) else {
        return 0;
    };
    let find = |k: StepKind| new.steps.iter().position(|s| s.kind == k);
    match kind {
        StepKind::Prompt => {
            let from_end = old
                .steps
                .iter()
                .take_while(|s| s.kind == StepKind::Prompt)
                .count()
                - old_step;
            let prompts = new
                .steps
                .iter()
                .take_while(|s| s.kind == StepKind::Prompt)
                .count();
            prompts.saturating_sub(from_end).min(last)
        }
        StepKind::Thought(k) => {
            let n = new.thought_count();
            if n == 0 {
                find(StepKind::Answer(0)).unwrap_or(last)
            } else {
                find(StepKind::Thought(k.min(n))).unwrap_or(last)
            }
        }
        StepKind::Answer(i) => (0..=i)
            .rev()
            .find_map(|j| find(StepKind::Answer(j)))
            .unwrap_or(last),
    }
}

/// The step selected in a first run: the first thought, else the first answer token.
fn initial_step(run: &RunAnalysis) -> usize {
    run.steps
        .iter()
        .position(|s| s.kind != StepKind::Prompt)
        .unwrap_or(0)
}

fn worker(app: &mut App, msg: WorkerMsg) -> Option<Job> {
    match msg {
        WorkerMsg::Loaded(model) => {
            app.layer = model.layers;
            app.head = (0, 0);
            app.params
                .interventions
                .ablated_heads
                .retain(|&(l, h)| l < model.layers && h < model.heads);
            app.params
                .interventions
                .skipped_layers
                .retain(|&l| l < model.layers);
            app.model = Some(model);
            new_run(app)
        }
        WorkerMsg::LoadFailed(e) => {
            if app.opened.is_some() {
                // A reopened session: show what it saved.
                super::saved::open_read_only(app, &e);
                return None;
            }
            app.fatal = Some(e);
            app.should_quit = true;
            None
        }
        WorkerMsg::RunDone { generation, result } => {
            if generation != app.generation {
                return None;
            }
            app.running = false;
            match result {
                Ok(result) => {
                    app.step = match &app.run {
                        Some(old) => remap_step(old, app.step, &result.current),
                        None => initial_step(&result.current),
                    };
                    app.run = Some(result.current);
                    app.baseline = Some(result.baseline);
                    if let Some(v) = app.restore.take() {
                        restore_view(app, &v);
                    }
                    clamp_layer(app);
                    // The Heads tab's sweep starts with its input; a toggle that follows
                    // supersedes it (the worker stops it at its next layer).
                    want_importance(app, false)
                }
                Err(e) => {
                    set_status(app, e, true);
                    None
                }
            }
        }
        WorkerMsg::Progress {
            request,
            done,
            total,
        } => {
            if let ImportanceState::Running {
                request: r,
                done: d,
                total: t,
                ..
            } = &mut app.importance
                && *r == request
            {
                *d = done;
                *t = total;
            }
            if let PatchState::Running {
                request: r,
                done: d,
                total: t,
                ..
            } = &mut app.patch
                && *r == request
            {
                *d = done;
                *t = total;
            }
            None
        }
        WorkerMsg::PatchDone {
            generation,
            request,
            result,
        } => {
            if !matches!(app.patch, PatchState::Running { request: r, .. } if r == request) {
                return None;
            }
            match result {
                Ok(sweep) => {
                    app.patch_result = Some((generation, std::sync::Arc::new(sweep)));
                    app.patch = PatchState::Idle;
                }
                Err(e) => {
                    set_status(app, format!("patching sweep: {e}"), true);
                    app.patch = PatchState::Failed(e);
                }
            }
            None
        }
        WorkerMsg::ImportanceDone {
            generation,
            request,
            result,
        } => {
            let ours = matches!(app.importance,
                ImportanceState::Running { request: r, .. } if r == request);
            if !ours {
                return None;
            }
            match result {
                Ok(imp) => {
                    app.importance_result = Some((generation, imp));
                    app.importance = ImportanceState::Idle;
                }
                Err(e) => {
                    set_status(app, format!("head importance: {e}"), true);
                    app.importance = ImportanceState::Failed(e);
                }
            }
            None
        }
        WorkerMsg::Cancelled { request } => {
            if matches!(app.importance, ImportanceState::Running { request: r, .. } if r == request)
            {
                app.importance = ImportanceState::Cancelled;
                set_status(app, "head sweep cancelled; S starts it again", false);
            }
            if matches!(app.patch, PatchState::Running { request: r, .. } if r == request) {
                app.patch = PatchState::Cancelled;
                set_status(app, "patching sweep cancelled; S starts it again", false);
            }
            None
        }
        WorkerMsg::Saved {
            session,
            export,
            outcome,
        } => {
            match outcome {
                SaveOutcome::Saved { path, ms } => {
                    app.file_job = export;
                    let text = if export {
                        format!(
                            "saved {} ({ms:.0} ms); exporting the plots…",
                            path.display()
                        )
                    } else {
                        format!("saved {} ({ms:.0} ms)", path.display())
                    };
                    set_status(app, text, false);
                    app.saved = Some((path, session));
                }
                SaveOutcome::Exists(path) => {
                    app.file_job = false;
                    set_status(
                        app,
                        format!("{} exists: overwrite it? y/n", path.display()),
                        false,
                    );
                    app.overlay = Overlay::Overwrite { path, export };
                }
                SaveOutcome::Failed(e) => {
                    app.file_job = false;
                    set_status(app, format!("save failed: {e}"), true);
                }
            }
            None
        }
        WorkerMsg::Exported { result } => {
            app.file_job = false;
            match result {
                Ok(r) => set_status(
                    app,
                    format!(
                        "exported {} plots to {}/ in {:.0} ms",
                        r.files,
                        r.dir.display(),
                        r.ms
                    ),
                    false,
                ),
                Err(e) => set_status(app, format!("export failed: {e}"), true),
            }
            None
        }
    }
}
