//! Pure state-update tests: keys in, state and jobs out.

use ratatui::crossterm::event::{
    Event, KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};

use super::*;
use crate::analysis::importance::ImportanceMethod;
use crate::model::Interventions;
use crate::thought::StepKind;
use crate::thought::{ThoughtCount, ThoughtMode};
use crate::tui::app::{ImportanceState, Overlay};
use crate::tui::sample;
use crate::tui::tab::Tab;

const S: SampleShape = SampleShape::SMALL;

fn run_job(job: Option<Job>) -> (u64, crate::analysis::run::RunParams) {
    match job {
        Some(Job::Run { generation, params }) => (generation, params),
        other => panic!("expected a run job, got {other:?}"),
    }
}

#[test]
fn loading_asks_for_the_first_run_and_selects_the_first_thought() {
    let mut app = App::new("m".into(), sample::params(S), (120, 40));
    assert!(app.busy());
    let (g, params) = run_job(update(
        &mut app,
        Action::Worker(WorkerMsg::Loaded(sample::model_summary(S))),
    ));
    assert_eq!(g, 1);
    assert_eq!(params, sample::params(S));
    assert!(app.running);
    assert!(deliver(&mut app, g, S).is_none());
    assert!(!app.running && !app.busy());
    assert_eq!(app.selected_step().unwrap().kind, StepKind::Thought(1));
    assert_eq!(app.layer, S.layers, "the output row");
}

#[test]
fn a_load_error_quits_with_the_message() {
    let mut app = App::new("m".into(), sample::params(S), (120, 40));
    update(
        &mut app,
        Action::Worker(WorkerMsg::LoadFailed("no such folder".into())),
    );
    assert!(app.should_quit);
    assert_eq!(app.fatal.as_deref(), Some("no such folder"));
}

#[test]
fn toggling_heads_and_layers_recomputes() {
    let mut app = ready(S);
    assert_eq!(
        press(&mut app, key(' ')),
        None,
        "Space does nothing on the Lens tab"
    );
    press(&mut app, key('3'));
    press(&mut app, code(KeyCode::Down));
    press(&mut app, code(KeyCode::Right));
    press(&mut app, code(KeyCode::Right));
    assert_eq!(app.head, (1, 2));
    let (g, p) = run_job(press(&mut app, key(' ')));
    assert_eq!(g, 2);
    assert!(p.interventions.ablated_heads.contains(&(1, 2)));
    assert!(app.is_head_ablated(1, 2));
    let (g, p) = run_job(press(&mut app, key('L')));
    assert_eq!(g, 3);
    assert!(p.interventions.skipped_layers.contains(&1));
    let (_, p) = run_job(press(&mut app, key(' ')));
    assert!(
        p.interventions.ablated_heads.is_empty(),
        "Space again restores the head"
    );
    assert!(p.interventions.skipped_layers.contains(&1));
}

#[test]
fn stale_results_are_dropped() {
    let mut app = ready(S);
    press(&mut app, key('3'));
    let (g1, _) = run_job(press(&mut app, key(' ')));
    run_job(press(&mut app, key('L')));
    let (g3, _) = run_job(press(&mut app, key(' ')));
    assert!(g1 < g3);
    // The result of the first toggle arrives after the second: dropped.
    let before = app.run.clone();
    let stale = sample::result(
        S,
        Interventions {
            ablated_heads: [(0, 0)].into(),
            ..Default::default()
        },
    );
    update(
        &mut app,
        Action::Worker(WorkerMsg::RunDone {
            generation: g1,
            result: Ok(stale),
        }),
    );
    assert_eq!(app.run, before);
    assert!(app.running, "still waiting for the latest");
    deliver(&mut app, g3, S);
    assert!(!app.running);
    assert_eq!(
        app.run.as_ref().unwrap().params.interventions,
        app.params.interventions
    );
}

#[test]
fn errors_keep_the_last_good_result() {
    let mut app = ready(S);
    let good = app.run.clone();
    let (g, _) = run_job(press(&mut app, key('+')));
    update(
        &mut app,
        Action::Worker(WorkerMsg::RunDone {
            generation: g,
            result: Err("the input needs 600 positions".into()),
        }),
    );
    assert_eq!(app.run, good);
    let status = app.status.clone().unwrap();
    assert!(status.error && status.text.contains("600 positions"));
    // The next change clears the error.
    press(&mut app, key('-'));
    assert!(app.status.is_none());
}

