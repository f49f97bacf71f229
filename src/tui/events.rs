//! Terminal events become actions here, before [`super::update::update`]: keys through the key
//! table (or, on an input line, into text edits), clicks through the layout's hit test. The
//! update then sees no terminal event and no layout.

use ratatui::crossterm::event::{Event, KeyEventKind, MouseButton, MouseEventKind};
use tui_input::backend::crossterm::to_input_request;

use super::app::{Action, App, Overlay};
use super::keymap::{Command, lookup};
use super::view::hit_test;

/// The action a terminal event asks for in the state `app` is in; `None` for events that ask
/// for nothing (key releases, unbound keys, clicks outside any target).
pub fn action_of(app: &App, ev: &Event) -> Option<Action> {
    match ev {
        Event::Key(k) if k.kind != KeyEventKind::Release => {
            if let Some(cmd) = lookup(app.context(), k) {
                return Some(Action::Cmd(cmd));
            }
            match app.overlay {
                Overlay::Input(_) | Overlay::PatchPrompt(_) | Overlay::SaveAs(_) => {
                    to_input_request(ev).map(Action::Edit)
                }
                _ => None,
            }
        }
        Event::Mouse(m) if matches!(app.overlay, Overlay::None) => match m.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                hit_test(app, m.column, m.row).map(Action::Click)
            }
            MouseEventKind::ScrollUp => Some(Action::Cmd(Command::Up)),
            MouseEventKind::ScrollDown => Some(Action::Cmd(Command::Down)),
            _ => None,
        },
        Event::Resize(w, h) => Some(Action::Resize(*w, *h)),
        Event::Paste(s) => Some(Action::Paste(s.clone())),
        _ => None,
    }
}

/// An event handled: mapped to its action, then the update. What tests and the runtime call.
pub fn handle(app: &mut App, ev: &Event) -> Option<super::data::Job> {
    let action = action_of(app, ev)?;
    super::update::update(app, action)
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventState, KeyModifiers, MouseEvent};
    use tui_input::InputRequest;

    use super::*;
    use crate::tui::sample::{self, SampleShape};

    fn press(c: char) -> Event {
        Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    }

    #[test]
    fn keys_become_commands_or_edits_and_clicks_hits() {
        let shape = SampleShape::SMALL;
        let mut app = App::new("m".into(), sample::params(shape), (120, 40));
        assert_eq!(
            action_of(&app, &press('q')),
            Some(Action::Cmd(Command::Quit))
        );
        let release = Event::Key(KeyEvent {
            kind: KeyEventKind::Release,
            state: KeyEventState::NONE,
            ..KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE)
        });
        assert_eq!(action_of(&app, &release), None);
        // On the prompt line an unbound key is text.
        app.overlay = Overlay::Input(Default::default());
        assert_eq!(
            action_of(&app, &press('q')),
            Some(Action::Edit(InputRequest::InsertChar('q')))
        );
        // Clicks go through the layout only on the main screen, and only onto something.
        let click = |x, y| {
            Event::Mouse(MouseEvent {
                kind: MouseEventKind::Down(MouseButton::Left),
                column: x,
                row: y,
                modifiers: KeyModifiers::NONE,
            })
        };
        assert_eq!(action_of(&app, &click(3, 3)), None);
        app.overlay = Overlay::None;
        app.model = Some(sample::model_summary(shape));
        assert_eq!(action_of(&app, &click(0, 0)), None);
        // The tab bar is the sixth row.
        let tabs: Vec<_> = (0..120)
            .filter_map(|x| match action_of(&app, &click(x, 5)) {
                Some(Action::Click(crate::tui::app::Hit::Tab(t))) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(tabs.first(), Some(&crate::tui::tab::Tab::Lens));
        assert_eq!(tabs.last(), Some(&crate::tui::tab::Tab::Graph));
        assert_eq!(
            action_of(&app, &Event::Resize(80, 24)),
            Some(Action::Resize(80, 24))
        );
    }
}
