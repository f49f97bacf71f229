//! Sessions in the explorer, end to end on the tiny GPT-2 fixture: `s` saves what is shown,
//! `--session` reopens it (with the model: recomputed, same results, same view; without it:
//! the saved results read-only with a notice), `e` exports the plots next to the file.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use coconut_lens::analysis::run::RunParams;
use coconut_lens::session::Session;
use coconut_lens::tui::app::{Action, App};
use coconut_lens::tui::data::WorkerMsg;
use coconut_lens::tui::events::action_of;
use coconut_lens::tui::saved::{reopen, session_of};
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
    }

    /// A terminal event, mapped to its action as the runtime does.
    fn press(&mut self, ev: Event) {
        if let Some(action) = action_of(&self.app, &ev) {
            self.act(action);
        }
        self.settle();
    }

    fn key(&mut self, code: KeyCode) {
        self.press(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
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
    let mut app = App::new(
        session.inputs.model.clone(),
        session.params().clone(),
        (120, 40),
    );
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
    let p = saved.params();
    assert_eq!(
        p.interventions.ablated_heads.iter().collect::<Vec<_>>(),
        [&(1, 1)]
    );
    assert!(saved.importance.is_some());
    assert_eq!((p.max_new_tokens, p.top_k, p.context_tokens), (4, 5, 3));
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
    assert!(Session::load(&path).unwrap().same_results(&saved));

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
    // As the file holds them (compute times, the model's context length and end tokens aside).
    assert!(again.same_results(&saved), "same results");
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
    assert_eq!(r.app.params, *saved.params());
    // Lens, Layers, Attention and Compare show what the live run showed (the header's timing
    // and the status line aside).
    let mut h = h;
    for tab in ['1', '2', '4', '5'] {
        h.ch(tab);
        r.ch(tab);
        // The same cursor on both (a session records one layer: the Heads tab's row here).
        (r.app.step, r.app.layer, r.app.head) = (h.app.step, h.app.layer, h.app.head);
        let (live, saved) = (h.screen(), r.screen());
        assert_eq!(live[2..38], saved[2..38], "tab {tab}");
    }
    let att = r.screen();
    assert!(
        !att.iter().any(|l| l.contains("not saved")),
        "attention is saved: {att:#?}"
    );
    // Saving again writes the same results.
    let copy = dir.join("copy.json");
    r.ch('s');
    r.act(Action::Paste(copy.display().to_string()));
    r.key(KeyCode::Enter);
    let c = Session::load(&copy).unwrap();
    assert!(c.same_results(&saved));
    assert!(matches!(r.app.status.as_ref(), Some(s) if !s.error));
}

/// What the explorer shows (and saves) is what the engine computes for the same run without
/// the explorer's extras: recording prompt steps and attention changes no number.
#[test]
fn the_explorers_analysis_is_the_engines() {
    use coconut_lens::analysis::run::{RunAnalysis, run_and_analyze};
    use coconut_lens::thought::StepKind;
    use coconut_lens::tui::compute::{BaselineCache, compute_run};
    use std::sync::atomic::AtomicBool;

    let never = AtomicBool::new(false);
    for fixture in ["gpt2-tiny", "llama-tiny-gqa"] {
        let lm = common::load_dir(fixture);
        let mut params = common::tui::tiny_params();
        params.interventions.ablated_heads.insert((1, 0));
        let shown = compute_run(&lm, &params, &mut BaselineCache::default(), &never)
            .unwrap()
            .current;
        let plain = RunParams {
            context_tokens: 0,
            ..params.clone()
        };
        let target = shown.target.as_ref().map(|t| t.id);
        let engine = run_and_analyze(&lm.model, &lm.tokenizer, &plain, target, false, &never)
            .unwrap()
            .analysis;
        let steps = |a: &RunAnalysis| {
            a.steps
                .iter()
                .filter(|s| s.kind != StepKind::Prompt)
                .cloned()
                .collect::<Vec<_>>()
        };
        let (a, b) = (steps(&shown), steps(&engine));
        assert_eq!(a.len(), b.len(), "{fixture}");
        assert_eq!(
            shown.steps.len() - a.len(),
            params.context_tokens,
            "{fixture}: prompt steps"
        );
        let with_attention: Vec<_> = a.iter().filter(|s| s.attention.is_some()).collect();
        assert!(!with_attention.is_empty(), "{fixture}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.kind, x.position), (y.kind, y.position), "{fixture}");
            assert!(y.attention.is_none(), "{fixture}");
            assert_eq!(x.angular, y.angular, "{fixture}");
            for (cx, cy) in x.lens.iter().zip(&y.lens) {
                let ids = |c: &coconut_lens::analysis::run::LensCell| {
                    c.top.iter().map(|t| t.id).collect::<Vec<_>>()
                };
                assert_eq!(ids(cx), ids(cy), "{fixture}");
                assert!((cx.entropy - cy.entropy).abs() < 1e-6, "{fixture}");
                assert_eq!(cx.target_rank, cy.target_rank, "{fixture}");
                for (tx, ty) in cx.top.iter().zip(&cy.top) {
                    assert!((tx.prob - ty.prob).abs() < 1e-6, "{fixture}");
                    assert_eq!(tx.text, ty.text);
                }
            }
        }
        assert_eq!(shown.summary.answer_text, engine.summary.answer_text);
        assert_eq!(shown.blocks, engine.blocks, "{fixture}");
    }
}

/// A file of schema v1 (two `analyze` documents) reopened without its model: what the
/// documents hold is shown, what they never held is n/a, not invented.
#[test]
fn a_v1_session_without_its_model_shows_what_its_documents_hold() {
    use coconut_lens::analysis::document::analyze_prompt;
    use coconut_lens::model::Interventions;
    use coconut_lens::session::v1;

    let dir = scratch("tui-session-v1");
    let path = dir.join("old.json");
    let lm = common::load_dir("gpt2-tiny");
    let p = params();
    let spec = RunParams {
        context_tokens: 0,
        ..p.clone()
    }
    .spec(false);
    let ablations = Interventions {
        ablated_heads: [(1, 1)].into(),
        skipped_layers: Default::default(),
    };
    let doc = |iv: &Interventions| {
        let hooks = lm.model.hooks(iv).unwrap();
        analyze_prompt(&lm.model, &lm.tokenizer, &p.prompt, &spec, &hooks, p.top_k)
            .unwrap()
            .1
    };
    let old = v1::Session {
        schema: v1::SCHEMA.into(),
        saved_at: 0,
        inputs: v1::SessionInputs {
            model: dir.join("no-such-model").display().to_string(),
            base: None,
            revision: None,
            device: "cpu".into(),
            dtype: "f32".into(),
            prompt: p.prompt.clone(),
            mode: "coconut".into(),
            thoughts: "3".into(),
            entropy_stop: None,
            ablations: ablations.clone(),
            importance_method: None,
            settings: None,
        },
        view: Default::default(),
        baseline: doc(&Interventions::default()),
        current: doc(&ablations),
    };
    std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
    let mut r = Harness::new(reopened_app(&path), None);
    assert!(r.app.read_only.is_some());
    assert_eq!(r.app.params.interventions, ablations);
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
        att.iter().any(|l| l.contains("not in its session file")),
        "{att:#?}"
    );
    r.ch('5');
    let cmp = r.screen();
    assert!(cmp.iter().any(|l| l.contains("p(answer)  n/a")), "{cmp:#?}");
    assert!(
        cmp.iter()
            .any(|l| l.contains("of the first answer token n/a (not in the v1 session file)")),
        "{cmp:#?}"
    );
}
