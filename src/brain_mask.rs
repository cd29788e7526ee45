//! Brain/head vs background mask computed from the image itself (Otsu threshold, largest component, hole filling).
//!
//! The mask answers one question for the metrics: "is this pixel part of the head?". Brain MRI
//! slices are a bright head on a dark background, so a global Otsu threshold separates them;
//! what is left over (text labels, rulers, tick marks, noise specks) is removed by keeping only the
//! largest 8-connected component, and dark structures inside the head (ventricles, CSF, a dark
//! tumour core, the dark gap between scalp and brain) are restored by filling every background
//! region that does not touch the image border.
//!
//! Pipeline of [`brain_mask`]:
//! 1. light separable Gaussian smoothing (sigma = max(1, min(W, H) / 200) pixels, edges reflected);
//! 2. threshold from a 256-bin histogram, foreground = value >= threshold. The first choice is the
//!    lower cut of a three-class Otsu: on real slices with strong contrast (FLAIR, T2, bright
//!    tumours) the two-class Otsu ([`otsu_threshold`]) often splits bright tissue from dark tissue
//!    instead of head from background, and the mask then covers only part of the brain;
//! 3. morphological closing with a square of radius max(1, round(min(W, H) / 100)) pixels
//!    (windows clipped to the image, so the closing never removes a pixel, also at the border);
//! 4. frame removal and hole filling: components touching all four image sides while covering
//!    under 10% of the image (a bright frame or margin line around the picture) are dropped, then
//!    background pixels not 4-connected to the image border become foreground (4-connectivity for
//!    the background is the dual of 8-connectivity for the foreground);
//! 5. keep the largest 8-connected component. Filling before choosing the component means a
//!    closed scalp ring yields the whole head, not just the brain inside it.
//!
//! A result under 1% or over 99% of the image is degenerate. Then the steps are retried in the
//! order largest component of the raw threshold, closing, filling (for a frame-like structure the
//! frame rule above misses, which would otherwise fill the whole image), then both orders with the
//! plain two-class Otsu threshold; if all are degenerate, the whole image is returned and the
//! returned flag `fallback` is `true`.

use crate::imageops::{
    close, components, erode, fill_holes, gaussian_blur, largest_component, Connectivity,
    NO_REGION, SIDE_BOTTOM, SIDE_LEFT, SIDE_RIGHT, SIDE_TOP,
};

/// Mask of the head in an image, row-major `width x height`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrainMask {
    pub width: usize,
    pub height: usize,
    /// `true` for pixels inside the head/brain, row-major.
    pub inside: Vec<bool>,
}

/// Fraction of the image below which (or above `1 - this`) a mask is considered degenerate.
const DEGENERATE_FRACTION: f32 = 0.01;

impl BrainMask {
    /// A mask covering the whole image.
    pub fn full(width: usize, height: usize) -> BrainMask {
        BrainMask {
            width,
            height,
            inside: vec![true; width * height],
        }
    }

    /// Share of the image's pixels inside the mask, in [0, 1]; 0 for an empty image.
    pub fn area_fraction(&self) -> f32 {
        if self.inside.is_empty() {
            return 0.0;
        }
        let n = self.inside.iter().filter(|&&b| b).count();
        (n as f64 / self.inside.len() as f64) as f32
    }

