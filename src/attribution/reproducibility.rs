//! How reproducible a stochastic map is, from the samples it already drew: split-half
//! agreement, no extra model call.
//!
//! SmoothGrad averages noisy gradients, LIME and Kernel SHAP fit a regression to random perturbations;
//! with another seed the same image gets another map. Rather than computing the map twice, the samples
//! already drawn are cut in two halves (first n/2, last n/2), a map is made from each half (a mean of
//! gradients, or one more regression fit), and the two half maps are compared by Spearman rank
//! correlation at [`AGREEMENT_SIZE`] x [`AGREEMENT_SIZE`] (as the agreement between methods is). Each
//! half has half the samples, so its noise is larger than the full map's; the Spearman-Brown formula
//! `r_full = 2 r / (1 + r)` predicts the agreement between two independent full-size maps, i.e. what two
//! runs with different seeds would give. That prediction is the stored figure. For LIME and Kernel SHAP
//! with fewer samples than superpixels a half fit is under-determined and noisier than the formula
//! assumes, so the figure errs on the low side there.
use crate::metrics;

/// Side of the grid the half maps are compared on (the agreement grid of the audit).
pub use crate::metrics::AGREEMENT_SIZE;

/// Below this figure a map raises no flag of its own (the shortcut check reads it): two runs with
/// different seeds would rank its pixels too differently for its location to mean anything.
pub const MIN_REPRODUCIBILITY: f64 = 0.5;

/// The maps made from the first and from the second half of a method's samples (S x S, row-major).
#[derive(Clone, Debug)]
pub struct Halves {
    pub first: Vec<f32>,
    pub second: Vec<f32>,
}

/// Spearman-Brown: the correlation of two full-length measurements from that of two half-length
/// ones. Negative or zero half agreement has no meaningful prediction and is kept as it is.
pub fn spearman_brown(r_half: f64) -> f64 {
    if r_half <= 0.0 {
        r_half
    } else {
        2.0 * r_half / (1.0 + r_half)
    }
}

/// The split-half agreement of two half maps of side `size`, before the Spearman-Brown step.
pub fn split_half_agreement(h: &Halves, size: usize) -> f64 {
    let g = AGREEMENT_SIZE.min(size.max(1));
    let a = metrics::downsample(&h.first, size, size, g, g);
    let b = metrics::downsample(&h.second, size, size, g, g);
    metrics::spearman(&a, &b) as f64
}

/// The stored reproducibility figure: the predicted Spearman correlation between two maps of the same
/// image drawn with independent seeds.
pub fn reproducibility(h: &Halves, size: usize) -> f64 {
    spearman_brown(split_half_agreement(h, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_brown_doubles_the_length() {
        // r = 0.5 for half the length -> 2 * 0.5 / 1.5 = 2/3; r = 1 stays 1; r <= 0 is kept.
        assert!((spearman_brown(0.5) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(spearman_brown(1.0), 1.0);
        assert_eq!(spearman_brown(-0.2), -0.2);
    }

    #[test]
    fn identical_halves_are_fully_reproducible_and_reversed_ones_are_not() {
        let s = 8;
        let a: Vec<f32> = (0..s * s).map(|i| i as f32).collect();
        let rev: Vec<f32> = a.iter().rev().cloned().collect();
        let same = Halves {
            first: a.clone(),
            second: a.clone(),
        };
        assert!((reproducibility(&same, s) - 1.0).abs() < 1e-6);
        let opposite = Halves {
            first: a,
            second: rev,
        };
        assert!(reproducibility(&opposite, s) < -0.99);
    }
}
