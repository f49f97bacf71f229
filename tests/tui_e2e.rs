//! End to end: key presses through the real update, a real worker on the tiny GPT-2 fixture,
//! frames rendered with TestBackend. Toggling a head changes what the screen shows; `r` brings
//! back the baseline screen exactly.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use coconut_lens::analysis::run::RunParams;
use coconut_lens::model::{ModelSource, load_model};
use coconut_lens::tui::app::{Action, App, ImportanceState};
use coconut_lens::tui::data::{Job, WorkerMsg};
use coconut_lens::tui::events::action_of;
use coconut_lens::tui::tab::Tab;
use coconut_lens::tui::update::update;
use coconut_lens::tui::worker::Worker;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};

struct Harness {
    app: App,
    worker: Worker,
    rx: mpsc::Receiver<WorkerMsg>,
}

impl Harness {
    fn new(model: &str, params: RunParams) -> Self {
        let (worker, rx) = common::tui::fixture_worker(Some(model));
        let mut h = Harness {
            app: App::new(model.into(), params, (120, 40)),
            worker,
            rx,
        };
        h.settle();
        h
    }

    fn act(&mut self, action: Action) {
        if let Some(job) = update(&mut self.app, action) {
            self.worker.submit(job);
        }
    }

    /// A terminal event, mapped to its action as the runtime does.
    fn press(&mut self, ev: Event) {
        if let Some(action) = action_of(&self.app, &ev) {
            self.act(action);
        }
    }

    fn key(&mut self, c: char) {
        self.press(Event::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::NONE,
        )));
    }

    /// Feeds worker reports to the app until nothing of ours is under way.
    fn settle(&mut self) {
        let start = std::time::Instant::now();
        while self.app.busy() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the worker answers"
            );
            match self.rx.recv_timeout(Duration::from_millis(20)) {
                Ok(msg) => self.act(Action::Worker(msg)),
                Err(_) => self.act(Action::Tick),
            }
            assert!(self.app.fatal.is_none(), "{:?}", self.app.fatal);
        }
    }

    fn screen(&self) -> Vec<String> {
        common::tui::screen(&self.app)
    }
}

fn params() -> RunParams {
    common::tui::tiny_params()
}

/// Everything but the header's timing.
fn body(screen: &[String]) -> Vec<String> {
    screen[2..].to_vec()
}

#[test]
fn toggling_a_head_changes_the_result_and_r_restores_the_baseline() {
    let mut h = Harness::new("gpt2-tiny", params());
    assert!(h.app.run.is_some());
    let baseline_lens = h.screen();
    assert!(baseline_lens[1].contains("ablated 0 heads, 0 layers"));
    assert!(
        baseline_lens[3].contains("<|start-latent|>"),
        "{}",
        baseline_lens[3]
    );
    h.key('5');
    let baseline_compare = h.screen();
    assert!(
        baseline_compare
            .iter()
            .any(|l| l.contains("the current run is the baseline"))
    );

    // Heads tab: the sweep runs; the cursor head is toggled with Space.
    h.key('3');
    h.settle();
    assert!(h.app.current_importance().is_some());
    let generation = h.app.generation;
    h.key(' ');
    assert!(h.app.running && h.app.generation == generation + 1);
    h.settle();
    let ablated_heads = h.screen();
    assert!(ablated_heads[1].contains("ablated 1 head, 0 layers"));
    let (l, hd) = h.app.head;
    assert!(
        ablated_heads
            .iter()
            .any(|row| row.contains(&format!("Head L{l}.H{hd}"))),
        "the side panel names the head"
    );
    assert!(ablated_heads.iter().any(|row| row.contains("ablated")));

    // The result shown changed: the timeline (thoughts' tokens and probabilities) and the Compare
    // tab's current column.
    h.key('1');
    let ablated_lens = h.screen();
    assert_ne!(
        ablated_lens[3], baseline_lens[3],
        "timeline unchanged by the ablation"
    );
    assert_ne!(body(&ablated_lens), body(&baseline_lens));
    h.key('5');
    let ablated_compare = h.screen();
    let named = format!("ablated heads L{l}.H{hd}");
    assert!(ablated_compare.iter().any(|row| row.contains(&named)));
    let run = h.app.run.as_ref().unwrap();
    assert_ne!(
        run.summary, run.comparison.baseline,
        "current differs from the baseline"
    );
    assert!(run.comparison.kl_first > 0.0);

    // A whole layer too.
    h.key('3');
    h.key('L');
    h.settle();
    assert!(h.screen()[1].contains("ablated 1 head, 1 layer"));

    // r: back to the baseline, exactly what was shown before.
    h.key('r');
    h.settle();
    assert!(h.app.params.interventions.is_empty());
    h.key('1');
    assert_eq!(body(&h.screen()), body(&baseline_lens));
    h.key('5');
    assert_eq!(body(&h.screen()), body(&baseline_compare));
    assert!(h.screen()[1].contains("ablated 0 heads, 0 layers"));
}

