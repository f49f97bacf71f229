//! Tab 6, Graph: the prompt's problem graph laid out by breadth-first depth (root at the left,
//! one column per depth, unreachable nodes apart), each node coloured by the selected step's
//! probability at the selected layer. Beside it the step's mass by depth and that mass for
//! every step; after a click on a node, that node's probability at every step and layer.

use std::collections::{HashMap, HashSet};

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::lens::layer_label;
use super::{Hit, panel};
use crate::analysis::graph::GraphAnalysis;
use crate::analysis::run::RunAnalysis;
use crate::tui::app::App;
use crate::tui::widgets::{
    GridGeom, HeatCell, Heatmap, KEY, SCALE, THOUGHT, bar, fit, heat, heat_style, pad, pct,
    viewport, width,
};

/// What the tab says when the prompt has no graph.
pub const NO_GRAPH: &str =
    "The prompt states no recognisable problem (ProsQA or ProntoQA facts and a question).";

/// Marks a candidate's label.
pub const CANDIDATE_MARK: &str = "◆";

/// A column of the layout: a depth, or the unreachable nodes.
struct Column {
    x: u16,
    header: String,
    /// Nodes shown, with their row.
    spots: Vec<(usize, u16)>,
    /// Nodes left out for want of rows, and the row that says so.
    hidden: usize,
    more_y: u16,
    depth: Option<usize>,
}

struct Geom {
    graph_panel: Rect,
    side: Rect,
    header_y: u16,
    legend_y: u16,
    /// Rows for nodes.
    rows: (u16, u16),
    label_w: u16,
    gap: u16,
    columns: Vec<Column>,
}

impl Geom {
    fn spot(&self, node: usize) -> Option<(usize, u16, u16)> {
        self.columns.iter().enumerate().find_map(|(c, col)| {
            col.spots
                .iter()
                .find(|(n, _)| *n == node)
                .map(|&(_, y)| (c, col.x, y))
        })
    }
}

fn side_width(body_w: u16) -> u16 {
    match body_w {
        0..110 => 30,
        110..140 => 38,
        _ => 46,
    }
}

/// The graph step shown: the selected step's, else the first.
fn graph_step(app: &App, run: &RunAnalysis, g: &GraphAnalysis) -> usize {
    run.steps
        .get(app.step)
        .and_then(|s| g.steps.iter().position(|gs| gs.label == s.label))
        .unwrap_or(0)
}

fn graph_layer(app: &App, g: &GraphAnalysis) -> usize {
    let rows = g.steps.first().map_or(1, |s| s.probs.len());
    app.layer.min(rows.saturating_sub(1))
}

