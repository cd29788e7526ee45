//! Figure layout: the notebook's montage of tiles (originals, then one row of overlays per
//! method) with row and column labels, a labelled single tile (one image x method), blocks of text,
//! pieces stacked under one another (a figure and its colour bar), and the nearest-neighbour upscale
//! of small tiles. Text comes from [`super::font`].

use super::font::{draw_text, fit, line_height, text_width, BLACK, LABEL_PX};
use image::{Rgb, RgbImage};

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);

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
/// Row labels wider than this many pixels are cut with "…".
pub const MAX_ROW_LABEL_WIDTH: u32 = 220;

/// Lines of text, each with its colour (e.g. a file name in black, "wrong" in red).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caption(pub Vec<(String, Rgb<u8>)>);

impl Caption {
    /// One line per `\n`-separated part of `text`, in black.
    pub fn text(text: &str) -> Caption {
        if text.is_empty() {
            return Caption::default();
        }
        Caption(text.lines().map(|l| (l.to_string(), BLACK)).collect())
    }

    pub fn line(mut self, text: impl Into<String>, colour: Rgb<u8>) -> Caption {
        self.0.push((text.into(), colour));
        self
    }

    /// Draws the lines at `(x, y)`, each cut with "…" to `max_width`.
    fn draw(&self, canvas: &mut RgbImage, x: u32, y: u32, max_width: u32) {
        let lh = line_height(LABEL_PX);
        for (i, (text, colour)) in self.0.iter().enumerate() {
            let t = fit(text, LABEL_PX, max_width);
            draw_text(
                canvas,
                x as i32,
                (y + i as u32 * lh) as i32,
                &t,
                LABEL_PX,
                *colour,
            );
        }
    }
}

impl From<&str> for Caption {
    fn from(s: &str) -> Caption {
        Caption::text(s)
    }
}

impl From<String> for Caption {
    fn from(s: String) -> Caption {
        Caption::text(&s)
    }
}

/// The notebook's figure: first row the originals, then one row per method with that method's
/// overlays. `rows[r][c]` tiles all of equal size; `row_labels` (one per row, e.g. "original",
/// "Grad-CAM") drawn at the left of each row, `col_labels` (one [`Caption`] per column, e.g. file
/// name, true and predicted class, right / wrong) drawn above each column; white background, a few
/// pixels of padding between tiles. Text in DejaVu Sans at [`LABEL_PX`].
///
/// Layout (`P = MONTAGE_PAD = 4`, `H = line_height(LABEL_PX)`):
/// * cell = the largest tile width `cw` x largest tile height `ch` (a smaller tile sits at the
///   cell's top-left);
/// * `ncols` = longest row, `nrows` = number of rows;
/// * left margin `L = P + w + P` where `w` = pixel width of the widest row label (capped at
///   [`MAX_ROW_LABEL_WIDTH`], longer ones cut with "…"), or `L = 0` when no row label has text;
/// * top margin `U = P + n * H` where `n` = most lines of any column label, or 0 without any;
/// * width `= L + ncols * (cw + P) + P`, height `= U + nrows * (ch + P) + P`;
/// * tile `(r, c)` has its top-left at `(L + P + c * (cw + P), U + P + r * (ch + P))`;
///   row label `r` at `x = P`, vertically centred on its row; line `k` of column label `c` at
///   the tile's x and `y = P + k * H`, cut with "…" to `cw + P` pixels.
///
/// Missing labels are simply not drawn; extra ones are ignored. With no rows, no columns, or
/// zero-sized tiles the result is a blank white 8 x 8 image.
pub fn montage(rows: &[Vec<RgbImage>], row_labels: &[String], col_labels: &[Caption]) -> RgbImage {
    let nrows = rows.len() as u32;
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let cw = rows.iter().flatten().map(|t| t.width()).max().unwrap_or(0);
    let ch = rows.iter().flatten().map(|t| t.height()).max().unwrap_or(0);
    if nrows == 0 || ncols == 0 || cw == 0 || ch == 0 {
        return RgbImage::from_pixel(8, 8, WHITE);
    }
    let p = MONTAGE_PAD;
    let lh = line_height(LABEL_PX);
    let label_w = row_labels
        .iter()
        .take(rows.len())
        .map(|s| text_width(s, LABEL_PX).min(MAX_ROW_LABEL_WIDTH))
        .max()
        .unwrap_or(0);
    let left = if label_w > 0 { p + label_w + p } else { 0 };
    let col_lines = col_labels
        .iter()
        .take(ncols as usize)
        .map(|c| c.0.len() as u32)
        .max()
        .unwrap_or(0);
    let top = if col_lines > 0 { p + col_lines * lh } else { 0 };
    let width = left + ncols * (cw + p) + p;
    let height = top + nrows * (ch + p) + p;
    let mut canvas = RgbImage::from_pixel(width, height, WHITE);

    for (r, row) in rows.iter().enumerate() {
        let y0 = top + p + r as u32 * (ch + p);
        for (c, tile) in row.iter().enumerate() {
            let x0 = left + p + c as u32 * (cw + p);
            image::imageops::replace(&mut canvas, tile, i64::from(x0), i64::from(y0));
        }
        if let Some(label) = row_labels.get(r) {
            let ly = y0 + ch.saturating_sub(lh) / 2;
            let t = fit(label, LABEL_PX, MAX_ROW_LABEL_WIDTH);
            draw_text(&mut canvas, p as i32, ly as i32, &t, LABEL_PX, BLACK);
        }
    }
    for (c, label) in col_labels.iter().take(ncols as usize).enumerate() {
        let x0 = left + p + c as u32 * (cw + p);
        label.draw(&mut canvas, x0, p, cw + p);
    }
    canvas
}

