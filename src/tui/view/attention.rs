//! Tab 4, Attention: for the head under the cursor, where each thought and answer step attends
//! over the prompt.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{Hit, inner_of, panel, step_span};
use crate::analysis::run::RunAnalysis;
use crate::numeric::top_k_indices;
use crate::tui::app::App;
use crate::tui::widgets::{ABLATED, GridGeom, HeatCell, Heatmap, bar, heat, pad, pct};

const LABEL_W: u16 = 5;
const SIDE_W: u16 = 40;

struct Geom {
    grid_panel: Rect,
    side: Rect,
    grid: GridGeom,
    /// Prompt positions per column.
    bin: usize,
}

fn geom(app: &App, run: &RunAnalysis, body: Rect) -> Geom {
    let [grid_panel, side] =
        Layout::horizontal([Constraint::Min(30), Constraint::Length(SIDE_W)]).areas(body);
    let inner = inner_of(grid_panel);
    let n = run.prompt_tokens.len().max(1);
    let avail = inner.width.saturating_sub(LABEL_W).max(1) as usize;
    let bin = n.div_ceil(avail);
    let cols = n.div_ceil(bin);
    let cell_w = (avail / cols).clamp(1, 3) as u16;
    let rows = app.query_steps();
    let sel = rows.iter().position(|&s| s == app.step).unwrap_or(0);
    let grid = GridGeom::new(inner, LABEL_W, 1, (cell_w, 1), (rows.len(), cols), (sel, 0));
    Geom {
        grid_panel,
        side,
        grid,
        bin,
    }
}

pub fn hit(app: &App, run: &RunAnalysis, body: Rect, x: u16, y: u16) -> Option<Hit> {
    let g = geom(app, run, body);
    let rows = app.query_steps();
    g.grid.hit(x, y).map(|(r, _)| Hit::Step(rows[r]))
}

/// The attention of the cursor head at a step over the prompt, if recorded.
fn pattern<'a>(app: &App, run: &'a RunAnalysis, step: usize) -> Option<&'a [f32]> {
    let (l, h) = app.head;
    run.steps
        .get(step)?
        .attention
        .as_ref()?
        .get(l)?
        .as_ref()?
        .get(h)
        .map(|v| v.as_slice())
}

pub fn render(app: &App, run: &RunAnalysis, body: Rect, frame: &mut Frame) {
    if run.steps.iter().all(|s| s.attention.is_none()) {
        let msg = "This run's attention is not in its session file (a file of schema v1): \
                   reopen the session with its model available to see it.";
        frame.render_widget(
            Paragraph::new(msg)
                .alignment(ratatui::layout::Alignment::Center)
                .wrap(ratatui::widgets::Wrap { trim: true })
                .dark_gray(),
            body,
        );
        return;
    }
    let g = geom(app, run, body);
    let (l, h) = app.head;
    let rows = app.query_steps();
    let mut title = vec![
        Span::raw(format!(" Attention of head L{l}.H{h} ")).bold(),
        Span::raw(format!(
            "· over {} prompt tokens{} ",
            run.prompt_tokens.len(),
            if g.bin > 1 {
                format!(", {} per column", g.bin)
            } else {
                String::new()
            }
        ))
        .dark_gray(),
    ];
    if app.is_head_ablated(l, h) {
        title.push(Span::styled(
            " ablated ",
            Style::default().fg(ABLATED).bold(),
        ));
    }
    let inner = panel(frame, g.grid_panel, Line::from(title));
    if app.is_layer_skipped(l) || run.params.interventions.skipped_layers.contains(&l) {
        frame.render_widget(
            Paragraph::new(format!("layer L{l} is skipped: it attends nowhere")).red(),
            inner,
        );
        render_side(app, run, g.side, frame);
        return;
    }
    let binned: Vec<Vec<f32>> = rows
        .iter()
        .map(|&s| {
            pattern(app, run, s).map_or(vec![], |p| {
                p.chunks(g.bin).map(|c| c.iter().sum()).collect()
            })
        })
        .collect();
    let row_label = |r: usize| {
        let mut line = Line::from(step_span(run, rows[r]));
        if rows[r] == app.step {
            line = Line::from(vec![Span::raw("▶"), step_span(run, rows[r])]);
        }
        line
    };
    let col_label = |_c: usize| Span::raw("");
    let cell = |r: usize, c: usize| {
        let row = &binned[r];
        let max = row.iter().copied().fold(0f32, f32::max).max(1e-12);
        let v = row.get(c).copied().unwrap_or(0.0);
        HeatCell::value("", v / max)
    };
    frame.render_widget(
        Heatmap {
            geom: g.grid,
            row_label: &row_label,
            col_label: &col_label,
            cell: &cell,
            selected: None,
        },
        g.grid_panel,
    );
    // A ruler of prompt positions over the columns, a tick every 10 columns or so.
    let buf = frame.buffer_mut();
    let y = g.grid.cells.y.saturating_sub(1);
    let right = g.grid.cells.x + g.grid.cols as u16 * g.grid.cell_w;
    let every = 10u16.div_ceil(g.grid.cell_w) as usize;
    for col in (0..g.grid.cols).step_by(every) {
        let x = g.grid.cells.x + col as u16 * g.grid.cell_w;
        let label = format!("|{}", col * g.bin);
        if x + label.len() as u16 <= right {
            buf.set_string(x, y, label, Style::default().dark_gray());
        }
    }
    render_side(app, run, g.side, frame);
}

fn render_side(app: &App, run: &RunAnalysis, area: Rect, frame: &mut Frame) {
    let (l, h) = app.head;
    let label = run
        .steps
        .get(app.step)
        .map_or(String::new(), |s| s.label.clone());
    let inner = panel(
        frame,
        area,
        Line::from(format!(" L{l}.H{h} at {label} ")).bold(),
    );
    let Some(p) = pattern(app, run, app.step) else {
        let msg = if run
            .steps
            .get(app.step)
            .and_then(|s| s.attention.as_ref())
            .is_none()
        {
            "select a thought or answer step (←→)"
        } else {
            "this layer is skipped: no attention"
        };
        frame.render_widget(Paragraph::new(msg).dark_gray(), inner);
        return;
    };
    let w = inner.width as usize;
    let on_prompt: f32 = p.iter().sum();
    let mut lines = vec![Line::from(vec![
        Span::raw("on the prompt ").dark_gray(),
        Span::raw(pct(on_prompt)).bold(),
    ])];
    lines.push(Line::from("most attended prompt tokens".dark_gray()));
    let max = p.iter().copied().fold(0f32, f32::max).max(1e-12);
    let tok_w = 12;
    let bar_w = w.saturating_sub(5 + tok_w + 8).max(1);
    let n = (inner.height as usize).saturating_sub(2).min(12);
    for i in top_k_indices(p, n) {
        let tok = run.prompt_tokens.get(i).map_or("", |s| s.as_str());
        let mut line = Line::from(vec![
            Span::raw(format!("{i:>4} ")).dark_gray(),
            Span::raw(pad(tok, tok_w)),
            Span::styled(
                bar(p[i] / max, bar_w),
                Style::default().fg(heat(p[i] / max)),
            ),
            Span::raw(format!(" {:>6}", pct(p[i]))),
        ]);
        if i + 1 == run.prompt_tokens.len() {
            line = line.patch_style(Style::default().add_modifier(Modifier::ITALIC));
        }
        lines.push(line);
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
