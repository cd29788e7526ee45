//! Causal confirmation of a candidate region on the model: occlusion and paste against a moved control,
//! Wilson intervals, and the fence behind the calibrated flags (see the parent module).
use rand::Rng;
use tch::Tensor;

use crate::attribution::rng_for_key;
use crate::error::Result;
use crate::model::Classifier;
use crate::store::shortcuts::FlipCount;

use super::*;

/// The 95% Wilson score interval of `k` successes in `n` trials; (0, 1) when n = 0.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Tukey's far-out fence of `values`: Q3 + k IQR, at least Q3 + margin (quartiles by linear
/// interpolation); `None` without values.
pub fn fence(values: &[f64], k: f64, margin: f64) -> Option<f64> {
    let (q1, _, q3) = quartiles(values)?;
    Some((q3 + k * (q3 - q1)).max(q3 + margin))
}

/// Lower quartile, median and upper quartile (linear interpolation) of the finite values; `None`
/// without any.
pub fn quartiles(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let pos = p * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    Some((q(0.25), q(0.5), q(0.75)))
}

/// One tested image: its model input (C x S x S) and the model's probabilities.
#[derive(Clone)]
pub(super) struct TestImage<'a> {
    pub(super) id: &'a str,
    pub(super) input: &'a [f32],
    pub(super) probs: Vec<f32>,
}

/// Outcome counts of one causal test.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    pub images: usize,
    pub flips: usize,
    /// Mean change of the class's probability in the tested direction (fall for occlusion, rise for
    /// paste).
    pub mean_shift: f64,
}

impl Counts {
    pub fn rate(&self) -> Option<f64> {
        (self.images > 0).then(|| self.flips as f64 / self.images as f64)
    }
    pub fn interval(&self) -> (f64, f64) {
        wilson(self.flips, self.images)
    }
    /// As stored: the rate, its interval and the mean shift only where images were tested.
    pub fn record(&self) -> FlipCount {
        let tested = self.images > 0;
        let (low, high) = self.interval();
        FlipCount {
            images: self.images as i64,
            flips: self.flips as i64,
            rate: self.rate(),
            low: tested.then_some(low),
            high: tested.then_some(high),
            shift: tested.then_some(self.mean_shift),
        }
    }
}

/// What the region's occlusion (in an image of its class) or paste (into an image of another class)
/// did to one image: the region class's probability before and after, the class predicted after.
/// The controls' outcomes are not kept per image (they only calibrate the rates).
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub image_id: String,
    /// `occlusion` or `paste`.
    pub test: &'static str,
    /// For a paste, the image of the region's class the region was taken from.
    pub donor: Option<String>,
    pub before: f64,
    pub after: f64,
    pub predicted_after: usize,
    pub flipped: bool,
}

/// The four tests of one region.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Causal {
    pub occlusion: Counts,
    pub paste: Counts,
    pub control_occlusion: Counts,
    pub control_paste: Counts,
}

impl Causal {
    /// The verdict rule of the module documentation.
    pub fn verdict(&self, min_flip_rate: f64) -> &'static str {
        let confirmed = |t: &Counts, c: &Counts| {
            t.rate().is_some_and(|r| r >= min_flip_rate)
                && t.interval().0 > c.interval().1.min(1.0 - 1e-12)
                && (c.images > 0 || t.interval().0 >= min_flip_rate)
        };
        if confirmed(&self.occlusion, &self.control_occlusion)
            || confirmed(&self.paste, &self.control_paste)
        {
            return "confirmed";
        }
        let below = |t: &Counts| t.images == 0 || t.interval().1 < min_flip_rate;
        if self.occlusion.images + self.paste.images > 0
            && below(&self.occlusion)
            && below(&self.paste)
        {
            "artefact"
        } else {
            "not_significant"
        }
    }
}

/// Nearest-neighbour upsampling of a grid mask to the model's side.
pub(super) fn mask_at(mask: &[bool], grid: usize, size: usize) -> Vec<bool> {
    (0..size * size)
        .map(|i| {
            let (y, x) = (i / size, i % size);
            mask[(y * grid / size) * grid + x * grid / size]
        })
        .collect()
}

