//! Publication plots of a session, PNG and SVG, drawn with plotters.
//!
//! Text uses DejaVu Sans, compiled into the binary from `assets/fonts` (no system fonts are
//! looked up). Heatmaps use viridis, a perceptually uniform colour map, with a colour bar.
//! Every plot has a title, axis labels, and a caption naming the model and the prompt.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Context, Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::analysis::importance::ImportanceMethod;
use crate::analysis::run::{RunAnalysis, Step};
use crate::session::Session;
use crate::thought::StepKind;

pub(crate) const FONT: &str = "sans-serif";
static FONTS: Once = Once::new();

pub(crate) fn register_fonts() {
    FONTS.call_once(|| {
        // The bytes are valid TrueType files shipped with the crate.
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../../assets/fonts/DejaVuSans.ttf"),
        );
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Bold,
            include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf"),
        );
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Svg => "svg",
        }
    }

    /// `png,svg` → both.
    pub fn parse_list(s: &str) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for f in s.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let f = match f.to_ascii_lowercase().as_str() {
                "png" => Self::Png,
                "svg" => Self::Svg,
                _ => bail!("unknown plot format \"{f}\" (expected png or svg)"),
            };
            if !out.contains(&f) {
                out.push(f);
            }
        }
        if out.is_empty() {
            bail!("no plot format given (expected png, svg or png,svg)");
        }
        Ok(out)
    }
}

/// The plots of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotKind {
    Lens,
    Angular,
    Heads,
    Trajectories,
    Compare,
    GraphFrontier,
}

impl PlotKind {
    pub const ALL: [PlotKind; 6] = [
        Self::Lens,
        Self::Angular,
        Self::Heads,
        Self::Trajectories,
        Self::Compare,
        Self::GraphFrontier,
    ];

    /// Whether `session` holds what the plot draws (head importance; a problem graph).
    pub fn applies(self, session: &Session) -> bool {
        match self {
            Self::Heads => session.importance.is_some(),
            Self::GraphFrontier => session.current.graph.is_some(),
            _ => true,
        }
    }

    pub fn file_stem(self) -> &'static str {
        match self {
            Self::Lens => "logit-lens",
            Self::Angular => "angular-distance",
            Self::Heads => "head-importance",
            Self::Trajectories => "thought-trajectories",
            Self::Compare => "baseline-vs-ablated",
            Self::GraphFrontier => "graph-frontier",
        }
    }
}