fn geom(g: &GraphAnalysis, body: Rect) -> Geom {
    let [graph_panel, side] = Layout::horizontal([
        Constraint::Min(30),
        Constraint::Length(side_width(body.width)),
    ])
    .areas(body);
    let inner = super::inner_of(graph_panel);
    let header_y = inner.y;
    let legend_y = inner.bottom().saturating_sub(1);
    let (top, h) = (inner.y + 1, inner.height.saturating_sub(2));

    // Nodes by column: depth 0, 1, ..., then the unreachable ones.
    let max_depth = g.max_depth();
    let mut by_col: Vec<Vec<usize>> = vec![Vec::new(); max_depth + 1];
    let mut unreachable = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        match n.depth {
            Some(d) => by_col[d].push(i),
            None => unreachable.push(i),
        }
    }
    let apart = !unreachable.is_empty();
    if apart {
        by_col.push(unreachable);
    }
    let sep = u16::from(apart);
    let ncols = by_col.len() as u16;
    let col_w = (inner.width.saturating_sub(sep) / ncols.max(1)).max(3);
    let gap = if col_w >= 12 { (col_w / 3).min(6) } else { 2 };
    let label_w = col_w.saturating_sub(gap).max(1);

    // When a column has more nodes than rows, keep the root, the candidates and the nodes
    // most probable at the output layer over all steps (stable while stepping).
    let last = g
        .steps
        .first()
        .map_or(0, |s| s.probs.len().saturating_sub(1));
    let peak = |i: usize| {
        (0..g.steps.len())
            .map(|s| g.probability(s, last, i))
            .fold(0f32, f32::max)
    };
    let keep_first = |i: usize| i == g.root || g.candidates.contains(&i);
    let mut columns: Vec<Column> = Vec::new();
    let mut placed_rank: HashMap<usize, usize> = HashMap::new();
    for (c, nodes) in by_col.into_iter().enumerate() {
        let depth = (c <= max_depth).then_some(c);
        let mut shown = nodes.clone();
        let mut hidden = 0;
        if shown.len() > h as usize {
            let room = (h as usize).saturating_sub(1);
            shown.sort_by(|&a, &b| {
                keep_first(b)
                    .cmp(&keep_first(a))
                    .then(peak(b).total_cmp(&peak(a)))
                    .then(a.cmp(&b))
            });
            hidden = shown.len() - room;
            shown.truncate(room);
        }
        // Order by the mean row of the parents in the column before (fewer crossings).
        if depth.is_some_and(|d| d > 0) {
            let key = |n: usize| {
                let ranks: Vec<usize> = g
                    .edges
                    .iter()
                    .filter(|e| e[1] == n)
                    .filter_map(|e| placed_rank.get(&e[0]).copied())
                    .collect();
                if ranks.is_empty() {
                    f32::MAX
                } else {
                    ranks.iter().sum::<usize>() as f32 / ranks.len() as f32
                }
            };
            shown.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
        } else {
            shown.sort();
        }
        placed_rank.clear();
        for (r, &n) in shown.iter().enumerate() {
            placed_rank.insert(n, r);
        }
        let lines = shown.len() + usize::from(hidden > 0);
        let spacing = if lines * 2 <= h as usize + 1 { 2 } else { 1 };
        let used = (lines * spacing).saturating_sub(spacing - 1) as u16;
        let y0 = top + h.saturating_sub(used) / 2;
        let x = inner.x + c as u16 * col_w + if depth.is_none() { sep } else { 0 };
        let header = match depth {
            Some(0) => "root".to_string(),
            Some(d) => format!("depth {d}"),
            None => "unreachable".to_string(),
        };
        columns.push(Column {
            x,
            header,
            more_y: y0 + (shown.len() * spacing) as u16,
            spots: shown
                .into_iter()
                .enumerate()
                .map(|(r, n)| (n, y0 + (r * spacing) as u16))
                .collect(),
            hidden,
            depth,
        });
    }
    Geom {
        graph_panel,
        side,
        header_y,
        legend_y,
        rows: (top, h),
        label_w,
        gap,
        columns,
    }
}

pub fn hit(_app: &App, run: &RunAnalysis, body: Rect, x: u16, y: u16) -> Option<Hit> {
    let g = run.graph.as_ref()?;
    let geom = geom(g, body);
    geom.columns.iter().find_map(|col| {
        col.spots
            .iter()
            .find(|&&(_, sy)| sy == y && x >= col.x && x < col.x + geom.label_w)
            .map(|&(n, _)| Hit::Node(n))
    })
}

// Line ends of a box-drawing cell.
const UP: u8 = 1;
const DOWN: u8 = 2;
const LEFT: u8 = 4;
const RIGHT: u8 = 8;

fn box_char(bits: u8) -> char {
    match bits {
        b if b == UP | DOWN => '│',
        b if b == LEFT | RIGHT || b == LEFT || b == RIGHT => '─',
        b if b == LEFT | DOWN => '┐',
        b if b == LEFT | UP => '┘',
        b if b == RIGHT | DOWN => '┌',
        b if b == RIGHT | UP => '└',
        b if b == LEFT | RIGHT | DOWN => '┬',
        b if b == LEFT | RIGHT | UP => '┴',
        b if b == UP | DOWN | RIGHT => '├',
        b if b == UP | DOWN | LEFT => '┤',
        b if b == UP | DOWN | LEFT | RIGHT => '┼',
        _ => '│',
    }
}

