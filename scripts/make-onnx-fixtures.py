"""Makes the ONNX test fixtures in tests/fixtures/onnx/ from Keras (via tf2onnx) and PyTorch (via
torch.onnx.export), with each framework's own outputs stored beside the model.

Run once, in a scratch virtual environment outside the repository (the results are committed):

    python3 -m venv tfenv && tfenv/bin/pip install tensorflow-cpu==2.15.1 tf2onnx==1.16.1 onnxruntime "numpy<2"
    tfenv/bin/python scripts/make-onnx-fixtures.py keras tests/fixtures/onnx
    python3 -m venv ptenv && ptenv/bin/pip install torch onnx onnxruntime onnxscript
    ptenv/bin/python scripts/make-onnx-fixtures.py torch tests/fixtures/onnx

The Keras 3 fixture (a `.keras` file converted with the documented recipe, and Keras's own pipeline's
probabilities on the real Kaggle test images) needs TensorFlow >= 2.16 and tf2onnx 1.17:

    python3 -m venv k3env && k3env/bin/pip install tensorflow-cpu==2.18.1 keras==3.8.0 tf2onnx==1.17.0 onnxruntime==1.20.1 pillow==11.3.0
    k3env/bin/python scripts/make-onnx-fixtures.py keras3 tests/fixtures/onnx data/kaggle-sample/Testing

The weights are random (seeded), not trained: the fixtures test the import's arithmetic, not a
classifier. Every batch-norm layer gets random statistics so that it is not an identity. The test
inputs are not stored: they come from `probe_input` below, which the Rust tests reproduce exactly
(an integer hash of the flat NCHW index and a ramp, computed in float64, rounded once to float32).

Each model is written as NAME.onnx with NAME.json holding: the framework and converter versions, the
input shape (N, C, H, W), the logits the framework computed on the probe input (before any final
softmax), the probabilities when the model ends with a softmax, and onnxruntime's outputs on the
same file (a check that the export itself is faithful).
"""
import json
import os
import sys

import numpy as np


def probe_input(n, c, h, w):
    """N x C x H x W float32 in [0, 1): half a hash of the flat NCHW index i,
    ((i * 2654435761) mod 2^32) / 2^32, plus half a ramp, down the rows for even images and across
    the columns for odd ones (so that the images differ in structure, not only in noise)."""
    i = np.arange(n * c * h * w, dtype=np.uint64)
    v = ((i * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float64) / 2**32
    v = v.reshape(n, c, h, w)
    rows = np.arange(h, dtype=np.float64).reshape(1, 1, h, 1) / h
    cols = np.arange(w, dtype=np.float64).reshape(1, 1, 1, w) / w
    ramp = np.where(np.arange(n).reshape(n, 1, 1, 1) % 2 == 0, rows, cols)
    return (0.5 * v + 0.5 * ramp).astype(np.float32)


def run_ort(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return s.run(None, {name: x})[0]


def write(out_dir, name, meta, x_nchw, logits, probs, ort_out):
    meta = dict(meta)
    meta["input_shape"] = list(x_nchw.shape)
    meta["logits"] = np.asarray(logits, dtype=np.float64).round(7).tolist()
    if probs is not None:
        meta["probabilities"] = np.asarray(probs, dtype=np.float64).round(7).tolist()
    meta["onnxruntime"] = np.asarray(ort_out, dtype=np.float64).round(7).tolist()
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    size = os.path.getsize(os.path.join(out_dir, name + ".onnx"))
    print(f"{name}: {size} bytes, logits {np.asarray(logits).round(4).tolist()}")


def randomise_keras(model, rng):
    import tensorflow as tf

    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                rng.normal(0, 0.1, beta.shape).astype(np.float32),
                rng.normal(0, 0.1, mean.shape).astype(np.float32),
                rng.uniform(0.5, 1.5, var.shape).astype(np.float32),
            ])
        else:
            # Non-zero biases (Keras initialises them to 0, which would hide a dropped bias).
            layer.set_weights([
                w if w.ndim > 1 else rng.normal(0, 0.1, w.shape).astype(np.float32)
                for w in layer.get_weights()
            ])