/// Writes every plot of `session` into `dir` in each format; returns the files written.
/// The head-importance plot is skipped when the session has no importance values, the
/// graph-frontier plot when its run has no problem graph.
pub fn export(session: &Session, dir: &Path, formats: &[Format]) -> Result<Vec<PathBuf>> {
    register_fonts();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for kind in PlotKind::ALL {
        if !kind.applies(session) {
            continue;
        }
        for &format in formats {
            let path = dir.join(format!("{}.{}", kind.file_stem(), format.ext()));
            render(session, kind, format, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Renders one plot to `path` (through a temporary file, renamed into place).
pub fn render(session: &Session, kind: PlotKind, format: Format, path: &Path) -> Result<()> {
    register_fonts();
    let size = plot_size(session, kind);
    // The image encoder picks the format from the extension, which the temporary file keeps.
    crate::files::replace_with(path, true, |tmp| match format {
        Format::Png => {
            let root = BitMapBackend::new(tmp, size).into_drawing_area();
            draw(session, kind, &root).and_then(|_| root.present().map_err(plot_err))
        }
        Format::Svg => {
            let root = SVGBackend::new(tmp, size).into_drawing_area();
            draw(session, kind, &root).and_then(|_| root.present().map_err(plot_err))
        }
    })
}

pub(crate) fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

const CELL_W: u32 = 92;
const CELL_H: u32 = 30;

/// Pixel size of a plot (SVG user units).
pub fn plot_size(s: &Session, kind: PlotKind) -> (u32, u32) {
    let layers = s.current.model.layers as u32;
    let steps = steps_of(&s.current).len() as u32;
    match kind {
        PlotKind::Lens => (
            (260 + steps * CELL_W + 150).max(900),
            200 + (layers + 1) * CELL_H,
        ),
        PlotKind::Angular => (
            (260 + steps * CELL_W + 150 + 520).max(1200),
            (200 + layers * CELL_H).max(560),
        ),
        PlotKind::Heads => {
            let heads = s.current.model.heads as u32;
            ((260 + heads * 64 + 150).max(800), 200 + layers * CELL_H)
        }
        PlotKind::Trajectories => (1000, 620),
        PlotKind::Compare => ((260 + steps * 110).max(1000), 640),
        PlotKind::GraphFrontier => {
            let n = s
                .current
                .graph
                .as_ref()
                .map_or(1, |g| frontier_steps(g).len()) as u32;
            let (cols, rows) = (n.clamp(1, 3), n.max(1).div_ceil(3));
            ((cols * 440 + 150).max(900), rows * 330 + 110)
        }
    }
}

/// The steps plotted: each thought, then the answer's first position.
fn steps_of(run: &RunAnalysis) -> Vec<(String, &Step)> {
    run.steps
        .iter()
        .filter_map(|s| match s.kind {
            StepKind::Thought(k) => Some((format!("T{k}"), s)),
            StepKind::Answer(0) => Some(("answer".to_string(), s)),
            _ => None,
        })
        .collect()
}

/// The caption line: the model source, then the prompt cut (with `…`) so that `width(line)`
/// fits in `room` pixels. A long model path is shortened from the left first, so that at
/// least the start of the prompt is always shown.
fn caption(s: &Session, room: u32, width: impl Fn(&str) -> u32) -> String {
    const PROMPT_CHARS_KEPT: usize = 24;
    let m = &s.current.model;
    let head_of = |model: &str| {
        format!(
            "{model} ({}, {} layers × {} heads, d={}) · mode {} · {} thoughts · prompt: ",
            m.arch.label(),
            m.layers,
            m.heads,
            m.d_model,
            s.params().mode.name(),
            s.current.thought_count(),
        )
    };
    let prompt: Vec<char> = printable(&s.params().prompt).chars().collect();
    let line = |head: &str, n: usize| {
        let mut l = head.to_string();
        l.extend(&prompt[..n]);
        if n < prompt.len() {
            l.push('…');
        }
        l
    };
    let kept = prompt.len().min(PROMPT_CHARS_KEPT);
    let model = printable(&s.inputs.model);
    let head = model_labels(&model)
        .into_iter()
        .map(|label| head_of(&label))
        .find(|head| width(&line(head, kept)) <= room)
        .unwrap_or_else(|| head_of(model_labels(&model).last().expect("never empty")));
    // The longest prefix of the prompt that fits (width grows with the prefix).
    let (mut lo, mut hi) = (0, prompt.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if width(&line(&head, mid)) <= room {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    line(&head, lo)
}

/// Ways to name a model source, longest first: as given, then a path cut to its last two
/// components and to its last one (`…/fixtures/gpt2-tiny`, `…/gpt2-tiny`).
fn model_labels(model: &str) -> Vec<String> {
    let parts: Vec<&str> = model.split('/').filter(|p| !p.is_empty()).collect();
    let mut labels = vec![model.to_string()];
    for keep in [2, 1] {
        if parts.len() > keep {
            labels.push(format!("…/{}", parts[parts.len() - keep..].join("/")));
        }
    }
    labels
}

fn draw<DB: DrawingBackend>(
    s: &Session,
    kind: PlotKind,
    root: &DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_err)?;
    let (w, h) = root.dim_in_pixel();
    let (body, foot) = root.split_vertically(h - 36);
    let style = (FONT, 13).into_font().color(&RGBColor(80, 80, 80));
    let width = |text: &str| {
        foot.estimate_text_size(text, &style)
            .map_or(u32::MAX, |(w, _)| w)
    };
    foot.draw(&Text::new(
        caption(s, w.saturating_sub(32), width),
        (16, 10),
        style.clone(),
    ))
    .map_err(plot_err)?;
    match kind {
        PlotKind::Lens => draw_lens(s, &body),
        PlotKind::Angular => draw_angular(s, &body),
        PlotKind::Heads => draw_heads(s, &body),
        PlotKind::Trajectories => draw_trajectories(s, &body),
        PlotKind::Compare => draw_compare(s, &body),
        PlotKind::GraphFrontier => draw_graph_frontier(s, &body),
    }
}

/// A labelled heatmap with a colour bar.
struct Grid {
    title: String,
    x_desc: String,
    y_desc: String,
    x_labels: Vec<String>,
    /// Bottom row first.
    y_labels: Vec<String>,
    /// `[row][col]`; NaN leaves the cell blank.
    values: Vec<Vec<f64>>,
    texts: Vec<Vec<String>>,
    /// Cells crossed out (row, col).
    marks: Vec<(usize, usize)>,
    range: (f64, f64),
    bar_desc: String,
}

/// Two significant figures, in scientific notation below 0.01; blank for NaN.
fn short_number(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else if v == 0.0 {
        "0".to_string()
    } else if v.abs() < 0.01 {
        format!("{v:.1e}")
    } else {
        format!("{v:.2}")
    }
}

fn viridis(v: f64, (lo, hi): (f64, f64)) -> RGBColor {
    let t = if hi > lo {
        ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
    } else {
        0.0
    };
    ViridisRGB::get_color(t)
}

/// Black on the light end of viridis, white on the dark end.
fn text_on(v: f64, (lo, hi): (f64, f64)) -> RGBColor {
    let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
    if t > 0.55 { BLACK } else { WHITE }
}

/// Text safe to draw and to put in SVG: newlines as ⏎, other control characters as their
/// Unicode control pictures (XML forbids most of them).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => '⏎',
            '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('?'),
            '\u{7f}' => '␡',
            c if c.is_control() => '�',
            c => c,
        })
        .collect()
}

fn fit(text: &str, max_chars: usize) -> String {
    let clean = printable(text);
    if clean.chars().count() <= max_chars {
        clean
    } else {
        let mut t: String = clean.chars().take(max_chars.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn draw_grid<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, g: &Grid) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    let (main, bar) = area.split_horizontally(w.saturating_sub(130));
    let (cols, rows) = (g.x_labels.len(), g.y_labels.len());
    let mut chart = ChartBuilder::on(&main)
        .caption(&g.title, (FONT, 22).into_font().style(FontStyle::Bold))
        .margin(14)
        .x_label_area_size(56)
        .y_label_area_size(120)
        .build_cartesian_2d(
            (0..cols.saturating_sub(1)).into_segmented(),
            (0..rows.saturating_sub(1)).into_segmented(),
        )
        .map_err(plot_err)?;
    let xl = g.x_labels.clone();
    let yl = g.y_labels.clone();
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(cols + 1)
        .y_labels(rows + 1)
        .x_label_formatter(&move |v| match v {
            SegmentValue::CenterOf(i) => xl.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&move |v| match v {
            SegmentValue::CenterOf(i) => yl.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc(&g.x_desc)
        .y_desc(&g.y_desc)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(plot_err)?;
    let cell_px = main.dim_in_pixel().0.saturating_sub(160) / cols.max(1) as u32;
    let chars = ((cell_px as usize).saturating_sub(8) / 8).max(3);
    for (r, row) in g.values.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            if v.is_nan() {
                continue;
            }
            let rect = Rectangle::new(
                [
                    (SegmentValue::Exact(c), SegmentValue::Exact(r)),
                    (SegmentValue::Exact(c + 1), SegmentValue::Exact(r + 1)),
                ],
                viridis(v, g.range).filled(),
            );
            chart.draw_series(std::iter::once(rect)).map_err(plot_err)?;
            let text = g
                .texts
                .get(r)
                .and_then(|t| t.get(c))
                .cloned()
                .unwrap_or_default();
            if !text.is_empty() {
                let ink = text_on(v, g.range);
                let style = TextStyle::from((FONT, 13).into_font())
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart
                    .draw_series(std::iter::once(Text::new(
                        fit(&text, chars),
                        (SegmentValue::CenterOf(c), SegmentValue::CenterOf(r)),
                        style,
                    )))
                    .map_err(plot_err)?;
            }
        }
    }
    for &(r, c) in &g.marks {
        let red = RGBColor(220, 30, 30).stroke_width(3);
        let corners = |a: usize, b: usize| (SegmentValue::Exact(a), SegmentValue::Exact(b));
        chart
            .draw_series([
                PathElement::new(vec![corners(c, r), corners(c + 1, r + 1)], red),
                PathElement::new(vec![corners(c, r + 1), corners(c + 1, r)], red),
            ])
            .map_err(plot_err)?;
    }
    draw_colour_bar(&bar, g.range, &g.bar_desc, &|v| format!("{v:.2}"))
}

/// `label` writes a tick's value (the bar's own coordinate).
fn draw_colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    range: (f64, f64),
    desc: &str,
    label: &dyn Fn(&f64) -> String,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (lo, hi) = if range.1 > range.0 {
        range
    } else {
        (range.0, range.0 + 1.0)
    };
    let mut chart = ChartBuilder::on(area)
        .margin_top(60)
        .margin_bottom(70)
        .margin_right(10)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..1f64, lo..hi)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_label_formatter(label)
        .y_desc(desc)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(plot_err)?;
    let n = 120;
    chart
        .draw_series((0..n).map(|i| {
            let a = lo + (hi - lo) * i as f64 / n as f64;
            let b = lo + (hi - lo) * (i + 1) as f64 / n as f64;
            Rectangle::new([(0.0, a), (1.0, b)], viridis(a, (lo, hi)).filled())
        }))
        .map_err(plot_err)?;
    Ok(())
}

fn top1_prob(step: &Step, layer: usize) -> (String, f64) {
    step.lens
        .get(layer)
        .and_then(|l| l.top.first())
        .map_or((String::new(), f64::NAN), |t| {
            (t.text.clone(), f64::from(t.prob))
        })
}

fn prob_of(step: &Step, layer: usize, id: u32) -> f64 {
    step.lens
        .get(layer)
        .and_then(|l| l.top.iter().find(|t| t.id == id))
        .map_or(0.0, |t| f64::from(t.prob))
}

fn draw_lens<DB: DrawingBackend>(s: &Session, area: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let steps = steps_of(&s.current);
    let layers = s.current.model.layers;
    let mut values = Vec::new();
    let mut texts = Vec::new();
    for l in 0..=layers {
        let (t, v): (Vec<String>, Vec<f64>) = steps.iter().map(|(_, st)| top1_prob(st, l)).unzip();
        values.push(v);
        texts.push(t);
    }
    draw_grid(
        area,
        &Grid {
            title: "Logit lens: top token of softmax(W_U · norm(x^l)) per layer and step".into(),
            x_desc: "step (continuous thoughts, then the answer's first position)".into(),
            y_desc: "layer l (0 = embeddings)".into(),
            x_labels: steps.iter().map(|(n, _)| n.clone()).collect(),
            y_labels: (0..=layers).map(|l| l.to_string()).collect(),
            values,
            texts,
            marks: Vec::new(),
            range: (0.0, 1.0),
            bar_desc: "top-1 probability".into(),
        },
    )
}

fn draw_angular<DB: DrawingBackend>(s: &Session, area: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let steps = steps_of(&s.current);
    let layers = s.current.model.layers;
    let (w, _) = area.dim_in_pixel();
    let (left, right) = area.split_horizontally(w.saturating_sub(520));
    let mut values = vec![vec![f64::NAN; steps.len()]; layers];
    let mut hi = 0f64;
    for (c, (_, st)) in steps.iter().enumerate() {
        for (l, &d) in st.angular.iter().enumerate().take(layers) {
            values[l][c] = f64::from(d);
            hi = hi.max(f64::from(d));
        }
    }
    let texts = values
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| {
                    if v.is_nan() {
                        String::new()
                    } else {
                        format!("{v:.3}")
                    }
                })
                .collect()
        })
        .collect();
    draw_grid(
        &left,
        &Grid {
            title: "Angular distance d(x^l, x^(l+1)) = arccos(cos)/π".into(),
            x_desc: "step".into(),
            y_desc: "block l (x^l → x^(l+1))".into(),
            x_labels: steps.iter().map(|(n, _)| n.clone()).collect(),
            y_labels: (0..layers).map(|l| format!("{l}→{}", l + 1)).collect(),
            values,
            texts,
            marks: Vec::new(),
            range: (0.0, hi.max(1e-6)),
            bar_desc: "angular distance".into(),
        },
    )?;
    // Gromov et al.'s block rule: for each block size n, the start layer with the smallest
    // mean distance over the thoughts.
    let blocks = &s.current.blocks;
    let top = blocks
        .iter()
        .map(|b| f64::from(b.distance))
        .fold(0.0, f64::max)
        .max(1e-6)
        * 1.2;
    let n_max = blocks.iter().map(|b| b.n).max().unwrap_or(1);
    let mut chart = ChartBuilder::on(&right)
        .caption(
            "Prunable block per size n (Gromov et al.)",
            (FONT, 18).into_font().style(FontStyle::Bold),
        )
        .margin(14)
        .x_label_area_size(56)
        .y_label_area_size(70)
        .build_cartesian_2d((1..n_max).into_segmented(), 0f64..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .y_labels(6)
        .x_desc("block size n (layers)")
        .y_desc("min mean d(x^l, x^(l+n))")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(plot_err)?;
    let colour = ViridisRGB::get_color(0.3);
    chart
        .draw_series(blocks.iter().map(|b| {
            Rectangle::new(
                [
                    (SegmentValue::Exact(b.n), 0.0),
                    (SegmentValue::Exact(b.n + 1), f64::from(b.distance)),
                ],
                colour.filled(),
            )
        }))
        .map_err(plot_err)?;
    let label_style =
        TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart
        .draw_series(blocks.iter().filter(|b| b.n <= 16).map(|b| {
            Text::new(
                format!("l*={}", b.start),
                (
                    SegmentValue::CenterOf(b.n),
                    f64::from(b.distance) + top * 0.01,
                ),
                label_style.clone(),
            )
        }))
        .map_err(plot_err)?;
    Ok(())
}