/// The cells of every drawn edge with their line ends, and the number of edges not drawn
/// (within a column, skipping columns, or to a node left out).
fn edge_cells(g: &GraphAnalysis, geom: &Geom, focus: Option<usize>) -> (Cells, usize) {
    let mut cells = Cells::default();
    let mut not_drawn = 0;
    let lanes = geom.gap.saturating_sub(1).max(1);
    for &[a, b] in &g.edges {
        let (Some((ca, xa, ya)), Some((cb, xb, yb))) = (geom.spot(a), geom.spot(b)) else {
            not_drawn += 1;
            continue;
        };
        let adjacent = cb == ca + 1 && geom.columns[cb].depth.is_some();
        if !adjacent {
            not_drawn += 1;
            continue;
        }
        let rank = geom.columns[ca]
            .spots
            .iter()
            .position(|&(n, _)| n == a)
            .unwrap_or(0) as u16;
        let x0 = xa + geom.label_w;
        let x1 = xb.saturating_sub(1).max(x0);
        let xm = (x0 + rank % lanes).min(x1);
        let hot = focus.is_some_and(|f| f == a || f == b);
        let mut path = Vec::new();
        for x in x0..=xm {
            path.push((x, ya));
        }
        let (lo, hi) = (ya.min(yb), ya.max(yb));
        let vertical: Vec<u16> = if yb >= ya {
            (lo..=hi).collect()
        } else {
            (lo..=hi).rev().collect()
        };
        path.extend(vertical.into_iter().skip(1).map(|y| (xm, y)));
        path.extend((xm + 1..=x1).map(|x| (x, yb)));
        cells.add(path[0], LEFT, hot);
        cells.add(*path.last().expect("a path"), RIGHT, hot);
        for w in path.windows(2) {
            let ((x, y), (nx, ny)) = (w[0], w[1]);
            let (here, there) = if nx > x {
                (RIGHT, LEFT)
            } else if ny > y {
                (DOWN, UP)
            } else {
                (UP, DOWN)
            };
            cells.add(w[0], here, hot);
            cells.add(w[1], there, hot);
        }
    }
    (cells, not_drawn)
}

#[derive(Default)]
struct Cells {
    bits: HashMap<(u16, u16), u8>,
    hot: HashSet<(u16, u16)>,
}

impl Cells {
    fn add(&mut self, at: (u16, u16), bits: u8, hot: bool) {
        *self.bits.entry(at).or_default() |= bits;
        if hot {
            self.hot.insert(at);
        }
    }
}

/// A node's label in `w` columns: the candidate mark, the name, and the percentage when it
/// fits.
fn node_text(name: &str, p: f32, candidate: bool, w: usize) -> String {
    let mark = if candidate { CANDIDATE_MARK } else { "" };
    let full = format!("{mark}{name} {:.0}%", p * 100.0);
    if width(&full) <= w {
        pad(&full, w)
    } else {
        pad(&format!("{mark}{name}"), w)
    }
}

