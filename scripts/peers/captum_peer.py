"""Captum (PyTorch) on tumor-audit's benchmark workload: the default CNN's layer shape with random
weights, the six methods with the notebook's parameters, the logit of the predicted class explained.
LIME and Kernel SHAP use the same Felzenszwalb superpixels as tumor-audit and Xplique (scikit-image,
scale 1, sigma 0.8, min_size 20) as Captum's feature mask. Usage: python captum_peer.py [TEST_DIR] [IMAGES]"""
import captum
import numpy as np
import torch
import torch.nn as nn
from captum.attr import (GuidedBackprop, IntegratedGradients, KernelShap, LayerAttribution, LayerGradCam,
                         Lime, NoiseTunnel, Saliency)
from captum.attr._core.lime import get_exp_kernel_similarity_function
from captum._utils.models.linear_model import SkLearnRidge
from skimage.segmentation import felzenszwalb

from common import BATCH, IG_STEPS, LIME_SAMPLES, SG_NOISE, SG_SAMPLES, SHAP_SAMPLES, SIZE, argv, images, run

torch.manual_seed(0)
last_relu = nn.ReLU()
model = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
    nn.Conv2d(64, 64, 3, padding=1), last_relu, nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(64 * (SIZE // 4) ** 2, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 2),
).eval()
for p in model.parameters():
    p.requires_grad_(False)

gbp = GuidedBackprop(model)
ig = IntegratedGradients(model)
sg = NoiseTunnel(Saliency(model))
cam = LayerGradCam(model, last_relu)
lime = Lime(model, interpretable_model=SkLearnRidge(alpha=2.0),
            similarity_func=get_exp_kernel_similarity_function("euclidean", kernel_width=45.0))
shap = KernelShap(model)


def explain(method, img):
    x = torch.from_numpy(img)[None, None]
    with torch.no_grad():
        t = int(model(x).argmax(1))
    if method == "guided_backprop":
        return gbp.attribute(x, target=t)
    if method == "integrated_gradients":
        return ig.attribute(x, baselines=0.0, target=t, n_steps=IG_STEPS, method="riemann_trapezoid",
                            internal_batch_size=BATCH)
    if method == "smoothgrad":
        return sg.attribute(x, nt_type="smoothgrad", nt_samples=SG_SAMPLES, nt_samples_batch_size=BATCH,
                            stdevs=SG_NOISE, target=t, abs=False)
    if method == "gradcam":
        return LayerAttribution.interpolate(cam.attribute(x, target=t), (SIZE, SIZE), "bicubic")
    seg = felzenszwalb(img, scale=1, sigma=0.8, min_size=20)
    mask = torch.from_numpy(seg.astype(np.int64))[None, None]
    if method == "lime":
        return lime.attribute(x, target=t, feature_mask=mask, n_samples=LIME_SAMPLES,
                              perturbations_per_eval=BATCH, baselines=0.0)
    return shap.attribute(x, target=t, feature_mask=mask, n_samples=SHAP_SAMPLES,
                          perturbations_per_eval=BATCH, baselines=0.0)


root, n = argv()
run("captum", f"captum {captum.__version__}, torch {torch.__version__}", explain, images(root, n))
