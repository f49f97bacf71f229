//! Rendering: `render(&App, &mut Frame)`, pure in the state. The same layout functions serve
//! drawing and mouse hit-testing, so a click lands on what is drawn.

mod attention;
mod compare;
mod graph;
mod heads;
mod layers;
mod lens;

pub use graph::{CANDIDATE_MARK, NO_GRAPH};
pub use lens::layer_label as lens_row_label;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, LineGauge, Paragraph, Row, Table, Wrap};

use super::app::{App, Hit, ImportanceState, Overlay};
use super::keymap::{BINDINGS, hints};
use super::tab::Tab;
use super::widgets::{self, ANSWER, KEY, PROMPT, SCALE, THOUGHT, fit, pct, width};
use crate::analysis::run::RunAnalysis;
use crate::model::Family;
use crate::thought::StepKind;
use crate::thought::{ThoughtCount, ThoughtMode};

/// The smallest terminal the layout needs.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// The screen's parts.
#[derive(Debug, Clone, Copy)]
pub struct Areas {
    pub header: Rect,
    pub timeline: Rect,
    pub tabs: Rect,
    pub body: Rect,
    pub status: Rect,
}

pub fn areas(area: Rect) -> Areas {
    let [header, timeline, tabs, body, status] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(2),
    ])
    .areas(area);
    Areas {
        header,
        timeline,
        tabs,
        body,
        status,
    }
}

fn too_small(area: Rect) -> bool {
    area.width < MIN_WIDTH || area.height < MIN_HEIGHT
}

pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if too_small(area) {
        render_too_small(area, frame);
        return;
    }
    if app.model.is_none() {
        render_loading(app, area, frame);
        return;
    }
    let a = areas(area);
    render_header(app, a.header, frame);
    match &app.overlay {
        Overlay::Input(_) | Overlay::PatchPrompt(_) | Overlay::SaveAs(_) => {
            render_input(app, a.timeline, frame)
        }
        _ => render_timeline(app, a.timeline, frame),
    }
    render_tabs(app, a.tabs, frame);
    match &app.run {
        None => {
            let msg = if app.running {
                "running the first computation…"
            } else {
                "no result yet"
            };
            frame.render_widget(
                Paragraph::new(msg).alignment(Alignment::Center).dim(),
                a.body,
            );
        }
        Some(run) => match app.tab {
            Tab::Lens => lens::render(app, run, a.body, frame),
            Tab::Layers => layers::render(app, run, a.body, frame),
            Tab::Heads => heads::render(app, a.body, frame),
            Tab::Attention => attention::render(app, run, a.body, frame),
            Tab::Compare => compare::render(app, run, a.body, frame),
            Tab::Graph => graph::render(app, run, a.body, frame),
        },
    }
    render_status(app, a.status, frame);
    if matches!(app.overlay, Overlay::Help) {
        render_help(area, frame);
    }
}

/// What is under a screen position, for mouse clicks.
pub fn hit_test(app: &App, x: u16, y: u16) -> Option<Hit> {
    let area = Rect::new(0, 0, app.size.0, app.size.1);
    if too_small(area) || app.model.is_none() {
        return None;
    }
    let a = areas(area);
    let inside = |r: Rect| x >= r.x && x < r.right() && y >= r.y && y < r.bottom();
    if inside(a.tabs) {
        return tab_spans()
            .into_iter()
            .find(|(x0, w, _)| x >= a.tabs.x + x0 && x < a.tabs.x + x0 + w)
            .map(|(_, _, t)| Hit::Tab(t));
    }
    let run = app.run.as_ref()?;
    if inside(a.timeline) {
        let inner = Block::bordered().inner(a.timeline);
        if y != inner.y {
            return None;
        }
        return timeline_segments(app, run, inner.width)
            .into_iter()
            .find(|s| x >= inner.x + s.x && x < inner.x + s.x + s.width)
            .and_then(|s| s.step)
            .map(Hit::Step);
    }
    if inside(a.body) {
        return match app.tab {
            Tab::Lens => lens::hit(app, run, a.body, x, y),
            Tab::Layers => layers::hit(app, run, a.body, x, y),
            Tab::Heads => heads::hit(app, a.body, x, y),
            Tab::Attention => attention::hit(app, run, a.body, x, y),
            Tab::Compare => None,
            Tab::Graph => graph::hit(app, run, a.body, x, y),
        };
    }
    None
}