#[test]
fn reset_restores_the_baseline_settings() {
    let mut app = ready(S);
    assert_eq!(press(&mut app, key('r')), None);
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .text
            .contains("nothing to reset")
    );
    press(&mut app, key('3'));
    press(&mut app, key(' '));
    press(&mut app, key('L'));
    let (_, p) = run_job(press(&mut app, key('r')));
    assert!(p.interventions.is_empty());
    assert_eq!(p, sample::params(S));
}

#[test]
fn thoughts_and_modes() {
    let mut app = ready(S);
    let (_, p) = run_job(press(&mut app, key('+')));
    assert_eq!(p.thoughts, ThoughtCount::Fixed { n: 4 });
    let (_, p) = run_job(press(&mut app, key('=')));
    assert_eq!(p.thoughts, ThoughtCount::Fixed { n: 5 });
    app.params.thoughts = ThoughtCount::Fixed { n: 0 };
    assert_eq!(press(&mut app, key('-')), None, "no fewer than 0");
    // Auto becomes a fixed count next to what ran.
    app.params.thoughts = ThoughtCount::Auto {
        entropy_stop: 1.0,
        max: 16,
    };
    let (_, p) = run_job(press(&mut app, key('+')));
    assert_eq!(p.thoughts, ThoughtCount::Fixed { n: S.thoughts + 1 });

    let modes: Vec<&str> = (0..4)
        .map(|_| run_job(press(&mut app, key('m'))).1.mode.name())
        .collect();
    assert_eq!(modes, ["soft", "token", "pause", "coconut"]);
    app.model.as_mut().unwrap().coconut_tokens = false;
    app.params.mode = ThoughtMode::Token;
    let (_, p) = run_job(press(&mut app, key('m')));
    assert_eq!(
        p.mode,
        ThoughtMode::Coconut,
        "no pause mode without <|latent|>"
    );
}

#[test]
fn the_prompt_line_edits_and_submits() {
    let mut app = ready(S);
    press(&mut app, key('p'));
    assert!(matches!(app.overlay, Overlay::Input(_)));
    // Keys type into the line instead of acting: q does not quit.
    press(
        &mut app,
        Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
    );
    for c in "Is Tom a cat?".chars() {
        assert_eq!(press(&mut app, key(c)), None);
    }
    press(&mut app, key('q'));
    assert!(!app.should_quit);
    press(&mut app, code(KeyCode::Backspace));
    let (_, p) = run_job(press(&mut app, code(KeyCode::Enter)));
    assert_eq!(p.prompt, "Is Tom a cat?");
    assert!(matches!(app.overlay, Overlay::None));

    // Esc leaves it unchanged; an empty line is refused.
    press(&mut app, key('p'));
    press(&mut app, key('x'));
    assert_eq!(press(&mut app, code(KeyCode::Esc)), None);
    assert_eq!(app.params.prompt, "Is Tom a cat?");
    press(&mut app, key('p'));
    press(
        &mut app,
        Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
    );
    assert_eq!(press(&mut app, code(KeyCode::Enter)), None);
    assert!(app.status.as_ref().unwrap().error);
    // Pasted text goes into the line, newlines as spaces.
    press(&mut app, key('p'));
    press(
        &mut app,
        Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
    );
    update(&mut app, Action::Paste("a\nb".into()));
    let (_, p) = run_job(press(&mut app, code(KeyCode::Enter)));
    assert_eq!(p.prompt, "a b");
}

#[test]
fn quitting() {
    let mut app = ready(S);
    press(&mut app, key('q'));
    assert!(app.should_quit);
    let mut app = ready(S);
    press(&mut app, key('p'));
    press(
        &mut app,
        Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
    );
    assert!(app.should_quit, "Ctrl-C quits even while editing");
}

