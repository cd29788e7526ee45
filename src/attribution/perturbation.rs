//! Perturbation family on superpixels: LIME (weighted ridge on random keep/drop masks) and Kernel SHAP
//! (coalitions drawn from the Shapley kernel, ordinary least squares). A switched-off superpixel takes
//! the reference value; each superpixel's coefficient is painted on all its pixels.
use rand::distributions::{Distribution, WeightedIndex};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use super::reference::Reference;
use super::reproducibility::Halves;
use super::segment::{self, Segmentation};
use super::{LimeConfig, SegmentationConfig, SegmentationMethod};
use crate::error::{Error, Result};
use crate::model::Classifier;

/// The segmentation the config asks for. Single-channel input is segmented on its grey image in
/// [0, 1]; RGB input on the model input min-max scaled to [0, 1] (channel-last).
pub fn segment_for(
    cfg: &SegmentationConfig,
    grey: &[f32],
    size: usize,
    x: &Tensor,
) -> Result<Segmentation> {
    let channels = x.size()[1] as usize;
    let rgb;
    let (img, ch): (&[f32], usize) = if channels == 1 {
        (grey, 1)
    } else {
        let t = x
            .get(0)
            .permute([1, 2, 0])
            .contiguous()
            .to_device(Device::Cpu);
        let (lo, hi) = (t.min().double_value(&[]), t.max().double_value(&[]));
        let t = (t - lo) / (hi - lo).max(1e-12);
        rgb = Vec::<f32>::try_from(t.flatten(0, -1))?;
        (&rgb, channels)
    };
    Ok(match cfg.method {
        SegmentationMethod::Grid => segment::grid(size, size, cfg.grid_cells, cfg.grid_cells),
        SegmentationMethod::Slic => segment::slic(
            img,
            size,
            size,
            ch,
            cfg.slic_segments,
            cfg.slic_compactness,
            cfg.sigma,
        ),
        SegmentationMethod::File => {
            let path = cfg
                .path
                .as_ref()
                .ok_or_else(|| Error::key("explain.segmentation.path", "missing"))?;
            segment::from_label_image(path, size, size)
                .map_err(|e| Error::key("explain.segmentation.path", e.to_string()))?
        }
        SegmentationMethod::Felzenszwalb => {
            segment::felzenszwalb(img, size, size, ch, cfg.scale, cfg.sigma, cfg.min_size)
        }
    })
}

/// One image to explain by switching superpixels off: the model, the image (1 x C x S x S) and its
/// explained class, the superpixels, the value a switched-off pixel takes, and how the forwards run
/// (`batch` perturbed images at a time, in bfloat16 when `bf16`: see
/// [`ExplainConfig::bf16_forwards`](super::ExplainConfig::bf16_forwards)).
pub struct Perturbation<'a> {
    pub model: &'a dyn Classifier,
    pub x: &'a Tensor,
    pub target: i64,
    pub seg: &'a Segmentation,
    pub reference: Reference,
    pub batch: usize,
    pub bf16: bool,
}

impl Perturbation<'_> {
    /// Target logits of the perturbed images: pixel kept where its superpixel's mask entry is 1, reference
    /// elsewhere. `masks` is N x M (row-major, 0/1). A mask drawn twice is evaluated once (the model is
    /// deterministic, so its score is the same).
    pub fn scores(&self, masks: &[f32]) -> Result<Vec<f64>> {
        let m = self.seg.n_segments.max(1);
        // Unique rows, in first-seen order, and where each row's score comes from.
        let mut first: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
        let mut unique: Vec<f32> = Vec::with_capacity(masks.len());
        let source: Vec<usize> = masks
            .chunks(m)
            .map(|row| {
                let key: Vec<u8> = row.iter().map(|&v| (v != 0.0) as u8).collect();
                let next = first.len();
                *first.entry(key).or_insert_with(|| {
                    unique.extend_from_slice(row);
                    next
                })
            })
            .collect();
        let scores = self.unique_scores(&unique)?;
        Ok(source.into_iter().map(|i| scores[i]).collect())
    }

    fn unique_scores(&self, masks: &[f32]) -> Result<Vec<f64>> {
        let Perturbation {
            model,
            x,
            target,
            seg,
            ref reference,
            batch,
            bf16,
        } = *self;
        let m = seg.n_segments;
        let n = masks.len() / m.max(1);
        let dev = x.device();
        let s = x.size();
        let labels: Vec<i64> = seg.labels.iter().map(|&l| l as i64).collect();
        let labels = Tensor::from_slice(&labels).to_device(dev);
        let all = Tensor::from_slice(masks)
            .to_device(dev)
            .view([n as i64, m as i64]);
        let _guard = tch::no_grad_guard();
        let mut scores = Vec::with_capacity(n);
        super::work::plan(n as u64);
        let mut start = 0;
        while start < n {
            let len = batch.min(n - start) as i64;
            let pm = all
                .narrow(0, start as i64, len)
                .index_select(1, &labels)
                .view([len, 1, s[2], s[3]]);
            let perturbed: Tensor = x * &pm + (1.0 - &pm) * reference.tensor(x);
            let logits = model.logits_inference(&perturbed, bf16)?;
            let col = logits
                .select(1, target)
                .to_kind(Kind::Double)
                .to_device(Device::Cpu);
            scores.extend(Vec::<f64>::try_from(col)?);
            super::work::done(len as u64);
            start += len as usize;
        }
        Ok(scores)
    }
}

