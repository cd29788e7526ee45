//! 8-bit resizing as PIL's `Image.resize` and OpenCV's `cv2.resize` compute it, and the two
//! libraries' RGB -> grey conversions, so that a model sees the pixels its training pipeline made.
//!
//! PIL (Pillow's `Resample.c`): separable, horizontal pass first with an 8-bit intermediate; the
//! filter's support widens with the scale when shrinking (antialiasing); coefficients normalised per
//! output pixel, then rounded to 22-bit fixed point. NEAREST is not a filter in PIL but an affine
//! scale whose source position accumulates `scale` pixel after pixel (so 512 -> 150 picks column
//! 127 at index 37, where the exact 37.5 x 512 / 150 is 128).
//!
//! OpenCV (`imgproc/resize.cpp`): no antialiasing except INTER_AREA; half-pixel centres; borders
//! replicated; 11-bit fixed-point coefficients per pass for 8-bit images. INTER_NEAREST takes
//! `floor(x * src / dst)` (no half pixel), INTER_NEAREST_EXACT the half-pixel centre in 16-bit fixed
//! point; INTER_LINEAR at an exact 2x shrink is INTER_AREA (as OpenCV does).
//!
//! Every function works on one channel plane (row-major `width x height`); [`resize_channels`] runs
//! one over interleaved pixels.

/// PIL's resampling filters (`PIL.Image.Resampling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PilFilter {
    Nearest,
    Box,
    Bilinear,
    Hamming,
    Bicubic,
    Lanczos,
}

/// OpenCV's interpolation flags (`cv2.INTER_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CvFilter {
    Nearest,
    NearestExact,
    Linear,
    Cubic,
    Area,
    Lanczos4,
}

/// Which library's resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resampler {
    Pil(PilFilter),
    OpenCv(CvFilter),
}

/// Resizes one 8-bit plane `w x h` to `tw x th`.
pub fn resize_plane(src: &[u8], w: usize, h: usize, tw: usize, th: usize, r: Resampler) -> Vec<u8> {
    assert_eq!(src.len(), w * h, "plane size");
    if (w, h) == (tw, th) {
        return src.to_vec();
    }
    match r {
        Resampler::Pil(PilFilter::Nearest) => pil_nearest(src, w, h, tw, th),
        Resampler::Pil(f) => pil_resample(src, w, h, tw, th, f),
        Resampler::OpenCv(CvFilter::Nearest) => cv_nearest(src, w, h, tw, th),
        Resampler::OpenCv(CvFilter::NearestExact) => cv_nearest_exact(src, w, h, tw, th),
        Resampler::OpenCv(f) => cv_resample(src, w, h, tw, th, f),
    }
}

/// Resizes interleaved `channels`-channel pixels, each channel on its own.
pub fn resize_channels(
    src: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    tw: usize,
    th: usize,
    r: Resampler,
) -> Vec<u8> {
    if channels == 1 {
        return resize_plane(src, w, h, tw, th, r);
    }
    let mut out = vec![0u8; tw * th * channels];
    for c in 0..channels {
        let plane: Vec<u8> = src.iter().skip(c).step_by(channels).copied().collect();
        let done = resize_plane(&plane, w, h, tw, th, r);
        for (i, v) in done.into_iter().enumerate() {
            out[i * channels + c] = v;
        }
    }
    out
}

/// PIL's `convert("L")` of interleaved RGB: ITU-R 601-2 luma in 16-bit fixed point
/// (`(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`).
pub fn pil_luma(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| {
            ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
        })
        .collect()
}

