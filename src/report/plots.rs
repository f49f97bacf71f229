//! The report's figures, in the project's plot style (embedded font, a caption naming the
//! model and the data).

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use super::Report;
use crate::eval::EvalMode;
use crate::plot::{FONT, Format, plot_err, register_fonts};

/// Accuracy against the number of thoughts, coconut and pause, with Wilson 95% intervals and
/// the coin's 50%.
pub fn accuracy(r: &Report, format: Format, path: &Path) -> Result<()> {
    register_fonts();
    let size = (900, 560);
    match format {
        Format::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw_accuracy(r, &root)?;
            root.present().map_err(plot_err)
        }
        Format::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw_accuracy(r, &root)?;
            root.present().map_err(plot_err)
        }
    }
}

fn draw_accuracy<DB: DrawingBackend>(r: &Report, root: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_err)?;
    let (_, h) = root.dim_in_pixel();
    let (body, foot) = root.split_vertically(h - 32);
    foot.draw(&Text::new(
        format!("{} · {} ({} problems)", r.model, r.data, r.n),
        (16, 8),
        (FONT, 13).into_font().color(&RGBColor(80, 80, 80)),
    ))
    .map_err(plot_err)?;
    let max_k = r.accuracy.iter().map(|a| a.thoughts).max().unwrap_or(0);
    let mut chart = ChartBuilder::on(&body)
        .caption(
            "Accuracy against the number of continuous thoughts",
            (FONT, 20).into_font().style(FontStyle::Bold),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.3f64..max_k as f64 + 0.3, 0f64..1.02)
        .map_err(plot_err)?;
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
    chart
        .draw_series(LineSeries::new(
            [(-0.3, 0.5), (max_k as f64 + 0.3, 0.5)],
            RGBColor(150, 150, 150).stroke_width(1),
        ))
        .map_err(plot_err)?
        .label("a coin (50%)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RGBColor(150, 150, 150)));
    for (i, (mode, name)) in [
        (EvalMode::Coconut, "coconut"),
        (EvalMode::Pause, "pause tokens"),
    ]
    .into_iter()
    .enumerate()
    {
        let colour = ViridisRGB::get_color(if i == 0 { 0.25 } else { 0.75 });
        let rows: Vec<_> = r.accuracy.iter().filter(|a| a.mode == mode).collect();
        let shift = if i == 0 { -0.06 } else { 0.06 };
        chart
            .draw_series(rows.iter().map(|a| {
                let x = a.thoughts as f64 + shift;
                PathElement::new([(x, a.ci95.0), (x, a.ci95.1)], colour.stroke_width(2))
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(
                rows.iter().map(|a| (a.thoughts as f64 + shift, a.accuracy)),
                colour.stroke_width(3),
            ))
            .map_err(plot_err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(3)));
        chart
            .draw_series(
                rows.iter().map(|a| {
                    Circle::new((a.thoughts as f64 + shift, a.accuracy), 4, colour.filled())
                }),
            )
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, 14))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}
