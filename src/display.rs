//! Heatmap display: what the notebook's plot_attributions(cmap='jet', alpha=0.4, absolute_value=True, clip_percentile=0.5) shows, as PNG-ready images. Display only: metrics never use these normalised values.
//!
//! Pipeline per attribution map (mirrors the notebook's Xplique call):
//! 1. absolute value of the raw map (non-finite entries are first replaced by 0);
//! 2. clip to the map's own `[p, 100 - p]` percentiles (numpy's default `linear` method);
//! 3. min-max normalise to `[0, 1]` (a constant map gives all zeros);
//! 4. colour with matplotlib's `jet` (256-entry LUT built from its segment data);
//! 5. blend `alpha * jet + (1 - alpha) * grey` over the grey image, which is shown the
//!    normal way round (its own min-max to 0..255, black stays black).
//!
//! Rules chosen to follow matplotlib:
//! * LUT: 256 entries, each channel linearly interpolated in matplotlib's `_jet_data`
//!   segment table with the same f64 operations as `LinearSegmentedColormap`'s
//!   `_create_lookup_table` (points scaled by 255), then converted to bytes by truncation
//!   (`(lut * 255).astype(uint8)`).
//! * Indexing: a value `v` (clamped to `[0, 1]`, NaN -> 0) uses entry
//!   `min(floor(v * 256), 255)` (matplotlib's `Colormap.__call__` for floats).
//! * Grey image, one channel: same rule through a linear black-to-white 256-entry LUT
//!   (what `imshow(cmap='gray')` does). Three channels: `trunc(v * 255)` per channel
//!   (what `imshow` does with a float RGB image).
//! * Blend: `round(alpha * jet + (1 - alpha) * grey)` per channel.

use image::{Rgb, RgbImage};
use std::sync::OnceLock;

/// Parameters of the notebook display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DisplayParams {
    /// Opacity of the heatmap over the grey image (notebook: 0.4).
    pub alpha: f32,
    /// Percentile clipped at both ends, in percent (notebook: 0.5 -> [0.5, 99.5]).
    pub clip_percentile: f32,
    /// Take the absolute value of the map first (notebook: true).
    pub absolute_value: bool,
}

impl Default for DisplayParams {
    fn default() -> Self {
        DisplayParams {
            alpha: 0.4,
            clip_percentile: 0.5,
            absolute_value: true,
        }
    }
}

/// Percentile with numpy's default linear interpolation; p in [0,100]. Panics never; empty slice -> 0.
///
/// NaN entries are ignored (an all-NaN slice gives 0); `p` is clamped to `[0, 100]`
/// (NaN `p` is taken as 0). The virtual index is `(n - 1) * p / 100`, and the two
/// neighbouring order statistics are blended with numpy's `_lerp` (which interpolates from
/// the upper neighbour when the fraction is at least 0.5), computed in f64.
pub fn percentile(values: &[f32], p: f32) -> f32 {
    let mut v: Vec<f64> = values
        .iter()
        .filter(|x| !x.is_nan())
        .map(|&x| f64::from(x))
        .collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let p = if p.is_nan() {
        0.0
    } else {
        f64::from(p).clamp(0.0, 100.0)
    };
    let n = v.len();
    let virtual_index = (p / 100.0) * (n - 1) as f64;
    let lo = (virtual_index.floor().max(0.0) as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let t = virtual_index - lo as f64;
    let (a, b) = (v[lo], v[hi]);
    if a == b {
        return a as f32;
    }
    let diff = b - a;
    let r = if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    };
    r as f32
}

