//! LIME and Kernel SHAP on one shared set of model evaluations (`explain.shared_evaluations`): half of
//! each method's samples are drawn, as the method itself draws them, the union is evaluated once, and
//! each method fits on all of it with importance weights.
//!
//! The draws come from the mixture q(z) = a p_L(z) + (1 - a) p_S(z), with p_L LIME's distribution
//! (every superpixel kept with p = 1/2: 2^-M per mask), p_S Kernel SHAP's (size k with probability
//! proportional to (M-1) / (k (M-k)), then a uniform k-subset: P(k) / C(M, k) per mask) and a the LIME
//! share of the draws. A fit that expects samples from p gets each sample from q weighted by p(z) / q(z)
//! (which averages 1 under q, so LIME's ridge penalty keeps its strength relative to the data): LIME's
//! weights are exp(-d^2 / w^2) p_L / q, Kernel SHAP's p_S / q (unit weights in its plain form). Both
//! estimators stay consistent; what changes is their variance: LIME's and Kernel SHAP's distributions
//! barely overlap at ~100-200 superpixels (LIME keeps about half the superpixels, Kernel SHAP's sizes
//! pile up near 1 and M-1), so each method mostly learns from its own half and the other half gets
//! weights near 0. Half the evaluations for about half the effective samples: `bench --equivalence`
//! shows what that costs in agreement with the reference.
//!
//! The split-half reproducibility of [`super::reproducibility`] is kept: each method is fitted
//! again on the first half of each method's draws and on the second half (both halves are draws from
//! the same mixture q, so the importance weights stay as they are), two more fits per method and no
//! extra model call.
use std::time::Instant;

use rand_chacha::ChaCha8Rng;

use super::perturbation::{self, Perturbation};
use super::reproducibility::{reproducibility, Halves};
use super::{rng_for, segmentation_of, Attribution, ExplainConfig, ImageInput, LimeConfig, Method};
use crate::error::Result;
use crate::model::Classifier;

/// LIME and Kernel SHAP of one image on shared evaluations (`explain.shared_evaluations`, see
/// the module docs); `None` when the image has fewer than two superpixels (then each runs alone). The
/// seconds of the shared work are split evenly between the two.
pub fn explain_pair(
    model: &dyn Classifier,
    cfg: &ExplainConfig,
    input: &ImageInput,
) -> Result<Option<(Attribution, Attribution)>> {
    let t0 = Instant::now();
    let _work = super::work::begin("LIME and Kernel SHAP");
    model.use_prepacked(cfg.prepacked_weights);
    let seg = segmentation_of(cfg, input)?;
    if seg.n_segments < 2 {
        return Ok(None);
    }
    let maps = lime_and_kernel_shap(
        &cfg.perturbation(model, input, seg),
        cfg.lime.samples.unwrap_or(1000),
        cfg.kernel_shap.samples.unwrap_or(1000),
        &cfg.lime,
        &mut rng_for(input.id, Method::Lime, cfg.seed),
        &mut rng_for(input.id, Method::KernelShap, cfg.seed),
    )?;
    let seconds = t0.elapsed().as_secs_f64() / 2.0;
    let size = input.x.size()[3] as usize;
    let make = |method, map, halves: Option<Halves>| Attribution {
        method,
        map,
        size,
        completeness_error: None,
        segments: Some(seg.n_segments),
        reproducibility: halves.as_ref().map(|h| reproducibility(h, size)),
        seconds,
    };
    Ok(Some((
        make(Method::Lime, maps.lime, maps.lime_halves),
        make(
            Method::KernelShap,
            maps.kernel_shap,
            maps.kernel_shap_halves,
        ),
    )))
}

/// The two maps of [`lime_and_kernel_shap`].
pub struct SharedMaps {
    pub lime: Vec<f32>,
    pub kernel_shap: Vec<f32>,
    /// The maps fitted on each half of the draws (see the module docs); `None` when a half has fewer
    /// than 2 samples or a fit fails, as for the methods run apart.
    pub lime_halves: Option<Halves>,
    pub kernel_shap_halves: Option<Halves>,
    /// Model evaluations made (distinct masks), against `lime_samples + shap_samples` for the two
    /// methods run apart (before their own duplicate saving).
    pub evaluations: usize,
}

