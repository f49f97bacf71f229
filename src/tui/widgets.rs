//! Small widgets and helpers: the colour scale, a heatmap grid with scrolling, bars, numbers.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

/// A viridis-like scale in the xterm 256-colour cube (dark purple to yellow): works in every
/// 256-colour terminal and in tmux without true-colour support.
pub const SCALE: [u8; 10] = [53, 54, 60, 24, 30, 36, 71, 77, 148, 220];

/// The colour of a value in [0, 1].
pub fn heat(v: f32) -> Color {
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let i = ((v * SCALE.len() as f32) as usize).min(SCALE.len() - 1);
    Color::Indexed(SCALE[i])
}

/// Text colour readable on `heat(v)`.
pub fn heat_text(v: f32) -> Color {
    if v.is_finite() && v >= 0.6 {
        Color::Black
    } else {
        Color::White
    }
}

/// Style of a heat cell.
pub fn heat_style(v: f32) -> Style {
    Style::default().bg(heat(v)).fg(heat_text(v))
}

/// Colour of an ablated head or a skipped layer.
pub const ABLATED: Color = Color::Red;
/// Colour of thoughts in labels and the timeline.
pub const THOUGHT: Color = Color::Magenta;
/// Colour of answer tokens.
pub const ANSWER: Color = Color::Green;
/// Colour of prompt tokens.
pub const PROMPT: Color = Color::Gray;
/// Colour of key names in hints.
pub const KEY: Color = Color::Cyan;

/// The first visible index so that `sel` is visible, centred when the list scrolls.
pub fn viewport(sel: usize, total: usize, visible: usize) -> usize {
    if visible == 0 || total <= visible {
        0
    } else {
        sel.saturating_sub(visible / 2).min(total - visible)
    }
}

/// Display width of a string in columns.
pub fn width(s: &str) -> usize {
    Span::raw(s).width()
}

/// Cuts `s` to at most `width` columns, with `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    if self::width(s) <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let cw = self::width(c.encode_utf8(&mut [0; 4]));
        if used + cw + 1 > width {
            break;
        }
        used += cw;
        out.push(c);
    }
    out.push('…');
    out
}

/// Pads or cuts `s` to exactly `width` columns.
pub fn pad(s: &str, width: usize) -> String {
    let s = fit(s, width);
    let w = self::width(&s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

/// A horizontal bar of `frac` of `width` columns with eighth blocks.
pub fn bar(frac: f32, width: usize) -> String {
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let frac = if frac.is_finite() {
        frac.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let eighths = (frac * width as f32 * 8.0).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        s.push(EIGHTHS[eighths % 8]);
    }
    let w = s.chars().count();
    s.push_str(&" ".repeat(width.saturating_sub(w)));
    s
}

/// A probability as a percentage: `82.1%`, `0.3%`, `<0.1%`.
pub fn pct(p: f32) -> String {
    if !p.is_finite() {
        // Not known (a v1 session file keeps only part of what the views show).
        return "n/a".to_string();
    }
    let x = p * 100.0;
    if x > 0.0 && x < 0.1 {
        "<0.1%".to_string()
    } else {
        format!("{x:.1}%")
    }
}

/// A non-negative number in at most `width` (>= 4) columns: `.123`, `1.23`, `4e-5`, `0`.
pub fn num(v: f32, width: usize) -> String {
    let s = if !v.is_finite() {
        "?".to_string()
    } else if v == 0.0 {
        "0".to_string()
    } else if v.abs() < 0.001 {
        format!("{v:.0e}")
    } else if v.abs() < 1.0 {
        let s = format!("{v:.3}");
        s.replacen("0.", ".", 1)
    } else if v.abs() < 10.0 {
        format!("{v:.2}")
    } else if v.abs() < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    };
    fit(&s, width)
}

/// A grid laid over an area: where cells are and which part of the grid is visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridGeom {
    /// The whole grid, labels included.
    pub area: Rect,
    /// Where the cells are (labels excluded).
    pub cells: Rect,
    pub cell_w: u16,
    /// Lines per row: more when there is room, so that few layers still read well.
    pub cell_h: u16,
    pub first_row: usize,
    pub first_col: usize,
    pub rows: usize,
    pub cols: usize,
}