/// A mask moved by (dx, dy) pixels (what falls outside is dropped).
pub(super) fn translate(mask: &[bool], size: usize, dx: i64, dy: i64) -> Vec<bool> {
    let mut out = vec![false; size * size];
    for (i, _) in mask.iter().enumerate().filter(|(_, &b)| b) {
        let (y, x) = ((i / size) as i64 + dy, (i % size) as i64 + dx);
        if x >= 0 && y >= 0 && x < size as i64 && y < size as i64 {
            out[y as usize * size + x as usize] = true;
        }
    }
    out
}

/// A random place for the control: a shift that keeps the region's box inside the image and overlaps
/// the region by less than a quarter of it when possible (the least overlapping of 32 draws otherwise).
pub(super) fn control_shift(mask: &[bool], size: usize, rng: &mut impl Rng) -> (i64, i64) {
    let (x0, y0, x1, y1) = bbox(mask, size);
    let s = size as f64;
    let (bx0, by0, bx1, by1) = (
        (x0 * s) as i64,
        (y0 * s) as i64,
        (x1 * s) as i64,
        (y1 * s) as i64,
    );
    let cells = mask.iter().filter(|&&b| b).count().max(1);
    let mut best = (0, 0, usize::MAX);
    for _ in 0..32 {
        let dx = rng.gen_range(-bx0..=(size as i64 - bx1));
        let dy = rng.gen_range(-by0..=(size as i64 - by1));
        let moved = translate(mask, size, dx, dy);
        let overlap = moved.iter().zip(mask).filter(|(a, b)| **a && **b).count();
        if overlap * 4 < cells {
            return (dx, dy);
        }
        if overlap < best.2 {
            best = (dx, dy, overlap);
        }
    }
    (best.0, best.1)
}

pub(super) fn occlude(
    input: &[f32],
    channels: usize,
    size: usize,
    mask: &[bool],
    ring: &[bool],
) -> Vec<f32> {
    let n = size * size;
    let mut out = input.to_vec();
    let ring_n = ring.iter().filter(|&&b| b).count();
    for c in 0..channels {
        let plane = &input[c * n..(c + 1) * n];
        let fill = if ring_n > 0 {
            (plane
                .iter()
                .zip(ring)
                .filter(|(_, &r)| r)
                .map(|(&v, _)| v as f64)
                .sum::<f64>()
                / ring_n as f64) as f32
        } else {
            0.0
        };
        for (i, _) in mask.iter().enumerate().filter(|(_, &b)| b) {
            out[c * n + i] = fill;
        }
    }
    out
}

pub(super) fn paste(
    target: &[f32],
    source: &[f32],
    channels: usize,
    size: usize,
    mask: &[bool],
) -> Vec<f32> {
    let n = size * size;
    let mut out = target.to_vec();
    for c in 0..channels {
        for (i, _) in mask.iter().enumerate().filter(|(_, &b)| b) {
            out[c * n + i] = source[c * n + i];
        }
    }
    out
}

/// Probabilities of a batch of C x S x S inputs.
pub(super) fn predict(
    model: &dyn Classifier,
    inputs: &[Vec<f32>],
    channels: usize,
    size: usize,
) -> Result<Vec<Vec<f32>>> {
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    let flat: Vec<f32> = inputs.iter().flat_map(|v| v.iter().copied()).collect();
    let x = Tensor::from_slice(&flat).view([
        inputs.len() as i64,
        channels as i64,
        size as i64,
        size as i64,
    ]);
    model.predict_probs(&x)
}

pub(super) fn argmax(p: &[f32]) -> usize {
    crate::evaluate::argmax(p)
}