/// Paints per-superpixel coefficients on their pixels.
pub(crate) fn paint(seg: &Segmentation, coef: &[f64]) -> Vec<f32> {
    seg.labels
        .iter()
        .map(|&l| coef[l as usize] as f32)
        .collect()
}

/// Sum over each superpixel of (x - reference)^2 over its pixels and channels: the squared pixel-space
/// distance a sample gains when it switches that superpixel off.
pub(crate) fn segment_sq_distance(
    x: &Tensor,
    seg: &Segmentation,
    reference: impl Into<Reference>,
) -> Result<Vec<f64>> {
    let reference: Reference = reference.into();
    let d = (x - reference.tensor(x)).square().sum_dim_intlist(
        [0i64, 1].as_slice(),
        false,
        Kind::Double,
    );
    let d = Vec::<f64>::try_from(d.to_device(Device::Cpu).flatten(0, -1))?;
    let mut per = vec![0f64; seg.n_segments];
    for (p, &l) in seg.labels.iter().enumerate() {
        per[l as usize] += d[p];
    }
    Ok(per)
}

impl Perturbation<'_> {
    /// LIME: each sample keeps every superpixel with probability 1/2; weight = exp(-d^2 / kernel_width^2)
    /// with d the L2 distance between original and perturbed image in pixel space (uniform weights if
    /// all underflow); ridge regression (alpha, intercept unpenalised) of the target logit on the masks.
    /// Also the maps fitted on the first and on the second half of the same samples (the split-half
    /// reproducibility of [`super::reproducibility`]: two more ridge solves, no extra model call); `None`
    /// with fewer than 4 samples.
    pub fn lime(
        &self,
        samples: usize,
        cfg: &LimeConfig,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, Option<Halves>)> {
        let (x, seg) = (self.x, self.seg);
        let m = seg.n_segments;
        let masks = lime_masks(m, samples, rng);
        let y = self.scores(&masks)?;
        let seg_d = segment_sq_distance(x, seg, self.reference.clone())?;
        let mut w = lime_kernel_weights(&masks, &seg_d, cfg.kernel_width, m);
        if w.iter().all(|&v| v == 0.0 || !v.is_finite()) {
            w.iter_mut().for_each(|v| *v = 1.0);
        }
        let coef = ridge(&masks, &y, &w, m, cfg.alpha)?;
        let halves = split_fits(samples, m, |rows| {
            let (z, yy, ww) = (
                &masks[rows.start * m..rows.end * m],
                &y[rows.clone()],
                &w[rows],
            );
            // A half whose kernel weights all underflow falls back to uniform weights, as the whole does.
            let ww: Vec<f64> = if ww.iter().all(|&v| v == 0.0 || !v.is_finite()) {
                vec![1.0; ww.len()]
            } else {
                ww.to_vec()
            };
            ridge(z, yy, &ww, m, cfg.alpha)
        });
        Ok((
            paint(seg, &coef),
            halves.map(|(a, b)| Halves {
                first: paint(seg, &a),
                second: paint(seg, &b),
            }),
        ))
    }
}