/// Steps 1-3: abs (if asked), clip to [p, 100-p] percentiles, min-max to [0,1]; NaN/inf inputs treated as 0; constant map -> zeros.
pub fn normalize_for_display(map: &[f32], params: &DisplayParams) -> Vec<f32> {
    let mut v: Vec<f32> = map
        .iter()
        .map(|&x| {
            let x = if x.is_finite() { x } else { 0.0 };
            if params.absolute_value {
                x.abs()
            } else {
                x
            }
        })
        .collect();
    if v.is_empty() {
        return v;
    }
    let p = if params.clip_percentile.is_finite() {
        params.clip_percentile.clamp(0.0, 50.0)
    } else {
        0.0
    };
    if p > 0.0 {
        let lo = percentile(&v, p);
        let hi = percentile(&v, 100.0 - p);
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        for x in v.iter_mut() {
            *x = x.clamp(lo, hi);
        }
    }
    let (mut mn, mut mx) = (f64::INFINITY, f64::NEG_INFINITY);
    for &x in &v {
        mn = mn.min(f64::from(x));
        mx = mx.max(f64::from(x));
    }
    let range = mx - mn;
    if range.is_nan() || range <= 0.0 || range.is_infinite() {
        return vec![0.0; v.len()];
    }
    v.iter()
        .map(|&x| (((f64::from(x) - mn) / range) as f32).clamp(0.0, 1.0))
        .collect()
}

/// matplotlib's `_jet_data`: per channel, `(x, y0, y1)` rows.
const JET_RED: [(f64, f64, f64); 5] = [
    (0.0, 0.0, 0.0),
    (0.35, 0.0, 0.0),
    (0.66, 1.0, 1.0),
    (0.89, 1.0, 1.0),
    (1.0, 0.5, 0.5),
];
const JET_GREEN: [(f64, f64, f64); 6] = [
    (0.0, 0.0, 0.0),
    (0.125, 0.0, 0.0),
    (0.375, 1.0, 1.0),
    (0.64, 1.0, 1.0),
    (0.91, 0.0, 0.0),
    (1.0, 0.0, 0.0),
];
const JET_BLUE: [(f64, f64, f64); 5] = [
    (0.0, 0.5, 0.5),
    (0.11, 1.0, 1.0),
    (0.34, 1.0, 1.0),
    (0.65, 0.0, 0.0),
    (1.0, 0.0, 0.0),
];
const GREY_SEG: [(f64, f64, f64); 2] = [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)];

const LUT_N: usize = 256;

/// One channel of a `LinearSegmentedColormap` LUT, sampled like matplotlib's
/// `_create_lookup_table` (gamma 1): breakpoints and sample points are both scaled by
/// `N - 1 = 255`, the samples being `255 * (i * (1/255))` (numpy's `linspace`), the
/// segment found with a left-sided search, and the value interpolated as
/// `distance * (y0[k] - y1[k-1]) + y1[k-1]`, all in f64 in the same order of operations;
/// the ends are `y1` of the first row and `y0` of the last. Bytes are `trunc(value * 255)`
/// (`(lut * 255).astype(uint8)`).
fn segment_lut(seg: &[(f64, f64, f64)]) -> [u8; LUT_N] {
    let scale = (LUT_N - 1) as f64;
    let step = 1.0 / scale;
    let mut out = [0u8; LUT_N];
    for (i, o) in out.iter_mut().enumerate() {
        let val = if i == 0 {
            seg[0].2
        } else if i == LUT_N - 1 {
            seg[seg.len() - 1].1
        } else {
            let xi = scale * (i as f64 * step);
            // first k with scaled x[k] >= xi (searchsorted, side='left')
            let k = seg
                .iter()
                .position(|s| s.0 * scale >= xi)
                .unwrap_or(seg.len() - 1)
                .max(1);
            let (x0, _, y1_prev) = seg[k - 1];
            let (x1, y0_next, _) = seg[k];
            let (x0, x1) = (x0 * scale, x1 * scale);
            let distance = (xi - x0) / (x1 - x0);
            distance * (y0_next - y1_prev) + y1_prev
        };
        *o = (val.clamp(0.0, 1.0) * 255.0) as u8;
    }
    out
}

fn jet_lut() -> &'static [[u8; 3]; LUT_N] {
    static LUT: OnceLock<[[u8; 3]; LUT_N]> = OnceLock::new();
    LUT.get_or_init(|| {
        let (r, g, b) = (
            segment_lut(&JET_RED),
            segment_lut(&JET_GREEN),
            segment_lut(&JET_BLUE),
        );
        let mut lut = [[0u8; 3]; LUT_N];
        for (i, e) in lut.iter_mut().enumerate() {
            *e = [r[i], g[i], b[i]];
        }
        lut
    })
}