/// Runs the occlusion, paste and control tests of one region on the model. `own` = images predicted
/// `class`, `others` = images predicted otherwise; `key` seeds the control's places. Returns the
/// counts, the forward passes spent and each tested image's outcome (occlusion and paste only).
#[allow(clippy::too_many_arguments)]
pub(super) fn causal_test(
    model: &dyn Classifier,
    class: usize,
    own: &[TestImage],
    others: &[TestImage],
    mask_grid: &[bool],
    grid: usize,
    channels: usize,
    size: usize,
    key: &str,
    seed: u64,
    min_flip_rate: f64,
) -> Result<(Causal, usize, Vec<Outcome>)> {
    let mask = mask_at(mask_grid, grid, size);
    let ring_width = (size / 16).max(2);
    let ring: Vec<bool> = dilate(&mask, size, size, ring_width)
        .iter()
        .zip(&mask)
        .map(|(&d, &m)| d && !m)
        .collect();
    let mut rng = rng_for_key(key, "shortcut-control", seed);
    // Phase 1, the region itself; phase 2, the controls, only when a rate could confirm (a region no
    // image reacts to needs no control, and the check stays cheap on a clean model).
    let mut batch = Vec::new();
    // The region of the `j`-th image of the class (in turn) pasted into `img` under `mask`.
    let paste_into = |j: usize, img: &TestImage, mask: &[bool]| {
        paste(img.input, own[j % own.len()].input, channels, size, mask)
    };
    // Per tested image: (kind 0..4, index into own/others).
    let mut what = Vec::new();
    for (i, img) in own.iter().enumerate() {
        batch.push(occlude(img.input, channels, size, &mask, &ring));
        what.push((0, i));
    }
    if !own.is_empty() {
        for (j, img) in others.iter().enumerate() {
            batch.push(paste_into(j, img, &mask));
            what.push((1, j));
        }
    }
    let mut probs = predict(model, &batch, channels, size)?;
    let flips = |kind: usize, probs: &[Vec<f32>]| {
        what.iter()
            .zip(probs)
            .filter(|((k, _), p)| {
                *k == kind
                    && ((kind == 0 && argmax(p) != class) || (kind == 1 && argmax(p) == class))
            })
            .count()
    };
    let needs_control = flips(0, &probs) as f64 >= min_flip_rate * own.len() as f64
        || (!own.is_empty() && flips(1, &probs) as f64 >= min_flip_rate * others.len() as f64);
    if needs_control {
        let mut controls = Vec::new();
        for (i, img) in own.iter().enumerate() {
            let (dx, dy) = control_shift(&mask, size, &mut rng);
            let (m, r) = (
                translate(&mask, size, dx, dy),
                translate(&ring, size, dx, dy),
            );
            controls.push(occlude(img.input, channels, size, &m, &r));
            what.push((2, i));
        }
        for (j, img) in others.iter().enumerate() {
            let (dx, dy) = control_shift(&mask, size, &mut rng);
            controls.push(paste_into(j, img, &translate(&mask, size, dx, dy)));
            what.push((3, j));
        }
        probs.extend(predict(model, &controls, channels, size)?);
        batch.extend(controls);
    }
    let mut counts = [Counts::default(); 4];
    let mut outcomes = Vec::new();
    for ((kind, i), p) in what.iter().zip(&probs) {
        let c = &mut counts[*kind];
        c.images += 1;
        let (tested, before, flipped) = if *kind % 2 == 0 {
            (&own[*i], own[*i].probs[class], argmax(p) != class)
        } else {
            (&others[*i], others[*i].probs[class], argmax(p) == class)
        };
        // Occlusion lowers the class's probability, a paste raises it: the shift in the tested direction.
        let shift = if *kind % 2 == 0 {
            before - p[class]
        } else {
            p[class] - before
        };
        c.flips += flipped as usize;
        c.mean_shift += shift as f64;
        if *kind < 2 {
            outcomes.push(Outcome {
                image_id: tested.id.to_string(),
                test: if *kind == 0 { "occlusion" } else { "paste" },
                donor: (*kind == 1).then(|| own[*i % own.len()].id.to_string()),
                before: before as f64,
                after: p[class] as f64,
                predicted_after: argmax(p),
                flipped,
            });
        }
    }
    for c in &mut counts {
        if c.images > 0 {
            c.mean_shift /= c.images as f64;
        }
    }
    Ok((
        Causal {
            occlusion: counts[0],
            paste: counts[1],
            control_occlusion: counts[2],
            control_paste: counts[3],
        },
        batch.len(),
        outcomes,
    ))
}
