//! Responsiveness of the explorer, `cargo bench --bench tui`:
//!
//! 1. Frame time: a key press through `update` and a full `render` of each tab into a 120×40
//!    TestBackend, for a small result and a GPT-2-124M-sized one (12 layers × 12 heads, 240
//!    prompt tokens, 6 thoughts, 16 answer tokens). This is the UI thread's whole work between
//!    a key and its frame, apart from writing the changed cells to the terminal.
//! 2. Toggle to result: the time from submitting a run with one more (or one fewer) ablated head
//!    to the worker's result, on a random model with the bundled model's shape (GPT-2, 4
//!    layers, 4 heads, 128 wide, a 75-word vocabulary, a 210-token prompt, 6 thoughts, 16
//!    answer tokens), and on any model folder named by `COCONUT_LENS_BENCH_MODEL`. Also the
//!    head sweeps, and the frame time while a sweep keeps the worker busy.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use coconut_lens::analysis::importance::ImportanceMethod;
use coconut_lens::analysis::run::RunParams;
use coconut_lens::model::{Arch, Interventions, ModelSource, load_model};
use coconut_lens::synthetic::{Shape, write_random_model};
use coconut_lens::thought::{ThoughtCount, ThoughtMode};
use coconut_lens::tui::app::{Action, App, ImportanceState};
use coconut_lens::tui::data::{Job, WorkerMsg};
use coconut_lens::tui::events::handle;
use coconut_lens::tui::sample::{self, SampleShape};
use coconut_lens::tui::update::update;
use coconut_lens::tui::view::render;
use coconut_lens::tui::worker::Worker;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};

fn key(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.99), *v.last().unwrap())
}

fn ready_app(shape: SampleShape) -> App {
    let mut app = App::new("bench".into(), sample::params(shape), (120, 40));
    let Some(Job::Run { generation, .. }) = update(
        &mut app,
        Action::Worker(WorkerMsg::Loaded(sample::model_summary(shape))),
    ) else {
        unreachable!()
    };
    update(
        &mut app,
        Action::Worker(WorkerMsg::RunDone {
            generation,
            result: Ok(sample::result(shape, Interventions::default())),
        }),
    );
    app.importance = ImportanceState::Cancelled;
    app.importance_result = Some((
        app.generation,
        sample::importance(shape, ImportanceMethod::Ablation),
    ));
    app
}