#[test]
fn help_takes_the_keyboard_until_closed() {
    let mut app = ready(S);
    press(&mut app, key('?'));
    assert!(matches!(app.overlay, Overlay::Help));
    assert_eq!(press(&mut app, key('+')), None);
    press(&mut app, key('2'));
    assert_eq!(app.tab, Tab::Lens);
    press(&mut app, code(KeyCode::Esc));
    assert!(matches!(app.overlay, Overlay::None));
    press(&mut app, key('?'));
    press(&mut app, key('q'));
    assert!(!app.should_quit && matches!(app.overlay, Overlay::None));
}

#[test]
fn tabs_cycle_both_ways() {
    let mut app = ready(S);
    let mut seen = vec![];
    for _ in 0..6 {
        press(&mut app, code(KeyCode::Tab));
        seen.push(app.tab);
        if app.tab == Tab::Heads {
            // Finish the sweep the Heads tab asked for.
            app.importance = ImportanceState::Idle;
        }
    }
    assert_eq!(
        seen,
        [
            Tab::Layers,
            Tab::Heads,
            Tab::Attention,
            Tab::Compare,
            Tab::Graph,
            Tab::Lens
        ]
    );
    press(
        &mut app,
        Event::Key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)),
    );
    assert_eq!(app.tab, Tab::Graph);
    press(&mut app, key('1'));
    assert_eq!(app.tab, Tab::Lens);
}

fn sweep_job(job: Option<Job>) -> (u64, u64, ImportanceMethod) {
    match job {
        Some(Job::Importance {
            generation,
            request,
            method,
            ..
        }) => (generation, request, method),
        other => panic!("expected a sweep, got {other:?}"),
    }
}

fn sweep_done(app: &mut App, generation: u64, request: u64, method: ImportanceMethod) {
    update(
        app,
        Action::Worker(WorkerMsg::ImportanceDone {
            generation,
            request,
            result: Ok(sample::importance(S, method)),
        }),
    );
}

#[test]
fn the_heads_tab_runs_the_sweep_once_per_generation() {
    let mut app = ready(S);
    let (generation, request, method) = sweep_job(press(&mut app, key('3')));
    assert_eq!((generation, method), (1, ImportanceMethod::Ablation));
    for (done, total) in [(5, 20), (10, 20)] {
        update(
            &mut app,
            Action::Worker(WorkerMsg::Progress {
                request,
                done,
                total,
            }),
        );
    }
    assert!(matches!(
        app.importance,
        ImportanceState::Running {
            done: 10,
            total: 20,
            ..
        }
    ));
    // Leaving and coming back does not start a second sweep.
    assert_eq!(press(&mut app, key('1')), None);
    assert_eq!(press(&mut app, key('3')), None);
    sweep_done(&mut app, generation, request, method);
    let imp = sample::importance(S, ImportanceMethod::Ablation);
    assert_eq!(app.current_importance(), Some(&imp));
    assert_eq!(press(&mut app, key('1')), None);
    assert_eq!(press(&mut app, key('3')), None, "already there");

    // A toggle makes it stale; the new run's result asks for a new sweep.
    let (g, _) = run_job(press(&mut app, key(' ')));
    assert!(app.current_importance().is_none());
    assert_eq!(app.stale_importance(), Some(&imp));
    let (g2, r2, _) = sweep_job(deliver(&mut app, g, S));
    assert_eq!(g2, g, "the result is the sweep's input: it starts at once");
    assert!(r2 > request);
}

#[test]
fn a_toggle_supersedes_the_sweep_its_result_started() {
    let mut app = ready(S);
    app.importance = ImportanceState::Cancelled;
    press(&mut app, key('3'));
    let (g, _) = run_job(press(&mut app, key(' ')));
    let (sg, _, _) = sweep_job(deliver(&mut app, g, S));
    assert_eq!(sg, g);
    // The next toggle asks for a run; the sweep under way is stale, and time starts nothing.
    let (g, _) = run_job(press(&mut app, key(' ')));
    assert_eq!(app.importance, ImportanceState::Idle);
    for _ in 0..10 {
        assert_eq!(update(&mut app, Action::Tick), None, "ticks start nothing");
    }
    let (g2, request, method) = sweep_job(deliver(&mut app, g, S));
    assert_eq!(g2, g, "one sweep, of the latest result");
    sweep_done(&mut app, g2, request, method);
    // A result on a tab that does not show the sweep starts none; arriving on the tab does.
    press(&mut app, key('1'));
    let (g, _) = run_job(update(
        &mut app,
        Action::Cmd(crate::tui::keymap::Command::ToggleHead),
    ));
    assert_eq!(
        deliver(&mut app, g, S),
        None,
        "no sweep for a tab that does not show it"
    );
    sweep_job(press(&mut app, key('3')));
}