fn draw_heads<DB: DrawingBackend>(s: &Session, area: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let hi = s
        .importance
        .as_ref()
        .context("the session has no head importance")?;
    let (layers, heads) = (s.current.model.layers, s.current.model.heads);
    let max = hi
        .heads
        .iter()
        .flatten()
        .map(|&v| f64::from(v))
        .fold(0.0, f64::max);
    let values: Vec<Vec<f64>> = (0..layers)
        .map(|l| {
            (0..heads)
                .map(|h| {
                    hi.heads
                        .get(l)
                        .and_then(|r| r.get(h))
                        .map_or(f64::NAN, |&v| f64::from(v))
                })
                .collect()
        })
        .collect();
    let texts = values
        .iter()
        .map(|r| r.iter().map(|&v| short_number(v)).collect())
        .collect();
    let ablations = &s.params().interventions;
    let mut marks: Vec<(usize, usize)> = ablations
        .ablated_heads
        .iter()
        .map(|&(l, h)| (l, h))
        .collect();
    for &l in &ablations.skipped_layers {
        marks.extend((0..heads).map(|h| (l, h)));
    }
    let unit = if hi.method == ImportanceMethod::Gradient {
        "|∂L/∂ξ|"
    } else {
        "KL (nats)"
    };
    draw_grid(
        area,
        &Grid {
            title: format!(
                "Head importance ({} at {}; × = ablated)",
                hi.method.name(),
                match hi.step {
                    0 => "the answer's first token".to_string(),
                    k => format!("answer token {k}"),
                }
            ),
            x_desc: "head".into(),
            y_desc: "layer".into(),
            x_labels: (0..heads).map(|h| h.to_string()).collect(),
            y_labels: (0..layers).map(|l| l.to_string()).collect(),
            values,
            texts,
            marks,
            range: (0.0, max.max(1e-9)),
            bar_desc: unit.into(),
        },
    )
}