/// Key-to-frame work of the UI thread: (median, p99, max) ms per tab.
fn frame_times(app: &mut App, frames: usize) -> Vec<(char, (f64, f64, f64))> {
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    ['1', '2', '3', '4', '5']
        .into_iter()
        .map(|tab| {
            handle(app, &key(tab));
            let times = (0..frames)
                .map(|i| {
                    let k = if i % 2 == 0 { 'l' } else { 'h' };
                    let t0 = Instant::now();
                    handle(app, &key(k));
                    term.draw(|f| render(app, f)).unwrap();
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            (tab, stats(times))
        })
        .collect()
}

fn bundled_shape_model(root: &Path) -> PathBuf {
    let dir = root.join("target/bench-models/bundled-shape");
    if !dir.join("model.safetensors").exists() {
        let shape = Shape {
            arch: Arch::Gpt2,
            layers: 4,
            heads: 4,
            kv_heads: 4,
            d_model: 128,
            ffn: 512,
            base_vocab: 75,
            context: 512,
        };
        write_random_model(&dir, &shape, 0).unwrap();
    }
    dir
}

struct Live {
    worker: Worker,
    rx: mpsc::Receiver<WorkerMsg>,
    /// The greedy answer of the last run (what a sweep job carries).
    answer: std::cell::RefCell<Vec<u32>>,
}

impl Live {
    fn start(dir: PathBuf) -> Self {
        let (tx, rx) = mpsc::channel();
        let worker = Worker::spawn(
            move || {
                load_model(
                    &ModelSource::Local(dir),
                    &candle_core::Device::Cpu,
                    candle_core::DType::F32,
                )
            },
            move |m| {
                let _ = tx.send(m);
            },
        );
        match rx.recv().unwrap() {
            WorkerMsg::Loaded(_) => {}
            other => panic!("{other:?}"),
        }
        Live {
            worker,
            rx,
            answer: Default::default(),
        }
    }

    /// Submits a job and waits for its result: milliseconds and the worker's own figure.
    fn time(&self, job: Job) -> (f64, f64) {
        let t0 = Instant::now();
        self.worker.submit(job);
        loop {
            match self.rx.recv_timeout(Duration::from_secs(600)).unwrap() {
                WorkerMsg::RunDone { result, .. } => {
                    let current = result.unwrap().current;
                    *self.answer.borrow_mut() =
                        current.summary.answer.iter().map(|t| t.id).collect();
                    return (t0.elapsed().as_secs_f64() * 1e3, current.compute_ms);
                }
                WorkerMsg::ImportanceDone { result, .. } => {
                    let imp = result.unwrap();
                    return (t0.elapsed().as_secs_f64() * 1e3, imp.compute_ms);
                }
                _ => {}
            }
        }
    }
}

fn toggles(name: &str, dir: PathBuf, prompt: String, layers: usize, heads: usize) {
    let live = Live::start(dir);
    let mut params = RunParams {
        prompt,
        thoughts: ThoughtCount::Fixed { n: 6 },
        mode: ThoughtMode::Coconut,
        max_new_tokens: 16,
        top_k: 5,
        context_tokens: 3,
        interventions: Interventions::default(),
        thought_edits: Default::default(),
        sampling: Default::default(),
    };
    let mut generation = 1;
    let (first, _) = live.time(Job::Run {
        generation,
        params: params.clone(),
    });
    let mut times = Vec::new();
    let mut worker = Vec::new();
    for i in 0..12 {
        let head = ((i / 2) % layers, (i / 2) % heads);
        // Even steps ablate a head, odd ones restore it.
        if !params.interventions.ablated_heads.remove(&head) {
            params.interventions.ablated_heads.insert(head);
        }
        generation += 1;
        let (ms, w) = live.time(Job::Run {
            generation,
            params: params.clone(),
        });
        times.push(ms);
        worker.push(w);
    }
    let (med, _, max) = stats(times);
    let (wmed, _, _) = stats(worker);
    println!(
        "{name}: first run (baseline) {first:.0} ms; head toggle -> result: median {med:.1} ms, max {max:.1} ms (worker {wmed:.1} ms) over 12 toggles"
    );
    // A toggle while the sweep that follows every result on the Heads tab still runs: the
    // sweep stops at its next layer boundary, then the run starts.
    let mut during = Vec::new();
    for delay_ms in [0u64, 50, 100, 150, 200, 300] {
        generation += 1;
        live.worker.submit(Job::Importance {
            generation,
            request: generation,
            params: params.clone(),
            answer: live.answer.borrow().clone(),
            method: ImportanceMethod::Ablation,
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        let head = (0, (delay_ms as usize / 50) % heads);
        if !params.interventions.ablated_heads.remove(&head) {
            params.interventions.ablated_heads.insert(head);
        }
        generation += 1;
        let (ms, _) = live.time(Job::Run {
            generation,
            params: params.clone(),
        });
        during.push(ms);
    }
    let (med, _, max) = stats(during);
    println!(
        "{name}: head toggle -> result while a sweep runs: median {med:.1} ms, max {max:.1} ms (toggles 0-300 ms into the sweep)"
    );
    params.interventions = Interventions::default();
    // The sweeps score the answer of the run of these settings.
    generation += 1;
    live.time(Job::Run {
        generation,
        params: params.clone(),
    });
    for method in [ImportanceMethod::Ablation, ImportanceMethod::Gradient] {
        generation += 1;
        let (ms, _) = live.time(Job::Importance {
            generation,
            request: generation,
            params: params.clone(),
            answer: live.answer.borrow().clone(),
            method,
        });
        println!("{name}: head importance ({}) {ms:.0} ms", method.name());
    }

    // Frames drawn while the worker runs a sweep.
    let mut app = ready_app(SampleShape {
        layers,
        heads,
        ..SampleShape::GPT2_124M
    });
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    generation += 1;
    live.worker.submit(Job::Importance {
        generation,
        request: generation,
        params: params.clone(),
        answer: live.answer.borrow().clone(),
        method: ImportanceMethod::Ablation,
    });
    let mut frames = Vec::new();
    let t0 = Instant::now();
    loop {
        let t = Instant::now();
        handle(
            &mut app,
            &key(if frames.len() % 2 == 0 { 'l' } else { 'h' }),
        );
        term.draw(|f| render(&app, f)).unwrap();
        frames.push(t.elapsed().as_secs_f64() * 1e3);
        if let Ok(WorkerMsg::ImportanceDone { .. }) = live.rx.try_recv() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (med, p99, max) = stats(frames.clone());
    println!(
        "{name}: frame time while the ablation sweep runs ({:.0} ms, {} frames): median {med:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
        t0.elapsed().as_secs_f64() * 1e3,
        frames.len()
    );
}

fn main() {
    // As the binary does; SAFETY: no thread has started yet.
    unsafe { coconut_lens::model::pin_cpu_threads() };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (name, shape) in [
        ("small (4 layers x 4 heads)", SampleShape::SMALL),
        ("GPT-2 124M-sized result", SampleShape::GPT2_124M),
    ] {
        let mut app = ready_app(shape);
        frame_times(&mut app, 20); // warm-up
        for (tab, (med, p99, max)) in frame_times(&mut app, 200) {
            println!(
                "frame, {name}, tab {tab}: median {med:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
            );
        }
    }

    let prompt = (0..210)
        .map(|i| format!("t{}", (i * 7 + 3) % 75))
        .collect::<Vec<_>>()
        .join(" ");
    toggles(
        "bundled shape (GPT-2 4x4x128, 210-token prompt)",
        bundled_shape_model(&root),
        prompt,
        4,
        4,
    );
    if let Some(dir) = std::env::var_os("COCONUT_LENS_BENCH_MODEL") {
        let dir = PathBuf::from(dir);
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let n = |k: &str| cfg[k].as_u64().unwrap() as usize;
        let prompt = (0..140)
            .map(|i| format!("t{}", (i * 7919 + 13) % 50000))
            .collect::<Vec<_>>()
            .join(" ");
        toggles(
            &dir.display().to_string(),
            dir.clone(),
            prompt,
            n("n_layer"),
            n("n_head"),
        );
    }
}