fn render_too_small(area: Rect, frame: &mut Frame) {
    let text = Text::from(vec![
        Line::from("Terminal too small".bold()),
        Line::from(format!(
            "coconut-lens needs at least {MIN_WIDTH}×{MIN_HEIGHT}; this one is {}×{}.",
            area.width, area.height
        )),
        Line::from("Enlarge the window, or press q to quit."),
    ]);
    let h = 3.min(area.height);
    let y = area.y + area.height.saturating_sub(h) / 2;
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        Rect::new(area.x, y, area.width, h),
    );
}

fn spinner(app: &App) -> &'static str {
    SPINNER[(app.ticks % SPINNER.len() as u64) as usize]
}

fn render_loading(app: &App, area: Rect, frame: &mut Frame) {
    let secs = app.ticks as f32 / 10.0;
    let text = Text::from(vec![
        Line::from("coconut-lens".bold().cyan()),
        Line::from(""),
        Line::from(format!(
            "{} loading {}  {secs:.1} s",
            spinner(app),
            app.source
        )),
        Line::from(""),
        Line::from("q quits".dim()),
    ]);
    let y = area.y + area.height.saturating_sub(5) / 2;
    frame.render_widget(
        Paragraph::new(text).alignment(Alignment::Center),
        Rect::new(area.x, y, area.width, 5.min(area.height)),
    );
}

pub fn mode_label(mode: &ThoughtMode) -> String {
    match mode {
        ThoughtMode::Soft { top_k, top_p } => format!("soft (top-k {top_k}, top-p {top_p})"),
        m => m.name().to_string(),
    }
}

