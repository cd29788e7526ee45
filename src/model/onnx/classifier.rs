//! An imported ONNX graph as a [`Classifier`]: its forward, the guided backward walk
//! (see `backward.rs`), the bfloat16 forwards (see `mixed.rs`), Grad-CAM's cut at a node, and the
//! sanity check's parametrised nodes.
use tch::{Device, Tensor};

use super::OnnxModel;
use crate::error::Result;
use crate::model::classifier::{CamLayer, Classifier, Model, ParamUnit};
use crate::model::memory::ActivationMemory;
use crate::model::InputSpec;

impl Classifier for OnnxModel {
    fn input(&self) -> &InputSpec {
        &self.input
    }

    fn device(&self) -> Device {
        OnnxModel::device(self)
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        OnnxModel::forward(self, x)
    }

    fn has_bf16(&self) -> bool {
        true
    }

    /// Not for an imported graph: on a 13-convolution VGG16 the bfloat16 Integrated Gradients map
    /// ranked pixels at Spearman 0.970 against float32 (below 0.98), so `auto` keeps the gradients
    /// in float32 and uses bfloat16 for the forward-only batches only.
    fn bf16_gradients_by_default(&self) -> bool {
        false
    }

    fn logits_mixed(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_mixed(x)
    }

    /// Forward-only batches: the convolutions in bfloat16 when asked (see `mixed.rs`), else the
    /// plain float32 forward.
    fn logits_inference(&self, x: &Tensor, bf16: bool) -> Result<Tensor> {
        if bf16 {
            self.forward_bf16(x)
        } else {
            OnnxModel::forward(self, x)
        }
    }

    fn max_batch(&self) -> Option<i64> {
        self.single_image.then_some(1)
    }

    fn guided_input_gradient(&self, x: &Tensor, targets: &Tensor) -> Result<Tensor> {
        self.backward_walk(x, targets, true)
    }

    /// The image does not require grad, so nothing is recorded before the cut; the leaf at the cut
    /// starts the graph that the score is differentiated through. `layer.node` = a node or value
    /// name; `None` = the automatic choice of [`OnnxModel::gradcam_value`].
    fn cam_cut(&self, x: &Tensor, layer: CamLayer) -> Result<(Tensor, Tensor)> {
        let value = self.gradcam_value(layer.node)?;
        self.forward_cut(x, &value)
    }

    fn param_units(&self) -> Result<Vec<ParamUnit>> {
        Ok(OnnxModel::param_units(self))
    }

    fn param(&self, name: &str) -> Option<Tensor> {
        OnnxModel::param(self, name)
    }

    fn duplicate(&self) -> Result<Model> {
        Ok(Model::new(OnnxModel::duplicate(self)))
    }

    fn activation_memory(&self) -> Option<ActivationMemory> {
        Some(OnnxModel::activation_memory(self))
    }

    fn describe(&self) -> String {
        OnnxModel::describe(self)
    }

    fn explains(&self) -> String {
        OnnxModel::explains(self)
    }
}