/// LIME (`lime_samples`, weights and ridge of `cfg`) and Kernel SHAP (`shap_samples`) on shared
/// evaluations: ceil(lime_samples / 2) LIME masks from `lime_rng` and ceil(shap_samples / 2) Kernel
/// SHAP coalitions from `shap_rng`, i.e. the first half of what each method draws alone with the same
/// seed. Needs M >= 2 superpixels (the caller runs the methods apart otherwise).
pub fn lime_and_kernel_shap(
    run: &Perturbation,
    lime_samples: usize,
    shap_samples: usize,
    cfg: &LimeConfig,
    lime_rng: &mut ChaCha8Rng,
    shap_rng: &mut ChaCha8Rng,
) -> Result<SharedMaps> {
    let (x, seg) = (run.x, run.seg);
    let m = seg.n_segments;
    let (n_l, n_s) = (lime_samples.div_ceil(2), shap_samples.div_ceil(2));
    let mut masks = perturbation::lime_masks(m, n_l, lime_rng);
    masks.extend(perturbation::shap_masks(m, n_s, shap_rng)?);
    let y = run.scores(&masks)?;
    let evaluations = distinct_rows(&masks, m);
    let (w_l, w_s) = importance_weights(&masks, m, n_l as f64 / (n_l + n_s) as f64);

    let seg_d = perturbation::segment_sq_distance(x, seg, run.reference.clone())?;
    let kernel = perturbation::lime_kernel_weights(&masks, &seg_d, cfg.kernel_width, m);
    let mut w: Vec<f64> = kernel.iter().zip(&w_l).map(|(k, i)| k * i).collect();
    if w.iter().all(|&v| v == 0.0 || !v.is_finite()) {
        // As LIME alone: uniform weights when every kernel weight underflows, over its own draws.
        w = w_l.clone();
    }
    let lime = perturbation::ridge(&masks, &y, &w, m, cfg.alpha)?;
    let shap = perturbation::weighted_least_squares_with_intercept(&masks, &y, &w_s, m)?;

    // Split halves: the first half of the LIME draws with the first half of the Kernel SHAP draws,
    // and the rest.
    let first: Vec<usize> = (0..n_l / 2).chain(n_l..n_l + n_s / 2).collect();
    let second: Vec<usize> = (n_l / 2..n_l).chain(n_l + n_s / 2..n_l + n_s).collect();
    let halves = |fit: &dyn Fn(&[usize]) -> Result<Vec<f64>>| -> Option<Halves> {
        if first.len() < 2 || second.len() < 2 {
            return None;
        }
        Some(Halves {
            first: perturbation::paint(seg, &fit(&first).ok()?),
            second: perturbation::paint(seg, &fit(&second).ok()?),
        })
    };
    let lime_halves = halves(&|rows| {
        let (z, yy) = (pick_rows(&masks, m, rows), pick(&y, rows));
        let mut ww = pick(&w, rows);
        if ww.iter().all(|&v| v == 0.0 || !v.is_finite()) {
            // As the whole: the importance weights alone when every kernel weight underflows.
            ww = pick(&w_l, rows);
        }
        perturbation::ridge(&z, &yy, &ww, m, cfg.alpha)
    });
    let kernel_shap_halves = halves(&|rows| {
        let (z, yy, ww) = (pick_rows(&masks, m, rows), pick(&y, rows), pick(&w_s, rows));
        perturbation::weighted_least_squares_with_intercept(&z, &yy, &ww, m)
    });
    Ok(SharedMaps {
        lime: perturbation::paint(seg, &lime),
        kernel_shap: perturbation::paint(seg, &shap),
        lime_halves,
        kernel_shap_halves,
        evaluations,
    })
}