#[test]
fn thoughts_mode_and_prompt_recompute_on_the_worker() {
    let mut h = Harness::new("gpt2-tiny", params());
    h.key('+');
    h.settle();
    assert_eq!(h.app.run.as_ref().unwrap().thought_count(), 4);
    assert!(h.screen()[3].contains("T4"));
    h.key('m');
    h.settle();
    assert_eq!(h.app.run.as_ref().unwrap().params.mode.name(), "soft");
    assert!(h.screen()[1].contains("mode soft"));
    h.key('p');
    h.press(Event::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    for c in "Tom is a cat. Is Tom a cat?".chars() {
        h.key(c);
    }
    h.press(Event::Key(KeyEvent::new(
        KeyCode::Enter,
        KeyModifiers::NONE,
    )));
    h.settle();
    let run = h.app.run.as_ref().unwrap();
    assert_eq!(run.params.prompt, "Tom is a cat. Is Tom a cat?");
    assert!(run.prompt_tokens.concat().starts_with("Tomis"));
    // Every tab draws the real result.
    for c in ['1', '2', '3', '4', '5', '6'] {
        h.key(c);
        h.settle();
        let s = h.screen();
        assert!(!s.iter().any(|l| l.contains("error")), "{c}: {s:#?}");
    }
    assert_eq!(h.app.tab, Tab::Graph);
}

#[test]
fn engine_errors_show_in_red_and_keep_the_last_result() {
    let mut h = Harness::new("gpt2-tiny", params());
    let good = h.app.run.clone();
    // gpt2-tiny has a context of 128 positions: a 130-word prompt does not fit.
    h.key('p');
    h.act(Action::Paste(" wumpus".repeat(130)));
    h.press(Event::Key(KeyEvent::new(
        KeyCode::Enter,
        KeyModifiers::NONE,
    )));
    h.settle();
    assert!(h.app.run == good, "the last good result stays");
    let s = h.screen();
    assert!(s[38].contains("error: the prompt has"), "{}", s[38]);
    assert!(
        s[39].contains("context"),
        "a long error takes the hint line: {}",
        s[39]
    );
    assert!(
        s[3].contains("<|start-latent|>"),
        "the last good timeline stays"
    );
}

#[test]
fn the_sweep_can_be_cancelled_and_stale_jobs_never_show() {
    let mut h = Harness::new("gpt2-tiny", params());
    // Several toggles in a row: only the last generation is shown.
    h.key('3');
    for c in [' ', 'l', ' ', 'l', ' '] {
        h.key(c);
    }
    h.settle();
    let run = h.app.run.as_ref().unwrap();
    assert_eq!(
        run.params, h.app.params,
        "the shown run is the latest settings'"
    );
    assert_eq!(run.params.interventions.ablated_heads.len(), 3);

    // Esc right after the sweep starts: cancelled, or finished if it was faster than the key.
    h.key('S');
    assert!(matches!(h.app.importance, ImportanceState::Running { .. }));
    h.press(Event::Key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)));
    h.settle();
    assert!(
        h.app.importance == ImportanceState::Cancelled || h.app.current_importance().is_some(),
        "{:?}",
        h.app.importance
    );
    assert!(matches!(
        coconut_lens::tui::events::handle(
            &mut h.app,
            &Event::Key(KeyEvent::new(KeyCode::Char('S'), KeyModifiers::NONE))
        ),
        Some(Job::Importance { .. })
    ));
}

#[test]
fn a_missing_model_is_reported_as_a_load_error() {
    let (tx, rx) = mpsc::channel();
    let _worker = Worker::spawn(
        || {
            load_model(
                &ModelSource::Local("/nonexistent/model".into()),
                &candle_core::Device::Cpu,
                candle_core::DType::F32,
            )
        },
        move |m| {
            let _ = tx.send(m);
        },
    );
    let mut app = App::new("x".into(), params(), (120, 40));
    let msg = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(matches!(msg, WorkerMsg::LoadFailed(_)));
    update(&mut app, Action::Worker(msg));
    assert!(app.should_quit && app.fatal.is_some());
}

#[test]
fn switching_the_method_mid_sweep_shows_the_new_method() {
    // Found by hand in tmux: '3' then 'i' at once left the tab saying "cancelled".
    let mut h = Harness::new("gpt2-tiny", params());
    h.key('3');
    h.key('i');
    h.settle();
    let imp = h
        .app
        .current_importance()
        .expect("gradient importance shown");
    assert_eq!(imp.method.name(), "gradient");
    assert!(
        h.screen()
            .iter()
            .any(|l| l.contains("importance: gradient"))
    );
    assert!(!h.screen().iter().any(|l| l.contains("cancelled")));
}
