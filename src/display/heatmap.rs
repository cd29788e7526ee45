//! Heatmap colouring: what the notebook's plot_attributions(cmap='jet', alpha=0.4, absolute_value=True, clip_percentile=0.5) shows, as PNG-ready images (percentile clip, normalisation, the jet, diverging and grey LUTs, the overlay), and the raw values the ends of a colour bar stand for. Display only: metrics never use these normalised values.
//!
//! Pipeline per attribution map (mirrors the notebook's Xplique call):
//! 1. absolute value of the raw map (non-finite entries are first replaced by 0);
//! 2. clip to the map's own `[p, 100 - p]` percentiles (numpy's default `linear` method);
//! 3. min-max normalise to `[0, 1]` (a constant map gives all zeros);
//! 4. colour with matplotlib's `jet` (256-entry LUT built from its segment data);
//! 5. blend `alpha * jet + (1 - alpha) * grey` over the grey image, which is shown the
//!    normal way round (its own min-max to 0..255, black stays black).
//!
//! Signed maps (`absolute_value: false`, Xplique's `absolute_value=False`): step 1 keeps the sign,
//! step 3 divides by the largest |value| left after clipping and maps `[-1, 1]` to `[0, 1]` with zero
//! at 0.5, and step 4 uses a blue-white-red diverging map (matplotlib's `bwr`): blue = evidence
//! against the explained class, white = none, red = for it.
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

/// Parameters of the notebook display; the config's `display:` section (every key optional).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisplayParams {
    /// Opacity of the heatmap over the grey image (notebook: 0.4).
    pub alpha: f32,
    /// Percentile clipped at both ends, in percent (notebook: 0.5 -> [0.5, 99.5]).
    pub clip_percentile: f32,
    /// Take the absolute value of the map first (notebook: true); false shows signed maps with a
    /// diverging colour map, zero at its centre.
    pub absolute_value: bool,
}

impl DisplayParams {
    /// Ranges serde cannot check; the message names the key.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(("display.alpha", format!("{} is not in [0, 1]", self.alpha)));
        }
        if !(0.0..50.0).contains(&self.clip_percentile) {
            return Err((
                "display.clip_percentile",
                format!("{} is not in [0, 50) percent", self.clip_percentile),
            ));
        }
        Ok(())
    }

    pub fn is_default(&self) -> bool {
        *self == DisplayParams::default()
    }
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

/// The clipped values of steps 1-2: |map| (or the map) with non-finite entries as 0, clamped to the
/// `[p, 100 - p]` percentiles.
fn clipped(map: &[f32], params: &DisplayParams) -> Vec<f32> {
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
    v
}

/// The raw values the two ends of the colour scale stand for: the clipped minimum and maximum of
/// |map| (0 and 1 of the scale), or `-m` and `+m` for a signed map with `m` the largest clipped
/// |value|. A map without any finite value gives `(0, 0)`.
pub fn display_range(map: &[f32], params: &DisplayParams) -> (f32, f32) {
    let v = clipped(map, params);
    let (mn, mx) = v
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if v.is_empty() {
        return (0.0, 0.0);
    }
    if params.absolute_value {
        (mn, mx)
    } else {
        let m = mn.abs().max(mx.abs());
        (-m, m)
    }
}

