//! Checks by hand that a panic gives the terminal back: takes it over like the explorer, draws
//! a frame, then panics on the UI thread. Run it in a terminal; afterwards the shell must be
//! back in cooked mode on the normal screen with the panic message printed.
//! `cargo run --example tui_panic_check`

use coconut_lens::tui::terminal::TerminalGuard;
use ratatui::widgets::Paragraph;

fn main() -> anyhow::Result<()> {
    let mut guard = TerminalGuard::enter()?;
    guard
        .terminal
        .draw(|f| f.render_widget(Paragraph::new("about to panic"), f.area()))?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    panic!("deliberate panic to check the terminal is restored");
}