/// The coefficients fitted on samples `0..n/2` and on `n/2..n` (`None` when a half has fewer than 2
/// samples or a fit fails: the figure is then unknown, never a guess).
fn split_fits(
    samples: usize,
    m: usize,
    fit: impl Fn(std::ops::Range<usize>) -> Result<Vec<f64>>,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let half = samples / 2;
    if half < 2 || m == 0 {
        return None;
    }
    Some((fit(0..half).ok()?, fit(half..samples).ok()?))
}

/// `samples` LIME masks (N x M, row-major): every superpixel kept with probability 1/2.
pub(crate) fn lime_masks(m: usize, samples: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..samples * m)
        .map(|_| if rng.gen_bool(0.5) { 1.0 } else { 0.0 })
        .collect()
}

/// LIME's sample weights exp(-d^2 / kernel_width^2), d^2 = the squared pixel-space distance of each
/// mask's perturbed image from the original (`seg_d` from [`segment_sq_distance`]).
pub(crate) fn lime_kernel_weights(
    masks: &[f32],
    seg_d: &[f64],
    kernel_width: f32,
    m: usize,
) -> Vec<f64> {
    let kw2 = (kernel_width as f64).powi(2);
    masks
        .chunks(m)
        .map(|z| {
            let d2: f64 = z
                .iter()
                .zip(seg_d)
                .map(|(&zi, &e)| (1.0 - zi as f64) * e)
                .sum();
            (-d2 / kw2).exp()
        })
        .collect()
}

/// Weighted ridge with an unpenalised intercept (centre by the weighted means, then solve
/// (Zc' W Zc + alpha I) beta = Zc' W yc), in f64. Returns the M coefficients.
///
/// Plain Rust in a fixed summation order (not LAPACK, whose threading changes the last bits): the same
/// samples give bit-identical coefficients whatever the thread count.
pub fn ridge(masks: &[f32], y: &[f64], w: &[f64], m: usize, alpha: f64) -> Result<Vec<f64>> {
    let n = y.len();
    let wsum: f64 = w.iter().sum();
    if n == 0 || m == 0 || wsum <= 0.0 {
        return Err(Error::Other(format!(
            "regression needs samples and features (n = {n}, m = {m})"
        )));
    }
    let mut zm = vec![0f64; m];
    let mut ym = 0.0;
    for (i, z) in masks.chunks(m).enumerate() {
        for (acc, &v) in zm.iter_mut().zip(z) {
            *acc += w[i] * v as f64;
        }
        ym += w[i] * y[i];
    }
    zm.iter_mut().for_each(|v| *v /= wsum);
    ym /= wsum;
    // Lower triangle of A = Zc' W Zc, and b = Zc' W yc.
    let mut a = vec![0f64; m * m];
    let mut b = vec![0f64; m];
    let mut zc = vec![0f64; m];
    for (i, z) in masks.chunks(m).enumerate() {
        for k in 0..m {
            zc[k] = z[k] as f64 - zm[k];
        }
        let yc = y[i] - ym;
        for r in 0..m {
            let wr = w[i] * zc[r];
            if wr == 0.0 {
                continue;
            }
            b[r] += wr * yc;
            let row = &mut a[r * m..r * m + r + 1];
            for (c, cell) in row.iter_mut().enumerate() {
                *cell += wr * zc[c];
            }
        }
    }
    for r in 0..m {
        a[r * m + r] += alpha;
    }
    cholesky_solve(&mut a, &mut b, m)?;
    Ok(b)
}

/// Solves A x = b in place for symmetric positive definite A (lower triangle used), by Cholesky.
fn cholesky_solve(a: &mut [f64], b: &mut [f64], m: usize) -> Result<()> {
    for j in 0..m {
        let mut d = a[j * m + j];
        for k in 0..j {
            d -= a[j * m + k] * a[j * m + k];
        }
        // NaN counts as not positive definite too.
        if d.is_nan() || d <= 0.0 {
            return Err(Error::Other(format!(
                "regression matrix is not positive definite (pivot {j}: {d:e})"
            )));
        }
        let d = d.sqrt();
        a[j * m + j] = d;
        for i in (j + 1)..m {
            let mut s = a[i * m + j];
            for k in 0..j {
                s -= a[i * m + k] * a[j * m + k];
            }
            a[i * m + j] = s / d;
        }
    }
    for i in 0..m {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * m + k] * b[k];
        }
        b[i] = s / a[i * m + i];
    }
    for i in (0..m).rev() {
        let mut s = b[i];
        for k in (i + 1)..m {
            s -= a[k * m + i] * b[k];
        }
        b[i] = s / a[i * m + i];
    }
    Ok(())
}