def keras_models(out_dir):
    import tensorflow as tf
    import tf2onnx
    from tensorflow.keras import layers

    tf.random.set_seed(7)
    rng = np.random.default_rng(7)
    made = []

    # 1. The notebook's shape: Conv-Conv-Pool-Conv-Conv-Pool-Flatten-Dense-Dropout-Dense(softmax), grey
    #    input, 4 classes; one strided SAME conv for the asymmetric padding TensorFlow uses.
    m = tf.keras.Sequential([
        tf.keras.Input((48, 48, 1)),
        layers.Conv2D(8, 3, activation="relu", padding="same"),
        layers.Conv2D(8, 3, activation="relu", strides=2, padding="same"),
        layers.MaxPooling2D(2),
        layers.Conv2D(16, 3, activation="relu"),
        layers.Conv2D(16, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(32, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(4, activation="softmax"),
    ])
    randomise_keras(m, rng)
    made.append(("keras_notebook_cnn", m))

    # 2. Batch norm, depthwise-separable convolutions, a residual add, ReLU6, SAME average pooling,
    #    global average pooling; RGB input, logits output.
    inp = tf.keras.Input((40, 40, 3))
    h = layers.Conv2D(12, 3, strides=2, padding="same", use_bias=False)(inp)
    h = layers.BatchNormalization()(h)
    h = layers.ReLU(max_value=6.0)(h)
    skip = h
    h = layers.SeparableConv2D(12, 3, padding="same")(h)
    h = layers.BatchNormalization()(h)
    h = layers.ReLU()(h)
    h = layers.DepthwiseConv2D(3, padding="same")(h)
    h = layers.Conv2D(12, 1)(h)
    h = layers.BatchNormalization()(h)
    h = layers.Add()([h, skip])
    h = layers.ReLU()(h)
    h = layers.AveragePooling2D(3, strides=2, padding="same")(h)
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(4)(h)
    m = tf.keras.Model(inp, out)
    randomise_keras(m, rng)
    made.append(("keras_separable_residual", m))

    for name, m in made:
        path = os.path.join(out_dir, name + ".onnx")
        _, c_h, c_w, c = m.input_shape
        spec = (tf.TensorSpec((None, c_h, c_w, c), tf.float32, name="input"),)
        tf2onnx.convert.from_keras(m, input_signature=spec, opset=13, output_path=path)
        x = probe_input(2, c, c_h, c_w)
        x_nhwc = np.transpose(x, (0, 2, 3, 1)).copy()
        framework = m(x_nhwc, training=False).numpy()
        ort_out = run_ort(path, x_nhwc)
        last = m.layers[-1]
        probs = None
        if getattr(last, "activation", None) is tf.keras.activations.softmax:
            probs = framework
            last.activation = tf.keras.activations.linear
            logits = m(x_nhwc, training=False).numpy()
        else:
            logits = framework
        assert np.abs(ort_out - framework).max() < 1e-4, (name, ort_out, framework)
        meta = {
            "framework": f"tensorflow {tf.__version__}, converted by tf2onnx {tf2onnx.__version__} (opset 13)",
            "layout": "nhwc",
        }
        write(out_dir, name, meta, x, logits, probs, ort_out)


def torch_models(out_dir):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(7)

    class Block(nn.Module):
        """A ResNet basic block: conv-bn-relu-conv-bn plus the shortcut (1x1 conv when it downsamples)."""

        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            h = F.relu(self.bn1(self.conv1(x)))
            h = self.bn2(self.conv2(h))
            return F.relu(h + (x if self.short is None else self.short(x)))

    class ResNetTiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = Block(8, 8, 1)
            self.layer2 = Block(8, 16, 2)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            h = self.layer2(self.layer1(self.pool(self.stem(x))))
            h = F.adaptive_avg_pool2d(h, 1)
            # view(N, -1) exports as the Shape/Gather/Unsqueeze/Concat/Reshape pattern.
            return self.fc(h.view(h.size(0), -1))

    class OpsZoo(nn.Module):
        """Operators the other fixtures do not reach, ending with a softmax to be removed."""

        def __init__(self):
            super().__init__()
            self.grouped = nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2)
            self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.up = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1)
            self.bn = nn.BatchNorm2d(6)
            self.mix = nn.Linear(6, 6)
            self.fc = nn.Linear(6 * 2 + 6, 3)

        def forward(self, x):
            h = F.leaky_relu(self.grouped(x), 0.1)
            h = F.elu(self.depthwise(h)) * torch.sigmoid(h)
            h = F.max_pool2d(h, 3, 2, 1, ceil_mode=True)
            h = F.hardswish(self.bn(self.up(h)))
            h = F.pad(h, (1, 2, 0, 1), mode="reflect")
            h = F.avg_pool2d(h, 3, 2, 1, count_include_pad=False)
            a = F.interpolate(h, scale_factor=2.0, mode="nearest")
            b = F.interpolate(h, size=(a.shape[2], a.shape[3]), mode="bilinear", align_corners=False)
            h = torch.clamp(a - b, 0.0, 6.0) + torch.tanh(b) / 2.0 + F.selu(a)
            g = F.adaptive_max_pool2d(h, 1).squeeze(3).squeeze(2)
            t = h.flatten(2).transpose(1, 2)
            t = self.mix(t).mean(1)
            u = torch.cat([g, t, (g * t).unsqueeze(1).squeeze(1)], dim=1)
            return F.softmax(self.fc(u), dim=1)

    made = [("torch_resnet_block", ResNetTiny(), (3, 32, 32)), ("torch_ops_zoo", OpsZoo(), (4, 20, 20))]
    for name, m, (c, h, w) in made:
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                with torch.no_grad():
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.normal_(0, 0.1)
                    mod.running_mean.normal_(0, 0.1)
                    mod.running_var.uniform_(0.5, 1.5)
        m.eval()
        path = os.path.join(out_dir, name + ".onnx")
        x = probe_input(2, c, h, w)
        xt = torch.from_numpy(x)
        torch.onnx.export(
            m, (xt,), path, input_names=["input"], output_names=["output"], opset_version=17,
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False,
        )
        with torch.no_grad():
            out = m(xt).numpy()
        ort_out = run_ort(path, x)
        assert np.abs(ort_out - out).max() < 1e-4, (name, ort_out, out)
        probs = None
        logits = out
        if name == "torch_ops_zoo":
            # The model ends with a softmax: its logits are the last Linear's output.
            probs = out
            logits = zoo_logits(m, xt)
        meta = {"framework": f"torch {torch.__version__}, torch.onnx.export (opset 17)", "layout": "nchw"}
        write(out_dir, name, meta, x, logits, probs, ort_out)


