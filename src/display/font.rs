//! Text in the figures: the embedded DejaVu Sans (`assets/fonts/`, Bitstream Vera licence beside it)
//! rasterised with `ab_glyph`, anti-aliased onto an RGB image; text width, ellipsis truncation and
//! word wrapping for the layouts of `figure` and `colorbar`.

use std::sync::OnceLock;

use ab_glyph::{point, Font as _, FontRef, PxScale, ScaleFont as _};
use image::{Rgb, RgbImage};

/// The font file, compiled into the binary so that figures look the same on every machine.
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Size of the labels of the figures, in pixels (em height).
pub const LABEL_PX: f32 = 14.0;

pub const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
/// Text colours for a right and a wrong prediction (dark enough to read on white).
pub const GREEN: Rgb<u8> = Rgb([22, 110, 50]);
pub const RED: Rgb<u8> = Rgb([180, 30, 25]);

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    // The bytes are a fixed, known-good file; a parse failure would be a build mistake.
    FONT.get_or_init(|| FontRef::try_from_slice(DEJAVU_SANS).expect("embedded DejaVu Sans parses"))
}

/// Height of one line of text at `px`: ascent plus descent, rounded up (descenders included, so
/// "glioma" keeps its tail).
pub fn line_height(px: f32) -> u32 {
    let f = font().as_scaled(PxScale::from(px));
    (f.ascent() - f.descent()).ceil() as u32
}

/// Advance width of `text` at `px` (kerning included), rounded up.
pub fn text_width(text: &str, px: f32) -> u32 {
    let f = font().as_scaled(PxScale::from(px));
    let mut w = 0.0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            w += f.kern(p, id);
        }
        w += f.h_advance(id);
        prev = Some(id);
    }
    w.ceil() as u32
}

/// `text` cut to fit `max_width` pixels at `px`, with "…" where it was cut; unchanged if it fits.
pub fn fit(text: &str, px: f32, max_width: u32) -> String {
    if text_width(text, px) <= max_width {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    for n in (0..chars.len()).rev() {
        let s: String = chars[..n].iter().chain(['…'].iter()).collect();
        if text_width(&s, px) <= max_width {
            return s;
        }
    }
    String::new()
}

/// `text` broken into lines of at most `max_width` pixels at words; a word longer than a line is
/// cut with [`fit`].
pub fn wrap(text: &str, px: f32, max_width: u32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if text_width(&candidate, px) <= max_width {
            line = candidate;
        } else {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            line = fit(word, px, max_width);
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws `text` at `px` in `colour`, the top of its line box at `(x, y)`; anti-aliased (each pixel
/// blended with the glyph's coverage), anything outside the canvas skipped. Returns the width drawn.
pub fn draw_text(
    canvas: &mut RgbImage,
    x: i32,
    y: i32,
    text: &str,
    px: f32,
    colour: Rgb<u8>,
) -> u32 {
    let f = font().as_scaled(PxScale::from(px));
    let (w, h) = (canvas.width() as i32, canvas.height() as i32);
    let baseline = y as f32 + f.ascent();
    let mut caret = x as f32;
    let mut prev = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            caret += f.kern(p, id);
        }
        let glyph = id.with_scale_and_position(px, point(caret, baseline));
        caret += f.h_advance(id);
        prev = Some(id);
        let Some(outline) = font().outline_glyph(glyph) else {
            continue; // a space
        };
        let b = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let (px_x, px_y) = (b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
            if px_x < 0 || px_y < 0 || px_x >= w || px_y >= h {
                return;
            }
            let a = coverage.clamp(0.0, 1.0);
            let p = canvas.get_pixel_mut(px_x as u32, px_y as u32);
            for (o, &t) in p.0.iter_mut().zip(colour.0.iter()) {
                *o = (a * f32::from(t) + (1.0 - a) * f32::from(*o)).round() as u8;
            }
        });
    }
    (caret - x as f32).ceil().max(0.0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dark_rows(c: &RgbImage) -> Vec<u32> {
        (0..c.height())
            .filter(|&y| (0..c.width()).any(|x| c.get_pixel(x, y).0[0] < 128))
            .collect()
    }

    // The complaint about the bitmap font: "g" had no descender. With a real font the ink of "g"
    // goes below the baseline (ascent from the top of the line) and the ink of "o" does not.
    #[test]
    fn descenders_go_below_the_baseline() {
        let white = Rgb([255, 255, 255]);
        let f = font().as_scaled(PxScale::from(LABEL_PX));
        let baseline = f.ascent().round() as u32;
        let mut o = RgbImage::from_pixel(20, 24, white);
        draw_text(&mut o, 2, 0, "o", LABEL_PX, BLACK);
        let mut g = RgbImage::from_pixel(20, 24, white);
        draw_text(&mut g, 2, 0, "g", LABEL_PX, BLACK);
        let (o_rows, g_rows) = (dark_rows(&o), dark_rows(&g));
        assert!(!o_rows.is_empty() && !g_rows.is_empty());
        assert!(*o_rows.last().unwrap() <= baseline, "{o_rows:?} {baseline}");
        assert!(
            *g_rows.last().unwrap() > baseline + 1,
            "{g_rows:?} {baseline}"
        );
        assert!(line_height(LABEL_PX) >= *g_rows.last().unwrap());
    }

    // Widths add up, the ellipsis cut fits, wrapping keeps every word and each line fits, and text
    // running off the canvas (or non-Latin text) does not panic.
    #[test]
    fn widths_fit_and_wrap() {
        let a = text_width("glioma", LABEL_PX);
        assert!(a > 20 && a < 80, "{a}");
        assert!(text_width("glioma glioma", LABEL_PX) > 2 * a);
        assert_eq!(fit("yes", LABEL_PX, 100), "yes");
        let cut = fit("Guided Backprop and a long tail", LABEL_PX, 60);
        assert!(
            cut.ends_with('…') && text_width(&cut, LABEL_PX) <= 60,
            "{cut}"
        );
        let lines = wrap("share of the map's range after clipping", LABEL_PX, 120);
        assert!(lines.len() >= 2, "{lines:?}");
        assert!(lines.iter().all(|l| text_width(l, LABEL_PX) <= 120));
        assert_eq!(
            lines.join(" "),
            "share of the map's range after clipping",
            "no word lost"
        );
        let mut c = RgbImage::from_pixel(10, 10, Rgb([255, 255, 255]));
        draw_text(&mut c, 5, 5, "tumeur é→ 🧠 Ωμέγα", LABEL_PX, RED);
        draw_text(&mut c, -30, -8, "off the canvas", LABEL_PX, RED);
    }
}
