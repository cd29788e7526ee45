"""A real (trained) Keras 3 model through tumor-audit: trains a small Keras 3 CNN on the Br35H
training split, saves it as `.keras`, converts it with the documented Keras 3 recipe, and writes
Keras's own pipeline's probabilities on the test split; `compare` then checks tumor-audit's
`evaluate` output against them (same class on every image, largest probability difference).

Run once, in a scratch virtual environment (nothing it writes is committed):

    python3 -m venv k3env && k3env/bin/pip install tensorflow-cpu==2.18.1 keras==3.8.0 tf2onnx==1.17.0 onnxruntime==1.20.1 pillow==11.3.0
    k3env/bin/python scripts/keras3-real-model.py train data/br35h out/keras3-br35h
    target/release/tumor-audit --config out/keras3-br35h/config.yml evaluate
    k3env/bin/python scripts/keras3-real-model.py compare out/keras3-br35h \
        out/keras3-br35h/out/evaluation/br35h-Testing/predictions.csv

Keras's pipeline is the usual one for such a model: `keras.utils.load_img(path,
target_size=(150, 150))` (RGB, nearest: load_img's default), `img_to_array`,
`keras.applications.xception.preprocess_input` (x / 127.5 - 1), `model.predict`.
"""
import csv
import json
import os
import subprocess
import sys

import numpy as np

SIZE = 150
EPOCHS = 3
SEED = 7


def load(paths):
    import keras

    xs = [keras.utils.img_to_array(keras.utils.load_img(p, target_size=(SIZE, SIZE))) for p in paths]
    return keras.applications.xception.preprocess_input(np.stack(xs))


def listing(root, split):
    classes = sorted(os.listdir(os.path.join(root, split)))
    items = []
    for k, c in enumerate(classes):
        folder = os.path.join(root, split, c)
        for f in sorted(os.listdir(folder)):
            items.append((os.path.join(folder, f), k))
    return classes, items


def train(root, dest):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    os.makedirs(dest, exist_ok=True)
    classes, items = listing(root, "Training")
    x = load([p for p, _ in items])
    y = np.array([k for _, k in items])
    inp = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inp)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.SeparableConv2D(32, 3, padding="same", use_bias=False)(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Activation("relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(len(classes), activation="softmax")(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=EPOCHS, batch_size=32, shuffle=True, verbose=2)
    model.save(os.path.join(dest, "model.keras"))
    subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--keras", os.path.join(dest, "model.keras"),
         "--output", os.path.join(dest, "model.onnx"), "--opset", "13"],
        check=True,
    )
    _, test = listing(root, "Testing")
    probs = model.predict(load([p for p, _ in test]), verbose=0)
    with open(os.path.join(dest, "keras_predictions.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label"] + [f"p_{c}" for c in classes])
        for (p, k), row in zip(test, probs):
            w.writerow([os.path.relpath(p, root), classes[k]] + [repr(float(v)) for v in row])
    with open(os.path.join(dest, "config.yml"), "w") as f:
        f.write(
            "données:\n  image:\n    size: 150\n    grayscale: false\n"
            "    resize: pil_nearest\n    preprocess: keras_tf\n"
            f"data:\n  root: {os.path.abspath(root)}\n  classes: [{', '.join(classes)}]\n"
            f"model:\n  onnx: {os.path.abspath(os.path.join(dest, 'model.onnx'))}\n"
            f"output:\n  dir: {os.path.abspath(os.path.join(dest, 'out'))}\n"
        )
    import tf2onnx

    print(json.dumps({"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__,
                      "test_images": len(test), "params": model.count_params()}))


def compare(dest, predictions):
    keras_rows = {}
    with open(os.path.join(dest, "keras_predictions.csv")) as f:
        for r in csv.DictReader(f):
            keras_rows[os.path.basename(r["file"]), r["label"]] = r
    classes = None
    same = 0
    worst = 0.0
    correct = 0
    n = 0
    with open(predictions) as f:
        for r in csv.DictReader(f):
            classes = classes or [k[2:] for k in r if k.startswith("p_")]
            k = keras_rows.pop((os.path.basename(r["file"]), r["label"]))
            ours = np.array([float(r[f"p_{c}"]) for c in classes])
            theirs = np.array([float(k[f"p_{c}"]) for c in classes])
            same += int(ours.argmax() == theirs.argmax())
            correct += int(classes[ours.argmax()] == r["label"])
            worst = max(worst, float(np.abs(ours - theirs).max()))
            n += 1
    if keras_rows:
        sys.exit(f"{len(keras_rows)} of Keras's images are missing from {predictions}")
    print(json.dumps({"images": n, "same_class": same, "max_abs_prob_diff": worst, "accuracy": correct / n}))
    if same != n or worst > 1e-3:
        sys.exit("tumor-audit does not reproduce Keras's pipeline")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "train":
        train(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