/// OpenCV's `cvtColor(RGB2GRAY)`: the same luma weights in 14-bit fixed point
/// (`(R*4899 + G*9617 + B*1868 + 8192) >> 14`).
pub fn opencv_luma(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| {
            ((p[0] as u32 * 4899 + p[1] as u32 * 9617 + p[2] as u32 * 1868 + 8192) >> 14) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// PIL

/// `(int)v` for a source position, -1 below zero (Pillow's `COORD`).
fn coord(v: f64) -> i64 {
    if v < 0.0 {
        -1
    } else {
        v as i64
    }
}

/// Source index per output index for PIL's nearest: the position starts at half a step and
/// accumulates the step in double precision.
fn pil_nearest_table(n: usize, out: usize) -> Vec<usize> {
    let step = n as f64 / out as f64;
    let mut pos = step * 0.5;
    (0..out)
        .map(|_| {
            let i = coord(pos).clamp(0, n as i64 - 1) as usize;
            pos += step;
            i
        })
        .collect()
}

fn pil_nearest(src: &[u8], w: usize, h: usize, tw: usize, th: usize) -> Vec<u8> {
    let xs = pil_nearest_table(w, tw);
    let ys = pil_nearest_table(h, th);
    let mut out = Vec::with_capacity(tw * th);
    for &y in &ys {
        out.extend(xs.iter().map(|&x| src[y * w + x]));
    }
    out
}

fn pil_support(f: PilFilter) -> f64 {
    match f {
        PilFilter::Nearest | PilFilter::Box => 0.5,
        PilFilter::Bilinear | PilFilter::Hamming => 1.0,
        PilFilter::Bicubic => 2.0,
        PilFilter::Lanczos => 3.0,
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn pil_kernel(f: PilFilter, x: f64) -> f64 {
    match f {
        PilFilter::Nearest | PilFilter::Box => {
            if x > -0.5 && x <= 0.5 {
                1.0
            } else {
                0.0
            }
        }
        PilFilter::Bilinear => {
            let x = x.abs();
            if x < 1.0 {
                1.0 - x
            } else {
                0.0
            }
        }
        PilFilter::Hamming => {
            let x = x.abs();
            if x == 0.0 {
                1.0
            } else if x >= 1.0 {
                0.0
            } else {
                let x = x * std::f64::consts::PI;
                x.sin() / x * (0.54 + 0.46 * x.cos())
            }
        }
        PilFilter::Bicubic => {
            let a = -0.5;
            let x = x.abs();
            if x < 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * a
            } else {
                0.0
            }
        }
        PilFilter::Lanczos => {
            if (-3.0..3.0).contains(&x) {
                sinc(x) * sinc(x / 3.0)
            } else {
                0.0
            }
        }
    }
}

const PIL_PRECISION: u32 = 22;

/// Per output index: first source index and fixed-point weights (Pillow's `precompute_coeffs`
/// then `normalize_coeffs_8bpc`).
fn pil_coeffs(n: usize, out: usize, f: PilFilter) -> Vec<(usize, Vec<i32>)> {
    let scale = n as f64 / out as f64;
    let filterscale = scale.max(1.0);
    let support = pil_support(f) * filterscale;
    (0..out)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(n as i64) as usize;
            let mut k: Vec<f64> = (xmin..xmax.max(xmin))
                .map(|x| pil_kernel(f, (x as f64 - center + 0.5) * ss))
                .collect();
            let ww: f64 = k.iter().sum();
            if ww != 0.0 {
                k.iter_mut().for_each(|v| *v /= ww);
            }
            let one = (1u32 << PIL_PRECISION) as f64;
            let fixed = k
                .iter()
                .map(|&v| {
                    if v < 0.0 {
                        (-0.5 + v * one) as i32
                    } else {
                        (0.5 + v * one) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn pil_clip8(v: i64) -> u8 {
    (v >> PIL_PRECISION).clamp(0, 255) as u8
}

fn pil_resample(src: &[u8], w: usize, h: usize, tw: usize, th: usize, f: PilFilter) -> Vec<u8> {
    let half = 1i64 << (PIL_PRECISION - 1);
    // Horizontal pass first (on every row: the rows a vertical pass skips cost nothing here).
    let tmp: Vec<u8> = if tw != w {
        let cx = pil_coeffs(w, tw, f);
        let mut t = Vec::with_capacity(tw * h);
        for row in src.chunks_exact(w) {
            t.extend(cx.iter().map(|(x0, k)| {
                let s: i64 = k
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| row[x0 + i] as i64 * c as i64)
                    .sum();
                pil_clip8(half + s)
            }));
        }
        t
    } else {
        src.to_vec()
    };
    if th == h {
        return tmp;
    }
    let cy = pil_coeffs(h, th, f);
    let mut out = Vec::with_capacity(tw * th);
    for (y0, k) in &cy {
        for x in 0..tw {
            let s: i64 = k
                .iter()
                .enumerate()
                .map(|(i, &c)| tmp[(y0 + i) * tw + x] as i64 * c as i64)
                .sum();
            out.push(pil_clip8(half + s));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// OpenCV

fn cv_nearest(src: &[u8], w: usize, h: usize, tw: usize, th: usize) -> Vec<u8> {
    // resize(): inv_scale = dst / src; resizeNN: ifx = 1 / inv_scale, sx = floor(x * ifx).
    let table = |n: usize, out: usize| -> Vec<usize> {
        let ifx = 1.0 / (out as f64 / n as f64);
        (0..out)
            .map(|x| ((x as f64 * ifx).floor() as usize).min(n - 1))
            .collect()
    };
    gather(src, w, &table(w, tw), &table(h, th))
}

fn cv_nearest_exact(src: &[u8], w: usize, h: usize, tw: usize, th: usize) -> Vec<u8> {
    let table = |n: usize, out: usize| -> Vec<usize> {
        let ifx = (((n as i64) << 16) + out as i64 / 2) / out as i64;
        let ifx0 = ifx / 2 - (n as i64 % 2);
        (0..out as i64)
            .map(|x| (((ifx * x + ifx0) >> 16) as usize).min(n - 1))
            .collect()
    };
    gather(src, w, &table(w, tw), &table(h, th))
}

fn gather(src: &[u8], w: usize, xs: &[usize], ys: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(xs.len() * ys.len());
    for &y in ys {
        out.extend(xs.iter().map(|&x| src[y * w + x]));
    }
    out
}

/// Taps of one output index: source indices (borders replicated) and float weights.
type Taps = Vec<(Vec<usize>, Vec<f64>)>;

fn cv_taps(n: usize, out: usize, f: CvFilter) -> Taps {
    let inv_scale = out as f64 / n as f64;
    let scale = 1.0 / inv_scale;
    let clamp = |i: i64| i.clamp(0, n as i64 - 1) as usize;
    (0..out)
        .map(|dx| {
            let (ksize, fx_raw): (i64, f64) = match f {
                CvFilter::Linear => (2, (dx as f64 + 0.5) * scale - 0.5),
                CvFilter::Cubic => (4, (dx as f64 + 0.5) * scale - 0.5),
                CvFilter::Lanczos4 => (8, (dx as f64 + 0.5) * scale - 0.5),
                _ => unreachable!("not a tap filter"),
            };
            let sx = fx_raw.floor() as i64;
            let mut fx = (fx_raw - sx as f64) as f32;
            let mut sx = sx;
            if f == CvFilter::Linear {
                if sx < 0 {
                    fx = 0.0;
                    sx = 0;
                }
                if sx >= n as i64 - 1 {
                    fx = 0.0;
                    sx = n as i64 - 1;
                }
            }
            let fx = fx as f64;
            let weights: Vec<f64> = match f {
                CvFilter::Linear => vec![1.0 - fx, fx],
                CvFilter::Cubic => {
                    let a = -0.75f32;
                    let x = fx as f32;
                    let c0 =
                        ((a * (x + 1.0) - 5.0 * a) * (x + 1.0) + 8.0 * a) * (x + 1.0) - 4.0 * a;
                    let c1 = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
                    let c2 = ((a + 2.0) * (1.0 - x) - (a + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
                    let c3 = 1.0 - c0 - c1 - c2;
                    vec![c0 as f64, c1 as f64, c2 as f64, c3 as f64]
                }
                _ => {
                    let w: Vec<f64> = (0..8)
                        .map(|i| {
                            let d = fx + 3.0 - i as f64;
                            sinc(d) * sinc(d / 4.0)
                        })
                        .collect();
                    let s: f64 = w.iter().sum();
                    w.into_iter().map(|v| v / s).collect()
                }
            };
            let first = sx - (ksize / 2 - 1);
            let idx = (0..ksize).map(|k| clamp(first + k)).collect();
            (idx, weights)
        })
        .collect()
}

/// INTER_AREA's linear weights, used on both axes when either axis grows (OpenCV's `area_mode`).
fn cv_area_linear_taps(n: usize, out: usize) -> Taps {
    let inv_scale = out as f64 / n as f64;
    let scale = 1.0 / inv_scale;
    (0..out)
        .map(|dx| {
            let sx = (dx as f64 * scale).floor() as i64;
            let mut fx = ((dx + 1) as f64 - (sx + 1) as f64 * inv_scale) as f32;
            fx = if fx <= 0.0 { 0.0 } else { fx - fx.floor() };
            let (mut sx, mut fx) = (sx, fx as f64);
            if sx < 0 {
                sx = 0;
                fx = 0.0;
            }
            if sx >= n as i64 - 1 {
                sx = n as i64 - 1;
                fx = 0.0;
            }
            let s1 = (sx + 1).min(n as i64 - 1) as usize;
            (vec![sx as usize, s1], vec![1.0 - fx, fx])
        })
        .collect()
}

/// INTER_AREA shrinking: each output pixel averages the source cells it covers, fractional edges
/// weighted by their overlap (OpenCV's `computeResizeAreaTab`).
fn cv_area_taps(n: usize, out: usize) -> Taps {
    let scale = n as f64 / out as f64;
    (0..out)
        .map(|dx| {
            let fsx1 = dx as f64 * scale;
            let fsx2 = fsx1 + scale;
            let cell = scale.min(n as f64 - fsx1);
            let mut sx2 = fsx2.floor() as i64;
            let mut sx1 = fsx1.ceil() as i64;
            sx2 = sx2.min(n as i64 - 1);
            sx1 = sx1.min(sx2);
            let (mut idx, mut wts) = (Vec::new(), Vec::new());
            if sx1 as f64 - fsx1 > 1e-3 {
                idx.push((sx1 - 1) as usize);
                wts.push((sx1 as f64 - fsx1) / cell);
            }
            for s in sx1..sx2 {
                idx.push(s as usize);
                wts.push(1.0 / cell);
            }
            if fsx2 - sx2 as f64 > 1e-3 {
                idx.push(sx2 as usize);
                wts.push((fsx2 - sx2 as f64).min(1.0).min(cell) / cell);
            }
            (idx, wts)
        })
        .collect()
}

/// Shrinks by whole factors: plain block averages, rounded (OpenCV's `resizeAreaFast`).
fn cv_area_fast(src: &[u8], w: usize, tw: usize, th: usize, sx: usize, sy: usize) -> Vec<u8> {
    let area = (sx * sy) as u32;
    let mut out = Vec::with_capacity(tw * th);
    for y in 0..th {
        for x in 0..tw {
            let mut s = 0u32;
            for dy in 0..sy {
                for dx in 0..sx {
                    s += src[(y * sy + dy) * w + x * sx + dx] as u32;
                }
            }
            out.push(((s + area / 2) / area) as u8);
        }
    }
    out
}

fn cv_resample(src: &[u8], w: usize, h: usize, tw: usize, th: usize, f: CvFilter) -> Vec<u8> {
    let shrink = w >= tw && h >= th;
    let whole = shrink && w % tw == 0 && h % th == 0;
    let (fx, fy) = (w / tw, h / th);
    if whole && (f == CvFilter::Area || (f == CvFilter::Linear && fx == 2 && fy == 2)) {
        return cv_area_fast(src, w, tw, th, fx, fy);
    }
    // Area shrinking is computed in floating point; the others in OpenCV's 11-bit fixed point per
    // pass (weights rounded to 1/2048), the product rounded once at the end.
    let area_shrink = f == CvFilter::Area && shrink;
    let (tx, ty) = match f {
        CvFilter::Area if shrink => (cv_area_taps(w, tw), cv_area_taps(h, th)),
        CvFilter::Area => (cv_area_linear_taps(w, tw), cv_area_linear_taps(h, th)),
        _ => (cv_taps(w, tw, f), cv_taps(h, th, f)),
    };
    let quant = |taps: Taps| -> Taps {
        if area_shrink {
            return taps;
        }
        taps.into_iter()
            .map(|(i, w)| {
                (
                    i,
                    w.into_iter()
                        .map(|v| (v * 2048.0).round_ties_even())
                        .collect(),
                )
            })
            .collect()
    };
    let (tx, ty) = (quant(tx), quant(ty));
    let mut horiz = vec![0f64; tw * h];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for (x, (idx, wts)) in tx.iter().enumerate() {
            horiz[y * tw + x] = idx.iter().zip(wts).map(|(&i, &c)| row[i] as f64 * c).sum();
        }
    }
    let mut out = Vec::with_capacity(tw * th);
    for (idx, wts) in &ty {
        for x in 0..tw {
            let s: f64 = idx
                .iter()
                .zip(wts)
                .map(|(&i, &c)| horiz[i * tw + x] * c)
                .sum();
            let v = if area_shrink {
                s.round_ties_even()
            } else if idx.len() == 2 {
                // Two taps (linear, area enlarging): OpenCV's vectorised 8-bit rounding, which its
                // SIMD loop applies to nearly every pixel: each row sum shifted right by 4, times
                // the 16-bit weight keeping the high half, the two added, + 2, >> 2.
                let hi =
                    |row: usize, c: f64| (((horiz[row * tw + x] as i64) >> 4) * c as i64) >> 16;
                ((hi(idx[0], wts[0]) + hi(idx[1], wts[1]) + 2) >> 2) as f64
            } else {
                (s / (2048.0 * 2048.0) + 0.5).floor()
            };
            out.push(v.clamp(0.0, 255.0) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pil_nearest_accumulates_the_step() {
        // 512 -> 150: index 37 is column 127 in PIL (the exact 37.5 * 512 / 150 is 128).
        assert_eq!(pil_nearest_table(512, 150)[37], 127);
    }

    #[test]
    fn same_size_is_a_copy_and_constants_stay() {
        let src: Vec<u8> = (0..20).collect();
        for r in [
            Resampler::Pil(PilFilter::Lanczos),
            Resampler::OpenCv(CvFilter::Cubic),
        ] {
            assert_eq!(resize_plane(&src, 5, 4, 5, 4, r), src);
            let flat = vec![77u8; 35];
            assert!(resize_plane(&flat, 7, 5, 3, 9, r).iter().all(|&v| v == 77));
        }
    }
}
