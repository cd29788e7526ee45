//! Mixed-precision forward with gradients for the gradient methods (Integrated Gradients, SmoothGrad):
//! the convolution part in bfloat16 on the CPU's matrix units, everything else in float32.
//!
//! Autocast-style, written out by hand because tch's `autocast` switches CUDA autocast only: the
//! float32 input is cast to bfloat16 inside the graph, the convolutions, ReLUs and poolings run on the
//! [`NativeCnn::bf16`] copy (channels-last, oneDNN accumulates each dot product in float32 and rounds
//! its output to bfloat16), the activation is cast back to float32 before the first flatten / global
//! pooling, and the dense layers run in float32 on the model's own weights. Autograd carries the casts
//! backwards, so the input gradient arrives in float32 and the maps are summed in float32 by the caller.
use tch::{Kind, Tensor};

use super::{Layer, LayerSpec, NativeCnn};
use crate::error::Result;

impl NativeCnn {
    /// Index of the first layer that runs in float32 in the mixed paths (the first flatten or global
    /// pooling; the layer count when there is none).
    pub fn float_head_start(&self) -> usize {
        self.specs
            .iter()
            .position(|s| matches!(s, LayerSpec::Flatten | LayerSpec::GlobalAvgPool))
            .unwrap_or(self.layers.len())
    }

    /// Logits in mixed precision, differentiable with respect to `x` (see the module docs). Eval mode.
    /// A ReLU directly followed by a max pooling runs after it (`pool(relu(a)) = relu(pool(a))`
    /// exactly, ReLU being monotone; the input gradient is the same except at ties inside a
    /// pooling window of negative values, where both give 0): a quarter of the ReLU's memory traffic.
    pub fn forward_mixed(&self, x: &Tensor) -> Result<Tensor> {
        let low = self.bf16()?;
        let split = self.float_head_start();
        let mut a = super::to_channels_last(x).to_kind(Kind::BFloat16);
        let mut i = 0;
        while i < split {
            match (&low.layers[i], low.layers.get(i + 1)) {
                (Layer::Relu, Some(pool @ Layer::MaxPool(_))) if i + 1 < split => {
                    a = pool.forward_t(&a, false).relu();
                    i += 2;
                    continue;
                }
                (layer, _) => a = layer.forward_t(&a, false),
            }
            i += 1;
        }
        Ok(self.forward_range(&a.to_kind(Kind::Float), split, self.layers.len(), false))
    }
}