impl GridGeom {
    /// Lays out a `total_rows` × `total_cols` grid in `area`, with `label_w` columns of row
    /// labels and `header` rows of column labels, rows of 1 to `max_h` lines, keeping `sel`
    /// (row, col) visible.
    pub fn new(
        area: Rect,
        label_w: u16,
        header: u16,
        (cell_w, max_h): (u16, u16),
        total: (usize, usize),
        sel: (usize, usize),
    ) -> Self {
        let cells = Rect {
            x: area.x + label_w.min(area.width),
            y: area.y + header.min(area.height),
            width: area.width.saturating_sub(label_w),
            height: area.height.saturating_sub(header),
        };
        let vis_cols = (cells.width / cell_w.max(1)) as usize;
        let cell_h = (cells.height as usize / total.0.max(1)).clamp(1, max_h.max(1) as usize);
        let vis_rows = cells.height as usize / cell_h;
        let first_row = viewport(sel.0, total.0, vis_rows);
        let first_col = viewport(sel.1, total.1, vis_cols);
        GridGeom {
            area,
            cells,
            cell_w: cell_w.max(1),
            cell_h: cell_h as u16,
            first_row,
            first_col,
            rows: vis_rows.min(total.0 - first_row.min(total.0)),
            cols: vis_cols.min(total.1 - first_col.min(total.1)),
        }
    }

    /// The (row, col) of the grid under a screen position.
    pub fn hit(&self, x: u16, y: u16) -> Option<(usize, usize)> {
        if x < self.cells.x || y < self.cells.y {
            return None;
        }
        let c = ((x - self.cells.x) / self.cell_w) as usize;
        let r = ((y - self.cells.y) / self.cell_h) as usize;
        (r < self.rows && c < self.cols).then_some((self.first_row + r, self.first_col + c))
    }

    /// The screen rectangle of a visible cell.
    pub fn rect(&self, row: usize, col: usize) -> Option<Rect> {
        if row < self.first_row
            || col < self.first_col
            || row >= self.first_row + self.rows
            || col >= self.first_col + self.cols
        {
            return None;
        }
        Some(Rect {
            x: self.cells.x + (col - self.first_col) as u16 * self.cell_w,
            y: self.cells.y + (row - self.first_row) as u16 * self.cell_h,
            width: self.cell_w,
            height: self.cell_h,
        })
    }

    pub fn visible_rows(&self) -> std::ops::Range<usize> {
        self.first_row..self.first_row + self.rows
    }

    pub fn visible_cols(&self) -> std::ops::Range<usize> {
        self.first_col..self.first_col + self.cols
    }
}

/// One cell of a heatmap.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatCell {
    pub text: String,
    /// A second line, shown when rows are two lines high or more.
    pub sub: String,
    pub style: Style,
}

impl HeatCell {
    /// A cell coloured by a value in [0, 1].
    pub fn value(text: impl Into<String>, v: f32) -> Self {
        HeatCell {
            text: text.into(),
            sub: String::new(),
            style: heat_style(v),
        }
    }

    pub fn styled(text: impl Into<String>, style: Style) -> Self {
        HeatCell {
            text: text.into(),
            sub: String::new(),
            style,
        }
    }

    pub fn with_sub(mut self, sub: impl Into<String>) -> Self {
        self.sub = sub.into();
        self
    }
}

/// A heatmap: row labels, column labels, and the visible cells from a closure. The last column
/// of each cell is left blank so that neighbours stay apart.
pub struct Heatmap<'a> {
    pub geom: GridGeom,
    pub row_label: &'a dyn Fn(usize) -> Line<'static>,
    pub col_label: &'a dyn Fn(usize) -> Span<'static>,
    pub cell: &'a dyn Fn(usize, usize) -> HeatCell,
    pub selected: Option<(usize, usize)>,
}