/// Steps 1-3: abs (if asked), clip to [p, 100-p] percentiles, min-max to [0,1]; NaN/inf inputs treated as 0; constant map -> zeros.
///
/// Signed (`absolute_value` false): `0.5 + 0.5 * v / m` with `m` the largest clipped |value|, so zero
/// sits at 0.5 whatever the map's balance of signs (an all-zero map gives 0.5 everywhere).
pub fn normalize_for_display(map: &[f32], params: &DisplayParams) -> Vec<f32> {
    let v = clipped(map, params);
    if v.is_empty() {
        return v;
    }
    if !params.absolute_value {
        let m = v.iter().fold(0f64, |m, &x| m.max(f64::from(x).abs()));
        if !(m > 0.0 && m.is_finite()) {
            return vec![0.5; v.len()];
        }
        return v
            .iter()
            .map(|&x| ((0.5 + 0.5 * f64::from(x) / m) as f32).clamp(0.0, 1.0))
            .collect();
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
/// Blue (0) - white (0.5) - red (1), each channel linear between the three colours (matplotlib's
/// `bwr`).
const BWR_RED: [(f64, f64, f64); 3] = [(0.0, 0.0, 0.0), (0.5, 1.0, 1.0), (1.0, 1.0, 1.0)];
const BWR_GREEN: [(f64, f64, f64); 3] = [(0.0, 0.0, 0.0), (0.5, 1.0, 1.0), (1.0, 0.0, 0.0)];
const BWR_BLUE: [(f64, f64, f64); 3] = [(0.0, 1.0, 1.0), (0.5, 1.0, 1.0), (1.0, 0.0, 0.0)];

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

/// The RGB LUT of a colormap given as its red, green and blue segments.
fn rgb_lut(
    red: &[(f64, f64, f64)],
    green: &[(f64, f64, f64)],
    blue: &[(f64, f64, f64)],
) -> [[u8; 3]; LUT_N] {
    let (r, g, b) = (segment_lut(red), segment_lut(green), segment_lut(blue));
    let mut lut = [[0u8; 3]; LUT_N];
    for (i, e) in lut.iter_mut().enumerate() {
        *e = [r[i], g[i], b[i]];
    }
    lut
}

fn jet_lut() -> &'static [[u8; 3]; LUT_N] {
    static LUT: OnceLock<[[u8; 3]; LUT_N]> = OnceLock::new();
    LUT.get_or_init(|| rgb_lut(&JET_RED, &JET_GREEN, &JET_BLUE))
}

fn bwr_lut() -> &'static [[u8; 3]; LUT_N] {
    static LUT: OnceLock<[[u8; 3]; LUT_N]> = OnceLock::new();
    LUT.get_or_init(|| rgb_lut(&BWR_RED, &BWR_GREEN, &BWR_BLUE))
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

/// The blue-white-red diverging map, v in [0,1] (clamped; 0.5 = white) -> RGB bytes.
pub fn diverging(v: f32) -> [u8; 3] {
    bwr_lut()[lut_index(v)]
}

/// The colour of a normalised value under `params`: jet for |map|, the diverging map for signed maps.
pub fn colour(v: f32, params: &DisplayParams) -> [u8; 3] {
    if params.absolute_value {
        jet(v)
    } else {
        diverging(v)
    }
}

/// The opacity of the heatmap over the image: `alpha` clamped to [0, 1], NaN -> the notebook's 0.4.
pub fn opacity(params: &DisplayParams) -> f32 {
    if params.alpha.is_nan() {
        0.4
    } else {
        params.alpha.clamp(0.0, 1.0)
    }
}

/// The colour scale alone, `width x height`, low values left (for colour bars).
pub fn scale_image(width: u32, height: u32, params: &DisplayParams) -> RgbImage {
    let span = width.saturating_sub(1).max(1) as f32;
    RgbImage::from_fn(width, height, |x, _| Rgb(colour(x as f32 / span, params)))
}

/// A map coloured without the image under it (steps 1-4), `width x height`; the browser lays it over
/// the image at [`opacity`] on the report's image pages, which is the same blend as [`overlay`].
pub fn heatmap(map: &[f32], width: u32, height: u32, params: &DisplayParams) -> RgbImage {
    let npix = width as usize * height as usize;
    let mut m: Vec<f32> = map.iter().take(npix).copied().collect();
    m.resize(npix, 0.0);
    let norm = normalize_for_display(&m, params);
    let mut out = RgbImage::new(width, height);
    for (px, &v) in out.pixels_mut().zip(norm.iter()) {
        *px = Rgb(colour(v, params));
    }
    out
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
    let a = opacity(params);
    for (px, &v) in out.pixels_mut().zip(norm.iter()) {
        let j = colour(v, params);
        for (o, &jc) in px.0.iter_mut().zip(j.iter()) {
            let blended = a * f32::from(jc) + (1.0 - a) * f32::from(*o);
            *o = blended.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
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

    // Signed display: zero sits at 0.5 (white in the diverging map), the largest clipped |value| at
    // the ends: [-2, 0, 1, 2] -> m = 2 -> [0, 0.5, 0.75, 1]; the range's ends are -2 and +2, and a
    // map with a sign flipped shows mirrored (1 - x). |map|: the range is the clipped min and max.
    #[test]
    fn signed_display_centres_zero() {
        let p = DisplayParams {
            absolute_value: false,
            clip_percentile: 0.0,
            ..Default::default()
        };
        assert_eq!(
            normalize_for_display(&[-2.0, 0.0, 1.0, 2.0], &p),
            vec![0.0, 0.5, 0.75, 1.0]
        );
        assert_eq!(display_range(&[-2.0, 0.0, 1.0, 2.0], &p), (-2.0, 2.0));
        assert_eq!(display_range(&[-1.0, 0.5], &p), (-1.0, 1.0));
        assert_eq!(normalize_for_display(&[0.0; 3], &p), vec![0.5; 3]);
        let abs = DisplayParams {
            clip_percentile: 0.0,
            ..Default::default()
        };
        assert_eq!(display_range(&[-3.0, 1.0, 2.0], &abs), (1.0, 3.0));
        assert_eq!(display_range(&[], &abs), (0.0, 0.0));
        // bwr: blue, white, red at the ends and the centre (entry 128 is one step past white).
        assert_eq!(diverging(0.0), [0, 0, 255]);
        assert_eq!(diverging(1.0), [255, 0, 0]);
        let mid = diverging(0.5);
        assert!(mid[0] == 255 && mid[1] >= 253 && mid[2] >= 253, "{mid:?}");
        assert_eq!(colour(0.0, &p), diverging(0.0));
        assert_eq!(colour(0.0, &abs), jet(0.0));
        // The scale image runs from the low colour to the high one.
        let bar = scale_image(256, 2, &abs);
        assert_eq!(bar.get_pixel(0, 1).0, jet(0.0));
        assert_eq!(bar.get_pixel(255, 0).0, jet(1.0));
        // The heatmap alone is the colour of each normalised value.
        let h = heatmap(&[-2.0, 0.0, 1.0, 2.0], 2, 2, &p);
        assert_eq!(h.get_pixel(0, 0).0, diverging(0.0));
        assert_eq!(h.get_pixel(1, 1).0, diverging(1.0));
        assert!(DisplayParams::default().check().is_ok());
        let bad = DisplayParams {
            alpha: 1.5,
            ..Default::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "display.alpha");
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
}