#[test]
fn esc_cancels_the_sweep_and_shift_s_restarts_it() {
    let mut app = ready(S);
    let (_, request, _) = sweep_job(press(&mut app, key('3')));
    assert_eq!(press(&mut app, code(KeyCode::Esc)), Some(Job::Cancel));
    update(&mut app, Action::Worker(WorkerMsg::Cancelled { request }));
    assert_eq!(app.importance, ImportanceState::Cancelled);
    assert_eq!(
        press(&mut app, code(KeyCode::Esc)),
        None,
        "nothing left to cancel"
    );
    assert_eq!(press(&mut app, key('1')), None);
    assert_eq!(
        press(&mut app, key('3')),
        None,
        "a cancelled sweep waits for s"
    );
    sweep_job(press(&mut app, key('S')));
}

#[test]
fn a_superseded_sweep_does_not_cancel_its_successor() {
    // '3' starts the ablation sweep, 'i' replaces it by a gradient sweep of the same
    // generation: the worker cancels the first, and its report must not touch the second.
    let mut app = ready(S);
    let (g, first, _) = sweep_job(press(&mut app, key('3')));
    let (g2, second, method) = sweep_job(press(&mut app, key('i')));
    assert_eq!((g2, method), (g, ImportanceMethod::Gradient));
    update(
        &mut app,
        Action::Worker(WorkerMsg::Cancelled { request: first }),
    );
    assert!(matches!(app.importance, ImportanceState::Running { .. }));
    // Nor does a late result of the first count as the second's.
    sweep_done(&mut app, g, first, ImportanceMethod::Ablation);
    assert!(app.current_importance().is_none());
    sweep_done(&mut app, g, second, ImportanceMethod::Gradient);
    assert_eq!(
        app.current_importance().map(|i| i.method),
        Some(ImportanceMethod::Gradient)
    );
    // 'S' while a sweep runs restarts it; the old one's cancellation is ignored.
    let (_, third, _) = sweep_job(press(&mut app, key('S')));
    let (_, fourth, _) = sweep_job(press(&mut app, key('S')));
    update(
        &mut app,
        Action::Worker(WorkerMsg::Cancelled { request: third }),
    );
    assert!(
        matches!(app.importance, ImportanceState::Running { request, .. } if request == fourth)
    );
}

#[test]
fn i_switches_the_importance_method() {
    let mut app = ready(S);
    press(&mut app, key('3'));
    let (_, _, method) = sweep_job(press(&mut app, key('i')));
    assert_eq!(method, ImportanceMethod::Gradient);
    // Elsewhere it only switches; the sweep waits for the Heads tab.
    press(&mut app, key('1'));
    assert_eq!(press(&mut app, key('i')), None);
    assert_eq!(app.importance_method, ImportanceMethod::Ablation);
}