/// A colour-blind-safe categorical palette (Okabe & Ito 2008).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

fn draw_trajectories<DB: DrawingBackend>(s: &Session, area: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let steps = steps_of(&s.current);
    let last = s.current.model.layers;
    // The leading tokens: the top-1 token of every step, in order of first appearance.
    let mut tokens: Vec<(u32, String)> = Vec::new();
    for (_, st) in &steps {
        if let Some(t) = st.lens.get(last).and_then(|l| l.top.first())
            && !tokens.iter().any(|(id, _)| *id == t.id)
        {
            tokens.push((t.id, t.text.clone()));
        }
    }
    tokens.truncate(PALETTE.len());
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Thought trajectories: probability of the leading tokens (final layer)",
            (FONT, 20).into_font().style(FontStyle::Bold),
        )
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0..steps.len().saturating_sub(1)).into_segmented(),
            0f64..1.3,
        )
        .map_err(plot_err)?;
    let names: Vec<String> = steps.iter().map(|(n, _)| n.clone()).collect();
    chart
        .configure_mesh()
        .x_labels(steps.len() + 1)
        .x_label_formatter(&move |v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .light_line_style(WHITE)
        .y_labels(11)
        .x_desc("step")
        .y_desc("probability (0 where outside the top-k)")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(plot_err)?;
    for (i, (id, text)) in tokens.iter().enumerate() {
        let colour = PALETTE[i];
        let pts: Vec<(SegmentValue<usize>, f64)> = steps
            .iter()
            .enumerate()
            .map(|(c, (_, st))| (SegmentValue::CenterOf(c), prob_of(st, last, *id)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(3)))
            .map_err(plot_err)?
            .label(fit(text, 18))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(3))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 5, colour.filled())))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