fn grey_lut() -> &'static [u8; LUT_N] {
    static LUT: OnceLock<[u8; LUT_N]> = OnceLock::new();
    LUT.get_or_init(|| segment_lut(&GREY_SEG))
}

/// LUT index for a value: clamp to [0, 1] (NaN -> 0), then `min(floor(v * 256), 255)`.
fn lut_index(v: f32) -> usize {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    ((v * LUT_N as f32) as usize).min(LUT_N - 1)
}

/// matplotlib jet, v in [0,1] (clamped) -> RGB bytes.
pub fn jet(v: f32) -> [u8; 3] {
    jet_lut()[lut_index(v)]
}

/// Grey image (any range, channel-last f32 with 1 or 3 channels, width x height) -> RGB image min-max stretched to 0..255 (constant image -> black).
///
/// Non-finite samples count as 0; missing samples (short slice) are black. With 1 or 2
/// channels the first channel is used as grey; with 3 or more the first three are RGB
/// (min-max taken jointly over them); 0 channels gives a black image.
pub fn grey_to_rgb(img: &[f32], width: u32, height: u32, channels: usize) -> RgbImage {
    let mut out = RgbImage::new(width, height);
    if channels == 0 {
        return out;
    }
    let used = channels.min(3);
    let npix = width as usize * height as usize;
    let sample = |p: usize, c: usize| -> Option<f64> {
        img.get(p * channels + c)
            .map(|&x| if x.is_finite() { f64::from(x) } else { 0.0 })
    };
    let (mut mn, mut mx) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in 0..npix {
        for c in 0..used {
            if let Some(x) = sample(p, c) {
                mn = mn.min(x);
                mx = mx.max(x);
            }
        }
    }
    let range = mx - mn;
    if range.is_nan() || range <= 0.0 || range.is_infinite() {
        return out;
    }
    let lut = grey_lut();
    for (p, px) in out.pixels_mut().enumerate() {
        if used == 1 || used == 2 {
            if let Some(x) = sample(p, 0) {
                let g = lut[lut_index(((x - mn) / range) as f32)];
                *px = Rgb([g, g, g]);
            }
        } else {
            let mut rgb = [0u8; 3];
            for (c, o) in rgb.iter_mut().enumerate() {
                if let Some(x) = sample(p, c) {
                    *o = (((x - mn) / range).clamp(0.0, 1.0) * 255.0) as u8;
                }
            }
            *px = Rgb(rgb);
        }
    }
    out
}