fn thoughts_label(app: &App) -> String {
    match app.params.thoughts {
        ThoughtCount::Fixed { n } => n.to_string(),
        ThoughtCount::Auto { entropy_stop, max } => {
            let ran = app
                .run
                .as_ref()
                .map_or(String::new(), |r| format!(": {}", r.thought_count()));
            format!("auto (H < {entropy_stop}, ≤ {max}){ran}")
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn render_header(app: &App, area: Rect, frame: &mut Frame) {
    let m = app.model.as_ref().expect("loaded");
    let sep = || Span::raw(" · ").dark_gray();
    let mut line1 = vec![
        Span::raw(" coconut-lens ").bold().cyan(),
        Span::raw("│ ").dark_gray(),
        Span::raw(m.name.clone()).bold(),
        sep(),
    ];
    // Coconut is the default family; a CODI model says so (its thoughts pass a projection).
    if m.family == Family::Codi {
        line1.extend([Span::raw(m.family.label()).bold().magenta(), sep()]);
    }
    line1.extend([
        Span::raw(m.arch.clone()),
        sep(),
        Span::raw(format!("{} layers × {} heads", m.layers, m.heads)),
        sep(),
        Span::raw(format!("d {}", m.d_model)),
        sep(),
        Span::raw(m.device.clone()),
        sep(),
        Span::raw(m.dtype.clone()),
    ]);
    let line1 = Line::from(line1);
    let iv = &app.params.interventions;
    let ablated_style = if iv.is_empty() {
        Style::default()
    } else {
        Style::default().fg(widgets::ABLATED).bold()
    };
    let last = match &app.run {
        Some(_) if app.running => "running…".to_string(),
        Some(r) if !r.params.intervened() && r.compute_ms < 0.5 => {
            "last run: the cached baseline".to_string()
        }
        Some(r) => format!("last run {:.0} ms", r.compute_ms),
        None => "running…".to_string(),
    };
    let last = if app.read_only.is_some() {
        Span::raw("READ-ONLY: saved results, model not available")
            .fg(Color::Yellow)
            .bold()
    } else {
        Span::raw(last)
    };
    let mut line2 = vec![
        Span::raw(" mode ").dark_gray(),
        Span::raw(mode_label(&app.params.mode)).bold(),
        sep(),
        Span::raw("thoughts ").dark_gray(),
        Span::raw(thoughts_label(app)).bold(),
        sep(),
    ];
    // Sampled answers say so; greedy ones (the default) say nothing.
    if !app.params.sampling.is_greedy() {
        line2.extend([
            Span::raw("sampled ").dark_gray(),
            Span::raw(app.params.sampling.label()).bold(),
            sep(),
        ]);
    }
    line2.extend([
        Span::raw("ablated ").dark_gray(),
        Span::styled(
            format!(
                "{}, {}",
                plural(iv.ablated_heads.len(), "head", "heads"),
                plural(iv.skipped_layers.len(), "layer", "layers")
            ),
            ablated_style,
        ),
        sep(),
        last,
    ]);
    let line2 = Line::from(line2);
    frame.render_widget(Paragraph::new(vec![line1, line2]), area);
}

/// A piece of the timeline.
#[derive(Debug, Clone)]
pub struct Segment {
    pub x: u16,
    pub width: u16,
    pub text: String,
    pub style: Style,
    pub step: Option<usize>,
}

/// The timeline's pieces, windowed around the selected step to fit `avail` columns.
pub fn timeline_segments(app: &App, run: &RunAnalysis, avail: u16) -> Vec<Segment> {
    let mut segs: Vec<(String, Style, Option<usize>)> = Vec::new();
    let first_prompt = run.steps.iter().position(|s| s.kind == StepKind::Prompt);
    if first_prompt.is_some_and(|i| run.steps[i].position > 0) {
        segs.push(("…".into(), Style::default().fg(PROMPT), None));
    }
    let (start, end) = match run.model.family {
        Family::Coconut => ("<|start-latent|>", "<|end-latent|>"),
        Family::Codi => (crate::model::codi::BOT, crate::model::codi::EOT),
    };
    let mut in_thoughts = false;
    for (i, s) in run.steps.iter().enumerate() {
        match s.kind {
            StepKind::Prompt => segs.push((s.label.clone(), Style::default().fg(PROMPT), Some(i))),
            StepKind::Thought(k) => {
                if !in_thoughts && run.markers {
                    segs.push((start.into(), Style::default().dark_gray(), None));
                }
                in_thoughts = true;
                let (tok, p) = s
                    .output()
                    .map_or((String::new(), 0.0), |t| (t.text.clone(), t.prob));
                segs.push((
                    format!("T{k} {} {}", fit(&tok, 12), pct(p)),
                    Style::default().fg(THOUGHT),
                    Some(i),
                ));
            }
            StepKind::Answer(a) => {
                if a == 0 {
                    if !in_thoughts && run.markers {
                        segs.push((start.into(), Style::default().dark_gray(), None));
                    }
                    if run.markers {
                        segs.push((end.into(), Style::default().dark_gray(), None));
                    }
                    segs.push(("→".into(), Style::default().dark_gray(), None));
                }
                let text = run
                    .summary
                    .answer
                    .get(a)
                    .map_or_else(|| format!("A{}", a + 1), |t| t.text.clone());
                segs.push((text, Style::default().fg(ANSWER), Some(i)));
            }
        }
    }
    // A v1 session file has the first answer step only: its later answer tokens, not selectable.
    let answer_steps = run
        .steps
        .iter()
        .filter(|s| matches!(s.kind, StepKind::Answer(_)))
        .count();
    if answer_steps > 0 {
        for t in run.summary.answer.iter().skip(answer_steps) {
            segs.push((t.text.clone(), Style::default().fg(ANSWER).dim(), None));
        }
    }
    for (text, style, step) in segs.iter_mut() {
        if *step == Some(app.step) {
            *style = style.add_modifier(Modifier::REVERSED | Modifier::BOLD);
        }
        *text = fit(text, 24);
    }
    // Widths with one space between segments; window around the selection.
    let widths: Vec<u16> = segs.iter().map(|(t, _, _)| width(t) as u16).collect();
    let sel = segs
        .iter()
        .position(|(_, _, s)| *s == Some(app.step))
        .unwrap_or(0);
    let (mut lo, mut hi) = (sel, sel + 1);
    let span = |lo: usize, hi: usize| -> u16 {
        widths[lo..hi].iter().sum::<u16>() + (hi - lo) as u16 - 1 + 4
    };
    loop {
        let mut grew = false;
        if hi < segs.len() && span(lo, hi + 1) <= avail {
            hi += 1;
            grew = true;
        }
        if lo > 0 && span(lo - 1, hi) <= avail {
            lo -= 1;
            grew = true;
        }
        if !grew {
            break;
        }
    }
    let mut out = Vec::new();
    let mut x = 0u16;
    if lo > 0 {
        out.push(Segment {
            x,
            width: 1,
            text: "‹".into(),
            style: Style::default().dark_gray(),
            step: None,
        });
        x += 2;
    }
    for i in lo..hi {
        let (text, style, step) = &segs[i];
        out.push(Segment {
            x,
            width: widths[i],
            text: text.clone(),
            style: *style,
            step: *step,
        });
        x += widths[i] + 1;
    }
    if hi < segs.len() {
        out.push(Segment {
            x,
            width: 1,
            text: "›".into(),
            style: Style::default().dark_gray(),
            step: None,
        });
    }
    out
}

fn render_timeline(app: &App, area: Rect, frame: &mut Frame) {
    let block = Block::bordered()
        .title(" Timeline ")
        .border_style(Style::default().dark_gray());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(run) = &app.run else {
        return;
    };
    let buf = frame.buffer_mut();
    for s in timeline_segments(app, run, inner.width) {
        if s.x >= inner.width {
            continue;
        }
        buf.set_stringn(
            inner.x + s.x,
            inner.y,
            &s.text,
            (inner.width - s.x) as usize,
            s.style,
        );
    }
}

fn render_input(app: &App, area: Rect, frame: &mut Frame) {
    let (input, title) = match &app.overlay {
        Overlay::Input(input) => (input, " Prompt · Enter runs · Esc cancels "),
        Overlay::PatchPrompt(input) => (
            input,
            " Second prompt (patch source; same length for residual patches) · Enter sets · empty clears · Esc cancels ",
        ),
        Overlay::SaveAs(input) => (
            input,
            " Save session as (in sessions/) · Enter saves · empty: sessions/<timestamp>-<slug>.json · Esc cancels ",
        ),
        _ => return,
    };
    let block = Block::bordered()
        .title(title)
        .border_style(Style::default().fg(KEY));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let scroll = input.visual_scroll(inner.width.saturating_sub(1) as usize);
    frame.render_widget(
        Paragraph::new(input.value()).scroll((0, scroll as u16)),
        inner,
    );
    let cx = (input.visual_cursor().saturating_sub(scroll)) as u16;
    frame.set_cursor_position((inner.x + cx.min(inner.width.saturating_sub(1)), inner.y));
}

/// Tab titles with their x offsets and widths.
fn tab_spans() -> Vec<(u16, u16, Tab)> {
    let mut x = 1;
    Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let w = width(&format!(" {} {} ", i + 1, t.title())) as u16;
            let out = (x, w, t);
            x += w + 1;
            out
        })
        .collect()
}

fn render_tabs(app: &App, area: Rect, frame: &mut Frame) {
    let buf = frame.buffer_mut();
    for ((x, w, t), i) in tab_spans().into_iter().zip(1..) {
        let style = if t == app.tab {
            Style::default().fg(Color::Black).bg(KEY).bold()
        } else {
            Style::default().fg(Color::Gray)
        };
        if x + w <= area.width {
            buf.set_string(area.x + x, area.y, format!(" {i} {} ", t.title()), style);
        }
    }
}

fn tab_blurb(tab: Tab) -> &'static str {
    match tab {
        Tab::Lens => "logit lens: what every layer predicts at every step",
        Tab::Layers => "how much each layer changes the residual stream",
        Tab::Heads => "which heads matter for the answer; Space ablates one",
        Tab::Attention => "where thoughts and answer look in the prompt",
        Tab::Compare => "baseline against the current run; x intervenes on a thought, S patches",
        Tab::Graph => "the problem's graph by depth, nodes coloured by p; click a node",
    }
}

