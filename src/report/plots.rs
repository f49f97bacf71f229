//! The report's figures, in the project's plot style (embedded font, a caption naming the
//! model and the data).

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use super::{MODES, Report, Spread, ValueSource};
use crate::eval::EvalMode;
use crate::plot::{FONT, Format, plot_err, register_fonts};

/// The report's figures; each is written as `<name>.png` and `<name>.svg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    Accuracy,
    Frontier,
    Value,
    Superposition,
    Norms,
    Causal,
}

impl Figure {
    pub const ALL: [Figure; 6] = [
        Figure::Accuracy,
        Figure::Frontier,
        Figure::Value,
        Figure::Superposition,
        Figure::Norms,
        Figure::Causal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Accuracy => "accuracy",
            Self::Frontier => "frontier",
            Self::Value => "value",
            Self::Superposition => "superposition",
            Self::Norms => "norms",
            Self::Causal => "causal",
        }
    }

    /// Whether the report has data for this figure (the value analysis needs at least two
    /// thoughts, the others one).
    pub fn applies(self, r: &Report) -> bool {
        match self {
            Self::Accuracy => !r.accuracy.is_empty(),
            Self::Value => !r.value.is_empty(),
            _ => r.thoughts > 0,
        }
    }
}

/// Writes `figure` of `r` to `path`.
pub fn write(r: &Report, figure: Figure, format: Format, path: &Path) -> Result<()> {
    register_fonts();
    let size = match figure {
        Figure::Value => (1200, 480),
        _ => (900, 560),
    };
    match format {
        Format::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw(r, figure, &root)?;
            root.present().map_err(plot_err)
        }
        Format::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw(r, figure, &root)?;
            root.present().map_err(plot_err)
        }
    }
}

fn draw<DB: DrawingBackend>(r: &Report, figure: Figure, root: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_err)?;
    let (_, h) = root.dim_in_pixel();
    let (body, foot) = root.split_vertically(h - 32);
    foot.draw(&Text::new(
        format!("{} · {} ({} problems)", r.model, r.data, r.n),
        (16, 8),
        (FONT, 13).into_font().color(&GREY_TEXT),
    ))
    .map_err(plot_err)?;
    match figure {
        Figure::Accuracy => accuracy(r, &body),
        Figure::Frontier => frontier(r, &body),
        Figure::Value => value(r, &body),
        Figure::Superposition => superposition(r, &body),
        Figure::Norms => norms(r, &body),
        Figure::Causal => causal(r, &body),
    }
}

const GREY_TEXT: RGBColor = RGBColor(80, 80, 80);
const COIN: RGBColor = RGBColor(150, 150, 150);

fn title() -> TextStyle<'static> {
    (FONT, 20).into_font().style(FontStyle::Bold).into()
}

/// A full-size chart with the report's title style and margins.
fn chart_on<'a, DB: DrawingBackend>(
    body: &'a DrawingArea<DB, Shift>,
    caption: impl AsRef<str>,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, DB>>
where
    DB::ErrorType: 'static,
{
    ChartBuilder::on(body)
        .caption(caption.as_ref(), title())
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A line with error bars and dots, and a legend entry.
fn line_with_bars<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    points: &[(f64, f64, f64, f64)],
    colour: RGBColor,
    name: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .draw_series(
            points.iter().map(|&(x, _, lo, hi)| {
                PathElement::new([(x, lo), (x, hi)], colour.stroke_width(2))
            }),
        )
        .map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|&(x, y, _, _)| (x, y)),
            colour.stroke_width(3),
        ))
        .map_err(plot_err)?
        .label(name)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(3)));
    chart
        .draw_series(
            points
                .iter()
                .map(|&(x, y, _, _)| Circle::new((x, y), 4, colour.filled())),
        )
        .map_err(plot_err)?;
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, 14))
        .draw()
        .map_err(plot_err)
}

fn horizontal<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    (x0, x1): (f64, f64),
    y: f64,
    colour: RGBColor,
    name: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .draw_series(LineSeries::new([(x0, y), (x1, y)], colour.stroke_width(1)))
        .map_err(plot_err)?
        .label(name)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour));
    Ok(())
}

fn mode_label(m: EvalMode) -> &'static str {
    match m {
        EvalMode::Coconut => "coconut",
        EvalMode::Pause => "pause tokens",
        EvalMode::Soft => "soft thinking",
        EvalMode::Token => "tokens (CoT in the slots)",
        EvalMode::Cot => "cot",
        EvalMode::NoCot => "no-cot",
    }
}

