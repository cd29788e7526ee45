"""Makes the resize known-answer fixtures in tests/fixtures/resize/: what PIL's `Image.resize` and
OpenCV's `cv2.resize` return, so that the Rust tests check `données.image.resize` against the two
libraries themselves.

Run once, in a scratch virtual environment outside the repository (the results are committed):

    python3 -m venv fxenv && fxenv/bin/pip install pillow==11.3.0 numpy==2.2.6 opencv-python-headless==4.12.0.88
    fxenv/bin/python scripts/make-resize-fixtures.py data/kaggle-sample/Testing/glioma/Te-gl_0010.jpg tests/fixtures/resize

Two kinds of source:

* `coords`: synthetic RGB images whose pixels name their own position (R = x mod 256,
  G = y mod 256, B = 64 * (x div 256) + 16 * (y div 256)). Not stored: the Rust tests build them
  from the same formula. The nearest-neighbour outputs then say exactly which source pixel each
  library picked; they must match pixel for pixel.
* `source.png`: a 96 x 80 crop of a real MRI slice (decoded by PIL), stored. Its three channels
  differ (R = the slice, G = the slice shifted two pixels right, B = 255 - the slice) so that
  channel handling is visible. `source-L.png` is PIL's `convert("L")` of it (ITU-R 601-2 luma):
  the Rust grey conversion must match it exactly. Every filter is applied to the grey image at
  each target size; one RGB output per library checks the three channels.

`reference.json` lists the library versions and every output file with its source, library, filter
and size.
"""
import json
import os
import sys

import cv2
import numpy as np
import PIL
from PIL import Image

PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
CV_FILTERS = {
    "nearest": cv2.INTER_NEAREST,
    "nearest_exact": cv2.INTER_NEAREST_EXACT,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos4": cv2.INTER_LANCZOS4,
}

COORD_CASES = [((512, 512), (150, 150)), ((97, 83), (150, 128)), ((97, 83), (31, 29))]
# (width, height) targets for source.png (96 x 80): shrink ~3x, shrink 2x exactly (OpenCV's
# special case), slight shrink/stretch, enlarge.
FILTER_SIZES = [(31, 27), (48, 40), (90, 84), (128, 112)]


def coords(w, h):
    x = np.arange(w).reshape(1, w)
    y = np.arange(h).reshape(h, 1)
    r = np.broadcast_to(x % 256, (h, w))
    g = np.broadcast_to(y % 256, (h, w))
    b = 64 * (x // 256) + 16 * (y // 256)
    return np.stack([r, g, np.broadcast_to(b, (h, w))], axis=-1).astype(np.uint8)


def main(jpeg, out):
    os.makedirs(out, exist_ok=True)
    files = []

    def save(arr, name, **meta):
        mode = "RGB" if arr.ndim == 3 else "L"
        Image.fromarray(np.ascontiguousarray(arr), mode).save(os.path.join(out, name), optimize=True)
        files.append(dict(file=name, **meta))

    for (sw, sh), (tw, th) in COORD_CASES:
        src = coords(sw, sh)
        for name in ["nearest"]:
            got = np.asarray(Image.fromarray(src, "RGB").resize((tw, th), PIL_FILTERS[name]))
            save(got, f"coords-{sw}x{sh}-pil-{name}-{tw}x{th}.png", source=f"coords:{sw}x{sh}",
                 library="pil", filter=name, width=tw, height=th)
        for name in ["nearest", "nearest_exact"]:
            # OpenCV works in BGR order; the coordinate image is symmetric in meaning, so feed RGB
            # as is: the filter treats every channel alike.
            got = cv2.resize(src, (tw, th), interpolation=CV_FILTERS[name])
            save(got, f"coords-{sw}x{sh}-opencv-{name}-{tw}x{th}.png", source=f"coords:{sw}x{sh}",
                 library="opencv", filter=name, width=tw, height=th)

    slice_ = np.asarray(Image.open(jpeg).convert("L"))
    crop = slice_[200:280, 150:246].astype(np.int32)  # 80 rows x 96 columns across the brain's edge
    shifted = np.roll(crop, 2, axis=1)
    rgb = np.stack([crop, shifted, 255 - crop], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(os.path.join(out, "source.png"), optimize=True)
    grey_img = Image.fromarray(rgb, "RGB").convert("L")
    grey = np.asarray(grey_img)
    save(grey, "source-L.png", source="source.png", library="pil", filter="convert_L",
         width=96, height=80)
    for tw, th in FILTER_SIZES:
        for name, f in PIL_FILTERS.items():
            got = np.asarray(grey_img.resize((tw, th), f))
            save(got, f"L-pil-{name}-{tw}x{th}.png", source="source-L.png", library="pil",
                 filter=name, width=tw, height=th)
        for name, f in CV_FILTERS.items():
            got = cv2.resize(grey, (tw, th), interpolation=f)
            save(got, f"L-opencv-{name}-{tw}x{th}.png", source="source-L.png", library="opencv",
                 filter=name, width=tw, height=th)
    got = np.asarray(Image.fromarray(rgb, "RGB").resize((31, 27), Image.Resampling.BICUBIC))
    save(got, "RGB-pil-bicubic-31x27.png", source="source.png", library="pil", filter="bicubic",
         width=31, height=27)
    got = cv2.resize(rgb, (31, 27), interpolation=cv2.INTER_CUBIC)
    save(got, "RGB-opencv-cubic-31x27.png", source="source.png", library="opencv", filter="cubic",
         width=31, height=27)

    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(dict(pillow=PIL.__version__, opencv=cv2.__version__, numpy=np.__version__,
                       files=files), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
