//! Figure layout: the notebook's montage of tiles (originals, then one row of overlays per
//! method) with row and column labels, and the nearest-neighbour upscale of small tiles.

use super::font::{draw_text, CHAR_ADVANCE, CHAR_HEIGHT};
use image::{Rgb, RgbImage};

/// Upscale of a tile (for display of small model inputs, e.g. 128 -> 256).
///
/// Nearest neighbour (each pixel becomes a `factor x factor` block, so attribution pixels
/// stay visible as blocks); factor 0 or 1 returns a copy.
pub fn upscale(img: &RgbImage, factor: u32) -> RgbImage {
    if factor <= 1 {
        return img.clone();
    }
    let (w, h) = img.dimensions();
    RgbImage::from_fn(
        w.saturating_mul(factor),
        h.saturating_mul(factor),
        |x, y| *img.get_pixel(x / factor, y / factor),
    )
}

/// Padding (pixels) around and between tiles.
pub const MONTAGE_PAD: u32 = 4;
/// Row labels longer than this many characters are truncated.
pub const MAX_ROW_LABEL_CHARS: usize = 32;

/// The notebook's figure: first row the originals, then one row per method with that method's overlays. `rows[r][c]` tiles all of equal size; `row_labels` (one per row, e.g. "original", "Saliency", "GradCAM") drawn at the left of each row in the built-in 5x7 bitmap font ([`super::font`]; unknown characters drawn as a box), `col_labels` (one per column, e.g. "yes 0.97") drawn above each column; white background, a few pixels of padding between tiles. Must not panic on empty input (return a small blank image).
///
/// Layout (`P = MONTAGE_PAD = 4`, `A = CHAR_ADVANCE = 12`, `T = CHAR_HEIGHT = 14`):
/// * cell = the largest tile width `cw` x largest tile height `ch` (tiles of equal size
///   as expected fill their cell; a smaller one sits at the cell's top-left);
/// * `ncols` = longest row, `nrows` = number of rows;
/// * left margin `L = P + A * m` where `m` = characters in the longest row label (capped
///   at 32), or `L = 0` when no row label has characters;
/// * top margin `U = T + P` when any column label has characters, else 0;
/// * width `= L + ncols * (cw + P) + P`, height `= U + nrows * (ch + P) + P`;
/// * tile `(r, c)` has its top-left at `(L + P + c * (cw + P), U + P + r * (ch + P))`;
///   row label `r` at `x = P`, vertically centred on its row; column label `c` at the
///   tile's x and `y = P`, truncated to the characters that fit in `cw + P`.
///
/// Labels are drawn in black on white. Missing labels are simply not drawn; extra ones
/// are ignored. With no rows, no columns, or zero-sized tiles the result is a blank
/// white 8 x 8 image.
pub fn montage(rows: &[Vec<RgbImage>], row_labels: &[String], col_labels: &[String]) -> RgbImage {
    const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
    let nrows = rows.len() as u32;
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let cw = rows.iter().flatten().map(|t| t.width()).max().unwrap_or(0);
    let ch = rows.iter().flatten().map(|t| t.height()).max().unwrap_or(0);
    if nrows == 0 || ncols == 0 || cw == 0 || ch == 0 {
        return RgbImage::from_pixel(8, 8, WHITE);
    }
    let p = MONTAGE_PAD;
    let label_chars = row_labels
        .iter()
        .take(rows.len())
        .map(|s| s.chars().count().min(MAX_ROW_LABEL_CHARS))
        .max()
        .unwrap_or(0) as u32;
    let left = if label_chars > 0 {
        p + CHAR_ADVANCE * label_chars
    } else {
        0
    };
    let any_col_label = col_labels
        .iter()
        .take(ncols as usize)
        .any(|s| !s.is_empty());
    let top = if any_col_label { CHAR_HEIGHT + p } else { 0 };
    let width = left + ncols * (cw + p) + p;
    let height = top + nrows * (ch + p) + p;
    let mut canvas = RgbImage::from_pixel(width, height, WHITE);

    for (r, row) in rows.iter().enumerate() {
        let y0 = top + p + r as u32 * (ch + p);
        for (c, tile) in row.iter().enumerate() {
            let x0 = left + p + c as u32 * (cw + p);
            for (x, y, px) in tile.enumerate_pixels() {
                canvas.put_pixel(x0 + x, y0 + y, *px);
            }
        }
        if let Some(label) = row_labels.get(r) {
            let ly = y0 + ch.saturating_sub(CHAR_HEIGHT) / 2;
            draw_text(&mut canvas, p, ly, label, MAX_ROW_LABEL_CHARS);
        }
    }
    let col_chars = ((cw + p) / CHAR_ADVANCE).max(1) as usize;
    for (c, label) in col_labels.iter().take(ncols as usize).enumerate() {
        let x0 = left + p + c as u32 * (cw + p);
        draw_text(&mut canvas, x0, p, label, col_chars);
    }
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two rows of two 10x6 tiles, labels "original" (8 chars) / "GradCAM": L = 4 + 12*8
    // = 100, U = 14 + 4 = 18; width = 100 + 2*(10+4) + 4 = 132, height = 18 + 2*(6+4) +
    // 4 = 42. Tile (1,1) top-left is at (100+4+14, 18+4+10) = (118, 32).
    #[test]
    fn montage_size_and_placement() {
        let red = RgbImage::from_pixel(10, 6, Rgb([255, 0, 0]));
        let rows = vec![vec![red.clone(), red.clone()], vec![red.clone(), red]];
        let rl = vec!["original".to_string(), "GradCAM".to_string()];
        let cl = vec!["yes 0.97".to_string(), "no 0.12".to_string()];
        let m = montage(&rows, &rl, &cl);
        assert_eq!(m.dimensions(), (132, 42));
        assert_eq!(m.get_pixel(118, 32).0, [255, 0, 0]);
        assert_eq!(m.get_pixel(127, 37).0, [255, 0, 0]);
        assert_eq!(m.get_pixel(128, 38).0, [255, 255, 255]);
        // no labels -> no margins: width 2*14+4 = 32, height 2*10+4 = 24
        let m = montage(&rows, &[], &[]);
        assert_eq!(m.dimensions(), (32, 24));
        // some label pixels are black
        let m = montage(&rows, &rl, &cl);
        assert!(m.pixels().any(|p| p.0 == [0, 0, 0]));
    }

    // Non-ASCII characters are drawn as boxes (no panic, char count not byte count);
    // empty input and empty rows return the blank 8x8 image.
    #[test]
    fn montage_robustness() {
        let t = RgbImage::from_pixel(3, 3, Rgb([0, 255, 0]));
        let rows = vec![vec![t.clone()], vec![], vec![t]];
        let rl = vec!["tumeur é→ 🧠".to_string()];
        let cl = vec!["oui à 0,97 ✓".to_string(), "extra".to_string()];
        let m = montage(&rows, &rl, &cl);
        // 11 chars: L = 4 + 12*11 = 136; width 136 + 1*(3+4) + 4 = 147;
        // height U + 3*(3+4) + 4 = 18 + 21 + 4 = 43 (the empty middle row still takes space)
        assert_eq!(m.dimensions(), (147, 43));
        let blank = montage(&[], &[], &[]);
        assert_eq!(blank.dimensions(), (8, 8));
        assert!(blank.pixels().all(|p| p.0 == [255, 255, 255]));
        let blank = montage(&[vec![], vec![]], &rl, &cl);
        assert_eq!(blank.dimensions(), (8, 8));
        let blank = montage(&[vec![RgbImage::new(0, 0)]], &rl, &cl);
        assert_eq!(blank.dimensions(), (8, 8));
    }

    // Nearest-neighbour upscale: each pixel becomes a factor x factor block.
    #[test]
    fn upscale_nearest() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(1, 0, Rgb([9, 8, 7]));
        let up = upscale(&img, 3);
        assert_eq!(up.dimensions(), (6, 3));
        assert_eq!(up.get_pixel(2, 2).0, [0, 0, 0]);
        assert_eq!(up.get_pixel(3, 0).0, [9, 8, 7]);
        assert_eq!(up.get_pixel(5, 2).0, [9, 8, 7]);
        assert_eq!(upscale(&img, 0), img);
    }
}
