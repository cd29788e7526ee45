"""Xplique (TensorFlow) on tumor-audit's benchmark workload: the default CNN's layer shape with random
weights (Conv16-Conv32-Pool-Conv64-Conv64-Pool-Flatten-Dense64-Dropout-Dense2, 3x3 'same' convolutions
as tumor-audit's, so the FLOPs are equal), the six methods with the notebook's parameters, the logit of
the predicted class explained. Usage: python xplique_peer.py [TEST_DIR] [IMAGES]"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
import xplique
from xplique.attributions import GradCAM, GuidedBackprop, IntegratedGradients, KernelShap, Lime, SmoothGrad

from common import BATCH, IG_STEPS, LIME_SAMPLES, SG_NOISE, SG_SAMPLES, SHAP_SAMPLES, SIZE, argv, images, run

tf.random.set_seed(0)
L = tf.keras.layers
inp = tf.keras.Input((SIZE, SIZE, 1))
x = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
x = L.Conv2D(32, 3, padding="same", activation="relu")(x)
x = L.MaxPooling2D(2)(x)
x = L.Conv2D(64, 3, padding="same", activation="relu")(x)
x = L.Conv2D(64, 3, padding="same", activation="relu", name="last_conv")(x)
x = L.MaxPooling2D(2)(x)
x = L.Flatten()(x)
x = L.Dense(64, activation="relu")(x)
x = L.Dropout(0.5)(x)
out = L.Dense(2)(x)  # logits, as the notebook's model after switching the last activation to linear
model = tf.keras.Model(inp, out)

explainers = {
    "guided_backprop": GuidedBackprop(model),
    "integrated_gradients": IntegratedGradients(model, batch_size=BATCH, steps=IG_STEPS, baseline_value=0.0),
    "smoothgrad": SmoothGrad(model, batch_size=BATCH, nb_samples=SG_SAMPLES, noise=SG_NOISE),
    "gradcam": GradCAM(model, conv_layer="last_conv"),
    "lime": Lime(model, batch_size=BATCH, nb_samples=LIME_SAMPLES, kernel_width=45.0),
    "kernel_shap": KernelShap(model, batch_size=BATCH, nb_samples=SHAP_SAMPLES),
}


def explain(method, img):
    x = img[None, :, :, None]
    target = int(np.argmax(model(x, training=False)[0]))
    y = tf.one_hot([target], 2)
    return explainers[method].explain(x, y)


root, n = argv()
run("xplique", f"xplique {xplique.__version__}, tensorflow {tf.__version__}", explain, images(root, n))