def zoo_logits(m, xt):
    import torch

    captured = {}
    handle = m.fc.register_forward_hook(lambda mod, i, o: captured.setdefault("z", o))
    with torch.no_grad():
        m(xt)
    handle.remove()
    return captured["z"].numpy()


def keras3_model(out_dir, test_dir):
    """A small Xception-like Keras 3 model (150 x 150 RGB, 4 classes, softmax), random seeded
    weights, saved as `.keras` and converted with the recipe of docs/fidelity-notes.md:
    `python -m tf2onnx.convert --keras model.keras --output model.onnx --opset 13`. The reference is
    Keras's own pipeline on every image of `test_dir` (<class>/<file>): `keras.utils.load_img` with
    its defaults (RGB, `interpolation="nearest"`, i.e. PIL's NEAREST), `img_to_array`,
    `keras.applications.xception.preprocess_input` (x / 127.5 - 1), `model.predict`. Also stored:
    Keras's predict and onnxruntime's on the probe input (the conversion alone, at 1e-4)."""
    import subprocess
    import tempfile

    import keras
    import onnxruntime
    import PIL
    import tensorflow as tf
    import tf2onnx
    from keras import layers

    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    inp = keras.Input((150, 150, 3))
    h = layers.Conv2D(8, 5, strides=2, activation="relu")(inp)
    h = layers.MaxPooling2D(3)(h)
    h = layers.SeparableConv2D(16, 3, padding="same", use_bias=False)(h)
    h = layers.BatchNormalization()(h)
    h = layers.Activation("relu")(h)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(4, activation="softmax")(h)
    m = keras.Model(inp, out)
    for layer in m.layers:
        w = layer.get_weights()
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = w
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                rng.normal(0, 0.1, beta.shape).astype(np.float32),
                rng.normal(0, 0.1, mean.shape).astype(np.float32),
                rng.uniform(0.5, 1.5, var.shape).astype(np.float32),
            ])
        elif isinstance(layer, layers.Dense):
            # Spread the logits so that the classes are not near ties.
            layer.set_weights([w[0] * 8.0, rng.normal(0, 0.5, w[1].shape).astype(np.float32)])
    name = "keras3_xception_like"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, name + ".keras")
        m.save(src)
        onnx_path = os.path.join(out_dir, name + ".onnx")
        cmd = [sys.executable, "-m", "tf2onnx.convert", "--keras", src, "--output", onnx_path,
               "--opset", "13"]
        subprocess.run(cmd, check=True)
        # tf2onnx records the source file's (temporary) path in the graph's doc string.
        import onnx

        proto = onnx.load(onnx_path)
        proto.doc_string = f"converted from {name}.keras by tf2onnx {tf2onnx.__version__}"
        proto.graph.doc_string = proto.doc_string
        onnx.save(proto, onnx_path)
        # The same recipe on the legacy HDF5 format.
        h5 = os.path.join(tmp, name + ".h5")
        m.save(h5)
        h5_onnx = os.path.join(tmp, name + "-h5.onnx")
        h5_ok = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--keras", h5, "--output",
                                h5_onnx, "--opset", "13"]).returncode == 0
        reloaded = keras.models.load_model(src)
        x = probe_input(2, 3, 150, 150)
        x_nhwc = np.transpose(x, (0, 2, 3, 1)).copy()
        probe = reloaded.predict(x_nhwc, verbose=0)
        if h5_ok:
            h5_diff = float(np.abs(run_ort(h5_onnx, x_nhwc) - probe).max())
    # The logits before the final softmax: the pooled features times the last Dense layer.
    features = keras.Model(reloaded.input, reloaded.layers[-2].output).predict(x_nhwc, verbose=0)
    kernel, bias = reloaded.layers[-1].get_weights()
    logits = features.astype(np.float64) @ kernel.astype(np.float64) + bias
    ort_probe = run_ort(onnx_path, x_nhwc)
    images = []
    for cls in sorted(os.listdir(test_dir)):
        for f in sorted(os.listdir(os.path.join(test_dir, cls))):
            img = keras.utils.load_img(os.path.join(test_dir, cls, f), target_size=(150, 150))
            a = keras.utils.img_to_array(img)[None]
            a = keras.applications.xception.preprocess_input(a)
            p = reloaded.predict(a, verbose=0)[0]
            images.append(dict(file=f"{cls}/{f}", label=cls,
                               probabilities=np.asarray(p, np.float64).round(7).tolist()))
    margins = [sorted(i["probabilities"])[-1] - sorted(i["probabilities"])[-2] for i in images]
    meta = dict(
        framework=f"keras {keras.__version__} (tensorflow {tf.__version__})",
        converter=f"tf2onnx {tf2onnx.__version__}",
        onnxruntime_version=onnxruntime.__version__,
        pillow=PIL.__version__,
        recipe="python -m tf2onnx.convert --keras model.keras --output model.onnx --opset 13",
        h5_recipe=("the same command on the legacy .h5 file: converted, max |difference| "
                   f"{h5_diff:.2e} from Keras" if h5_ok else "the same command on the legacy .h5 file failed"),
        classes=sorted(os.listdir(test_dir)),
        preprocessing="keras.utils.load_img(path, target_size=(150, 150)) [RGB, nearest]; "
                      "img_to_array; keras.applications.xception.preprocess_input",
        images=images,
        smallest_top2_margin=round(min(margins), 4),
    )
    write(out_dir, name, meta, x, logits, probe, ort_probe)


if __name__ == "__main__":
    which, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    if which == "keras3":
        keras3_model(out_dir, sys.argv[3])
    else:
        {"keras": keras_models, "torch": torch_models}[which](out_dir)