pub fn render(app: &App, run: &RunAnalysis, body: Rect, frame: &mut Frame) {
    let Some(g) = run.graph.as_ref().filter(|g| !g.nodes.is_empty()) else {
        let inner = panel(frame, body, Line::from(" Graph ").bold());
        let y = inner.y + inner.height.saturating_sub(1) / 2;
        frame.render_widget(
            Paragraph::new(NO_GRAPH)
                .alignment(Alignment::Center)
                .wrap(Wrap { trim: true }),
            Rect::new(inner.x, y, inner.width, inner.height - (y - inner.y)),
        );
        return;
    };
    let geom = geom(g, body);
    let step = graph_step(app, run, g);
    let layer = graph_layer(app, g);
    let last = g
        .steps
        .first()
        .map_or(0, |s| s.probs.len().saturating_sub(1));
    let label = g.steps.get(step).map_or("", |s| s.label.as_str());
    let focus = app.graph_node.filter(|&n| n < g.nodes.len());
    panel(
        frame,
        geom.graph_panel,
        Line::from(vec![
            Span::raw(" Graph ").bold(),
            Span::raw(format!("· {label} ")).fg(THOUGHT).bold(),
            Span::raw(format!("· {} ", layer_label(layer, last))).bold(),
            Span::raw("· colour: p of the name's first token ").dark_gray(),
        ]),
    );
    let (cells, not_drawn) = edge_cells(g, &geom, focus);
    let buf = frame.buffer_mut();
    let area = geom.graph_panel;
    let lw = geom.label_w as usize;
    for col in &geom.columns {
        buf.set_stringn(
            col.x,
            geom.header_y,
            fit(&col.header, lw),
            lw,
            Style::default().dark_gray().bold(),
        );
        if col.depth.is_none() {
            for y in geom.rows.0..geom.rows.0 + geom.rows.1 {
                buf.set_string(col.x - 1, y, "┊", Style::default().dark_gray());
            }
        }
    }
    for (&(x, y), &bits) in &cells.bits {
        if x >= area.right().saturating_sub(1) {
            continue;
        }
        let style = if cells.hot.contains(&(x, y)) {
            Style::default().fg(KEY).bold()
        } else {
            Style::default().fg(Color::DarkGray)
        };
        buf.set_string(x, y, box_char(bits).to_string(), style);
    }
    for col in &geom.columns {
        for &(n, y) in &col.spots {
            let node = &g.nodes[n];
            let p = g.probability(step, layer, n);
            let candidate = g.candidates.contains(&n);
            let mut style = heat_style(p);
            if candidate {
                style = style.add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
            }
            if n == g.root || focus == Some(n) {
                style = style.add_modifier(Modifier::BOLD);
            }
            buf.set_stringn(col.x, y, node_text(&node.name, p, candidate, lw), lw, style);
        }
        if col.hidden > 0 {
            buf.set_stringn(
                col.x,
                col.more_y,
                format!("+{} more", col.hidden),
                lw,
                Style::default().dark_gray(),
            );
        }
    }
    // The legend: the colour scale, the marks, what is not drawn.
    let mut legend = vec![Span::raw("0").dark_gray()];
    for &c in SCALE.iter() {
        legend.push(Span::styled(" ", Style::default().bg(Color::Indexed(c))));
    }
    legend.push(Span::raw(" 1 · ").dark_gray());
    legend.push(Span::raw(CANDIDATE_MARK).bold());
    legend.push(Span::raw(" candidate").dark_gray());
    if not_drawn > 0 {
        // Edges within a column (same depth, or between unreachable nodes) or to a node left out.
        legend.push(Span::raw(format!(" · {not_drawn} edges not drawn")).dark_gray());
    }
    let inner = super::inner_of(area);
    buf.set_line(inner.x, geom.legend_y, &Line::from(legend), inner.width);

    match focus {
        Some(n) => render_node(g, n, (step, layer), geom.side, frame),
        None => render_mass(g, (step, layer), geom.side, frame),
    }
}

