//! Sessions in the explorer, end to end on the tiny GPT-2 fixture: `s` saves what is shown,
//! `--session` reopens it (with the model: recomputed, same results, same view; without it:
//! the saved results read-only with a notice), `e` exports the plots next to the file.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use coconut_lens::session::Session;
use coconut_lens::tui::app::{Action, App};
use coconut_lens::tui::data::{RunParams, WorkerMsg};
use coconut_lens::tui::saved::{params_of, reopen, session_of};
use coconut_lens::tui::tab::Tab;
use coconut_lens::tui::update::update;
use coconut_lens::tui::worker::Worker;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

struct Harness {
    app: App,
    worker: Worker,
    rx: mpsc::Receiver<WorkerMsg>,
}

impl Harness {
    /// An app on `app`, its worker loading the fixture (or failing to, without a model).
    fn new(app: App, model: Option<&str>) -> Self {
        let (worker, rx) = common::tui::fixture_worker(model);
        let mut h = Harness { app, worker, rx };
        h.settle();
        h
    }

    fn act(&mut self, action: Action) {
        if let Some(job) = update(&mut self.app, action) {
            self.worker.submit(job);
        }
        self.settle();
    }

    fn key(&mut self, code: KeyCode) {
        self.act(Action::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    }

    fn ch(&mut self, c: char) {
        self.key(KeyCode::Char(c));
    }

    fn settle(&mut self) {
        let start = std::time::Instant::now();
        while self.app.busy() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the worker answers"
            );
            let action = match self.rx.recv_timeout(Duration::from_millis(20)) {
                Ok(msg) => Action::Worker(msg),
                Err(_) => Action::Tick,
            };
            if let Some(job) = update(&mut self.app, action) {
                self.worker.submit(job);
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

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Explores (Heads tab, a head ablated, the sweep done, the cursor moved) and saves with `s`
/// under a typed path.
fn explore_and_save(path: &Path) -> (Harness, Session) {
    let mut h = Harness::new(
        App::new("gpt2-tiny".into(), params(), (120, 40)),
        Some("gpt2-tiny"),
    );
    h.app.model_arg = common::model_dir("gpt2-tiny").display().to_string();
    h.ch('3');
    h.ch('j');
    h.ch('l');
    h.ch(' ');
    h.ch('l');
    assert_eq!(h.app.tab, Tab::Heads);
    assert_eq!(h.app.head, (1, 2));
    assert!(h.app.current_importance().is_some(), "the sweep ran");
    h.ch('s');
    h.act(Action::Paste(path.display().to_string()));
    h.key(KeyCode::Enter);
    let st = h.app.status.clone().unwrap();
    assert!(!st.error && st.text.starts_with("saved "), "{st:?}");
    let saved = Session::load(path).expect("the file reopens");
    (h, saved)
}

/// What `coconut-lens --session FILE` builds before the worker reports.
fn reopened_app(path: &Path) -> App {
    let session = Session::load(path).unwrap();
    // Command-line values unlike the saved ones: the file's settings win.
    let cli = RunParams {
        max_new_tokens: 16,
        top_k: 3,
        context_tokens: 1,
        ..params()
    };
    let p = params_of(&session.inputs, &cli, (5, 0.95), 16).unwrap();
    let mut app = App::new(session.inputs.model.clone(), p, (120, 40));
    reopen(&mut app, path.to_path_buf(), Box::new(session));
    app
}

#[test]
fn a_saved_session_reopens_with_the_model_to_the_same_state_and_results() {
    let dir = scratch("tui-session-roundtrip");
    let path = dir.join("explored.json");
    let (h, saved) = explore_and_save(&path);
    assert_eq!(saved.view.tab, "heads");
    assert_eq!((saved.view.layer, saved.view.head), (1, 2));
    assert_eq!(
        saved
            .inputs
            .ablations
            .ablated_heads
            .iter()
            .collect::<Vec<_>>(),
        [&(1, 1)]
    );
    assert!(saved.current.head_importance.is_some());
    assert_eq!(
        saved.inputs.settings,
        Some(coconut_lens::session::RunSettings {
            max_new_tokens: Some(4),
            top_k: Some(5),
            context_tokens: Some(3),
            soft_top_k: None,
            soft_top_p: None,
        })
    );
    assert_ne!(saved.baseline, saved.current, "the ablation shows");
    // Never overwritten without asking.
    let mut h = h;
    h.ch('s');
    h.act(Action::Paste(path.display().to_string()));
    h.key(KeyCode::Enter);
    assert!(
        h.app
            .status
            .as_ref()
            .unwrap()
            .text
            .contains("overwrite it? y/n"),
        "{:?}",
        h.app.status
    );
    h.ch('n');
    assert_eq!(Session::load(&path).unwrap(), saved);

    let mut r = Harness::new(reopened_app(&path), Some("gpt2-tiny"));
    assert!(r.app.read_only.is_none());
    assert_eq!(
        (r.app.tab, r.app.step, r.app.head),
        (h.app.tab, h.app.step, h.app.head)
    );
    assert_eq!(r.app.layer, h.app.layer);
    assert_eq!(r.app.params, h.app.params);
    let again = session_of(&r.app).unwrap();
    assert_eq!(again.inputs, saved.inputs);
    assert_eq!(again.view, saved.view);
    // As the file holds them (the model's context length and end tokens are not saved).
    let json = |d| serde_json::to_value(d).unwrap();
    assert_eq!(
        json(&again.baseline),
        json(&saved.baseline),
        "same baseline results"
    );
    assert_eq!(
        json(&again.current),
        json(&saved.current),
        "same current results"
    );
    assert!(coconut_lens::tui::saved::same_results(&again, &saved));
    // The screens agree apart from the header's timing and the status line.
    let (a, b) = (h.screen(), r.screen());
    assert_eq!(a[2..38], b[2..38]);
    // Unchanged since opened: `e` exports next to the file.
    r.ch('e');
    let st = r.app.status.clone().unwrap();
    assert!(!st.error, "{st:?}");
    assert!(st.text.contains("exported 10 plots to"), "{st:?}");
    let plots = dir.join("explored");
    assert!(plots.join("logit-lens.png").is_file());
    assert!(plots.join("head-importance.svg").is_file());
}

#[test]
fn without_its_model_a_session_shows_its_saved_results_read_only() {
    let dir = scratch("tui-session-readonly");
    let path = dir.join("explored.json");
    let (h, saved) = explore_and_save(&path);
    let mut r = Harness::new(reopened_app(&path), None);
    assert_eq!(
        r.app.read_only.as_deref(),
        Some("cannot find the model folder")
    );
    assert_eq!((r.app.tab, r.app.head), (Tab::Heads, h.app.head));
    let screen = r.screen();
    assert!(
        screen[1].contains("READ-ONLY: saved results, model not available"),
        "{}",
        screen[1]
    );
    assert!(
        screen[38]
            .contains(" read-only: the model is not available (cannot find the model folder)"),
        "{}",
        screen[38]
    );
    // The saved importance is shown on the Heads tab.
    assert!(r.app.current_importance().is_some());
    assert!(
        screen.iter().any(|l| l.contains("ablation: KL")),
        "{screen:#?}"
    );
    // Toggles say why they do nothing.
    r.ch(' ');
    let st = r.app.status.clone().unwrap();
    assert!(st.error && st.text.contains("read-only session"), "{st:?}");
    assert_eq!(r.app.params.interventions, saved.inputs.ablations);
    // The lens shows the saved thoughts and first answer step; attention is unavailable.
    r.ch('1');
    let lens = r.screen();
    assert!(
        lens[3].contains("T1") && lens[3].contains("T3"),
        "{}",
        lens[3]
    );
    r.ch('4');
    let att = r.screen();
    assert!(
        att.iter()
            .any(|l| l.contains("Attention is not saved in session files")),
        "{att:#?}"
    );
    // Compare: what the documents lack is n/a, not invented.
    r.ch('5');
    let cmp = r.screen();
    assert!(cmp.iter().any(|l| l.contains("p(answer)  n/a")), "{cmp:#?}");
    assert!(
        cmp.iter()
            .any(|l| l.contains("of the first answer token n/a (not in the session)")),
        "{cmp:#?}"
    );
    // Saving again writes the same results.
    let copy = dir.join("copy.json");
    r.ch('s');
    r.act(Action::Paste(copy.display().to_string()));
    r.key(KeyCode::Enter);
    let c = Session::load(&copy).unwrap();
    assert_eq!(
        (c.inputs, c.baseline, c.current),
        (saved.inputs, saved.baseline, saved.current)
    );
    assert!(matches!(r.app.status.as_ref(), Some(s) if !s.error));
}

/// What the explorer saves as the engine's document is what `analyze` computes for the same
/// run: the explorer derives it from its own lens pass instead of a second one.
#[test]
fn the_explorers_document_is_the_engines() {
    use coconut_lens::analysis::document::analyze_prompt;
    use coconut_lens::thought::RunSpec;
    use std::sync::atomic::AtomicBool;

    for fixture in ["gpt2-tiny", "llama-tiny-gqa"] {
        let lm = common::load_dir(fixture);
        let mut params = common::tui::tiny_params();
        params.interventions.ablated_heads.insert((1, 0));
        let shown =
            coconut_lens::tui::compute::analyse_run(&lm, &params, None, &AtomicBool::new(false))
                .unwrap()
                .document;
        let spec = RunSpec {
            thoughts: params.thoughts,
            mode: params.mode,
            max_new_tokens: params.max_new_tokens,
            context_rows: 1,
            attention: false,
            forced_answer: Vec::new(),
        };
        let hooks = lm.model.hooks(&params.interventions).unwrap();
        let (_, engine) = analyze_prompt(
            &lm.model,
            &lm.tokenizer,
            &params.prompt,
            &spec,
            &hooks,
            params.top_k,
        )
        .unwrap();
        assert_eq!(shown.tokens, engine.tokens, "{fixture}");
        assert_eq!(shown.answer.ids, engine.answer.ids, "{fixture}");
        assert_eq!(shown.thoughts.len(), engine.thoughts.len(), "{fixture}");
        let steps = |d: &coconut_lens::analysis::document::AnalysisDocument| {
            let mut v: Vec<_> = d.thoughts.iter().map(|t| t.step.clone()).collect();
            v.push(d.answer.first.clone());
            v
        };
        for (a, b) in steps(&shown).iter().zip(steps(&engine)) {
            assert_eq!(a.position, b.position, "{fixture}");
            assert!((a.entropy - b.entropy).abs() < 1e-6, "{fixture}");
            assert_eq!(a.angular, b.angular, "{fixture}");
            assert_eq!(a.lens.len(), b.lens.len(), "{fixture}");
            for (la, lb) in a.lens.iter().zip(&b.lens) {
                let ids = |l: &coconut_lens::analysis::LensLayer| {
                    l.top.iter().map(|t| t.id).collect::<Vec<_>>()
                };
                assert_eq!(ids(la), ids(lb), "{fixture} layer {}", la.layer);
                for (ta, tb) in la.top.iter().zip(&lb.top) {
                    assert!((ta.prob - tb.prob).abs() < 1e-6, "{fixture}");
                    assert_eq!(ta.text, tb.text);
                }
            }
        }
        assert_eq!(shown.blocks, engine.blocks, "{fixture}");
    }
}