fn render_status(app: &App, area: Rect, frame: &mut Frame) {
    let [line1, line2] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let mut spans = Vec::new();
    let mut gauge = None;
    if app.running {
        spans.push(Span::raw(format!(" {} running…", spinner(app))).fg(KEY));
    } else if let ImportanceState::Running {
        method,
        done,
        total,
        ..
    } = app.importance
    {
        let unit = if method == crate::analysis::importance::ImportanceMethod::Ablation {
            " heads + layers"
        } else {
            ""
        };
        spans.push(
            Span::raw(format!(
                " {} head importance ({}) {done}/{total}{unit} · Esc cancels",
                spinner(app),
                method.name()
            ))
            .fg(KEY),
        );
        if total > 0 {
            gauge = Some(done as f64 / total as f64);
        }
    }
    if let Some(s) = &app.status {
        if !spans.is_empty() {
            spans.push(Span::raw("  "));
        }
        if s.error {
            spans.push(
                Span::raw(format!(" error: {}", s.text))
                    .fg(Color::Red)
                    .bold(),
            );
        } else {
            spans.push(Span::raw(format!(" {}", s.text)));
        }
    }
    if spans.is_empty() {
        spans.push(Span::raw(format!(" {}", tab_blurb(app.tab))).dark_gray());
    }
    let line = Line::from(spans);
    // A long error takes the hint line too, until the next change clears it.
    let long_error =
        app.status.as_ref().is_some_and(|s| s.error) && line.width() > line1.width as usize;
    let (text_area, gauge_area) = match gauge {
        Some(_) => {
            let [t, g] =
                Layout::horizontal([Constraint::Min(10), Constraint::Length(24)]).areas(line1);
            (t, Some(g))
        }
        None if long_error => (area, None),
        None => (line1, None),
    };
    frame.render_widget(Paragraph::new(line).wrap(Wrap { trim: false }), text_area);
    if let (Some(ratio), Some(g)) = (gauge, gauge_area) {
        frame.render_widget(
            LineGauge::default()
                .ratio(ratio.clamp(0.0, 1.0))
                .filled_style(Style::default().fg(KEY))
                .unfilled_style(Style::default().dark_gray()),
            g,
        );
    }
    if long_error && gauge.is_none() {
        return;
    }
    let spans = |pinned: bool| -> Vec<Span<'static>> {
        let mut out = vec![Span::raw(" ")];
        for h in hints(app.context())
            .into_iter()
            .filter(|h| h.pinned == pinned)
        {
            out.push(Span::raw(h.keys).fg(KEY).bold());
            out.push(Span::raw(format!(" {}  ", h.text)).dark_gray());
        }
        out
    };
    let right = Line::from(spans(true));
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Min(1), Constraint::Length(right.width() as u16)])
            .areas(line2);
    frame.render_widget(Paragraph::new(Line::from(spans(false))), left_area);
    frame.render_widget(Paragraph::new(right), right_area);
}