/// The selected step's mass by depth as bars, then the same mass for every step.
fn render_mass(g: &GraphAnalysis, (step, layer): (usize, usize), area: Rect, frame: &mut Frame) {
    let last = g
        .steps
        .first()
        .map_or(0, |s| s.probs.len().saturating_sub(1));
    let label = g.steps.get(step).map_or("", |s| s.label.as_str());
    let inner = panel(
        frame,
        area,
        Line::from(vec![
            Span::raw(" Mass by depth ").bold(),
            Span::raw(format!("· {label} ")).fg(THOUGHT).bold(),
        ]),
    );
    let w = inner.width as usize;
    // One value per column: depth 0, 1, ..., unreachable, not a node (1 − the rest).
    let masses = |s: usize| {
        let m = g.mass_by_depth(s, layer);
        let mut v = m.by_depth.clone();
        v.push(m.unreachable);
        v.push((1.0 - m.total()).max(0.0));
        v
    };
    let names: Vec<String> = (0..=g.max_depth())
        .map(|d| format!("d{d}"))
        .chain(["unr".to_string(), "none".to_string()])
        .collect();
    let bar_w = w.saturating_sub(5 + 7).max(1);
    let mut lines: Vec<Line> = masses(step)
        .into_iter()
        .zip(&names)
        .map(|(m, name)| {
            Line::from(vec![
                Span::raw(pad(name, 5)).dark_gray(),
                Span::styled(bar(m, bar_w), Style::default().fg(heat(m))),
                Span::raw(format!(" {:>6}", pct(m))),
            ])
        })
        .collect();
    // The table: every step at this layer, scrolled to keep the selected step in view.
    let room = (inner.height as usize).saturating_sub(lines.len() + 2);
    if room > 0 && !g.steps.is_empty() {
        lines.push(Line::from(
            fit(
                &format!("every step, layer {}, %", layer_label(layer, last)),
                w,
            )
            .dark_gray(),
        ));
        let cw = (w.saturating_sub(4) / names.len()).clamp(2, 5);
        let mut header = vec![Span::raw("    ")];
        for name in &names {
            let name = if width(name) < cw {
                name.as_str()
            } else {
                &name[..2]
            };
            header.push(Span::raw(pad(name, cw)).dark_gray());
        }
        lines.push(Line::from(header));
        let first = viewport(step, g.steps.len(), room);
        for (s, gs) in g.steps.iter().enumerate().skip(first).take(room) {
            let mut style = Style::default().fg(THOUGHT);
            if s == step {
                style = style.bold().add_modifier(Modifier::UNDERLINED);
            }
            let mut row = vec![Span::styled(pad(&gs.label, 4), style)];
            for m in masses(s) {
                let text = if cw >= 4 {
                    format!("{:>w$}", (m * 100.0).round() as u32, w = cw - 1)
                } else {
                    " ".repeat(cw - 1)
                };
                row.push(Span::styled(text, heat_style(m)));
                row.push(Span::raw(" "));
            }
            lines.push(Line::from(row));
        }
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// A clicked node: its probability at every step (columns) and layer (rows).
fn render_node(
    g: &GraphAnalysis,
    node: usize,
    (step, layer): (usize, usize),
    area: Rect,
    frame: &mut Frame,
) {
    let n = &g.nodes[node];
    let inner = panel(
        frame,
        area,
        Line::from(vec![
            Span::raw(format!(" {} ", fit(&n.name, 10))).bold(),
            Span::raw("· click again closes").dark_gray(),
        ]),
    );
    let mut what = match n.depth {
        Some(0) => "root".to_string(),
        Some(d) => format!("depth {d}"),
        None => "unreachable".to_string(),
    };
    if g.candidates.contains(&node) {
        what.push_str(" · candidate");
    }
    let [info, grid_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::raw(what),
            Span::raw(" · p per step, layer").dark_gray(),
        ])),
        info,
    );
    let rows = g.steps.first().map_or(0, |s| s.probs.len());
    if rows == 0 {
        return;
    }
    let last = rows - 1;
    let grid = GridGeom::new(
        grid_area,
        5,
        1,
        (6, 1),
        (rows, g.steps.len()),
        (layer, step),
    );
    let row_label = |l: usize| Line::styled(layer_label(l, last), Style::default().dark_gray());
    let col_label = |c: usize| Span::styled(g.steps[c].label.clone(), Style::default().fg(THOUGHT));
    let cell = |l: usize, c: usize| {
        let p = g.probability(c, l, node);
        HeatCell::value(pct(p), p)
    };
    frame.render_widget(
        Heatmap {
            geom: grid,
            row_label: &row_label,
            col_label: &col_label,
            cell: &cell,
            selected: Some((layer, step)),
        },
        grid_area,
    );
}
