//! Colour bars: the display's colour scale drawn as a strip with tick labels and a caption saying what
//! the scale means (each map's own clipped range, or raw values when the ends are known), so that a
//! reader can tell what red means without the manual.

use image::{Rgb, RgbImage};

use super::font::{draw_text, line_height, text_width, wrap, BLACK, LABEL_PX};
use super::heatmap::{scale_image, DisplayParams};

/// Size of the caption text under the bar.
const CAPTION_PX: f32 = 12.0;
/// Height of the coloured strip.
const BAR_HEIGHT: u32 = 12;

/// A colour bar: ticks at positions in [0, 1] along the scale, and the caption under it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColorBar {
    pub params: DisplayParams,
    pub ticks: Vec<(f32, String)>,
    pub caption: String,
}

/// A value for a tick label: three decimals in the usual range, scientific notation outside it.
pub fn fmt_value(v: f32) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if (0.01..1000.0).contains(&a) {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// What the scale means, in words, for maps each scaled to their own clipped range.
pub fn meaning(params: &DisplayParams) -> String {
    let p = params.clip_percentile;
    let clip = if p > 0.0 {
        format!(" after clipping at its {p} / {} percentiles", 100.0 - p)
    } else {
        String::new()
    };
    let alpha = (super::heatmap::opacity(params) * 100.0).round();
    if params.absolute_value {
        format!(
            "Colour = |attribution| as a share of the map's own range{clip}: 0 = its lowest, 1 = its \
             highest value (blue = little, red = much). Drawn at {alpha}% over the scan."
        )
    } else {
        format!(
            "Colour = signed attribution divided by the map's largest |value|{clip}: blue = evidence \
             against the explained class, white = none, red = evidence for it. Drawn at {alpha}% over \
             the scan."
        )
    }
}

impl ColorBar {
    /// Maps each scaled to their own range (the notebook's display): ticks 0 / 0.5 / 1, or -1 / 0 / +1
    /// for signed maps.
    pub fn per_map(params: &DisplayParams) -> ColorBar {
        let ticks = if params.absolute_value {
            vec![(0.0, "0".into()), (0.5, "0.5".into()), (1.0, "1".into())]
        } else {
            vec![(0.0, "−1".into()), (0.5, "0".into()), (1.0, "+1".into())]
        };
        ColorBar {
            params: *params,
            ticks,
            caption: meaning(params),
        }
    }

    /// One map whose ends stand for the raw values `range` (from `display_range`): the relative ticks,
    /// and the raw values of the ends in the caption.
    pub fn for_range(params: &DisplayParams, range: (f32, f32)) -> ColorBar {
        let mut bar = ColorBar::per_map(params);
        bar.caption = format!(
            "{} Here the ends are {} and {}.",
            bar.caption,
            fmt_value(range.0),
            fmt_value(range.1)
        );
        bar
    }

    /// Maps that share one scale from `range.0` to `range.1` (e.g. mean maps on a common maximum):
    /// the ticks are the values themselves.
    pub fn shared(params: &DisplayParams, range: (f32, f32), what: &str) -> ColorBar {
        let (lo, hi) = range;
        ColorBar {
            params: *params,
            ticks: [0.0f32, 0.5, 1.0]
                .iter()
                .map(|&t| (t, fmt_value(lo + t * (hi - lo))))
                .collect(),
            caption: what.to_string(),
        }
    }

    /// The bar `width` pixels wide: the strip (bordered), tick marks and labels under it, then the
    /// caption wrapped to the width.
    pub fn draw(&self, width: u32) -> RgbImage {
        let width = width.max(60);
        let margin = 12u32;
        let bar_w = width - 2 * margin;
        let tick_lh = line_height(LABEL_PX);
        let cap_lh = line_height(CAPTION_PX);
        let caption = wrap(&self.caption, CAPTION_PX, width - 4);
        let (bar_y, tick_y) = (4u32, 4 + BAR_HEIGHT);
        let labels_y = tick_y + 4;
        let caption_y = labels_y + tick_lh + 2;
        let height = caption_y + caption.len() as u32 * cap_lh + 4;
        let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
        let strip = scale_image(bar_w, BAR_HEIGHT, &self.params);
        image::imageops::replace(&mut img, &strip, i64::from(margin), i64::from(bar_y));
        let grey = Rgb([90, 90, 90]);
        for x in margin - 1..=margin + bar_w {
            img.put_pixel(x, bar_y - 1, grey);
            img.put_pixel(x, bar_y + BAR_HEIGHT, grey);
        }
        for y in bar_y - 1..=bar_y + BAR_HEIGHT {
            img.put_pixel(margin - 1, y, grey);
            img.put_pixel(margin + bar_w, y, grey);
        }
        for (t, label) in &self.ticks {
            let x = margin + (t.clamp(0.0, 1.0) * (bar_w - 1) as f32).round() as u32;
            for y in tick_y..tick_y + 4 {
                img.put_pixel(x, y, BLACK);
            }
            let w = text_width(label, LABEL_PX);
            let lx = (x as i32 - w as i32 / 2).clamp(0, (width - w.min(width)) as i32);
            draw_text(&mut img, lx, labels_y as i32, label, LABEL_PX, BLACK);
        }
        for (i, line) in caption.iter().enumerate() {
            let y = caption_y + i as u32 * cap_lh;
            draw_text(&mut img, 2, y as i32, line, CAPTION_PX, Rgb([60, 60, 60]));
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::heatmap::{diverging, jet};

    // The strip shows the scale from its low end (left) to its high end (right), the ticks' labels
    // and the caption are drawn (dark pixels under the strip), and the caption says what 0 and 1 are.
    #[test]
    fn bar_shows_scale_ticks_and_meaning() {
        let p = DisplayParams::default();
        let bar = ColorBar::for_range(&p, (0.0012, 0.034));
        assert!(
            bar.caption.contains("0.5 / 99.5 percentiles"),
            "{}",
            bar.caption
        );
        assert!(bar.caption.contains("1.20e-3 and 0.034"), "{}", bar.caption);
        let img = bar.draw(300);
        assert_eq!(img.width(), 300);
        assert_eq!(img.get_pixel(12, 8).0, jet(0.0));
        assert_eq!(img.get_pixel(12 + 275, 8).0, jet(1.0));
        let dark_below = (20..img.height())
            .flat_map(|y| (0..300).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100)
            .count();
        assert!(dark_below > 100, "{dark_below}");
        let signed = DisplayParams {
            absolute_value: false,
            ..Default::default()
        };
        let bar = ColorBar::per_map(&signed);
        assert_eq!(bar.ticks[1].1, "0");
        assert!(bar.caption.contains("blue = evidence against"));
        assert_eq!(bar.draw(200).get_pixel(12, 8).0, diverging(0.0));
        let shared = ColorBar::shared(&p, (0.0, 2e-4), "share of the mass per pixel");
        assert_eq!(shared.ticks[2].1, "2.00e-4");
        assert_eq!(fmt_value(0.5), "0.500");
        assert_eq!(fmt_value(0.0), "0");
    }
}
