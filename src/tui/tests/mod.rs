//! Tests of the state update and the views, on synthetic results (no weights).

mod update;
mod views;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};

use super::app::{Action, App};
use super::data::{Job, WorkerMsg};
use super::events::handle;
use super::sample::{self, SampleShape};
use super::update::update;
use super::view::render;

pub fn key(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

pub fn code(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

/// A terminal event, mapped to its action and applied.
pub fn press(app: &mut App, ev: Event) -> Option<Job> {
    handle(app, &ev)
}

/// An app that has loaded a model and shown its first run.
pub fn ready(shape: SampleShape) -> App {
    let mut app = App::new("sample-model".into(), sample::params(shape), (120, 40));
    let job = update(
        &mut app,
        Action::Worker(WorkerMsg::Loaded(sample::model_summary(shape))),
    );
    let Some(Job::Run { generation, .. }) = job else {
        panic!("a run after loading, got {job:?}");
    };
    deliver(&mut app, generation, shape);
    app
}

/// Delivers the run of the app's current settings.
pub fn deliver(app: &mut App, generation: u64, shape: SampleShape) -> Option<Job> {
    let result = sample::result(shape, app.params.interventions.clone());
    update(
        app,
        Action::Worker(WorkerMsg::RunDone {
            generation,
            result: Ok(result),
        }),
    )
}

pub fn screen(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(app, f)).unwrap();
    t
}

/// The text of a rendered row.
pub fn row_text(t: &Terminal<TestBackend>, y: u16) -> String {
    let buf = t.backend().buffer();
    (0..buf.area.width)
        .map(|x| buf[(x, y)].symbol().to_string())
        .collect()
}

/// The first (x, y) where `needle` starts in the rendered screen, row by row.
pub fn find(t: &Terminal<TestBackend>, needle: &str) -> Option<(u16, u16)> {
    find_all(t, needle).into_iter().next()
}

/// Every (x, y) where `needle` starts, row by row.
pub fn find_all(t: &Terminal<TestBackend>, needle: &str) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let buf = t.backend().buffer();
    for y in 0..buf.area.height {
        let cells: Vec<&str> = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
        for x in 0..cells.len() {
            let mut s = String::new();
            for c in &cells[x..] {
                s.push_str(c);
                if s.len() >= needle.len() {
                    break;
                }
            }
            if s.starts_with(needle) {
                out.push((x as u16, y));
            }
        }
    }
    out
}