    /// Grey PNG-ready debug image: the grey image (values in [0, 1], same size as the mask) with
    /// the background darkened and tinted blue and the outline of the mask drawn in red.
    /// The outline is about `max(1, min(W, H) / 200)` pixels thick so it stays visible on large
    /// images. A mask covering the whole image has no outline (its edge is the image border).
    pub fn to_debug_image(&self, grey: &[f32]) -> image::RgbImage {
        let (w, h) = (self.width, self.height);
        assert_eq!(grey.len(), w * h, "grey image size does not match the mask");
        let thickness = (w.min(h) / 200).max(1);
        let eroded = erode(&self.inside, w, h, thickness);
        let mut img = image::RgbImage::new(w as u32, h as u32);
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let g = grey[i];
                let g = if g.is_finite() {
                    g.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let v = (g * 255.0).round() as u8;
                let px = if self.inside[i] && !eroded[i] {
                    [255, 32, 32]
                } else if self.inside[i] {
                    [v, v, v]
                } else {
                    let d = (g * 0.5 * 255.0).round() as u8;
                    [d, d, d.saturating_add(60)]
                };
                img.put_pixel(x as u32, y as u32, image::Rgb(px));
            }
        }
        img
    }

    /// Mask resampled (nearest) to another size, for maps at another resolution.
    /// Target pixel `(x, y)` takes the source pixel containing its centre,
    /// `floor((x + 0.5) * W_src / W_dst)`.
    pub fn resized(&self, width: usize, height: usize) -> BrainMask {
        let mut inside = vec![false; width * height];
        if self.width > 0 && self.height > 0 {
            let xs: Vec<usize> = (0..width)
                .map(|x| (((2 * x + 1) * self.width) / (2 * width)).min(self.width - 1))
                .collect();
            for y in 0..height {
                let sy = (((2 * y + 1) * self.height) / (2 * height)).min(self.height - 1);
                let row = &self.inside[sy * self.width..(sy + 1) * self.width];
                for (x, &sx) in xs.iter().enumerate() {
                    inside[y * width + x] = row[sx];
                }
            }
        }
        BrainMask {
            width,
            height,
            inside,
        }
    }
}

