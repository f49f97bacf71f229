//! Key bindings as data. The same table maps keys to commands, fills the help popup and the
//! status-bar hints, and is mirrored in the README (`tests` check the README table).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::tab::Tab;

/// What a key asks for. Movement commands are read by the active tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Quit,
    Help,
    CloseHelp,
    NextTab,
    PrevTab,
    GoTab(Tab),
    Left,
    Right,
    Up,
    Down,
    First,
    Last,
    ToggleHead,
    ToggleLayer,
    Reset,
    MoreThoughts,
    FewerThoughts,
    CycleMode,
    EditPrompt,
    SwitchImportance,
    Sweep,
    /// Cycle the selected thought's intervention.
    CycleThought,
    EditPatchPrompt,
    PatchSweep,
    Cancel,
    SubmitPrompt,
    CancelPrompt,
    Save,
    ExportPlots,
    SubmitSave,
    ConfirmYes,
    ConfirmNo,
}

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everywhere, also in the help popup and while editing the prompt.
    Always,
    /// The main screen, any tab.
    Main,
    /// The main screen, these tabs.
    Tabs(&'static [Tab]),
    /// The help popup.
    Help,
    /// The prompt input line.
    Input,
    /// The save-as line.
    SaveAs,
    /// A yes/no question.
    Confirm,
}

/// Where the key arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Main(Tab),
    Help,
    Input,
    SaveAs,
    Confirm,
}

impl Scope {
    pub fn applies(self, ctx: Context) -> bool {
        match (self, ctx) {
            (Scope::Always, _) => true,
            (Scope::Main, Context::Main(_)) => true,
            (Scope::Tabs(tabs), Context::Main(t)) => tabs.contains(&t),
            (Scope::Help, Context::Help) => true,
            (Scope::Input, Context::Input) => true,
            (Scope::SaveAs, Context::SaveAs) => true,
            (Scope::Confirm, Context::Confirm) => true,
            _ => false,
        }
    }

    pub fn title(self) -> String {
        match self {
            Scope::Always => "everywhere".into(),
            Scope::Main => "all tabs".into(),
            // Most tabs: named by the ones left out (keeps the help's column narrow).
            Scope::Tabs(tabs) if tabs.len() * 2 > Tab::ALL.len() => {
                let but: Vec<&str> = Tab::ALL
                    .iter()
                    .filter(|t| !tabs.contains(t))
                    .map(|t| t.title())
                    .collect();
                format!("all tabs but {}", but.join(", "))
            }
            Scope::Tabs(tabs) => tabs
                .iter()
                .map(|t| t.title())
                .collect::<Vec<_>>()
                .join(", "),
            Scope::Help => "help popup".into(),
            Scope::Input => "prompt line".into(),
            Scope::SaveAs => "save-as line".into(),
            Scope::Confirm => "overwrite question".into(),
        }
    }
}

/// A key: a code and its modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

const fn k(code: KeyCode) -> Key {
    Key {
        code,
        mods: KeyModifiers::NONE,
    }
}

const fn ch(c: char) -> Key {
    k(KeyCode::Char(c))
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::CONTROL,
    }
}

impl Key {
    /// Whether a key event is this key. Shift is ignored on characters (terminals differ on
    /// whether `G` or `?` carry it) and on Shift-Tab.
    pub fn matches(&self, ev: &KeyEvent) -> bool {
        let strip = matches!(ev.code, KeyCode::Char(_) | KeyCode::BackTab);
        let mods = if strip {
            ev.modifiers - KeyModifiers::SHIFT
        } else {
            ev.modifiers
        };
        let code = match ev.code {
            // Ctrl-letter arrives lower-case or upper-case depending on the terminal.
            KeyCode::Char(c) if mods.contains(KeyModifiers::CONTROL) => {
                KeyCode::Char(c.to_ascii_lowercase())
            }
            c => c,
        };
        code == self.code && mods == self.mods
    }

    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Left => "←".to_string(),
            KeyCode::Right => "→".to_string(),
            KeyCode::Up => "↑".to_string(),
            KeyCode::Down => "↓".to_string(),
            KeyCode::Tab => "Tab".to_string(),
            KeyCode::BackTab => "⇧Tab".to_string(),
            KeyCode::Enter => "Enter".to_string(),
            KeyCode::Esc => "Esc".to_string(),
            KeyCode::Home => "Home".to_string(),
            KeyCode::End => "End".to_string(),
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            other => format!("{other:?}"),
        };
        if self.mods.contains(KeyModifiers::CONTROL) {
            format!("Ctrl-{}", base.to_uppercase())
        } else {
            base
        }
    }
}

