//! Tab 3, Heads: a layer × head grid coloured by importance, per-layer importance beside it,
//! and the ablations (heads and whole layers) marked.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{Hit, inner_of, panel};
use crate::analysis::importance::Importance;
use crate::analysis::importance::ImportanceMethod;
use crate::tui::app::{App, ImportanceState};
use crate::tui::widgets::{ABLATED, GridGeom, HeatCell, Heatmap, bar, fit, heat, heat_style, num};

const LABEL_W: u16 = 6;
const SIDE_W: u16 = 40;

/// Style of an ablated head or a skipped layer's cells.
pub fn ablated_style() -> Style {
    Style::default()
        .bg(ABLATED)
        .fg(Color::White)
        .add_modifier(Modifier::BOLD)
}

fn geom(app: &App, body: Rect) -> (Rect, Rect, GridGeom) {
    let [grid_panel, side] =
        Layout::horizontal([Constraint::Min(30), Constraint::Length(SIDE_W)]).areas(body);
    let inner = inner_of(grid_panel);
    let heads = app.heads().max(1);
    let cell_w = (inner.width.saturating_sub(LABEL_W) / heads as u16).clamp(4, 8);
    let grid = GridGeom::new(
        inner,
        LABEL_W,
        1,
        (cell_w, 2),
        (app.layers(), app.heads()),
        app.head,
    );
    (grid_panel, side, grid)
}

pub fn hit(app: &App, body: Rect, x: u16, y: u16) -> Option<Hit> {
    let (_, _, g) = geom(app, body);
    g.hit(x, y).map(|(layer, head)| Hit::Head { layer, head })
}

/// What the importance is of, in words.
fn method_text(imp: &Importance) -> String {
    let at = match imp.step {
        0 => "the answer's first token".to_string(),
        k => format!("answer token {k}"),
    };
    match imp.method {
        ImportanceMethod::Ablation => format!(
            "ablation: KL(base ‖ head zeroed) at {at} (\"{}\"), nats",
            imp.target
        ),
        ImportanceMethod::Gradient => format!(
            "gradient: |∂ log p(\"{}\") / ∂ head gate| at {at}",
            imp.target
        ),
    }
}

pub fn render(app: &App, body: Rect, frame: &mut Frame) {
    let (grid_panel, side, g) = geom(app, body);
    let current = app.current_importance();
    let shown = current.or_else(|| app.stale_importance());
    let stale = current.is_none() && shown.is_some();
    let method = app.importance_method.name();
    panel(
        frame,
        grid_panel,
        Line::from(vec![
            Span::raw(" Heads ").bold(),
            Span::raw(format!(
                "· importance: {method} · × ablated · red row: layer skipped "
            ))
            .dark_gray(),
        ]),
    );
    let max = shown
        .map(|i| {
            i.heads
                .iter()
                .flatten()
                .copied()
                .fold(0f32, f32::max)
                .max(1e-12)
        })
        .unwrap_or(1.0);
    let text_w = g.cell_w as usize - 1;
    let row_label = |l: usize| {
        if app.is_layer_skipped(l) {
            Line::styled(format!("L{l} ⊘"), Style::default().fg(ABLATED).bold())
        } else {
            Line::styled(format!("L{l}"), Style::default().dark_gray())
        }
    };
    let col_label = |h: usize| Span::raw(format!("h{h}")).dark_gray();
    let cell = |l: usize, h: usize| {
        if app.is_layer_skipped(l) {
            HeatCell::styled(if h == 0 { "skip" } else { "─" }, ablated_style())
        } else if app.is_head_ablated(l, h) {
            HeatCell::styled("×", ablated_style())
        } else {
            match shown.and_then(|i| i.heads.get(l).and_then(|r| r.get(h))) {
                Some(&v) => {
                    let mut style = heat_style(v / max);
                    if stale {
                        style = style.add_modifier(Modifier::DIM);
                    }
                    HeatCell::styled(num(v, text_w), style)
                }
                None => HeatCell::styled("·", Style::default().dark_gray()),
            }
        }
    };
    frame.render_widget(
        Heatmap {
            geom: g,
            row_label: &row_label,
            col_label: &col_label,
            cell: &cell,
            selected: Some(app.head),
        },
        grid_panel,
    );
    render_side(app, shown, stale, side, frame);
}

