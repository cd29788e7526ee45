//! The reference ('off') input of the methods that compare an image with an absence of signal:
//! LIME's and Kernel SHAP's switched-off superpixels, Integrated Gradients' baseline, the deletion /
//! insertion curves and the shortcut check's trust probe. One value per channel of the model input
//! (one value stands for every channel), so that a pixel-space black image mapped through the run's
//! preprocessing (`normalize`, per-channel `mean` / `std`, channel order) is expressed exactly.
use tch::Tensor;

/// Per-channel reference values in model-input units (after preprocessing).
#[derive(Clone, Debug, PartialEq)]
pub struct Reference(pub Vec<f32>);

impl Reference {
    /// The value of `channel` (a single value stands for every channel).
    pub fn value(&self, channel: usize) -> f32 {
        if self.0.len() == 1 {
            self.0[0]
        } else {
            self.0[channel]
        }
    }

    /// A 1 x C x 1 x 1 tensor (1 x 1 x 1 x 1 for one value) on `x`'s device and kind, to broadcast
    /// against N x C x H x W inputs.
    pub fn tensor(&self, x: &Tensor) -> Tensor {
        Tensor::from_slice(&self.0)
            .to_device(x.device())
            .to_kind(x.kind())
            .view([1, self.0.len() as i64, 1, 1])
    }

    /// The reference image for `channels` channels of `plane` pixels each, channel-first.
    pub fn image(&self, channels: usize, plane: usize) -> Vec<f32> {
        (0..channels)
            .flat_map(|c| std::iter::repeat_n(self.value(c), plane))
            .collect()
    }
}

impl From<f32> for Reference {
    fn from(v: f32) -> Self {
        Reference(vec![v])
    }
}

impl From<f64> for Reference {
    fn from(v: f64) -> Self {
        Reference(vec![v as f32])
    }
}

impl From<Vec<f32>> for Reference {
    fn from(v: Vec<f32>) -> Self {
        Reference(v)
    }
}

/// `explain.baseline`: what "no signal" is for the methods above.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineKind {
    /// A black image (every pixel 0) mapped through the run's preprocessing (`normalize`, `mean` /
    /// `std`, `channel_order`): per channel `(0 - mean) / std` in model-input units. With
    /// `standardize` (a per-image scaling) black has no fixed input value and the constants below
    /// are used.
    #[default]
    Black,
    /// The model-input constants `explain.reference_value` (LIME, Kernel SHAP, the curves, the trust
    /// probe; unset = 0 for one channel, 0.5 for three) and
    /// `explain.integrated_gradients.baseline_value` (IG), as before pixel-space baselines.
    Constant,
}

impl BaselineKind {
    pub fn is_default(&self) -> bool {
        *self == BaselineKind::default()
    }
}

impl super::ExplainConfig {
    /// The perturbation methods' 'off' value, the curves' and the trust probe's reference.
    pub fn reference_values(&self, channels: usize) -> Reference {
        match (&self.baseline, &self.black) {
            (BaselineKind::Black, Some(b)) => Reference(b.clone()),
            _ => Reference::from(self.reference(channels)),
        }
    }

    /// Integrated Gradients' baseline.
    pub fn ig_baseline(&self) -> Reference {
        match (&self.baseline, &self.black) {
            (BaselineKind::Black, Some(b)) => Reference(b.clone()),
            _ => Reference::from(self.integrated_gradients.baseline_value),
        }
    }

    /// The constants belong to `baseline: constant`: given with `black` they would be ignored.
    pub fn check_baseline(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.baseline == BaselineKind::Black {
            if let Some(v) = self.reference_value {
                return Err((
                    "explain.reference_value",
                    format!("{v} is a model-input constant, used with explain.baseline: constant; the baseline is black (a black image through the preprocessing): set explain.baseline: constant to use it, or remove it (allowed baselines: black, constant)"),
                ));
            }
            let v = self.integrated_gradients.baseline_value;
            if v != 0.0 {
                return Err((
                    "explain.integrated_gradients.baseline_value",
                    format!("{v} is a model-input constant, used with explain.baseline: constant; the baseline is black (a black image through the preprocessing): set explain.baseline: constant to use it, or remove it (allowed baselines: black, constant)"),
                ));
            }
        }
        Ok(())
    }

    /// In words, for the run's record and the report.
    pub fn describe_baseline(&self, channels: usize) -> String {
        let show = |r: &Reference| {
            r.0.iter()
                .map(|v| format!("{v:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (&self.baseline, &self.black) {
            (BaselineKind::Black, Some(_)) => format!(
                "black image through the preprocessing (model input [{}])",
                show(&self.reference_values(channels))
            ),
            _ => format!(
                "constants in model-input units: perturbation / curves {}, IG {}",
                show(&self.reference_values(channels)),
                show(&self.ig_baseline())
            ),
        }
    }
}
