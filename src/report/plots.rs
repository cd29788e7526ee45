//! The report's plots, drawn with `plotters` to SVG files: the confusion matrix, histograms of the
//! background / border mass per method, the method-agreement matrix, and line charts (the trust
//! checks' faithfulness and sanity curves). SVG keeps the text as text
//! (the browser draws it with its own fonts, and plotters escapes it), so no font file is needed.
use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
pub use plotters::prelude::SeriesLabelPosition;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ReportError;

type Seg = SegmentValue<i32>;

/// A drawing error of plotters (its error types are generic over the backend; the text is kept).
#[derive(Debug, thiserror::Error)]
#[error("plot: {0}")]
pub struct PlotError(String);

fn err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// A label cut to `n` characters (long class names would push the plot off its canvas).
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// White to dark blue, `t` in [0, 1].
fn blues(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}

/// Diverging blue - white - red for a correlation in [-1, 1].
fn diverging(v: f64) -> RGBColor {
    let v = v.clamp(-1.0, 1.0);
    let (end, t) = if v >= 0.0 {
        ((178.0, 24.0, 43.0), v)
    } else {
        ((33.0, 102.0, 172.0), -v)
    };
    let lerp = |b: f64| (247.0 + (b - 247.0) * t).round() as u8;
    RGBColor(lerp(end.0), lerp(end.1), lerp(end.2))
}

/// A square matrix of cells with row / column labels and a value written in each cell.
/// `cells[r][c]` = (fill colour, text, dark fill).
#[allow(clippy::type_complexity)]
fn matrix(
    path: &Path,
    caption: &str,
    rows: &[String],
    cols: &[String],
    x_desc: &str,
    y_desc: &str,
    cells: &[Vec<(RGBColor, String, bool)>],
) -> Result<(), ReportError> {
    let (nr, nc) = (rows.len() as i32, cols.len() as i32);
    let longest = rows.iter().map(|r| r.chars().count()).max().unwrap_or(1) as u32;
    let left = (longest.min(22) * 8 + 40).max(90);
    // Cells wide enough for a full method title ("Integrated Gradients") at the label size.
    let longest_col = cols.iter().map(|c| c.chars().count()).max().unwrap_or(1) as u32;
    let cell = (longest_col.min(24) * 7 + 16).max(90);
    // Rows need only the height of their number, so wide cells do not make the plot tall.
    let row_h = cell.min(90);
    let size = (
        (left + cell * nc as u32 + 40).max(caption.len() as u32 * 10 + 20),
        60 + row_h * nr as u32 + 80,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(50)
        .y_label_area_size(left)
        // An i32 range is inclusive in plotters: 0..n-1 gives n segments.
        .build_cartesian_2d((0..nc - 1).into_segmented(), (0..nr - 1).into_segmented())
        .map_err(err)?;
    // Column labels are cut to the cell's width, row labels to the label area's.
    let label_of = |names: &[String], v: &Seg, flip: bool, chars: usize| match v {
        SegmentValue::CenterOf(i) => {
            let i = if flip { names.len() as i32 - 1 - i } else { *i };
            names
                .get(i as usize)
                .map(|s| cut(s, chars))
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(cols.len())
        .y_labels(rows.len())
        .x_label_formatter(&|v| label_of(cols, v, false, (cell / 7) as usize))
        .y_label_formatter(&|v| label_of(rows, v, true, 22))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (r, row) in cells.iter().enumerate() {
        // Row 0 at the top.
        let y = nr - 1 - r as i32;
        for (c, (fill, text, dark)) in row.iter().enumerate() {
            let x = c as i32;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                    ],
                    fill.filled(),
                )))
                .map_err(err)?;
            let colour = if *dark { WHITE } else { BLACK };
            let style = ("sans-serif", 15)
                .into_font()
                .color(&colour)
                .pos(Pos::new(HPos::Center, VPos::Center));
            chart
                .draw_series(std::iter::once(Text::new(
                    text.clone(),
                    (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                    style,
                )))
                .map_err(err)?;
        }
    }
    root.present()
        .map_err(|e| ReportError::write(path, err(e)))?;
    Ok(())
}