#[test]
fn cursors_stay_in_range() {
    let mut app = ready(S);
    let n = app.run.as_ref().unwrap().steps.len();
    press(&mut app, key('G'));
    assert_eq!(app.step, n - 1);
    press(&mut app, key('l'));
    assert_eq!(app.step, n - 1);
    press(&mut app, key('g'));
    assert_eq!(app.step, 0);
    press(&mut app, key('h'));
    assert_eq!(app.step, 0);
    for _ in 0..10 {
        press(&mut app, key('j'));
    }
    assert_eq!(app.layer, S.layers);
    for _ in 0..10 {
        press(&mut app, key('k'));
    }
    assert_eq!(app.layer, 0);
    // The Layers tab's rows are blocks: the cursor stays on x^1..x^L.
    press(&mut app, key('2'));
    assert_eq!(app.layer, 1);
    press(&mut app, key('k'));
    assert_eq!(app.layer, 1);
    // Heads: a grid.
    press(&mut app, key('3'));
    for _ in 0..10 {
        press(&mut app, key('l'));
        press(&mut app, key('j'));
    }
    assert_eq!(app.head, (S.layers - 1, S.heads - 1));
    press(&mut app, key('g'));
    assert_eq!(app.head.0, 0);
    // Attention: ↑↓ walk the heads layer by layer, ←→ the thoughts and answer steps.
    press(&mut app, key('4'));
    press(&mut app, key('k'));
    assert_eq!(app.head, (0, S.heads - 2));
    app.head = (0, S.heads - 1);
    press(&mut app, key('j'));
    assert_eq!(app.head, (1, 0));
    press(&mut app, key('g'));
    assert_eq!(app.selected_step().unwrap().kind, StepKind::Thought(1));
    press(&mut app, key('h'));
    assert_eq!(app.selected_step().unwrap().kind, StepKind::Thought(1));
}

#[test]
fn the_selection_follows_its_thought_across_runs() {
    let mut app = ready(S);
    press(&mut app, key('l'));
    assert_eq!(app.selected_step().unwrap().kind, StepKind::Thought(2));
    let (g, _) = run_job(press(&mut app, key('+')));
    let bigger = SampleShape { thoughts: 4, ..S };
    deliver(&mut app, g, bigger);
    assert_eq!(app.selected_step().unwrap().kind, StepKind::Thought(2));
    // Fewer thoughts than the selected one: the last thought.
    press(&mut app, key('G'));
    press(&mut app, key('g'));
    app.step = app
        .run
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .position(|s| s.kind == StepKind::Thought(4))
        .unwrap();
    let (g, _) = run_job(press(&mut app, key('-')));
    deliver(&mut app, g, S);
    assert_eq!(app.selected_step().unwrap().kind, StepKind::Thought(3));
}

fn click(x: u16, y: u16) -> Event {
    Event::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: x,
        row: y,
        modifiers: KeyModifiers::NONE,
    })
}

#[test]
fn mouse_clicks_select_tabs_steps_and_cells() {
    let mut app = ready(S);
    let t = screen(&app, 120, 40);
    let (x, y) = find(&t, "5 Compare").unwrap();
    press(&mut app, click(x + 2, y));
    assert_eq!(app.tab, Tab::Compare);
    press(&mut app, key('1'));

    // A lens cell: the column of T2, the row of L1.
    let t = screen(&app, 120, 40);
    let (cx, _) = *find_all(&t, "T2 ").iter().find(|&&(_, y)| y > 6).unwrap();
    let (_, ry) = find(&t, "│L1 ").unwrap();
    press(&mut app, click(cx + 1, ry));
    assert_eq!(app.selected_step().unwrap().kind, StepKind::Thought(2));
    assert_eq!(app.layer, 2, "row L1 is x^2");

    // A timeline step.
    let (ax, ay) = *find_all(&t, "T3 ").iter().find(|&&(_, y)| y == 3).unwrap();
    press(&mut app, click(ax, ay));
    assert_eq!(app.selected_step().unwrap().kind, StepKind::Thought(3));

    // A head.
    app.importance = ImportanceState::Cancelled;
    press(&mut app, key('3'));
    let t = screen(&app, 120, 40);
    let (hx, _) = find(&t, "h3").unwrap();
    let (_, ly) = find(&t, "│L2").unwrap();
    press(&mut app, click(hx, ly));
    assert_eq!(app.head, (2, 3));

    // Wheel scrolls like ↑↓; clicks outside anything do nothing.
    press(
        &mut app,
        Event::Mouse(MouseEvent {
            kind: MouseEventKind::ScrollUp,
            column: 0,
            row: 0,
            modifiers: KeyModifiers::NONE,
        }),
    );
    assert_eq!(app.head, (1, 3));
    assert_eq!(press(&mut app, click(0, 0)), None);
}

#[test]
fn resize_and_ticks() {
    let mut app = ready(S);
    update(&mut app, Action::Resize(90, 30));
    assert_eq!(app.size, (90, 30));
    update(&mut app, Action::Tick);
    assert_eq!(app.ticks, 1);
}