fn draw_compare<DB: DrawingBackend>(s: &Session, area: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let base = steps_of(&s.baseline);
    let cur = steps_of(&s.current);
    let last = s.current.model.layers;
    let n = base.len().max(cur.len());
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Baseline vs ablated: answer \"{}\" → \"{}\"",
                fit(s.baseline.summary.answer_text.trim(), 40),
                fit(s.current.summary.answer_text.trim(), 40)
            ),
            (FONT, 20).into_font().style(FontStyle::Bold),
        )
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n as f64, 0f64..1.35)
        .map_err(plot_err)?;
    let names: Vec<String> = (0..n)
        .map(|i| {
            base.get(i)
                .or(cur.get(i))
                .map(|(n, _)| n.clone())
                .unwrap_or_default()
        })
        .collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&move |v| {
            let i = v.floor() as usize;
            if (v - i as f64 - 0.5).abs() < 1e-6 {
                names.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .light_line_style(WHITE)
        .y_labels(8)
        .x_desc("step")
        .y_desc("probability of the baseline's top-1 token")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(plot_err)?;
    let (cb, cc) = (PALETTE[0], PALETTE[1]);
    let label = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for i in 0..n {
        let x = i as f64;
        let Some((_, b)) = base.get(i) else { continue };
        let Some(bt) = b.lens.get(last).and_then(|l| l.top.first()) else {
            continue;
        };
        let pb = f64::from(bt.prob);
        let pc = cur.get(i).map_or(0.0, |(_, c)| prob_of(c, last, bt.id));
        chart
            .draw_series([
                Rectangle::new([(x + 0.12, 0.0), (x + 0.48, pb)], cb.filled()),
                Rectangle::new([(x + 0.52, 0.0), (x + 0.88, pc)], cc.filled()),
            ])
            .map_err(plot_err)?;
        let cur_top = cur
            .get(i)
            .and_then(|(_, c)| c.lens.get(last))
            .and_then(|l| l.top.first());
        let mut texts = vec![Text::new(
            fit(&bt.text, 12),
            (x + 0.30, pb + 0.01),
            label.clone(),
        )];
        if let Some(ct) = cur_top {
            let t = if ct.id == bt.id {
                fit(&ct.text, 12)
            } else {
                format!("→{}", fit(&ct.text, 11))
            };
            texts.push(Text::new(t, (x + 0.70, pc + 0.01), label.clone()));
        }
        chart.draw_series(texts).map_err(plot_err)?;
    }
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            cb.filled(),
        )))
        .map_err(plot_err)?
        .label("baseline (no ablations)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], cb.filled()));
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            cc.filled(),
        )))
        .map_err(plot_err)?
        .label("current (ablated): same token; → its own top-1")
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], cc.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// The graph steps drawn: every thought, or the first step when the run has none.
fn frontier_steps(g: &crate::analysis::graph::GraphAnalysis) -> Vec<usize> {
    let thoughts: Vec<usize> = (0..g.steps.len())
        .filter(|&i| g.steps[i].label.starts_with('T'))
        .collect();
    if thoughts.is_empty() && !g.steps.is_empty() {
        vec![0]
    } else {
        thoughts
    }
}