/// One line of the help: keys with their commands, and what they do.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub keys: &'static [(Key, Command)],
    pub scope: Scope,
    pub help: &'static str,
    /// Short text for the status-bar hints, when the binding is hinted there.
    pub hint: Option<&'static str>,
}

impl Binding {
    /// Keys grouped by command: `←/h →/l`.
    pub fn keys_label(&self) -> String {
        let mut groups: Vec<(Command, Vec<String>)> = Vec::new();
        for (key, cmd) in self.keys {
            match groups.iter_mut().find(|(c, _)| c == cmd) {
                Some((_, v)) => v.push(key.label()),
                None => groups.push((*cmd, vec![key.label()])),
            }
        }
        groups
            .into_iter()
            .map(|(_, v)| v.join("/"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The first key of each of the first two commands: `←→`, `Tab/⇧Tab`.
    pub fn hint_keys(&self) -> String {
        let mut firsts: Vec<(Command, String)> = Vec::new();
        for (key, cmd) in self.keys {
            if !firsts.iter().any(|(c, _)| c == cmd) {
                firsts.push((*cmd, key.label()));
            }
        }
        let firsts: Vec<String> = firsts.into_iter().take(2).map(|(_, l)| l).collect();
        let sep = if firsts.iter().all(|l| l.chars().count() == 1) {
            ""
        } else {
            "/"
        };
        firsts.join(sep)
    }
}

use Command as C;
use KeyCode as KC;

const STEP_TABS: &[Tab] = &[
    Tab::Lens,
    Tab::Layers,
    Tab::Attention,
    Tab::Compare,
    Tab::Graph,
];
const LAYER_TABS: &[Tab] = &[Tab::Lens, Tab::Layers, Tab::Graph];
const HEAD_TABS: &[Tab] = &[Tab::Heads, Tab::Attention];

/// The key table. Order is the order of the help popup.
pub static BINDINGS: &[Binding] = &[
    Binding {
        keys: &[
            (k(KC::Left), C::Left),
            (ch('h'), C::Left),
            (k(KC::Right), C::Right),
            (ch('l'), C::Right),
        ],
        scope: Scope::Tabs(STEP_TABS),
        help: "previous / next step: prompt token, thought, answer token",
        hint: Some("step"),
    },
    Binding {
        keys: &[
            (k(KC::Up), C::Up),
            (ch('k'), C::Up),
            (k(KC::Down), C::Down),
            (ch('j'), C::Down),
        ],
        scope: Scope::Tabs(LAYER_TABS),
        help: "layer up / down",
        hint: Some("layer"),
    },
    Binding {
        keys: &[(ch('g'), C::First), (ch('G'), C::Last)],
        scope: Scope::Tabs(STEP_TABS),
        help: "first / last step",
        hint: None,
    },
    Binding {
        keys: &[
            (k(KC::Left), C::Left),
            (ch('h'), C::Left),
            (k(KC::Right), C::Right),
            (ch('l'), C::Right),
            (k(KC::Up), C::Up),
            (ch('k'), C::Up),
            (k(KC::Down), C::Down),
            (ch('j'), C::Down),
        ],
        scope: Scope::Tabs(&[Tab::Heads]),
        help: "move the head cursor (←→ head, ↑↓ layer)",
        hint: Some("head"),
    },
    Binding {
        keys: &[(ch('g'), C::First), (ch('G'), C::Last)],
        scope: Scope::Tabs(&[Tab::Heads]),
        help: "first / last layer",
        hint: None,
    },
    Binding {
        keys: &[
            (k(KC::Up), C::Up),
            (ch('k'), C::Up),
            (k(KC::Down), C::Down),
            (ch('j'), C::Down),
        ],
        scope: Scope::Tabs(&[Tab::Attention]),
        help: "previous / next head (layer by layer)",
        hint: Some("head"),
    },
    Binding {
        keys: &[(ch(' '), C::ToggleHead)],
        scope: Scope::Tabs(HEAD_TABS),
        help: "ablate / restore the head under the cursor",
        hint: Some("toggle head"),
    },
    Binding {
        keys: &[(ch('L'), C::ToggleLayer)],
        scope: Scope::Tabs(HEAD_TABS),
        help: "skip / restore the layer under the cursor",
        hint: Some("toggle layer"),
    },
    Binding {
        keys: &[(ch('S'), C::Sweep)],
        scope: Scope::Tabs(&[Tab::Heads]),
        help: "(re)compute head importance",
        hint: None,
    },
    Binding {
        keys: &[(ch('x'), C::CycleThought), (ch('P'), C::EditPatchPrompt)],
        scope: Scope::Tabs(STEP_TABS),
        help: "intervene on a thought / set the prompt to patch from",
        hint: None,
    },
    Binding {
        keys: &[(ch('S'), C::PatchSweep)],
        scope: Scope::Tabs(&[Tab::Compare]),
        help: "activation patching at every (thought, layer)",
        hint: Some("patch sweep"),
    },
    Binding {
        keys: &[(ch('r'), C::Reset)],
        scope: Scope::Main,
        help: "reset all interventions (back to the baseline)",
        hint: Some("reset"),
    },
    Binding {
        keys: &[
            (ch('+'), C::MoreThoughts),
            (ch('='), C::MoreThoughts),
            (ch('-'), C::FewerThoughts),
        ],
        scope: Scope::Main,
        help: "one thought more / fewer",
        hint: Some("thoughts"),
    },
    Binding {
        keys: &[(ch('m'), C::CycleMode)],
        scope: Scope::Main,
        help: "next thought mode (coconut, soft, token, pause)",
        hint: Some("mode"),
    },
    Binding {
        keys: &[(ch('p'), C::EditPrompt)],
        scope: Scope::Main,
        help: "edit the prompt",
        hint: Some("prompt"),
    },
    Binding {
        keys: &[(ch('i'), C::SwitchImportance)],
        scope: Scope::Main,
        help: "head importance: ablation KL / gradient",
        hint: None,
    },
    Binding {
        keys: &[(ch('s'), C::Save)],
        scope: Scope::Main,
        help: "save the session in sessions/ (asks for a name)",
        hint: Some("save"),
    },
    Binding {
        keys: &[(ch('e'), C::ExportPlots)],
        scope: Scope::Main,
        help: "export the plots (PNG, SVG), saving first if needed",
        hint: None,
    },
    Binding {
        keys: &[(k(KC::Tab), C::NextTab), (k(KC::BackTab), C::PrevTab)],
        scope: Scope::Main,
        help: "next / previous tab",
        hint: None,
    },
    Binding {
        keys: &[
            (ch('1'), C::GoTab(Tab::Lens)),
            (ch('2'), C::GoTab(Tab::Layers)),
            (ch('3'), C::GoTab(Tab::Heads)),
            (ch('4'), C::GoTab(Tab::Attention)),
            (ch('5'), C::GoTab(Tab::Compare)),
            (ch('6'), C::GoTab(Tab::Graph)),
        ],
        scope: Scope::Main,
        help: "go to tab 1-6",
        hint: None,
    },
    Binding {
        keys: &[(k(KC::Esc), C::Cancel)],
        scope: Scope::Main,
        help: "cancel the running computation",
        hint: None,
    },
    Binding {
        keys: &[(ch('?'), C::Help)],
        scope: Scope::Main,
        help: "this help",
        hint: Some("help"),
    },
    Binding {
        keys: &[(ch('q'), C::Quit)],
        scope: Scope::Main,
        help: "quit",
        hint: Some("quit"),
    },
    Binding {
        keys: &[(ctrl('c'), C::Quit)],
        scope: Scope::Always,
        help: "quit",
        hint: None,
    },
    Binding {
        keys: &[
            (ch('?'), C::CloseHelp),
            (k(KC::Esc), C::CloseHelp),
            (ch('q'), C::CloseHelp),
        ],
        scope: Scope::Help,
        help: "close the help",
        hint: Some("close"),
    },
    Binding {
        keys: &[(k(KC::Enter), C::SubmitPrompt)],
        scope: Scope::Input,
        help: "run the edited prompt (←→ Home End Ctrl-W Ctrl-U edit)",
        hint: Some("run"),
    },
    Binding {
        keys: &[(k(KC::Esc), C::CancelPrompt)],
        scope: Scope::Input,
        help: "leave the prompt unchanged",
        hint: Some("cancel"),
    },
    Binding {
        keys: &[(k(KC::Enter), C::SubmitSave)],
        scope: Scope::SaveAs,
        help: "save under this name (empty: the default name)",
        hint: Some("save"),
    },
    Binding {
        keys: &[(k(KC::Esc), C::CancelPrompt)],
        scope: Scope::SaveAs,
        help: "do not save",
        hint: Some("cancel"),
    },
    Binding {
        keys: &[(ch('y'), C::ConfirmYes)],
        scope: Scope::Confirm,
        help: "overwrite the existing session file",
        hint: Some("overwrite"),
    },
    Binding {
        keys: &[(ch('n'), C::ConfirmNo), (k(KC::Esc), C::ConfirmNo)],
        scope: Scope::Confirm,
        help: "keep the existing file (nothing is written)",
        hint: Some("keep"),
    },
];

/// The command a key event means here, if any. Releases are ignored.
pub fn lookup(ctx: Context, ev: &KeyEvent) -> Option<Command> {
    if ev.kind == KeyEventKind::Release {
        return None;
    }
    BINDINGS
        .iter()
        .filter(|b| b.scope.applies(ctx))
        .flat_map(|b| b.keys.iter())
        .find(|(key, _)| key.matches(ev))
        .map(|(_, cmd)| *cmd)
}

/// A status-bar hint.
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    pub keys: String,
    pub text: &'static str,
    /// Help and quit: kept at the right end, always visible.
    pub pinned: bool,
}

/// Status-bar hints for a context, in table order.
pub fn hints(ctx: Context) -> Vec<Hint> {
    BINDINGS
        .iter()
        .filter(|b| b.scope.applies(ctx))
        .filter_map(|b| {
            b.hint.map(|text| Hint {
                keys: b.hint_keys(),
                text,
                pinned: b
                    .keys
                    .iter()
                    .any(|(_, c)| matches!(c, Command::Help | Command::Quit)),
            })
        })
        .collect()
}

/// The key table as a Markdown table (the README's copy is checked against this).
pub fn markdown_table() -> String {
    let mut out = String::from("| keys | where | what |\n|---|---|---|\n");
    for b in BINDINGS {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            b.keys_label(),
            b.scope.title(),
            b.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn keys_resolve_by_context() {
        let main = Context::Main(Tab::Lens);
        let q = key(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(lookup(main, &q), Some(Command::Quit));
        assert_eq!(lookup(Context::Help, &q), Some(Command::CloseHelp));
        assert_eq!(lookup(Context::Input, &q), None);
        let ctrl_c = key(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for ctx in [main, Context::Help, Context::Input] {
            assert_eq!(lookup(ctx, &ctrl_c), Some(Command::Quit));
        }
        let space = key(KeyCode::Char(' '), KeyModifiers::NONE);
        assert_eq!(lookup(main, &space), None);
        assert_eq!(
            lookup(Context::Main(Tab::Heads), &space),
            Some(Command::ToggleHead)
        );
    }

    #[test]
    fn shift_is_ignored_on_characters() {
        let g = key(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(lookup(Context::Main(Tab::Lens), &g), Some(Command::Last));
        let q = key(KeyCode::Char('?'), KeyModifiers::SHIFT);
        assert_eq!(lookup(Context::Main(Tab::Lens), &q), Some(Command::Help));
        let bt = key(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(
            lookup(Context::Main(Tab::Lens), &bt),
            Some(Command::PrevTab)
        );
        let big_c = key(
            KeyCode::Char('C'),
            KeyModifiers::CONTROL | KeyModifiers::SHIFT,
        );
        assert_eq!(lookup(Context::Input, &big_c), Some(Command::Quit));
    }

    #[test]
    fn no_key_is_bound_twice_in_one_context() {
        let ctxs: Vec<Context> = Tab::ALL
            .iter()
            .map(|&t| Context::Main(t))
            .chain([
                Context::Help,
                Context::Input,
                Context::SaveAs,
                Context::Confirm,
            ])
            .collect();
        for ctx in ctxs {
            let keys: Vec<Key> = BINDINGS
                .iter()
                .filter(|b| b.scope.applies(ctx))
                .flat_map(|b| b.keys.iter().map(|(k, _)| *k))
                .collect();
            for (i, a) in keys.iter().enumerate() {
                assert!(
                    !keys[i + 1..].contains(a),
                    "{} bound twice in {ctx:?}",
                    a.label()
                );
            }
        }
    }

    #[test]
    fn labels_and_hints() {
        assert_eq!(BINDINGS[0].keys_label(), "←/h →/l");
        assert_eq!(BINDINGS[0].hint_keys(), "←→");
        let tab = BINDINGS
            .iter()
            .find(|b| b.help == "next / previous tab")
            .unwrap();
        assert_eq!(tab.hint_keys(), "Tab/⇧Tab");
        assert_eq!(ctrl('c').label(), "Ctrl-C");
        let h = hints(Context::Main(Tab::Heads));
        assert!(
            h.iter()
                .any(|h| h.keys == "Space" && h.text == "toggle head")
        );
        let pinned: Vec<&str> = h.iter().filter(|h| h.pinned).map(|h| h.text).collect();
        assert_eq!(pinned, ["help", "quit"]);
    }
}