/// A block of text `width` pixels wide: the caption's lines (each cut to the width) with padding.
pub fn text_block(caption: &Caption, width: u32) -> RgbImage {
    let lh = line_height(LABEL_PX);
    let p = MONTAGE_PAD;
    let mut img = RgbImage::from_pixel(width.max(1), 2 * p + caption.0.len() as u32 * lh, WHITE);
    caption.draw(&mut img, p, p, width.saturating_sub(2 * p));
    img
}

/// The pieces one under the other, left-aligned, with [`MONTAGE_PAD`] between them, on white; as
/// wide as the widest piece.
pub fn stack(parts: &[RgbImage]) -> RgbImage {
    let width = parts.iter().map(|p| p.width()).max().unwrap_or(8).max(1);
    let height: u32 = parts.iter().map(|p| p.height() + MONTAGE_PAD).sum::<u32>() + MONTAGE_PAD;
    let mut canvas = RgbImage::from_pixel(width, height, WHITE);
    let mut y = MONTAGE_PAD;
    for part in parts {
        image::imageops::replace(&mut canvas, part, 0, i64::from(y));
        y += part.height() + MONTAGE_PAD;
    }
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two rows of two 10x6 tiles, row labels "original" / "Grad-CAM", one-line column labels:
    // L = 4 + w + 4 with w the wider label's pixel width, U = 4 + H. Tile (1,1) has its top-left at
    // (L + 4 + 14, U + 4 + 10), and the pixel past its bottom-right corner is background.
    #[test]
    fn montage_size_and_placement() {
        let red = RgbImage::from_pixel(10, 6, Rgb([255, 0, 0]));
        let rows = vec![vec![red.clone(), red.clone()], vec![red.clone(), red]];
        let rl = vec!["original".to_string(), "Grad-CAM".to_string()];
        let cl: Vec<Caption> = vec!["yes 0.97".into(), "no 0.12".into()];
        let m = montage(&rows, &rl, &cl);
        let w = text_width("original", LABEL_PX).max(text_width("Grad-CAM", LABEL_PX));
        let (l, u) = (8 + w, 4 + line_height(LABEL_PX));
        assert_eq!(m.dimensions(), (l + 2 * 14 + 4, u + 2 * 10 + 4));
        let (x, y) = (l + 4 + 14, u + 4 + 10);
        assert_eq!(m.get_pixel(x, y).0, [255, 0, 0]);
        assert_eq!(m.get_pixel(x + 9, y + 5).0, [255, 0, 0]);
        assert_eq!(m.get_pixel(x + 10, y + 6).0, [255, 255, 255]);
        // no labels -> no margins: width 2*14+4 = 32, height 2*10+4 = 24
        let m = montage(&rows, &[], &[]);
        assert_eq!(m.dimensions(), (32, 24));
        // label text is drawn: dark pixels in the left margin and, over tiles wide enough for
        // "yes 0.97" (a 10-pixel column holds only an ellipsis), above the tiles
        let wide = RgbImage::from_pixel(80, 6, Rgb([255, 0, 0]));
        let m = montage(&[vec![wide.clone(), wide]], &rl, &cl);
        assert!((0..l).any(|x| (0..m.height()).any(|y| m.get_pixel(x, y).0[0] < 80)));
        assert!((l..m.width()).any(|x| (0..u).any(|y| m.get_pixel(x, y).0[0] < 80)));
    }

    // Multi-line captions make the top margin grow; non-ASCII text does not panic; a very long row
    // label is capped; empty input and empty rows return the blank 8x8 image.
    #[test]
    fn montage_robustness() {
        let t = RgbImage::from_pixel(3, 3, Rgb([0, 255, 0]));
        let rows = vec![vec![t.clone()], vec![], vec![t]];
        let rl = vec!["tumeur é→ 🧠".to_string(), "x".repeat(200)];
        let cl = vec![
            Caption::text("oui à 0,97 ✓").line("wrong", super::super::font::RED),
            "extra".into(),
        ];
        let m = montage(&rows, &rl, &cl);
        let lh = line_height(LABEL_PX);
        // L = 4 + 220 + 4 (capped); the empty middle row still takes space.
        assert_eq!(m.dimensions(), (228 + 7 + 4, 4 + 2 * lh + 3 * (3 + 4) + 4));
        let blank = montage(&[], &[], &[]);
        assert_eq!(blank.dimensions(), (8, 8));
        assert!(blank.pixels().all(|p| p.0 == [255, 255, 255]));
        let blank = montage(&[vec![], vec![]], &rl, &cl);
        assert_eq!(blank.dimensions(), (8, 8));
        let blank = montage(&[vec![RgbImage::new(0, 0)]], &rl, &cl);
        assert_eq!(blank.dimensions(), (8, 8));
    }

    // Stacking: as wide as the widest piece, heights plus padding; a text block has one line per
    // caption line.
    #[test]
    fn stack_and_text_block() {
        let a = RgbImage::from_pixel(10, 5, Rgb([1, 2, 3]));
        let b = RgbImage::from_pixel(20, 7, Rgb([4, 5, 6]));
        let s = stack(&[a, b]);
        assert_eq!(s.dimensions(), (20, 4 + 5 + 4 + 7 + 4));
        assert_eq!(s.get_pixel(0, 4).0, [1, 2, 3]);
        assert_eq!(s.get_pixel(19, 13).0, [4, 5, 6]);
        let t = text_block(&Caption::text("file.jpg\nGrad-CAM"), 100);
        assert_eq!(t.height(), 8 + 2 * line_height(LABEL_PX));
        assert!(t.pixels().any(|p| p.0[0] < 80));
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
