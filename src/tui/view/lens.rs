//! Tab 1, Lens: the logit lens of every layer at every step, and the selected cell's top-k.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};

use super::{Hit, inner_of, panel, step_span};
use crate::analysis::run::RunAnalysis;
use crate::tui::app::App;
use crate::tui::widgets::{GridGeom, HeatCell, Heatmap, bar, fit, heat, pad, pct};

const LABEL_W: u16 = 5;
const CELL_W: u16 = 8;
const DETAIL_W: u16 = 38;

struct Geom {
    grid_panel: Rect,
    detail: Rect,
    grid: GridGeom,
}

fn geom(app: &App, run: &RunAnalysis, body: Rect) -> Geom {
    let [grid_panel, detail] =
        Layout::horizontal([Constraint::Min(30), Constraint::Length(DETAIL_W)]).areas(body);
    let rows = run.layers() + 1;
    let grid = GridGeom::new(
        inner_of(grid_panel),
        LABEL_W,
        1,
        (CELL_W, 2),
        (rows, run.steps.len()),
        (app.layer.min(rows - 1), app.step),
    );
    Geom {
        grid_panel,
        detail,
        grid,
    }
}

pub fn hit(app: &App, run: &RunAnalysis, body: Rect, x: u16, y: u16) -> Option<Hit> {
    let g = geom(app, run, body);
    g.grid
        .hit(x, y)
        .map(|(layer, step)| Hit::Cell { step, layer })
}

/// The label of lens row `layer` (x^layer): `emb`, then the block whose output it is, 0-based
/// as everywhere else (`L0` is x^1); `*` marks the model's output.
pub fn layer_label(layer: usize, last: usize) -> String {
    if layer == 0 {
        "emb".to_string()
    } else if layer == last {
        format!("L{}*", layer - 1)
    } else {
        format!("L{}", layer - 1)
    }
}

pub fn render(app: &App, run: &RunAnalysis, body: Rect, frame: &mut Frame) {
    let g = geom(app, run, body);
    let last = run.layers();
    panel(
        frame,
        g.grid_panel,
        Line::from(vec![
            Span::raw(" Logit lens ").bold(),
            Span::raw("· row: after block L (emb: embeddings, *: output) · top token, p ")
                .dark_gray(),
        ]),
    );
    let skipped = &run.params.interventions.skipped_layers;
    let row_label = |l: usize| {
        let skip = l > 0 && skipped.contains(&(l - 1));
        let style = if skip {
            Style::default().fg(crate::tui::widgets::ABLATED)
        } else {
            Style::default().dark_gray()
        };
        Line::styled(layer_label(l, last), style)
    };
    let col_label = |c: usize| step_span(run, c);
    let cell = |l: usize, c: usize| match run.steps[c].lens.get(l).and_then(|x| x.top1()) {
        Some(t) => HeatCell::value(t.text.clone(), t.prob).with_sub(pct(t.prob)),
        None => HeatCell::value("", 0.0),
    };
    let sel = (app.layer.min(last), app.step);
    frame.render_widget(
        Heatmap {
            geom: g.grid,
            row_label: &row_label,
            col_label: &col_label,
            cell: &cell,
            selected: Some(sel),
        },
        g.grid_panel,
    );
    render_detail(run, sel, g.detail, frame);
}

fn render_detail(run: &RunAnalysis, (layer, step): (usize, usize), area: Rect, frame: &mut Frame) {
    let Some(s) = run.steps.get(step) else {
        return;
    };
    let last = run.layers();
    let title = format!(" {} · layer {} ", s.label, layer_label(layer, last));
    let inner = panel(frame, area, Line::from(title).bold());
    let Some(cell) = s.lens.get(layer) else {
        return;
    };
    let w = inner.width as usize;
    let tok_w = 12.min(w / 3);
    let bar_w = w.saturating_sub(tok_w + 8).max(1);
    let mut lines = vec![Line::from(
        format!("top {} at this layer", cell.top.len()).dark_gray(),
    )];
    for t in &cell.top {
        lines.push(Line::from(vec![
            Span::raw(pad(&t.text, tok_w)),
            Span::raw(" "),
            Span::styled(bar(t.prob, bar_w), Style::default().fg(heat(t.prob))),
            Span::raw(format!("{:>6}", pct(t.prob))),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::raw("entropy ").dark_gray(),
        Span::raw(if cell.entropy.is_finite() {
            format!("{:.2} nats", cell.entropy)
        } else {
            "n/a (not in the v1 session file)".to_string()
        }),
    ]));
    if let Some(t) = &run.target {
        lines.push(Line::from(vec![
            Span::raw("answer token ").dark_gray(),
            Span::raw(fit(&t.text, w.saturating_sub(13))).bold(),
        ]));
        lines.push(Line::from(vec![
            Span::raw("  rank ").dark_gray(),
            Span::raw(cell.target_rank.to_string()).bold(),
            Span::raw(" · p ").dark_gray(),
            Span::raw(pct(cell.target_prob)).bold(),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::raw("pos ").dark_gray(),
        Span::raw(s.position.to_string()),
        Span::raw(" · output ").dark_gray(),
        Span::raw(s.output().map_or(String::new(), |t| {
            format!("{} {}", fit(&t.text, w.saturating_sub(24)), pct(t.prob))
        })),
    ]));
    frame.render_widget(ratatui::widgets::Paragraph::new(lines), inner);
}