fn render_side(app: &App, shown: Option<&Importance>, stale: bool, area: Rect, frame: &mut Frame) {
    let (l, h) = app.head;
    let inner = panel(frame, area, Line::from(format!(" Head L{l}.H{h} ")).bold());
    let w = inner.width as usize;
    let mut lines = Vec::new();
    let state = if app.is_layer_skipped(l) {
        Span::styled("layer skipped", Style::default().fg(ABLATED).bold())
    } else if app.is_head_ablated(l, h) {
        Span::styled("ablated", Style::default().fg(ABLATED).bold())
    } else {
        Span::raw("active").green()
    };
    lines.push(Line::from(vec![Span::raw("state ").dark_gray(), state]));
    if let Some(imp) = shown {
        let v = imp
            .heads
            .get(l)
            .and_then(|r| r.get(h))
            .copied()
            .unwrap_or(0.0);
        let mut all: Vec<f32> = imp.heads.iter().flatten().copied().collect();
        all.sort_by(|a, b| b.total_cmp(a));
        let rank = all
            .iter()
            .position(|&x| x <= v)
            .map_or(all.len(), |i| i + 1);
        lines.push(Line::from(vec![
            Span::raw("importance ").dark_gray(),
            Span::raw(num(v, 8)).bold(),
            Span::raw(format!(" · rank {rank}/{}", all.len())).dark_gray(),
        ]));
    }
    lines.push(Line::from(""));
    let status = match &app.importance {
        ImportanceState::Running { done, total, .. } => {
            Some(Line::from(format!("computing… {done}/{total}").cyan()))
        }
        ImportanceState::Cancelled => Some(Line::from("sweep cancelled · S restarts".yellow())),
        ImportanceState::Failed(e) => Some(Line::from(fit(&format!("failed: {e}"), w).red())),
        ImportanceState::Idle if shown.is_none() && app.read_only.is_some() => Some(Line::from(
            "not saved in this session (read-only)".dark_gray(),
        )),
        ImportanceState::Idle if shown.is_none() => {
            Some(Line::from("not computed yet · S computes".dark_gray()))
        }
        ImportanceState::Idle => None,
    };
    if let Some(s) = status {
        lines.push(s);
    }
    if stale {
        lines.push(Line::from("(dimmed: from earlier settings)".dark_gray()));
    }
    if let Some(imp) = shown {
        let layer_max = imp.layers.iter().copied().fold(0f32, f32::max).max(1e-12);
        let bar_w = w.saturating_sub(6 + 7).max(1);
        let what = match imp.method {
            ImportanceMethod::Ablation => "per layer: KL when skipped",
            ImportanceMethod::Gradient => "per layer: sum over heads",
        };
        lines.push(Line::from(what.dark_gray()));
        for (i, &v) in imp.layers.iter().enumerate() {
            let label = if app.is_layer_skipped(i) {
                Span::styled(
                    format!("{:<6}", format!("L{i} ⊘")),
                    Style::default().fg(ABLATED),
                )
            } else {
                Span::raw(format!("{:<6}", format!("L{i}"))).dark_gray()
            };
            let mut line = Line::from(vec![
                label,
                Span::styled(
                    bar(v / layer_max, bar_w),
                    Style::default().fg(heat(v / layer_max)),
                ),
                Span::raw(format!(" {:>6}", num(v, 6))),
            ]);
            if i == l {
                line = line.patch_style(Style::default().add_modifier(Modifier::BOLD));
            }
            lines.push(line);
        }
        lines.push(Line::from(""));
        lines.push(Line::from(method_text(imp).dark_gray()));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