/// Accuracy against the number of thoughts per mode, with Wilson 95% intervals and the coin's
/// 50%.
fn accuracy<DB: DrawingBackend>(r: &Report, body: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let max_k = r.accuracy.iter().map(|a| a.thoughts).max().unwrap_or(0);
    let x_range = (-0.3, max_k as f64 + 0.3);
    let mut chart = chart_on(
        body,
        "Accuracy against the number of continuous thoughts",
        x_range.0..x_range.1,
        0f64..1.02,
    )?;
    chart
        .configure_mesh()
        .x_labels(max_k + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
        .x_desc(format!("thoughts (the model's own: {})", r.thoughts))
        .y_desc("accuracy (Wilson 95% interval)")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_err)?;
    horizontal(&mut chart, x_range, 0.5, COIN, "a coin (50%)")?;
    let modes: Vec<EvalMode> = MODES
        .into_iter()
        .filter(|m| r.accuracy.iter().any(|a| a.mode == *m))
        .collect();
    for (i, &mode) in modes.iter().enumerate() {
        let t = (i as f64 + 0.5) / modes.len() as f64;
        let colour = ViridisRGB::get_color(0.1 + 0.8 * t);
        let shift = (t - 0.5) * 0.2;
        let points: Vec<_> = r
            .accuracy
            .iter()
            .filter(|a| a.mode == mode)
            .map(|a| (a.thoughts as f64 + shift, a.accuracy, a.ci95.0, a.ci95.1))
            .collect();
        line_with_bars(&mut chart, &points, colour, mode_label(mode))?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// Each thought's decoded mass, stacked: nodes by breadth-first depth, unreachable nodes, and
/// other tokens.
fn frontier<DB: DrawingBackend>(r: &Report, body: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let n = r.frontier.len();
    let depths = r
        .frontier
        .iter()
        .map(|f| f.mass_by_depth.len())
        .max()
        .unwrap_or(0);
    let mut chart = chart_on(
        body,
        "Where each thought's decoded mass sits (breadth-first depth)",
        0.4f64..n as f64 + 0.6 + 1.6,
        0f64..1.0,
    )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 3)
        .x_label_formatter(&|x| {
            let k = x.round();
            if (x - k).abs() < 1e-6 && k >= 1.0 && k <= n as f64 {
                format!("{k:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
        .x_desc("thought (1: the state at <|start-latent|>)")
        .y_desc("probability mass (mean over problems)")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_err)?;
    let depth_colour = |d: usize| ViridisRGB::get_color(d as f64 / depths.max(2) as f64 * 0.9);
    let unreachable = RGBColor(214, 39, 40);
    let other = RGBColor(200, 200, 200);
    for f in &r.frontier {
        let x = f.thought as f64;
        let mut y = 0.0;
        let mut parts: Vec<(f64, RGBColor)> = f
            .mass_by_depth
            .iter()
            .enumerate()
            .map(|(d, &m)| (m, depth_colour(d)))
            .collect();
        parts.push((f.unreachable, unreachable));
        parts.push((f.other.max(0.0), other));
        chart
            .draw_series(parts.into_iter().map(|(m, c)| {
                let rect =
                    Rectangle::new([(x - 0.35, y), (x + 0.35, (y + m).min(1.0))], c.filled());
                y += m;
                rect
            }))
            .map_err(plot_err)?;
    }
    // The legend, one swatch per part.
    for d in 0..depths {
        let c = depth_colour(d);
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
            .map_err(plot_err)?
            .label(format!("depth {d}"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
    }
    for (name, c) in [("unreachable", unreachable), ("other tokens", other)] {
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
            .map_err(plot_err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// Hao et al.'s Fig. 9: per count of thoughts, the cumulative value of the top-1/2/3
/// frontier nodes against the percentile of problems.
fn value<DB: DrawingBackend>(r: &Report, body: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (w, h) = body.dim_in_pixel();
    let (head, panels) = body.split_vertically(40.min(h / 4));
    head.draw(&Text::new(
        "Value of the frontier nodes after k thoughts (Hao et al. Fig. 9)",
        ((w / 2) as i32, 10),
        title().pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Top,
        )),
    ))
    .map_err(plot_err)?;
    let shown: Vec<_> = r.value.iter().take(3).collect();
    let areas = panels.split_evenly((1, shown.len().max(1)));
    for (v, area) in shown.iter().zip(&areas) {
        let source = match v.source {
            ValueSource::Language => "the next step",
            ValueSource::Decoded => "the decoded state",
        };
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "after {} thought{} ({source})",
                    v.thoughts,
                    if v.thoughts == 1 { "" } else { "s" }
                ),
                (FONT, 15),
            )
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..100.0, 0f64..1.02)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc("percentile of problems")
            .y_desc("cumulative value")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_err)?;
        for (i, curve) in v.cumulative.iter().enumerate() {
            let colour = ViridisRGB::get_color(0.15 + 0.35 * i as f64);
            let n = curve.len().max(1) as f64;
            chart
                .draw_series(LineSeries::new(
                    curve
                        .iter()
                        .enumerate()
                        .map(|(j, &y)| (100.0 * (j as f64 + 0.5) / n, y)),
                    colour.stroke_width(3),
                ))
                .map_err(plot_err)?
                .label(format!("top {}", i + 1))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(3))
                });
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    }
    Ok(())
}

fn spread_point(x: f64, s: &Spread) -> (f64, f64, f64, f64) {
    (x, s.mean, s.mean - s.sd, s.mean + s.sd)
}

/// Zhu et al.'s inner products by node group, mean ± sd per thought.
fn superposition<DB: DrawingBackend>(r: &Report, body: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    type Group = fn(&super::Superposition) -> &Spread;
    let groups: [(&str, Group); 4] = [
        ("frontier (exactly k − 1 hops)", |s| &s.frontier),
        ("reachable (within k − 1)", |s| &s.reachable),
        ("not reachable", |s| &s.unreachable),
        ("answer path", |s| &s.answer_path),
    ];
    let (lo, hi) = r.superposition.iter().fold((0f64, 0f64), |(lo, hi), s| {
        groups.iter().fold((lo, hi), |(lo, hi), (_, g)| {
            let g = g(s);
            (lo.min(g.mean - g.sd), hi.max(g.mean + g.sd))
        })
    });
    let pad = 0.08 * (hi - lo).max(1e-6);
    let n = r.superposition.len();
    let mut chart = chart_on(
        body,
        "Superposition: thought · node embedding, by node group",
        0.6f64..n as f64 + 0.4,
        (lo - pad)..(hi + pad),
    )?;
    chart
        .configure_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("thought k")
        .y_desc("inner product (mean ± sd)")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_err)?;
    for (i, (name, g)) in groups.iter().enumerate() {
        let colour = [
            RGBColor(31, 119, 180),
            RGBColor(44, 160, 44),
            RGBColor(214, 39, 40),
            RGBColor(148, 103, 189),
        ][i];
        let shift = (i as f64 - 1.5) * 0.05;
        let points: Vec<_> = r
            .superposition
            .iter()
            .map(|s| spread_point(s.thought as f64 + shift, g(s)))
            .collect();
        line_with_bars(&mut chart, &points, colour, name)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// Each thought's norm (mean ± sd, whiskers to min and max) against the token embeddings'.
fn norms<DB: DrawingBackend>(r: &Report, body: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let n = r.norms.thoughts.len();
    let t = &r.norms.token_embeddings;
    let hi = r.norms.thoughts.iter().map(|s| s.max).fold(t.max, f64::max) * 1.08;
    let x_range = (0.4f64, n as f64 + 0.6);
    let mut chart = chart_on(
        body,
        "Thought norms against the token embeddings'",
        x_range.0..x_range.1,
        0f64..hi.max(1e-6),
    )?;
    chart
        .configure_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("thought")
        .y_desc("L2 norm")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_err)?;
    let band = RGBColor(255, 127, 14);
    chart
        .draw_series([Rectangle::new(
            [
                (x_range.0, (t.mean - t.sd).max(0.0)),
                (x_range.1, t.mean + t.sd),
            ],
            band.mix(0.25).filled(),
        )])
        .map_err(plot_err)?
        .label(format!(
            "token embeddings, mean ± sd ({:.2} ± {:.2})",
            t.mean, t.sd
        ))
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 14, y + 5)], band.mix(0.25).filled())
        });
    horizontal(
        &mut chart,
        x_range,
        t.max,
        band,
        &format!("largest token embedding ({:.2})", t.max),
    )?;
    let colour = ViridisRGB::get_color(0.3);
    chart
        .draw_series(r.norms.thoughts.iter().enumerate().map(|(k, s)| {
            let x = k as f64 + 1.0;
            PathElement::new([(x, s.min), (x, s.max)], colour.stroke_width(1))
        }))
        .map_err(plot_err)?;
    let points: Vec<_> = r
        .norms
        .thoughts
        .iter()
        .enumerate()
        .map(|(k, s)| spread_point(k as f64 + 1.0, s))
        .collect();
    line_with_bars(
        &mut chart,
        &points,
        colour,
        "thoughts as fed back (mean ± sd, min–max)",
    )?;
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// Accuracy with each thought replaced, per operation, against the intact run and a coin.
fn causal<DB: DrawingBackend>(r: &Report, body: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let n = r.causal.thoughts;
    let x_range = (0.6f64, n as f64 + 0.4);
    let mut chart = chart_on(
        body,
        "Interventions: accuracy with one thought replaced",
        x_range.0..x_range.1,
        0f64..1.02,
    )?;
    chart
        .configure_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
        .x_desc("thought replaced")
        .y_desc("accuracy")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_err)?;
    horizontal(
        &mut chart,
        x_range,
        r.causal.base_accuracy,
        RGBColor(40, 40, 40),
        &format!("intact ({:.1}%)", 100.0 * r.causal.base_accuracy),
    )?;
    horizontal(&mut chart, x_range, 0.5, COIN, "a coin (50%)")?;
    let mut ops: Vec<_> = Vec::new();
    for row in &r.causal.rows {
        if !ops.contains(&row.op) {
            ops.push(row.op);
        }
    }
    for (i, op) in ops.iter().enumerate() {
        let colour = ViridisRGB::get_color(0.1 + 0.8 * i as f64 / ops.len().max(2) as f64);
        let points: Vec<_> = r
            .causal
            .rows
            .iter()
            .filter(|row| row.op == *op)
            .map(|row| (row.thought as f64, row.accuracy, row.accuracy, row.accuracy))
            .collect();
        line_with_bars(&mut chart, &points, colour, &op.to_string())?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerLeft)
}