fn pick(v: &[f64], rows: &[usize]) -> Vec<f64> {
    rows.iter().map(|&r| v[r]).collect()
}

fn pick_rows(masks: &[f32], m: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter()
        .flat_map(|&r| &masks[r * m..(r + 1) * m])
        .copied()
        .collect()
}

fn distinct_rows(masks: &[f32], m: usize) -> usize {
    let rows: std::collections::HashSet<Vec<bool>> = masks
        .chunks(m)
        .map(|r| r.iter().map(|&v| v != 0.0).collect())
        .collect();
    rows.len()
}

/// (p_L / q, p_S / q) for every mask (N x M rows), with q = a p_L + (1 - a) p_S. Computed from the
/// log-ratio r = ln p_S - ln p_L, so that neither 2^-M nor 1 / C(M, k) underflows:
/// p_L / q = 1 / (a + (1 - a) e^r) and p_S / q = 1 / (a e^-r + 1 - a).
pub fn importance_weights(masks: &[f32], m: usize, a: f64) -> (Vec<f64>, Vec<f64>) {
    let sizes = perturbation::shap_size_weights(m);
    let z: f64 = sizes.iter().sum();
    // ln k! for k = 0..=M.
    let mut ln_fact = vec![0f64; m + 1];
    for k in 1..=m {
        ln_fact[k] = ln_fact[k - 1] + (k as f64).ln();
    }
    let ln_p_l = -(m as f64) * std::f64::consts::LN_2;
    masks
        .chunks(m)
        .map(|row| {
            let k = row.iter().filter(|&&v| v != 0.0).count();
            if k == 0 || k == m {
                // Kernel SHAP never draws the empty or the full coalition: p_S = 0.
                return (1.0 / a, 0.0);
            }
            let ln_choose = ln_fact[m] - ln_fact[k] - ln_fact[m - k];
            let ln_p_s = (sizes[k - 1] / z).ln() - ln_choose;
            let r = ln_p_s - ln_p_l;
            (
                1.0 / (a + (1.0 - a) * r.exp()),
                1.0 / (a * (-r).exp() + 1.0 - a),
            )
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn importance_weights_average_one_under_the_mixture() {
        // E_q[p / q] = sum_z p(z) = 1 for either method: checked by exact enumeration of all 2^M masks
        // at M = 6, weighting each mask by its mixture probability q(z) = a 2^-M + (1 - a) P(k) / C(M, k).
        let m = 6;
        let a = 0.4;
        let masks: Vec<f32> = (0..1u32 << m)
            .flat_map(|bits| (0..m).map(move |i| ((bits >> i) & 1) as f32))
            .collect();
        let (wl, ws) = importance_weights(&masks, m, a);
        let sizes = perturbation::shap_size_weights(m);
        let z: f64 = sizes.iter().sum();
        let choose = |k: usize| (0..k).fold(1f64, |c, i| c * (m - i) as f64 / (i + 1) as f64);
        let (mut el, mut es) = (0.0, 0.0);
        for (i, row) in masks.chunks(m).enumerate() {
            let k = row.iter().filter(|&&v| v != 0.0).count();
            let p_s = if k == 0 || k == m {
                0.0
            } else {
                sizes[k - 1] / z / choose(k)
            };
            let q = a * 0.5f64.powi(m as i32) + (1.0 - a) * p_s;
            el += q * wl[i];
            es += q * ws[i];
        }
        assert!(
            (el - 1.0).abs() < 1e-12 && (es - 1.0).abs() < 1e-12,
            "{el} {es}"
        );
    }

    #[test]
    fn the_shared_draws_are_the_first_half_of_each_methods_own() {
        let mut a = ChaCha8Rng::seed_from_u64(3);
        let mut b = ChaCha8Rng::seed_from_u64(3);
        let all = perturbation::shap_masks(7, 10, &mut a).unwrap();
        let half = perturbation::shap_masks(7, 5, &mut b).unwrap();
        assert_eq!(&all[..35], &half[..]);
    }
}