fn saved_msg(session: crate::session::Session, export: bool, path: &str) -> Action {
    Action::Worker(WorkerMsg::Saved {
        session: Box::new(session),
        export,
        outcome: crate::tui::data::SaveOutcome::Saved {
            path: path.into(),
            ms: 3.0,
        },
    })
}

#[test]
fn s_asks_for_a_name_and_enter_saves_under_the_default_name() {
    let mut app = ready(S);
    app.tab = Tab::Heads;
    app.head = (2, 3);
    assert!(press(&mut app, key('s')).is_none());
    assert!(matches!(app.overlay, Overlay::SaveAs(_)));
    // Keys type into the line instead of acting: `q` does not quit.
    assert!(press(&mut app, key('q')).is_none());
    assert!(!app.should_quit);
    press(&mut app, code(KeyCode::Backspace));
    let job = press(&mut app, code(KeyCode::Enter));
    let Some(Job::Save {
        session,
        path,
        overwrite,
        export,
    }) = job
    else {
        panic!("a save job, got {job:?}");
    };
    assert_eq!((path, overwrite, export), (None, false, false));
    assert!(matches!(app.overlay, Overlay::None));
    assert!(app.file_job && app.busy());
    assert_eq!(session.view.tab, "heads");
    assert_eq!((session.view.layer, session.view.head), (2, 3));
    assert_eq!(&session.current, &**app.run.as_ref().unwrap());
    assert_eq!(&session.baseline, &**app.baseline.as_ref().unwrap());
    assert_eq!(session.params(), &app.params);
    update(&mut app, saved_msg(*session, false, "sessions/x.json"));
    assert!(!app.file_job);
    let st = app.status.as_ref().unwrap();
    assert!(
        !st.error && st.text.contains("saved sessions/x.json"),
        "{st:?}"
    );
}

#[test]
fn a_typed_name_goes_into_sessions_and_esc_saves_nothing() {
    let mut app = ready(S);
    press(&mut app, key('s'));
    update(&mut app, Action::Paste("my run".into()));
    match press(&mut app, code(KeyCode::Enter)) {
        Some(Job::Save { path, .. }) => {
            assert_eq!(path, Some("sessions/my run.json".into()))
        }
        other => panic!("{other:?}"),
    }
    press(&mut app, key('s'));
    assert!(press(&mut app, code(KeyCode::Esc)).is_none());
    assert!(matches!(app.overlay, Overlay::None));
    assert_eq!(app.status.as_ref().unwrap().text, "not saved");
}

