//! Helpers for the explorer's end-to-end tests.

use coconut_lens::model::Interventions;
use coconut_lens::thought::{ThoughtCount, ThoughtMode};
use coconut_lens::tui::app::App;
use coconut_lens::tui::data::RunParams;
use coconut_lens::tui::view::render;
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
    }
}
