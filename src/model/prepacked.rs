//! The bfloat16 forward of the perturbation batches (LIME, Kernel SHAP) in oneDNN's own blocked
//! layout, with the convolution weights reordered ("pre-packed") once.
//!
//! On the channels-last path ([`NativeCnn::forward_bf16_convs`]) every convolution still reorders its
//! weights and converts between PyTorch's strided layout and oneDNN's blocked one; here the activations
//! stay in oneDNN's opaque layout (`Tensor::to_mkldnn`) from the input to the last pooling, the
//! weights are blocked for the convolution once, and ReLU and max pooling run on the blocked tensors.
//! Same weights, same bfloat16 rounding points, another summation order: the logits agree with the
//! channels-last bfloat16 path to bf16 rounding (a test checks every batch size 1-40). The dense layers
//! stay in float32 as on the channels-last path.
use tch::{Kind, Tensor};

use super::{Layer, LayerSpec, NativeCnn};
use crate::error::Result;

/// A convolution with its weight in oneDNN's blocked bfloat16 layout.
pub struct PackedConv {
    weight: Tensor,
    bias: Option<Tensor>,
    padding: i64,
}

/// The convolution part of a model, ready for [`NativeCnn::forward_bf16_prepacked`].
pub struct Packed {
    /// One entry per layer before the float32 head: a packed convolution, or None for ReLU / pooling /
    /// dropout (run as they are).
    convs: Vec<Option<PackedConv>>,
}

impl NativeCnn {
    /// Whether the layers before the float32 head are all ones the blocked path runs (convolution,
    /// ReLU, max pooling, dropout); batch norm, for one, is not.
    pub fn can_prepack(&self) -> bool {
        self.specs[..self.float_head_start()].iter().all(|s| {
            matches!(
                s,
                LayerSpec::Conv { .. }
                    | LayerSpec::Relu
                    | LayerSpec::Maxpool { .. }
                    | LayerSpec::Dropout { .. }
            )
        })
    }

    fn pack(&self) -> Result<Packed> {
        let low = self.bf16()?;
        let _guard = tch::no_grad_guard();
        let convs = (0..self.float_head_start())
            .map(|i| match (&low.layers[i], &self.specs[i]) {
                (
                    Layer::Conv(c),
                    LayerSpec::Conv {
                        kernel, padding, ..
                    },
                ) => {
                    let padding = padding.unwrap_or(kernel / 2);
                    let weight =
                        c.ws.contiguous()
                            .to_mkldnn()
                            .f_mkldnn_reorder_conv2d_weight(
                                [padding, padding],
                                [1, 1],
                                [1, 1],
                                1,
                                None::<&[i64]>,
                            )?;
                    Ok(Some(PackedConv {
                        weight,
                        bias: c.bs.as_ref().map(|b| b.shallow_clone()),
                        padding,
                    }))
                }
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Packed { convs })
    }

    /// Logits of a forward-only batch (call under `no_grad`): the convolution part in bfloat16 in
    /// oneDNN's blocked layout with pre-packed weights (packed on first use; see the module docs), the
    /// rest in float32. Only for models where [`NativeCnn::can_prepack`] holds.
    pub fn forward_bf16_prepacked(&self, x: &Tensor) -> Result<Tensor> {
        let packed = match self.packed.get() {
            Some(p) => p,
            None => {
                let p = self.pack()?;
                self.packed.get_or_init(|| p)
            }
        };
        let split = self.float_head_start();
        let mut a = x
            .to_kind(Kind::BFloat16)
            .contiguous()
            .f_to_mkldnn(None::<Kind>)?;
        let mut i = 0;
        while i < split {
            match (&self.layers[i], &packed.convs[i]) {
                (_, Some(c)) => {
                    a = a.f_mkldnn_convolution(
                        &c.weight,
                        c.bias.as_ref(),
                        [c.padding, c.padding],
                        [1, 1],
                        [1, 1],
                        1,
                    )?;
                }
                // pool(relu(a)) = relu(pool(a)) exactly (ReLU is monotone): the ReLU on a quarter of
                // the values.
                (Layer::Relu, _)
                    if matches!(self.layers.get(i + 1), Some(Layer::MaxPool(_)))
                        && i + 1 < split =>
                {
                    a = self.layers[i + 1].forward_t(&a, false).f_relu_()?;
                    i += 2;
                    continue;
                }
                (Layer::Relu, _) => a = a.f_relu_()?,
                (Layer::Dropout(_), _) => {}
                (layer, _) => a = layer.forward_t(&a, false),
            }
            i += 1;
        }
        let a = a.f_to_dense(None::<Kind>, false)?.to_kind(Kind::Float);
        Ok(self.infer_range(&a, split, self.layers.len()))
    }
}