/// Confusion matrix: rows = true class, columns = predicted class, count in each cell, shaded by
/// the share of its row (so a small class's errors are as visible as a large one's).
pub fn confusion(
    path: &Path,
    classes: &[String],
    confusion: &[Vec<usize>],
) -> Result<(), ReportError> {
    let cells: Vec<Vec<(RGBColor, String, bool)>> = confusion
        .iter()
        .map(|row| {
            let total: usize = row.iter().sum();
            row.iter()
                .map(|&n| {
                    let share = if total > 0 {
                        n as f64 / total as f64
                    } else {
                        0.0
                    };
                    (blues(share), n.to_string(), share > 0.55)
                })
                .collect()
        })
        .collect();
    matrix(
        path,
        "Confusion matrix",
        classes,
        classes,
        "predicted class",
        "true class",
        &cells,
    )
}

/// Mean Spearman correlation between each pair of methods, `values[a][b]` (None: no pairs).
pub fn agreement(
    path: &Path,
    methods: &[String],
    values: &[Vec<Option<f64>>],
) -> Result<(), ReportError> {
    let cells: Vec<Vec<(RGBColor, String, bool)>> = values
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| match v {
                    Some(v) => (diverging(*v), format!("{v:.2}"), v.abs() > 0.6),
                    None => (RGBColor(230, 230, 230), "–".to_string(), false),
                })
                .collect()
        })
        .collect();
    matrix(
        path,
        "Mean Spearman correlation",
        methods,
        methods,
        "",
        "",
        &cells,
    )
}

/// Number of bins of the mass histograms (on [0, 1]).
pub const BINS: i32 = 20;

/// One histogram per method of a share in [0, 1] (background or border mass), with the rule's
/// threshold as a dashed red line. `series` = (method title, values).
pub fn mass_histograms(
    path: &Path,
    what: &str,
    threshold: f64,
    series: &[(String, Vec<f64>)],
) -> Result<(), ReportError> {
    let per_row = 3usize;
    let nrows = series.len().div_ceil(per_row).max(1);
    let (pw, ph) = (330u32, 230u32);
    let root =
        SVGBackend::new(path, (pw * per_row as u32, ph * nrows as u32 + 40)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (title, body) = root.split_vertically(40);
    title
        .draw(&Text::new(
            format!("{what} per method ({BINS} bins; dashed line = threshold {threshold})"),
            (10, 12),
            ("sans-serif", 17).into_font(),
        ))
        .map_err(err)?;
    let panels = body.split_evenly((nrows, per_row));
    for (panel, (method, values)) in panels.iter().zip(series) {
        let mut counts = vec![0u32; BINS as usize];
        for v in values.iter().filter(|v| v.is_finite()) {
            let b = ((v.clamp(0.0, 1.0) * BINS as f64) as i32).min(BINS - 1);
            counts[b as usize] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(0).max(1);
        let y_top = top + top / 10 + 1;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{} (n={})", cut(method, 24), values.len()),
                ("sans-serif", 14),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..1f64, 0u32..y_top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_labels(6)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_labels(4)
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(err)?;
        let bar = RGBColor(49, 130, 189).filled();
        let w = 1.0 / BINS as f64;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &n)| {
                let x = i as f64 * w;
                Rectangle::new([(x + w * 0.05, 0), (x + w * 0.95, n)], bar)
            }))
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                [(threshold, 0), (threshold, y_top)],
                5,
                4,
                RGBColor(200, 30, 30).stroke_width(2),
            ))
            .map_err(err)?;
    }
    root.present()
        .map_err(|e| ReportError::write(path, err(e)))?;
    Ok(())
}