/// Compute the head mask of a grey image.
///
/// `grey`: single channel f32 in [0, 1] (values outside are clamped, non-finite read as 0),
/// row-major `width x height`. Returns the mask and `fallback`: `true` when the computed mask was
/// degenerate (under 1% or over 99% of the image, e.g. an all-black image) and the whole image was
/// returned instead.
pub fn brain_mask(grey: &[f32], width: usize, height: usize) -> (BrainMask, bool) {
    assert_eq!(
        grey.len(),
        width * height,
        "grey image size does not match width x height"
    );
    if grey.is_empty() {
        return (BrainMask::full(width, height), true);
    }
    let clean: Vec<f32> = grey
        .iter()
        .map(|&v| {
            if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect();
    let sigma = (width.min(height) as f32 / 200.0).max(1.0);
    // The blur the superpixel segmentations use (reflected edges, 4-sigma taps), one channel.
    let smooth = gaussian_blur(&clean, width, height, 1, sigma);
    let radius = ((width.min(height) as f32 / 100.0).round() as usize).max(1);
    let ok = |m: &[bool]| {
        let frac = m.iter().filter(|&&b| b).count() as f32 / m.len() as f32;
        (DEGENERATE_FRACTION..=1.0 - DEGENERATE_FRACTION).contains(&frac)
    };
    // Thresholds to try, best first: the lower cut of a three-class Otsu (background vs all
    // tissue, also when the head itself has two strong intensity classes), then the plain
    // two-class Otsu.
    let mut thresholds = Vec::with_capacity(2);
    if let Some(t) = otsu_lower_of_three(&smooth) {
        thresholds.push(t);
    }
    thresholds.push(otsu_threshold(&smooth));
    for thr in thresholds {
        let fg: Vec<bool> = smooth.iter().map(|&v| v >= thr).collect();
        // Fill first, then keep the largest component: a closed scalp ring then yields the whole
        // head rather than only the brain inside it.
        let fill_then_largest = || {
            let unframed = drop_frames(&close(&fg, width, height, radius), width, height);
            largest_component(
                &fill_holes(&unframed, width, height),
                width,
                height,
                Connectivity::Eight,
            )
        };
        // A bright frame around the whole image makes that order fill everything: keep the
        // largest component of the raw threshold first, then close and fill.
        let largest_then_fill = || {
            let largest = largest_component(&fg, width, height, Connectivity::Eight);
            fill_holes(&close(&largest, width, height, radius), width, height)
        };
        let orders: [&dyn Fn() -> Vec<bool>; 2] = [&fill_then_largest, &largest_then_fill];
        if let Some(inside) = orders.iter().map(|order| order()).find(|head| ok(head)) {
            return (
                BrainMask {
                    width,
                    height,
                    inside,
                },
                false,
            );
        }
    }
    (BrainMask::full(width, height), true)
}

/// A band of `width_frac` of the image size along all four borders (e.g. 0.1): where rulers, text
/// and tick marks live. The left and right bands are `round(width_frac * width)` columns wide, the
/// top and bottom bands `round(width_frac * height)` rows high (`width_frac` clamped to [0, 0.5]).
pub fn border_band(width: usize, height: usize, width_frac: f32) -> Vec<bool> {
    let f = if width_frac.is_finite() {
        width_frac.clamp(0.0, 0.5)
    } else {
        0.0
    };
    let bx = ((f as f64 * width as f64).round() as usize).min(width);
    let by = ((f as f64 * height as f64).round() as usize).min(height);
    let mut band = vec![false; width * height];
    for y in 0..height {
        let row_band = y < by || y + by >= height;
        for x in 0..width {
            band[y * width + x] = row_band || x < bx || x + bx >= width;
        }
    }
    band
}

/// Otsu threshold of values in [0, 1] on a 256-bin histogram, exposed for tests.
///
/// Value `v` falls in bin `min(255, floor(v * 256))` (clamped to [0, 1], non-finite ignored). The
/// returned threshold is the upper edge `(t + 1) / 256` of the last bin `t` of the dark class, so
/// the foreground is `v >= threshold`. When several consecutive cut points reach the same maximal
/// between-class variance (e.g. two populations with empty bins between them) the middle of that
/// plateau is used. With a single populated bin the threshold is that bin's upper edge (nothing
/// above it); with no finite value it is 0.5.
pub fn otsu_threshold(values: &[f32]) -> f32 {
    let hist = histogram(values);
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0.5;
    }
    let n = total as f64;
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum();
    let mut w0 = 0.0f64;
    let mut sum0 = 0.0f64;
    let mut vars = [f64::NEG_INFINITY; 256];
    for t in 0..255 {
        w0 += hist[t] as f64;
        sum0 += t as f64 * hist[t] as f64;
        let w1 = n - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let mu0 = sum0 / w0;
        let mu1 = (sum_all - sum0) / w1;
        vars[t] = (w0 / n) * (w1 / n) * (mu0 - mu1) * (mu0 - mu1);
    }
    let best = vars.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if best == f64::NEG_INFINITY {
        // A single populated bin: no split exists.
        let b = hist.iter().position(|&c| c > 0).unwrap_or(127);
        return (b + 1) as f32 / 256.0;
    }
    let first = vars.iter().position(|&v| v == best).unwrap_or(127);
    let mut last = first;
    while last + 1 < 255 && vars[last + 1] == best {
        last += 1;
    }
    let t = (first + last) / 2;
    (t + 1) as f32 / 256.0
}

/// 256-bin histogram of values clamped to [0, 1] (non-finite ignored); bin `min(255, floor(v * 256))`.
fn histogram(values: &[f32]) -> [u64; 256] {
    let mut hist = [0u64; 256];
    for &v in values {
        if v.is_finite() {
            hist[((v.clamp(0.0, 1.0) * 256.0) as usize).min(255)] += 1;
        }
    }
    hist
}

/// Three-class Otsu on a 256-bin histogram: the pair of cut bins `(t1, t2)`, `t1 < t2`, that
/// maximises the between-class variance of `[0, t1]`, `(t1, t2]`, `(t2, 255]`. Returns the lower
/// threshold `(t1 + 1) / 256`, or `None` when fewer than three bins are populated.
fn otsu_lower_of_three(values: &[f32]) -> Option<f32> {
    let hist = histogram(values);
    let mut cnt = [0.0f64; 257];
    let mut sum = [0.0f64; 257];
    for i in 0..256 {
        cnt[i + 1] = cnt[i] + hist[i] as f64;
        sum[i + 1] = sum[i] + i as f64 * hist[i] as f64;
    }
    let n = cnt[256];
    if n == 0.0 {
        return None;
    }
    // Between-class variance up to constants: sum over classes of S_k^2 / N_k.
    let term = |a: usize, b: usize| {
        let c = cnt[b] - cnt[a];
        let s = sum[b] - sum[a];
        if c > 0.0 {
            Some(s * s / c)
        } else {
            None
        }
    };
    let mut best: Option<(f64, usize)> = None;
    for t1 in 0..254 {
        let Some(c0) = term(0, t1 + 1) else { continue };
        for t2 in t1 + 1..255 {
            let (Some(c1), Some(c2)) = (term(t1 + 1, t2 + 1), term(t2 + 1, 256)) else {
                continue;
            };
            let v = c0 + c1 + c2;
            if best.is_none_or(|(b, _)| v > b) {
                best = Some((v, t1));
            }
        }
    }
    best.map(|(_, t1)| (t1 + 1) as f32 / 256.0)
}

/// Remove frame-like components: touching all four image sides while covering under 10% of the
/// image (a bright line or margin drawn around the picture). Left alone, such a frame encloses
/// everything and hole filling would turn the whole image into foreground.
fn drop_frames(fg: &[bool], w: usize, h: usize) -> Vec<bool> {
    let c = components(fg, w, h, Connectivity::Eight);
    let all_sides = SIDE_LEFT | SIDE_RIGHT | SIDE_TOP | SIDE_BOTTOM;
    let limit = w * h / 10;
    c.labels
        .iter()
        .map(|&l| {
            l != NO_REGION && !(c.sides[l as usize] == all_sides && c.sizes[l as usize] < limit)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otsu_separates_two_flat_populations() {
        // Two equal-size populations at 0.2 and 0.8: any threshold in [0.2, 0.8) separates them
        // (with foreground = v >= threshold, the threshold must be > 0.2 and <= 0.8).
        let mut v = vec![0.2f32; 1000];
        v.extend(std::iter::repeat_n(0.8f32, 1000));
        let t = otsu_threshold(&v);
        assert!(t > 0.2 && t <= 0.8, "threshold {t}");
        assert!(v.iter().filter(|&&x| x >= t).count() == 1000);
        // Plateau middle: bins 51..=203 all maximal, middle bin 127 -> 128/256.
        assert_eq!(t, 0.5);
    }

    #[test]
    fn otsu_between_noisy_modes() {
        // Two spread populations around 0.25 and 0.7 (deterministic jitter).
        let mut v = Vec::new();
        let mut s = 12345u32;
        for i in 0..4000 {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            let j = (s >> 8) as f32 / (1u32 << 24) as f32 * 0.1 - 0.05;
            v.push(if i % 2 == 0 { 0.25 + j } else { 0.7 + j });
        }
        let t = otsu_threshold(&v);
        assert!(t > 0.3 && t <= 0.65, "threshold {t}");
    }

    #[test]
    fn otsu_degenerate_inputs() {
        assert_eq!(otsu_threshold(&[]), 0.5);
        assert_eq!(otsu_threshold(&[0.0; 10]), 1.0 / 256.0);
        assert!(otsu_threshold(&[f32::NAN, 0.3, 0.9]).is_finite());
    }

    struct Head {
        w: usize,
        h: usize,
        cx: f32,
        cy: f32,
        a: f32,
        b: f32,
    }

    impl Head {
        fn in_ellipse(&self, x: usize, y: usize) -> bool {
            let dx = (x as f32 + 0.5 - self.cx) / self.a;
            let dy = (y as f32 + 0.5 - self.cy) / self.b;
            dx * dx + dy * dy <= 1.0
        }
        fn in_hole(&self, x: usize, y: usize) -> bool {
            let dx = x as f32 + 0.5 - (self.cx + 10.0);
            let dy = y as f32 + 0.5 - (self.cy - 5.0);
            dx * dx + dy * dy <= 18.0 * 18.0
        }
        fn in_label(&self, x: usize, y: usize) -> bool {
            (6..30).contains(&x) && (5..14).contains(&y)
        }
        fn image(&self) -> Vec<f32> {
            let mut s = 7u32;
            let mut g = vec![0.0f32; self.w * self.h];
            for y in 0..self.h {
                for x in 0..self.w {
                    s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                    let noise = (s >> 8) as f32 / (1u32 << 24) as f32 * 0.06;
                    let base = if self.in_label(x, y) {
                        0.95
                    } else if self.in_ellipse(x, y) && self.in_hole(x, y) {
                        0.05
                    } else if self.in_ellipse(x, y) {
                        0.6 + 0.2 * ((x as f32 * 0.1).sin() * (y as f32 * 0.07).cos())
                    } else {
                        0.0
                    };
                    g[y * self.w + x] = (base + noise).min(1.0);
                }
            }
            g
        }
    }

    const HEAD: Head = Head {
        w: 256,
        h: 224,
        cx: 130.0,
        cy: 116.0,
        a: 80.0,
        b: 95.0,
    };

    #[test]
    fn synthetic_head_mask_is_filled_ellipse() {
        let hd = HEAD;
        let g = hd.image();
        let (m, fallback) = brain_mask(&g, hd.w, hd.h);
        assert!(!fallback);
        let (mut inter, mut uni) = (0usize, 0usize);
        for y in 0..hd.h {
            for x in 0..hd.w {
                let a = m.inside[y * hd.w + x];
                let b = hd.in_ellipse(x, y);
                inter += (a && b) as usize;
                uni += (a || b) as usize;
                if hd.in_label(x, y) {
                    assert!(!a, "corner label kept at ({x},{y})");
                }
                if hd.in_ellipse(x, y) && hd.in_hole(x, y) {
                    assert!(a, "hole not filled at ({x},{y})");
                }
            }
        }
        let iou = inter as f64 / uni as f64;
        assert!(iou > 0.97, "IoU {iou}");
        // Area fraction vs the analytic pi*a*b/(W*H) (= 0.4163 here), within 3% relative.
        let expect = std::f32::consts::PI * hd.a * hd.b / (hd.w * hd.h) as f32;
        let got = m.area_fraction();
        assert!(
            (got - expect).abs() / expect < 0.03,
            "area {got} vs {expect}"
        );
    }

    #[test]
    fn scalp_ring_and_frame() {
        // Scalp ring (outer ellipse a=100, b=85, 8 px thick, grey 0.9), a dark gap, the brain
        // (inner ellipse a=84, b=70, grey 0.4 with a bright 0.95 lesion), and a 1-pixel bright
        // frame along the image border. Expected mask: the filled outer ellipse (the frame and
        // the gap between scalp and brain must not change that).
        let (w, h, cx, cy) = (240usize, 200usize, 120.0f32, 100.0f32);
        let e = |x: usize, y: usize, a: f32, b: f32| {
            let dx = (x as f32 + 0.5 - cx) / a;
            let dy = (y as f32 + 0.5 - cy) / b;
            dx * dx + dy * dy <= 1.0
        };
        let mut g = vec![0.02f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let v = if x == 0 || y == 0 || x == w - 1 || y == h - 1 {
                    1.0
                } else if e(x, y, 84.0, 70.0) {
                    let (dx, dy) = (x as f32 - 150.0, y as f32 - 90.0);
                    if dx * dx + dy * dy < 400.0 {
                        0.95
                    } else {
                        0.4
                    }
                } else if e(x, y, 100.0, 85.0) && !e(x, y, 92.0, 77.0) {
                    0.9
                } else {
                    0.02
                };
                g[y * w + x] = v;
            }
        }
        let (m, fb) = brain_mask(&g, w, h);
        assert!(!fb);
        let (mut inter, mut uni) = (0usize, 0usize);
        for y in 0..h {
            for x in 0..w {
                let a = m.inside[y * w + x];
                let b = e(x, y, 100.0, 85.0);
                inter += (a && b) as usize;
                uni += (a || b) as usize;
            }
        }
        let iou = inter as f64 / uni as f64;
        assert!(iou > 0.97, "IoU {iou}");
        assert!(!m.inside[0] && !m.inside[w * h - 1]);
    }

    #[test]
    fn all_black_falls_back_to_whole_image() {
        let (m, fallback) = brain_mask(&vec![0.0; 64 * 48], 64, 48);
        assert!(fallback);
        assert_eq!(m.area_fraction(), 1.0);
        assert_eq!(m.inside.len(), 64 * 48);
        // All white is degenerate too (> 99%).
        let (_, fb) = brain_mask(&vec![1.0; 64 * 48], 64, 48);
        assert!(fb);
        // Empty image.
        let (m, fb) = brain_mask(&[], 0, 0);
        assert!(fb);
        assert_eq!(m.area_fraction(), 0.0);
    }

    #[test]
    fn border_band_counts_hand_example() {
        // 10 x 20, 10%: 1 column left/right, 2 rows top/bottom.
        // Interior (10 - 2) x (20 - 4) = 128, band = 200 - 128 = 72.
        let b = border_band(10, 20, 0.1);
        assert_eq!(b.len(), 200);
        assert_eq!(b.iter().filter(|&&v| v).count(), 72);
        // Row 1 (top band), column 0 and 9 (side bands), row 18 (bottom band) are in;
        // (1, 2) and (5, 17) are interior.
        assert!(b[10 + 5] && b[2 * 10] && b[2 * 10 + 9] && b[18 * 10 + 5]);
        assert!(!b[2 * 10 + 1] && !b[17 * 10 + 5]);
        // 0 -> empty band; 0.5 -> everything.
        assert_eq!(border_band(7, 5, 0.0).iter().filter(|&&v| v).count(), 0);
        assert!(border_band(7, 5, 0.5).iter().all(|&v| v));
        // 256 x 256 at 0.1: 26 on each side, interior 204^2 = 41616, band 65536 - 41616 = 23920.
        assert_eq!(
            border_band(256, 256, 0.1).iter().filter(|&&v| v).count(),
            23920
        );
    }

    #[test]
    fn resized_nearest() {
        let m = BrainMask {
            width: 2,
            height: 2,
            inside: vec![true, false, false, true],
        };
        let r = m.resized(4, 4);
        let expect = [
            true, true, false, false, //
            true, true, false, false, //
            false, false, true, true, //
            false, false, true, true,
        ];
        assert_eq!(r.inside, expect);
        assert_eq!(r.resized(2, 2), m);
        let (hm, _) = brain_mask(&HEAD.image(), HEAD.w, HEAD.h);
        let small = hm.resized(32, 28);
        assert!((small.area_fraction() - hm.area_fraction()).abs() < 0.03);
    }

    #[test]
    fn debug_image_has_outline() {
        let (m, _) = brain_mask(&HEAD.image(), HEAD.w, HEAD.h);
        let img = m.to_debug_image(&HEAD.image());
        assert_eq!(img.dimensions(), (HEAD.w as u32, HEAD.h as u32));
        let red = img.pixels().filter(|p| p.0 == [255, 32, 32]).count();
        // Roughly the ellipse perimeter (~550 px) times thickness 1.
        assert!(red > 300 && red < 1200, "outline pixels {red}");
    }
}