/// The help popup, from the key table.
fn render_help(area: Rect, frame: &mut Frame) {
    let rows: Vec<Row> = BINDINGS
        .iter()
        .map(|b| {
            Row::new(vec![
                Cell::from(b.keys_label()).style(Style::default().fg(KEY).bold()),
                Cell::from(b.scope.title()).style(Style::default().dark_gray()),
                Cell::from(b.help),
            ])
        })
        .collect();
    let n = rows.len() as u16;
    let w = area.width.saturating_sub(4).min(110);
    let h = (n + 6).min(area.height.saturating_sub(2));
    let popup = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    frame.render_widget(Clear, popup);
    let block = Block::bordered()
        .title(" Keys · ? or Esc closes ")
        .border_style(Style::default().fg(KEY));
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let [table_area, legend] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(2)]).areas(inner);
    let table = Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Length(33),
            Constraint::Min(20),
        ],
    )
    .header(Row::new(vec!["keys", "where", "what"]).style(Style::default().bold().underlined()));
    frame.render_widget(table, table_area);
    let mut scale = vec![Span::raw(" colour scale: low ")];
    for &c in SCALE.iter() {
        scale.push(Span::styled("  ", Style::default().bg(Color::Indexed(c))));
    }
    scale.push(Span::raw(" high (probability, distance, importance)"));
    let marks = Line::from(vec![
        Span::raw(" "),
        Span::styled(
            " × ",
            Style::default().bg(widgets::ABLATED).fg(Color::White),
        ),
        Span::raw(" ablated head   "),
        Span::styled(
            " skip ",
            Style::default().bg(widgets::ABLATED).fg(Color::White),
        ),
        Span::raw(" skipped layer   mouse: click tabs, steps, cells and graph nodes"),
    ]);
    frame.render_widget(Paragraph::new(vec![Line::from(scale), marks]), legend);
}

/// A titled panel; returns its inner area.
fn panel(frame: &mut Frame, area: Rect, title: impl Into<Line<'static>>) -> Rect {
    let block = Block::bordered()
        .title(title)
        .border_style(Style::default().dark_gray());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    inner
}

fn inner_of(area: Rect) -> Rect {
    Block::bordered().inner(area)
}

/// The label of a step, coloured by its kind.
fn step_span(run: &RunAnalysis, i: usize) -> Span<'static> {
    let s = &run.steps[i];
    let color = match s.kind {
        StepKind::Prompt => PROMPT,
        StepKind::Thought(_) => THOUGHT,
        StepKind::Answer(_) => ANSWER,
    };
    Span::styled(s.label.clone(), Style::default().fg(color))
}