/// Full overlay: normalize_for_display + jet + alpha blend over grey_to_rgb(img). Map and image have the same width x height.
///
/// Blend per channel: `round(alpha * jet + (1 - alpha) * grey)`, alpha clamped to [0, 1]
/// (NaN -> 0.4). A map shorter than `width * height` is padded with zeros.
pub fn overlay(
    img: &[f32],
    channels: usize,
    map: &[f32],
    width: u32,
    height: u32,
    params: &DisplayParams,
) -> RgbImage {
    let mut out = grey_to_rgb(img, width, height, channels);
    let npix = width as usize * height as usize;
    let mut m: Vec<f32> = map.iter().take(npix).copied().collect();
    m.resize(npix, 0.0);
    let norm = normalize_for_display(&m, params);
    let a = if params.alpha.is_nan() {
        0.4
    } else {
        params.alpha.clamp(0.0, 1.0)
    };
    for (px, &v) in out.pixels_mut().zip(norm.iter()) {
        let j = jet(v);
        for (o, &jc) in px.0.iter_mut().zip(j.iter()) {
            let blended = a * f32::from(jc) + (1.0 - a) * f32::from(*o);
            *o = blended.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Nearest or bilinear upscale of a tile (for display of small model inputs, e.g. 128 -> 256).
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

// ---------------------------------------------------------------------------------------
// Montage and its bitmap font
// ---------------------------------------------------------------------------------------

/// Padding (pixels) around and between tiles.
pub const MONTAGE_PAD: u32 = 4;
/// Each font pixel is drawn as a `FONT_SCALE x FONT_SCALE` block.
pub const FONT_SCALE: u32 = 2;
/// Horizontal advance of one character: 5 glyph columns + 1 gap, scaled.
pub const CHAR_ADVANCE: u32 = 6 * FONT_SCALE;
/// Height of one text line: 7 glyph rows, scaled.
pub const CHAR_HEIGHT: u32 = 7 * FONT_SCALE;
/// Row labels longer than this many characters are truncated.
pub const MAX_ROW_LABEL_CHARS: usize = 32;

/// 5x7 glyph, one byte per row (top first), bit 4 = leftmost column. Hand-drawn for
/// ASCII letters, digits, space and common punctuation; anything else is a box.
fn glyph(c: char) -> [u8; 7] {
    match c {
        ' ' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        'a' => [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F],
        'b' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E],
        'c' => [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E],
        'd' => [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F],
        'e' => [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E],
        'f' => [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08],
        'g' => [0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'h' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11],
        'i' => [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E],
        'j' => [0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C],
        'k' => [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12],
        'l' => [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'm' => [0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11],
        'n' => [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11],
        'o' => [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E],
        'p' => [0x00, 0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10],
        'q' => [0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x01],
        'r' => [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10],
        's' => [0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E],
        't' => [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06],
        'u' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D],
        'v' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'w' => [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A],
        'x' => [0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11],
        'y' => [0x00, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'z' => [0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        ';' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '[' => [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E],
        ']' => [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '!' => [0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04],
        '?' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
        '\'' => [0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00],
        '"' => [0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '*' => [0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '|' => [0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        '&' => [0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D],
        '@' => [0x0E, 0x11, 0x17, 0x15, 0x17, 0x10, 0x0F],
        _ => [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F],
    }
}

/// Draws at most `max_chars` characters of `text` in black, top-left at `(x, y)`;
/// anything falling outside the canvas is skipped.
fn draw_text(canvas: &mut RgbImage, x: u32, y: u32, text: &str, max_chars: usize) {
    let (w, h) = canvas.dimensions();
    for (i, ch) in text.chars().take(max_chars).enumerate() {
        let gx = x as u64 + i as u64 * u64::from(CHAR_ADVANCE);
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..5u32 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                for dy in 0..FONT_SCALE {
                    for dx in 0..FONT_SCALE {
                        let px = gx + u64::from(col * FONT_SCALE + dx);
                        let py = u64::from(y) + row as u64 * u64::from(FONT_SCALE) + u64::from(dy);
                        if px < u64::from(w) && py < u64::from(h) {
                            canvas.put_pixel(px as u32, py as u32, Rgb([0, 0, 0]));
                        }
                    }
                }
            }
        }
    }
}

/// The notebook's figure: first row the originals, then one row per method with that method's overlays. `rows[r][c]` tiles all of equal size; `row_labels` (one per row, e.g. "original", "Saliency", "GradCAM") drawn at the left of each row in a small built-in bitmap font (write a tiny 5x7 or similar font for ASCII letters, digits and a few punctuation marks yourself; unknown characters drawn as a box), `col_labels` (one per column, e.g. "yes 0.97") drawn above each column; white background, a few pixels of padding between tiles. Must not panic on empty input (return a small blank image).
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

    // Expected bytes derived by hand from matplotlib's jet segment data with the LUT rule
    // (x_i = i/255, bytes = trunc(255 * value)):
    // * v = 0 -> entry 0 at x = 0: red 0, green 0, blue 0.5 -> trunc(127.5) = 127.
    // * v = 1 -> entry 255 at x = 1: red 0.5 -> 127, green 0, blue 0.
    // * v = 0.5 -> entry floor(0.5 * 256) = 128 at x = 128/255 = 0.50196:
    //   red on (0.35,0)-(0.66,1): (128 - 89.25)/(168.3 - 89.25) = 125/255 in exact
    //   arithmetic, but matplotlib's f64 evaluation gives 0.4901960784313725, one ulp
    //   below 125/255 (= 0.49019607843137253), so trunc(255 * it) = 124 (we replicate
    //   the same f64 operations; 124 or 125 would both be within the brief's tolerance);
    //   green on the flat 1 part (0.375..0.64) -> 255;
    //   blue on (0.34,1)-(0.65,0): 1 - (128/255 - 0.34)/0.31 = 0.477546 -> 121.77 -> 121
    //   (matplotlib reports 0.4775458570524984).
    // * v = 0.25 -> entry 64 at x = 0.25098: red 0; green (0.25098-0.125)/0.25 = 0.50392
    //   -> 128.5 -> 128; blue on the flat 1 part -> 255.
    // * v = 0.75 -> entry 192 at x = 0.75294: red on the flat 1 part -> 255; green on
    //   (0.64,1)-(0.91,0): 1 - (0.75294-0.64)/0.27 = 0.58170 -> 148.3 -> 148; blue 0.
    #[test]
    fn jet_matches_matplotlib_lut() {
        assert_eq!(jet(0.0), [0, 0, 127]);
        assert_eq!(jet(1.0), [127, 0, 0]);
        let mid = jet(0.5);
        assert_eq!(mid[0], 124, "{mid:?}");
        assert_eq!(mid[1], 255);
        assert_eq!(mid[2], 121);
        assert_eq!(jet(0.25), [0, 128, 255]);
        assert_eq!(jet(0.75), [255, 148, 0]);
        // Clamping and NaN: out-of-range values use the end entries.
        assert_eq!(jet(-3.0), jet(0.0));
        assert_eq!(jet(7.0), jet(1.0));
        assert_eq!(jet(f32::NAN), jet(0.0));
        // Index rule: 255.9/256 still maps to entry 255; just below 1/256 to entry 0.
        assert_eq!(jet(0.999), jet(1.0));
        assert_eq!(jet(0.0039), jet(0.0));
    }

    // numpy: np.percentile([1,2,3,4], 50) = 2.5 (virtual index 1.5); at 0 and 100 the
    // min and max; np.percentile(np.arange(200), 0.5) has virtual index 199 * 0.005 =
    // 0.995 -> 0.995, and at 99.5 the index 198.005 -> 198.005. Order of input does not
    // matter (sorted first). Empty -> 0 by contract.
    #[test]
    fn percentile_matches_numpy() {
        let a = [4.0, 1.0, 3.0, 2.0];
        assert!((percentile(&a, 50.0) - 2.5).abs() < 1e-6);
        assert_eq!(percentile(&a, 0.0), 1.0);
        assert_eq!(percentile(&a, 100.0), 4.0);
        // [1,2,3,4] at 25: index 0.75 -> 1.75
        assert!((percentile(&a, 25.0) - 1.75).abs() < 1e-6);
        let r: Vec<f32> = (0..200).map(|i| i as f32).collect();
        assert!((percentile(&r, 0.5) - 0.995).abs() < 1e-5);
        assert!((percentile(&r, 99.5) - 198.005).abs() < 1e-3);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[7.0], 33.0), 7.0);
        // out-of-range p is clamped, NaN entries ignored
        assert_eq!(percentile(&a, 150.0), 4.0);
        assert_eq!(percentile(&a, -5.0), 1.0);
        assert_eq!(percentile(&[f32::NAN, 2.0, f32::NAN], 50.0), 2.0);
    }

    // A constant map has zero range after clipping: the contract says all zeros (no
    // division by zero, so no NaN).
    #[test]
    fn normalize_constant_is_zero() {
        let p = DisplayParams::default();
        let out = normalize_for_display(&[3.5; 100], &p);
        assert!(out.iter().all(|&v| v == 0.0));
        let out = normalize_for_display(&[0.0; 10], &p);
        assert!(out.iter().all(|&v| v == 0.0));
        assert!(normalize_for_display(&[], &p).is_empty());
        // NaN / inf become 0 first; with everything else 0 the map is constant.
        let out = normalize_for_display(&[f32::NAN, f32::INFINITY, 0.0, 0.0], &p);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    // 1000 values 0..999 plus one 1e9 outlier. The 99.5th percentile of the 1001 values
    // is at virtual index 995 -> 995, so the outlier is clipped to 995 and the ramp keeps
    // its contrast: value 500 lands near 500/995 instead of ~5e-7.
    #[test]
    fn normalize_clips_outlier() {
        let mut m: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        m.push(1e9);
        let out = normalize_for_display(&m, &DisplayParams::default());
        assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
        // low clip at index 5 -> value 5; high clip 995
        let expected = (500.0 - 5.0) / (995.0 - 5.0);
        assert!((out[500] - expected).abs() < 1e-4, "{}", out[500]);
        assert_eq!(out[1000], 1.0);
        assert_eq!(out[0], 0.0);
        // without clipping the ramp collapses to ~0
        let p0 = DisplayParams {
            clip_percentile: 0.0,
            ..Default::default()
        };
        let raw = normalize_for_display(&m, &p0);
        assert!(raw[500] < 1e-5);
    }

    // |x| is applied before anything else, so a map and its negation display the same;
    // outputs always lie in [0, 1].
    #[test]
    fn normalize_absolute_value_symmetric() {
        let m: Vec<f32> = (0..256)
            .map(|i| ((i as f32) * 0.37).sin() * (i as f32))
            .collect();
        let neg: Vec<f32> = m.iter().map(|x| -x).collect();
        let p = DisplayParams::default();
        let a = normalize_for_display(&m, &p);
        let b = normalize_for_display(&neg, &p);
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        // with absolute_value off, the signed map differs from its negation
        let signed = DisplayParams {
            absolute_value: false,
            ..Default::default()
        };
        assert_ne!(
            normalize_for_display(&m, &signed),
            normalize_for_display(&neg, &signed)
        );
    }

    // Pixels whose normalised attribution is 0 get 0.6 * grey + 0.4 * jet(0) =
    // 0.6 * grey + 0.4 * (0, 0, 127). A black image pixel (the image minimum) stays dark:
    // (0, 0, round(50.8) = 51), proving the grey image is not inverted (an inverted
    // 'Greys' display would give 0.6 * 255 = 153 in every channel). A white pixel under
    // the maximum attribution gives 0.4 * (127,0,0) + 0.6 * 255 = (204, 153, 153).
    #[test]
    fn overlay_blends_over_non_inverted_grey() {
        let (w, h) = (4u32, 1u32);
        // grey: 0 (black), 0.5, 1 (white), 1
        let img = [0.0f32, 0.5, 1.0, 1.0];
        let map = [0.0f32, 0.0, 0.0, 10.0];
        let p = DisplayParams {
            clip_percentile: 0.0,
            ..Default::default()
        };
        let out = overlay(&img, 1, &map, w, h, &p);
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 51]);
        let grey = grey_to_rgb(&img, w, h, 1);
        let g1 = f32::from(grey.get_pixel(1, 0).0[0]);
        let exp = [
            (0.6 * g1).round() as u8,
            (0.6 * g1).round() as u8,
            (0.6 * g1 + 0.4 * 127.0).round() as u8,
        ];
        assert_eq!(out.get_pixel(1, 0).0, exp);
        assert_eq!(out.get_pixel(2, 0).0, [153, 153, 204]);
        assert_eq!(out.get_pixel(3, 0).0, [204, 153, 153]);
        // grey_to_rgb itself: min -> black, max -> white, constant -> black
        assert_eq!(grey.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(grey.get_pixel(2, 0).0, [255, 255, 255]);
        let c = grey_to_rgb(&[5.0; 4], 2, 2, 1);
        assert!(c.pixels().all(|p| p.0 == [0, 0, 0]));
        // 3-channel input keeps channels, stretched jointly
        let rgb = grey_to_rgb(&[0.0, 1.0, 2.0], 1, 1, 3);
        assert_eq!(rgb.get_pixel(0, 0).0, [0, 127, 255]);
        // Short inputs do not panic.
        let _ = overlay(&[0.0], 1, &[], 3, 3, &p);
    }

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