fn draw_graph_frontier<DB: DrawingBackend>(s: &Session, area: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let g = s
        .current
        .graph
        .as_ref()
        .context("the session's run states no problem graph")?;
    let (w, _) = area.dim_in_pixel();
    let (main, bar) = area.split_horizontally(w.saturating_sub(130));
    let main = main
        .titled(
            "Graph frontier: each node's probability at the output layer, per thought",
            (FONT, 20).into_font().style(FontStyle::Bold),
        )
        .map_err(plot_err)?;
    let steps = frontier_steps(g);
    let cols = steps.len().clamp(1, 3);
    let rows = steps.len().max(1).div_ceil(3);
    let panels = main.split_evenly((rows, cols));
    for (panel, &step) in panels.iter().zip(&steps) {
        draw_graph_panel(panel, g, step)?;
    }
    draw_colour_bar(
        &bar,
        (FRONTIER_FLOOR.log10(), 0.0),
        "probability (log scale; first token of the name)",
        &|v| format!("{}", 10f64.powf(*v)),
    )
}

/// The bottom of the frontier's log colour scale: smaller probabilities draw as this one.
const FRONTIER_FLOOR: f64 = 1e-3;

/// A node's probability at the output layer of graph step `step` as a place on the frontier's
/// colour scale: log10 of it, from [`FRONTIER_FLOOR`] (a probability not recorded or not finite
/// counts as 0). On a linear 0-1 scale a superposed frontier, 0.1-0.2 on each node beside a
/// thought that names the root at 0.99, draws as dark as the nodes it never reaches.
fn frontier_position(g: &crate::analysis::graph::GraphAnalysis, step: usize, node: usize) -> f64 {
    let output = g.steps[step].probs.len().saturating_sub(1);
    f64::from(g.probability(step, output, node))
        .clamp(FRONTIER_FLOOR, 1.0)
        .log10()
}