#[test]
fn an_existing_file_is_overwritten_only_after_yes() {
    let mut app = ready(S);
    let session = crate::tui::saved::session_of(&app).unwrap();
    let exists = |export| {
        Action::Worker(WorkerMsg::Saved {
            session: Box::new(session.clone()),
            export,
            outcome: crate::tui::data::SaveOutcome::Exists("sessions/a.json".into()),
        })
    };
    update(&mut app, exists(false));
    assert!(
        matches!(&app.overlay, Overlay::Overwrite { path, export: false } if path.to_str() == Some("sessions/a.json"))
    );
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .text
            .contains("overwrite it? y/n")
    );
    // Other keys do nothing while asking.
    assert!(press(&mut app, key('m')).is_none());
    assert!(press(&mut app, key('n')).is_none());
    assert!(matches!(app.overlay, Overlay::None));
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .text
            .contains("kept the existing")
    );

    update(&mut app, exists(true));
    match press(&mut app, key('y')) {
        Some(Job::Save {
            path,
            overwrite: true,
            export: true,
            ..
        }) => assert_eq!(path, Some("sessions/a.json".into())),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_save_is_red_and_keeps_the_result() {
    let mut app = ready(S);
    let before = app.run.clone();
    let session = crate::tui::saved::session_of(&app).unwrap();
    update(
        &mut app,
        Action::Worker(WorkerMsg::Saved {
            session: Box::new(session),
            export: false,
            outcome: crate::tui::data::SaveOutcome::Failed("disk full".into()),
        }),
    );
    let st = app.status.as_ref().unwrap();
    assert!(st.error && st.text.contains("disk full"));
    assert_eq!(app.run, before);
    assert!(app.saved.is_none());
}

#[test]
fn e_saves_first_then_exports_next_to_the_saved_file() {
    let mut app = ready(S);
    let Some(Job::Save {
        session,
        path: None,
        export: true,
        ..
    }) = press(&mut app, key('e'))
    else {
        panic!("e saves first");
    };
    update(&mut app, saved_msg(*session, true, "sessions/b.json"));
    assert!(app.file_job, "the export is still under way");
    assert!(app.status.as_ref().unwrap().text.contains("exporting"));
    update(
        &mut app,
        Action::Worker(WorkerMsg::Exported {
            result: Ok(crate::tui::data::ExportReport {
                dir: "sessions/b".into(),
                files: 10,
                ms: 420.0,
            }),
        }),
    );
    assert!(!app.file_job);
    assert_eq!(
        app.status.as_ref().unwrap().text,
        "exported 10 plots to sessions/b/ in 420 ms"
    );
    // Saved and unchanged: `e` exports straight away.
    match press(&mut app, key('e')) {
        Some(Job::Export { path, .. }) => assert_eq!(path.to_str(), Some("sessions/b.json")),
        other => panic!("{other:?}"),
    }
    // A new result is not the saved one: `e` saves it first.
    app.file_job = false;
    app.tab = Tab::Heads;
    let (g, _) = run_job(press(&mut app, key(' ')));
    deliver(&mut app, g, S);
    assert!(matches!(
        press(&mut app, key('e')),
        Some(Job::Save { export: true, .. })
    ));
}

#[test]
fn the_saved_head_importance_is_that_of_the_result_shown() {
    let mut app = ready(S);
    app.importance_method = ImportanceMethod::Gradient;
    app.importance_result = Some((
        app.generation,
        sample::importance(S, ImportanceMethod::Gradient),
    ));
    let s = crate::tui::saved::session_of(&app).unwrap();
    let imp = s.importance.as_ref().unwrap();
    assert_eq!(imp.method, ImportanceMethod::Gradient);
    assert_eq!(imp.heads.len(), S.layers);
    assert_eq!(imp.layers.len(), S.layers);
    assert_eq!(s.inputs.importance_method, Some(ImportanceMethod::Gradient));
    // Of an older generation: not saved.
    app.generation += 1;
    let s = crate::tui::saved::session_of(&app).unwrap();
    assert!(s.importance.is_none());
}

#[test]
fn a_session_that_cannot_load_its_model_is_shown_read_only() {
    let app0 = ready(S);
    let mut session = crate::tui::saved::session_of(&app0).unwrap();
    session.view = crate::session::ViewState {
        tab: "layers".into(),
        step: 2,
        layer: 3,
        head: 1,
    };
    let mut app = App::new("gone".into(), sample::params(S), (120, 40));
    crate::tui::saved::reopen(&mut app, "sessions/s.json".into(), Box::new(session));
    assert!(
        update(
            &mut app,
            Action::Worker(WorkerMsg::LoadFailed("no such folder".into()))
        )
        .is_none()
    );
    assert!(!app.should_quit && app.fatal.is_none());
    assert_eq!(app.read_only.as_deref(), Some("no such folder"));
    assert_eq!((app.tab, app.step, app.layer), (Tab::Layers, 2, 3));
    assert!(!app.busy());
    // Every step of the saved run, attention included.
    let run = app.run.as_ref().unwrap();
    assert_eq!(**run, sample::analysis(S, Default::default()));
    assert_eq!(app.params, run.params);
    // Changing the run is refused, with the reason.
    for k in [' ', 'm', '+', 'r', 'p'] {
        app.tab = Tab::Heads;
        assert!(press(&mut app, key(k)).is_none(), "{k}");
        let st = app.status.as_ref().unwrap();
        assert!(st.error && st.text.contains("read-only"), "{k}: {st:?}");
    }
    // Export works from the saved file.
    assert!(matches!(
        press(&mut app, key('e')),
        Some(Job::Export { .. })
    ));
}

#[test]
fn x_cycles_a_thoughts_intervention_and_shift_p_sets_the_second_prompt() {
    use crate::analysis::effect::PatchSweep;
    use crate::thought::ThoughtOp;
    use crate::tui::app::PatchState;
    let mut app = ready(S);
    assert_eq!(app.selected_step().unwrap().kind, StepKind::Thought(1));
    let cycle = |app: &mut App| -> Option<ThoughtOp> {
        let (g, p) = run_job(press(app, key('x')));
        deliver(app, g, S);
        p.thought_edits.ops.get(&1).copied()
    };
    assert_eq!(cycle(&mut app), Some(ThoughtOp::Zero));
    assert_eq!(cycle(&mut app), Some(ThoughtOp::Mean));
    assert_eq!(cycle(&mut app), Some(ThoughtOp::Noise(1.0)));
    assert!(app.status.as_ref().unwrap().text.contains("P sets"));
    assert_eq!(cycle(&mut app), None, "no second prompt: patch is skipped");

    // The sweep needs the second prompt.
    press(&mut app, key('5'));
    assert_eq!(press(&mut app, key('S')), None);
    assert!(app.status.as_ref().unwrap().error);
    press(&mut app, key('P'));
    assert!(matches!(app.overlay, Overlay::PatchPrompt(_)));
    for c in "Is Tom a dog?".chars() {
        press(&mut app, key(c));
    }
    let (g, p) = run_job(press(&mut app, code(KeyCode::Enter)));
    assert_eq!(
        p.thought_edits.patch_prompt.as_deref(),
        Some("Is Tom a dog?")
    );
    deliver(&mut app, g, S);
    press(&mut app, key('1'));
    for want in [
        ThoughtOp::Zero,
        ThoughtOp::Mean,
        ThoughtOp::Noise(1.0),
        ThoughtOp::Patch,
    ] {
        assert_eq!(cycle(&mut app), Some(want));
    }

    // S on the Compare tab runs the sweep; Esc cancels it; a result belongs to its generation.
    press(&mut app, key('5'));
    let Some(Job::PatchSweep { request, .. }) = press(&mut app, key('S')) else {
        panic!("a patching sweep job");
    };
    assert_eq!(press(&mut app, code(KeyCode::Esc)), Some(Job::Cancel));
    update(&mut app, Action::Worker(WorkerMsg::Cancelled { request }));
    assert_eq!(app.patch, PatchState::Cancelled);
    let Some(Job::PatchSweep {
        generation,
        request,
        ..
    }) = press(&mut app, key('S'))
    else {
        panic!("a patching sweep job");
    };
    let sweep = PatchSweep {
        source_prompt: "Is Tom a dog?".into(),
        candidates: ["a".into(), "b".into()],
        scored_step: 0,
        clean: 1.0,
        corrupted: -1.0,
        logit_diff: vec![vec![0.0; 3]],
        restored: vec![vec![0.5; 3]],
    };
    update(
        &mut app,
        Action::Worker(WorkerMsg::PatchDone {
            generation,
            request,
            result: Ok(sweep.clone()),
        }),
    );
    assert_eq!(app.current_patch(), Some(&sweep));
    // An empty second prompt clears it and the patches that need it.
    press(&mut app, key('P'));
    press(
        &mut app,
        Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
    );
    let (_, p) = run_job(press(&mut app, code(KeyCode::Enter)));
    assert_eq!(p.thought_edits.patch_prompt, None);
    assert!(p.thought_edits.ops.is_empty());
    assert_eq!(
        app.current_patch(),
        None,
        "the sweep was of another generation"
    );
    // r resets the thought interventions too.
    let (g, _) = run_job(press(&mut app, key('P')).or_else(|| {
        for c in "Is Tom a cat?".chars() {
            press(&mut app, key(c));
        }
        press(&mut app, code(KeyCode::Enter))
    }));
    deliver(&mut app, g, S);
    press(&mut app, key('1'));
    cycle(&mut app);
    let (_, p) = run_job(press(&mut app, key('r')));
    assert!(p.thought_edits.ops.is_empty());
    assert_eq!(
        p.thought_edits.patch_prompt.as_deref(),
        Some("Is Tom a cat?")
    );
}
