//! The bfloat16 mode of an ONNX graph's run: the mixed precision of Integrated Gradients and
//! SmoothGrad ([`OnnxModel::forward_mixed`], differentiable) and of the forward-only batches of LIME,
//! Kernel SHAP and the probes ([`OnnxModel::forward_bf16`]). [`OnnxModel::forward`] (predictions,
//! stored confidences) stays float32.
//!
//! Autocast-style, as the native CNN's `mixed.rs`, at the level of the graph's nodes, so that the
//! operators themselves do not change: before a convolution (Conv, ConvTranspose) runs, its image
//! input is cast to bfloat16 and laid out channels-last (oneDNN's native layout), and its weight and
//! bias come from bfloat16 copies of the initialisers, made once and cached (a copy of the model, see
//! [`OnnxModel::duplicate`], makes its own from its own parameters). oneDNN accumulates each dot
//! product in float32 and rounds the output to bfloat16. The operators that give the same values on
//! a bfloat16 tensor as in float32 followed by rounding ([`passes_low`]: ReLU, max pooling, pure data
//! movement) take the bfloat16 value as it is; every other operator gets its bfloat16 inputs cast
//! back to float32 and runs in float32. So the values are those of "each convolution in bfloat16,
//! its output cast back to float32 at once", without the casts' memory traffic between a
//! convolution, its ReLU and its pooling.
//!
//! Matrix products (MatMul, Gemm) stay in float32: in an image classifier they are a few percent of
//! the work (VGG16's dense head: 0.2 of 18 GFLOP per image), and oneDNN's bfloat16 matmul in
//! libtorch 2.13 crashes for some small batch sizes on AMX (see `NativeCnn::forward_bf16_convs`).
use std::collections::HashMap;
use std::sync::OnceLock;

use tch::{Kind, Tensor};

use super::OnnxModel;
use crate::error::Result;

/// Operators run in bfloat16 in the mixed mode.
pub(super) fn runs_low(op: &str) -> bool {
    matches!(op, "Conv" | "ConvTranspose")
}

/// Operators whose output on a bfloat16 input equals their float32 output rounded to bfloat16
/// (order-preserving or pure data movement): a bfloat16 value goes through them as it is.
pub(super) fn passes_low(op: &str) -> bool {
    matches!(
        op,
        "Relu"
            | "MaxPool"
            | "Identity"
            | "Dropout"
            | "Transpose"
            | "Reshape"
            | "Flatten"
            | "Squeeze"
            | "Unsqueeze"
    )
}

/// Whether a 4-D tensor is laid out channels-last (NHWC strides for its NCHW shape).
fn is_channels_last(t: &Tensor) -> bool {
    let (s, st) = (t.size(), t.stride());
    s.len() == 4
        && st[1] == 1
        && st[3] == s[1]
        && st[2] == s[1] * s[3]
        && st[0] == s[1] * s[2] * s[3]
}

/// `t` in bfloat16, 4-D tensors channels-last (a float32 input is cast before its layout changes:
/// half the bytes moved).
pub(super) fn low(t: &Tensor) -> Tensor {
    let t = if t.kind() == Kind::BFloat16 {
        t.shallow_clone()
    } else {
        t.to_kind(Kind::BFloat16)
    };
    if t.dim() == 4 && !is_channels_last(&t) {
        crate::model::to_channels_last(&t)
    } else {
        t
    }
}

/// `t` in float32 when it is a bfloat16 value (other kinds as they are).
pub(super) fn high(t: &Tensor) -> Tensor {
    if t.kind() == Kind::BFloat16 {
        t.to_kind(Kind::Float)
    } else {
        t.shallow_clone()
    }
}

/// The bfloat16 copies of the convolutions' weight and bias initialisers, by initialiser name.
pub(super) type LowParams = OnceLock<HashMap<String, Tensor>>;

impl OnnxModel {
    /// The bfloat16 copies of the parameters the convolutions read (made on first use, a snapshot:
    /// parameters changed afterwards are not seen by it).
    pub(super) fn low_params(&self) -> &HashMap<String, Tensor> {
        self.low_params.get_or_init(|| {
            let _guard = tch::no_grad_guard();
            self.nodes
                .iter()
                .filter(|n| runs_low(&n.op))
                .flat_map(|n| n.inputs.iter().skip(1))
                .filter_map(|name| {
                    let t = self.params.get(name)?;
                    t.is_floating_point()
                        .then(|| (name.clone(), low(t).detach()))
                })
                .collect()
        })
    }

    /// A node's inputs for the bfloat16 mode (see the module docs).
    pub(super) fn low_inputs(
        &self,
        op: &str,
        names: &[String],
        inputs: Vec<Option<Tensor>>,
    ) -> Vec<Option<Tensor>> {
        if runs_low(op) {
            let cached = self.low_params();
            inputs
                .into_iter()
                .zip(names)
                .map(|(t, name)| {
                    let t = t?;
                    if !t.is_floating_point() {
                        return Some(t);
                    }
                    Some(
                        cached
                            .get(name)
                            .map(Tensor::shallow_clone)
                            .unwrap_or_else(|| low(&t)),
                    )
                })
                .collect()
        } else if passes_low(op) {
            inputs
        } else {
            inputs.into_iter().map(|t| t.map(|t| high(&t))).collect()
        }
    }

    /// Logits with the convolutions in bfloat16 (float32 accumulation), differentiable with respect
    /// to `x` (the input gradient arrives in float32): Integrated Gradients' and SmoothGrad's
    /// mixed precision.
    pub fn forward_mixed(&self, x: &Tensor) -> Result<Tensor> {
        self.per_batch(x, &mut |x| self.run_mode(x, true, &mut |_, _| {}))
    }

    /// Logits of a forward-only batch (call under `no_grad`) with the convolutions in bfloat16:
    /// the perturbation methods' and the probes' forwards.
    pub fn forward_bf16(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_mixed(x)
    }
}