impl Perturbation<'_> {
    /// Kernel SHAP: coalition size k drawn with probability proportional to (M-1) / (k (M-k)), k = 1..M-1,
    /// then a uniformly random subset of that size; ordinary least squares with intercept, unit weights.
    /// Also the maps fitted on the first and on the second half of the same coalitions (see
    /// [`Perturbation::lime`]); `None` for one superpixel (the value is then exact) or fewer than 4
    /// samples.
    pub fn kernel_shap(
        &self,
        samples: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, Option<Halves>)> {
        let seg = self.seg;
        let m = seg.n_segments;
        if m < 2 {
            // One feature: its Shapley value is exactly f(x) - f(reference).
            let y = self.scores(&[1.0, 0.0])?;
            return Ok((paint(seg, &[y[0] - y[1]]), None));
        }
        let masks = shap_masks(m, samples, rng)?;
        let y = self.scores(&masks)?;
        let coef = least_squares_with_intercept(&masks, &y, m)?;
        let halves = split_fits(samples, m, |rows| {
            least_squares_with_intercept(&masks[rows.start * m..rows.end * m], &y[rows], m)
        });
        Ok((
            paint(seg, &coef),
            halves.map(|(a, b)| Halves {
                first: paint(seg, &a),
                second: paint(seg, &b),
            }),
        ))
    }
}

/// Kernel SHAP's unnormalised coalition-size weights (M-1) / (k (M-k)), k = 1..M-1 (M >= 2).
pub(crate) fn shap_size_weights(m: usize) -> Vec<f64> {
    (1..m)
        .map(|k| (m - 1) as f64 / (k as f64 * (m - k) as f64))
        .collect()
}

/// `samples` Kernel SHAP coalitions (N x M, row-major), M >= 2: a size from [`shap_size_weights`],
/// then a uniform subset of that size.
pub(crate) fn shap_masks(m: usize, samples: usize, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
    let dist = WeightedIndex::new(shap_size_weights(m))
        .map_err(|e| Error::Other(format!("Kernel SHAP size weights: {e}")))?;
    let mut masks = vec![0f32; samples * m];
    let mut idx: Vec<usize> = (0..m).collect();
    for row in masks.chunks_mut(m) {
        let k = dist.sample(rng) + 1;
        // Partial Fisher-Yates: the first k entries become a uniform random k-subset.
        for i in 0..k {
            let j = rng.gen_range(i..m);
            idx.swap(i, j);
            row[idx[i]] = 1.0;
        }
    }
    Ok(masks)
}

/// OLS of y on [1, Z]: the centred normal equations with a vanishing ridge (1e-9 of the mean
/// diagonal), which keeps the system solvable when coalitions are fewer than features (the result then
/// approaches the minimum-norm least-squares solution) and changes a full-rank fit by ~1e-9 relative.
pub fn least_squares_with_intercept(masks: &[f32], y: &[f64], m: usize) -> Result<Vec<f64>> {
    weighted_least_squares_with_intercept(masks, y, &vec![1f64; y.len()], m)
}

/// [`least_squares_with_intercept`] with sample weights `w` (the vanishing ridge as there).
pub fn weighted_least_squares_with_intercept(
    masks: &[f32],
    y: &[f64],
    w: &[f64],
    m: usize,
) -> Result<Vec<f64>> {
    let n = y.len();
    // Mean diagonal of the centred Gram matrix = mean variance of a feature times n.
    let mut var = 0f64;
    for k in 0..m {
        let mean = masks
            .iter()
            .skip(k)
            .step_by(m)
            .map(|&v| v as f64)
            .sum::<f64>()
            / n as f64;
        var += masks
            .iter()
            .skip(k)
            .step_by(m)
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>();
    }
    let jitter = 1e-9 * (var / m.max(1) as f64).max(1e-12);
    ridge(masks, y, w, m, jitter)
}