/// One thought: columns by depth (root at the left, unreachable nodes at the right), edges as
/// grey lines, nodes as discs coloured by probability (log scale), every node named; the root is
/// marked "(root)" and the candidates with ◆ and a thick ring.
fn draw_graph_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    g: &crate::analysis::graph::GraphAnalysis,
    step: usize,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (pw, ph) = area.dim_in_pixel();
    let (pw, ph) = (pw as i32, ph as i32);
    area.draw(&Rectangle::new(
        [(4, 4), (pw - 4, ph - 4)],
        RGBColor(200, 200, 200).stroke_width(1),
    ))
    .map_err(plot_err)?;
    area.draw(&Text::new(
        g.steps[step].label.clone(),
        (12, 10),
        (FONT, 16).into_font().style(FontStyle::Bold),
    ))
    .map_err(plot_err)?;
    let max_depth = g.max_depth();
    let unreachable = g.nodes.iter().any(|n| n.depth.is_none());
    let ncols = max_depth + 1 + usize::from(unreachable);
    let col_of = |n: usize| g.nodes[n].depth.unwrap_or(max_depth + 1);
    let mut columns: Vec<Vec<usize>> = vec![Vec::new(); ncols];
    for n in 0..g.nodes.len() {
        columns[col_of(n)].push(n);
    }
    let (left, right, top, bottom) = (24, 90, 48, 16);
    let col_w = (pw - left - right) / ncols.max(1) as i32;
    let mut at = vec![(0, 0); g.nodes.len()];
    let header = TextStyle::from((FONT, 11).into_font()).color(&RGBColor(120, 120, 120));
    for (c, nodes) in columns.iter().enumerate() {
        let x = left + c as i32 * col_w + 8;
        let name = match c {
            0 => "root".to_string(),
            c if c <= max_depth => format!("depth {c}"),
            _ => "unreachable".to_string(),
        };
        area.draw(&Text::new(name, (x - 6, 30), header.clone()))
            .map_err(plot_err)?;
        let row_h = (ph - top - bottom) / nodes.len().max(1) as i32;
        for (r, &n) in nodes.iter().enumerate() {
            at[n] = (x, top + r as i32 * row_h + row_h / 2);
        }
    }
    let grey = RGBColor(170, 170, 170).stroke_width(1);
    for &[a, b] in &g.edges {
        area.draw(&PathElement::new(vec![at[a], at[b]], grey))
            .map_err(plot_err)?;
    }
    for (n, node) in g.nodes.iter().enumerate() {
        let candidate = g.candidates.contains(&n);
        let colour = viridis(frontier_position(g, step, n), (FRONTIER_FLOOR.log10(), 0.0));
        area.draw(&Circle::new(at[n], 7, colour.filled()))
            .map_err(plot_err)?;
        let ring = if candidate { 3 } else { 1 };
        area.draw(&Circle::new(at[n], 7, BLACK.stroke_width(ring)))
            .map_err(plot_err)?;
        let label = if n == g.root {
            format!("{} (root)", fit(&node.name, 12))
        } else if candidate {
            format!("◆ {}", fit(&node.name, 12))
        } else {
            fit(&node.name, 12)
        };
        let mut font = (FONT, 11).into_font();
        if candidate || n == g.root {
            font = font.style(FontStyle::Bold);
        }
        let style = TextStyle::from(font).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(label, (at[n].0 + 10, at[n].1), style))
            .map_err(plot_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::graph::{GraphStep, graph_analysis};

    fn graph_with(rows: &[[f32; 3]]) -> crate::analysis::graph::GraphAnalysis {
        let graph = crate::data::facts::parse(
            "Tom is a wumpus. Every wumpus is a yumpus. Is Tom a yumpus or bompus?",
        )
        .unwrap();
        let steps = rows
            .iter()
            .enumerate()
            .map(|(i, r)| GraphStep {
                label: format!("T{}", i + 1),
                // The first row is an earlier layer: only the last (the output) counts.
                probs: vec![vec![0.9; 3], r.to_vec()],
            })
            .collect();
        graph_analysis(graph, &[10, 11, 12], steps)
    }

    #[test]
    fn the_frontier_colours_probabilities_on_a_log_scale() {
        let g = graph_with(&[[1.0, 0.1, 0.01], [1e-5, f32::NAN, 0.0]]);
        let at = |s, n| frontier_position(&g, s, n);
        for (got, want) in [at(0, 0), at(0, 1), at(0, 2)]
            .into_iter()
            .zip([0.0, -1.0, -2.0])
        {
            assert!((got - want).abs() < 1e-6, "{got} {want}");
        }
        // Below the floor, unknown or zero: the bottom of the scale.
        for n in 0..3 {
            assert_eq!(at(1, n), -3.0);
        }
    }
}