impl Widget for Heatmap<'_> {
    /// Draws in the geometry's area; `_area` is not used.
    fn render(self, _area: Rect, buf: &mut Buffer) {
        let g = self.geom;
        let area = g.area;
        let label_w = g.cells.x.saturating_sub(area.x);
        let header_y = g.cells.y.checked_sub(1).filter(|&y| y >= area.y);
        let text_w = (g.cell_w as usize).saturating_sub(1).max(1);
        if let Some(y) = header_y {
            for col in g.visible_cols() {
                let Some(r) = g.rect(g.first_row, col) else {
                    continue;
                };
                let mut span = (self.col_label)(col);
                span.content = pad(&span.content, text_w).into();
                if self.selected.is_some_and(|(_, c)| c == col) {
                    span.style = span
                        .style
                        .add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
                }
                buf.set_span(r.x, y, &span, text_w as u16);
            }
        }
        for row in g.visible_rows() {
            let y = g.cells.y + (row - g.first_row) as u16 * g.cell_h;
            if label_w > 0 {
                let mut line = (self.row_label)(row);
                if self.selected.is_some_and(|(r, _)| r == row) {
                    line = line.patch_style(Style::default().add_modifier(Modifier::BOLD));
                }
                buf.set_line(area.x, y, &line, label_w.saturating_sub(1));
            }
            for col in g.visible_cols() {
                let r = g.rect(row, col).expect("visible");
                let cell = (self.cell)(row, col);
                let mut style = cell.style;
                if self.selected == Some((row, col)) {
                    style = style.add_modifier(Modifier::REVERSED | Modifier::BOLD);
                }
                for dy in 0..r.height {
                    let text = match dy {
                        0 => &cell.text,
                        1 => &cell.sub,
                        _ => "",
                    };
                    buf.set_stringn(r.x, r.y + dy, pad(text, text_w), text_w, style);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_ends() {
        assert_eq!(heat(0.0), Color::Indexed(53));
        assert_eq!(heat(1.0), Color::Indexed(220));
        assert_eq!(heat(f32::NAN), Color::Indexed(53));
        assert_eq!(heat(0.55), Color::Indexed(36));
        assert_eq!(heat_text(0.9), Color::Black);
        assert_eq!(heat_text(0.1), Color::White);
    }

    #[test]
    fn numbers_fit() {
        assert_eq!(num(0.1234, 5), ".123");
        assert_eq!(num(1.5, 5), "1.50");
        assert_eq!(num(0.00004, 5), "4e-5");
        assert_eq!(num(0.0, 5), "0");
        assert_eq!(num(123.4, 5), "123");
        assert_eq!(pct(0.8213), "82.1%");
        assert_eq!(pct(0.0001), "<0.1%");
    }

    #[test]
    fn bars_and_fit() {
        assert_eq!(bar(1.0, 4), "████");
        assert_eq!(bar(0.0, 3), "   ");
        assert_eq!(bar(0.5, 3), "█▌ ");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(pad("ab", 4), "ab  ");
    }

    #[test]
    fn viewport_keeps_selection_visible() {
        assert_eq!(viewport(3, 5, 10), 0);
        assert_eq!(viewport(0, 20, 5), 0);
        assert_eq!(viewport(10, 20, 5), 8);
        assert_eq!(viewport(19, 20, 5), 15);
        for sel in 0..20 {
            let first = viewport(sel, 20, 5);
            assert!(first <= sel && sel < first + 5);
        }
    }

    #[test]
    fn grid_hits_what_it_draws() {
        let area = Rect::new(2, 3, 40, 10);
        let g = GridGeom::new(area, 4, 1, (6, 2), (20, 30), (15, 25));
        for row in g.visible_rows() {
            for col in g.visible_cols() {
                let r = g.rect(row, col).unwrap();
                assert_eq!(g.hit(r.x, r.y), Some((row, col)));
                assert_eq!(g.hit(r.right() - 1, r.bottom() - 1), Some((row, col)));
            }
        }
        let tall = GridGeom::new(area, 4, 1, (6, 3), (3, 2), (0, 0));
        assert_eq!(tall.cell_h, 3);
        assert_eq!(tall.hit(area.x + 4, area.y + 1 + 4), Some((1, 0)));
        assert_eq!(g.hit(area.x, area.y), None);
    }

    #[test]
    fn heatmap_colours_cells_and_marks_the_selection() {
        let area = Rect::new(0, 0, 20, 4);
        let g = GridGeom::new(area, 3, 1, (5, 1), (3, 3), (0, 0));
        let mut buf = Buffer::empty(area);
        let row_label = |r: usize| Line::from(format!("L{r}"));
        let col_label = |c: usize| Span::raw(format!("c{c}"));
        let cell = |r: usize, c: usize| HeatCell::value("x", (r * 3 + c) as f32 / 8.0);
        Heatmap {
            geom: g,
            row_label: &row_label,
            col_label: &col_label,
            cell: &cell,
            selected: Some((1, 1)),
        }
        .render(area, &mut buf);
        // Row 2, column 2 has value 1.0: the top of the scale.
        let r = g.rect(2, 2).unwrap();
        assert_eq!(buf[(r.x, r.y)].bg, Color::Indexed(220));
        assert_eq!(buf[(r.x, r.y)].fg, Color::Black);
        // The gap column keeps the default background.
        assert_eq!(buf[(r.x + 4, r.y)].bg, Color::Reset);
        let s = g.rect(1, 1).unwrap();
        assert!(buf[(s.x, s.y)].modifier.contains(Modifier::REVERSED));
        assert_eq!(buf[(0, 1)].symbol(), "L");
        assert_eq!(buf[(3, 0)].symbol(), "c");
    }
}
