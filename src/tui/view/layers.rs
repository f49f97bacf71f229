//! Tab 2, Layers: angular distance d(x^l, x^{l+1}) per layer for the selected step, the same
//! for every step as a heatmap, and Gromov et al.'s block rule.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{Hit, inner_of, panel, step_span};
use crate::analysis::run::RunAnalysis;
use crate::tui::app::App;
use crate::tui::widgets::{ABLATED, GridGeom, HeatCell, Heatmap, bar, heat, num};

const LEFT_W: u16 = 44;
const LABEL_W: u16 = 5;
const CELL_W: u16 = 7;

struct Geom {
    chart: Rect,
    blocks: Rect,
    grid_panel: Rect,
    grid: GridGeom,
}

/// The selected transition (block) from the lens row cursor.
fn block_of(app: &App, layers: usize) -> usize {
    app.layer.clamp(1, layers.max(1)) - 1
}

fn geom(app: &App, run: &RunAnalysis, body: Rect) -> Geom {
    let [left, grid_panel] =
        Layout::horizontal([Constraint::Length(LEFT_W), Constraint::Min(20)]).areas(body);
    let layers = run.layers();
    let chart_h = (layers as u16 + 3).min(left.height.saturating_sub(5).max(5));
    let [chart, blocks] =
        Layout::vertical([Constraint::Length(chart_h), Constraint::Min(3)]).areas(left);
    let grid = GridGeom::new(
        inner_of(grid_panel),
        LABEL_W,
        1,
        (CELL_W, 2),
        (layers, run.steps.len()),
        (block_of(app, layers), app.step),
    );
    Geom {
        chart,
        blocks,
        grid_panel,
        grid,
    }
}

pub fn hit(app: &App, run: &RunAnalysis, body: Rect, x: u16, y: u16) -> Option<Hit> {
    let g = geom(app, run, body);
    g.grid.hit(x, y).map(|(block, step)| Hit::Cell {
        step,
        layer: block + 1,
    })
}

pub fn render(app: &App, run: &RunAnalysis, body: Rect, frame: &mut Frame) {
    let g = geom(app, run, body);
    let layers = run.layers();
    let sel_block = block_of(app, layers);
    let skipped = &run.params.interventions.skipped_layers;
    let max = run
        .steps
        .iter()
        .flat_map(|s| s.angular.iter().copied())
        .fold(0f32, f32::max)
        .max(1e-6);

    // The chart for the selected step.
    if let Some(step) = run.steps.get(app.step) {
        let inner = panel(
            frame,
            g.chart,
            Line::from(vec![
                Span::raw(" d(x^l, x^l+1) at ").bold(),
                step_span(run, app.step).bold(),
                Span::raw(" "),
            ]),
        );
        let local_max = step.angular.iter().copied().fold(0f32, f32::max).max(1e-6);
        let bar_w = (inner.width as usize).saturating_sub(5 + 7).max(1);
        let first = crate::tui::widgets::viewport(sel_block, layers, inner.height as usize);
        let lines: Vec<Line> = step
            .angular
            .iter()
            .enumerate()
            .skip(first)
            .map(|(l, &d)| {
                let mut label = Style::default().dark_gray();
                if skipped.contains(&l) {
                    label = label.fg(ABLATED);
                }
                let mut line = Line::from(vec![
                    Span::styled(format!("{:<5}", format!("L{l}")), label),
                    Span::styled(
                        bar(d / local_max, bar_w),
                        Style::default().fg(heat(d / max)),
                    ),
                    Span::raw(format!(" {:>6}", num(d, 6))),
                ]);
                if l == sel_block {
                    line = line.patch_style(Style::default().add_modifier(Modifier::BOLD));
                }
                line
            })
            .collect();
        frame.render_widget(Paragraph::new(lines), inner);
    }

    // Gromov et al.'s rule over the thought positions.
    let inner = panel(
        frame,
        g.blocks,
        Line::from(vec![
            Span::raw(" Block rule ").bold(),
            Span::raw("· least d(x^l, x^l+n) ").dark_gray(),
        ]),
    );
    let mut lines = vec![Line::from(
        Span::raw(format!("{:>3}  {:<12} {:>8}", "n", "blocks", "mean d")).dark_gray(),
    )];
    if run.blocks.is_empty() {
        lines.push(Line::from(
            "needs at least one thought and two layers".dark_gray(),
        ));
    }
    for b in &run.blocks {
        let span = if b.n == 1 {
            format!("L{}", b.start)
        } else {
            format!("L{}–L{}", b.start, b.start + b.n - 1)
        };
        lines.push(Line::from(format!(
            "{:>3}  {:<12} {:>8}",
            b.n,
            span,
            num(b.distance, 8)
        )));
    }
    frame.render_widget(Paragraph::new(lines), inner);

    // Every layer at every step.
    panel(
        frame,
        g.grid_panel,
        Line::from(vec![
            Span::raw(" Angular distance ").bold(),
            Span::raw("· row: block L · colour: share of the largest ").dark_gray(),
        ]),
    );
    let row_label = |l: usize| {
        let style = if skipped.contains(&l) {
            Style::default().fg(ABLATED)
        } else {
            Style::default().dark_gray()
        };
        Line::styled(format!("L{l}"), style)
    };
    let col_label = |c: usize| step_span(run, c);
    let cell = |l: usize, c: usize| {
        let d = run.steps[c].angular.get(l).copied().unwrap_or(0.0);
        HeatCell::value(num(d, 6), d / max)
    };
    frame.render_widget(
        Heatmap {
            geom: g.grid,
            row_label: &row_label,
            col_label: &col_label,
            cell: &cell,
            selected: Some((sel_block, app.step)),
        },
        g.grid_panel,
    );
}
