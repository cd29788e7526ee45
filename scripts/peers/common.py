"""What both peer scripts share: the benchmark images (the same four test images tumor-audit's bench
takes: classes in turn, files in name order, grey, resized to 128x128, divided by 255) and the timing
loop (one warm-up image through every method, then every method on every image, seconds per image)."""
import os
import sys
import time

import numpy as np
from PIL import Image

METHODS = ["guided_backprop", "integrated_gradients", "smoothgrad", "gradcam", "lime", "kernel_shap"]
# The notebook's parameters (tumor-audit's `seed` profile).
IG_STEPS, SG_SAMPLES, SG_NOISE, LIME_SAMPLES, SHAP_SAMPLES, BATCH = 80, 80, 0.2, 1000, 1000, 64
SIZE = 128


def images(root, n):
    classes = ["no", "yes"]
    files = {c: sorted(os.listdir(os.path.join(root, c))) for c in classes}
    out = []
    for i in range(n):
        c = classes[i % 2]
        name = files[c][i // 2]
        img = Image.open(os.path.join(root, c, name)).convert("L").resize((SIZE, SIZE), Image.BILINEAR)
        out.append(np.asarray(img, dtype=np.float32) / 255.0)
    return out


def run(name, version, explain, imgs):
    """explain(method, image) computes one map; prints one line per method and the sum."""
    for m in METHODS:
        explain(m, imgs[0])
    total = 0.0
    for m in METHODS:
        t = []
        for img in imgs:
            t0 = time.perf_counter()
            explain(m, img)
            t.append(time.perf_counter() - t0)
        med = float(np.median(t))
        total += med
        print(f"{name} {m} {med:.4f}", flush=True)
    print(f"{name} all_six {total:.4f} ({version})", flush=True)


def argv():
    root = sys.argv[1] if len(sys.argv) > 1 else "data/br35h/Testing"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    return root, n