/// Line colours of the methods, in the order the series come (the random baseline is drawn grey).
const LINE_COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// One line of a line chart: its legend name, points, and whether it is a baseline (grey, dashed).
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub baseline: bool,
}

/// One panel of line charts: title, axis descriptions, x and y ranges, and an optional horizontal
/// threshold drawn as a dashed red line.
pub struct Panel<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub x: std::ops::Range<f64>,
    pub y: std::ops::Range<f64>,
    /// Tick labels for integer x positions (e.g. the sanity check's stages); `None` = numbers.
    pub x_ticks: Option<&'a [String]>,
    pub threshold: Option<f64>,
    pub lines: Vec<Line>,
    /// Where the legend goes (where the lines are not).
    pub legend: SeriesLabelPosition,
}

/// Panels side by side, each a line chart with its legend, in one SVG.
pub fn line_panels(path: &Path, panels: &[Panel<'_>]) -> Result<(), ReportError> {
    let (pw, ph) = (460u32, 340u32);
    let root = SVGBackend::new(path, (pw * panels.len().max(1) as u32, ph)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, p) in areas.iter().zip(panels) {
        let mut chart = ChartBuilder::on(area)
            .caption(p.title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(if p.x_ticks.is_some() { 56 } else { 36 })
            .y_label_area_size(48)
            .build_cartesian_2d(p.x.clone(), p.y.clone())
            .map_err(err)?;
        let ticks = p.x_ticks;
        let fmt_x = |v: &f64| match ticks {
            Some(t) => {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 {
                    t.get(i as usize).map(|s| cut(s, 12)).unwrap_or_default()
                } else {
                    String::new()
                }
            }
            None => format!("{v:.1}"),
        };
        let n_ticks = ticks.map_or(6, |t| t.len());
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_labels(n_ticks)
            .x_label_formatter(&fmt_x)
            .y_labels(6)
            .y_label_formatter(&|v| format!("{v:.1}"))
            .x_desc(p.x_desc)
            .y_desc(p.y_desc)
            .label_style(("sans-serif", 11))
            .axis_desc_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        if let Some(t) = p.threshold {
            chart
                .draw_series(DashedLineSeries::new(
                    [(p.x.start, t), (p.x.end, t)],
                    5,
                    4,
                    RGBColor(200, 30, 30).stroke_width(1),
                ))
                .map_err(err)?;
        }
        let mut colour = 0;
        for line in &p.lines {
            let c = if line.baseline {
                RGBColor(110, 110, 110)
            } else {
                colour += 1;
                LINE_COLOURS[(colour - 1) % LINE_COLOURS.len()]
            };
            let style = c.stroke_width(2);
            let drawn = if line.baseline {
                chart.draw_series(DashedLineSeries::new(line.points.clone(), 6, 4, style))
            } else {
                chart.draw_series(LineSeries::new(line.points.clone(), style))
            };
            drawn
                .map_err(err)?
                .label(cut(&line.name, 22))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 11))
            .position(p.legend.clone())
            .draw()
            .map_err(err)?;
    }
    root.present()
        .map_err(|e| ReportError::write(path, err(e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_span_their_range() {
        assert_eq!(blues(0.0), RGBColor(247, 251, 255));
        assert_eq!(blues(1.0), RGBColor(8, 48, 107));
        assert_eq!(diverging(0.0), RGBColor(247, 247, 247));
        assert_eq!(diverging(1.0), RGBColor(178, 24, 43));
        assert_eq!(diverging(-1.0), RGBColor(33, 102, 172));
    }

    #[test]
    fn svg_text_is_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.svg");
        let classes = vec!["no".to_string(), "<svg onload=alert(1)>".to_string()];
        confusion(&p, &classes, &[vec![3, 1], vec![0, 2]]).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.contains("&lt;svg onload=alert(1)&gt;"), "{svg}");
        assert!(!svg.contains("<svg onload"));
    }
}
