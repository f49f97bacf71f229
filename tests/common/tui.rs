//! Helpers for the explorer's end-to-end tests.

use std::sync::mpsc;

use anyhow::anyhow;
use coconut_lens::analysis::run::RunParams;
use coconut_lens::model::{Interventions, ModelSource, load_model};
use coconut_lens::thought::{ThoughtCount, ThoughtMode};
use coconut_lens::tui::app::App;
use coconut_lens::tui::data::WorkerMsg;
use coconut_lens::tui::view::render;
use coconut_lens::tui::worker::Worker;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// The app rendered into a 120×40 test terminal, one string per row.
pub fn screen(app: &App) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
    t.draw(|f| render(app, f)).unwrap();
    let buf = t.backend().buffer().clone();
    (0..40)
        .map(|y| (0..120).map(|x| buf[(x, y)].symbol().to_string()).collect())
        .collect()
}

/// A short run on the tiny fixtures: 3 thoughts, 4 answer tokens.
pub fn tiny_params() -> RunParams {
    RunParams {
        prompt: "Every wumpus is a yumpus. Alex is a wumpus. Is Alex a yumpus?".into(),
        thoughts: ThoughtCount::Fixed { n: 3 },
        mode: ThoughtMode::Coconut,
        max_new_tokens: 4,
        top_k: 5,
        context_tokens: 3,
        interventions: Interventions::default(),
        thought_edits: Default::default(),
        sampling: Default::default(),
    }
}

/// A worker loading the fixture `model` on the CPU in f32 (failing to load when `None`), and
/// the channel its messages arrive on.
pub fn fixture_worker(model: Option<&str>) -> (Worker, mpsc::Receiver<WorkerMsg>) {
    let dir = model.map(super::model_dir);
    let (tx, rx) = mpsc::channel();
    let worker = Worker::spawn(
        move || {
            let dir = dir.ok_or_else(|| anyhow!("cannot find the model folder"))?;
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
    (worker, rx)
}
