#!/usr/bin/env bash
# Installs libtorch 2.13.0 (what tch 0.26 expects) from the Python package registry into .deps/.
#
#   TORCH_VARIANT=cpu  (default) slim CPU install: the torch wheel's CPU libraries plus the two small
#                      CUDA-runtime wheels libtorch_cpu.so links against (~1.3 GB on disk).
#   TORCH_VARIANT=cuda full install with every CUDA dependency (~5.3 GB), for a GPU machine; build with
#                      `cargo build --release --features cuda`.
#
# Idempotent: a finished install leaves .deps/libtorch/.complete-<variant> and is skipped next time.
# Every wheel is pinned by version and sha256; a failed download or a checksum mismatch stops the script.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
variant=${TORCH_VARIANT:-cpu}
deps="$root/.deps"
wheels="$deps/wheels"
site="$deps/site-$variant"
libtorch="$deps/libtorch"
python=${PYTHON:-python3}

if [ -f "$libtorch/.complete-$variant" ]; then
  echo "libtorch ($variant) already installed in .deps/libtorch"
  exit 0
fi

die() { echo "setup-libtorch: $*" >&2; exit 1; }
command -v "$python" >/dev/null || die "python3 with pip is needed to fetch the torch wheel from the package registry"

# name==version  sha256  file
pins=(
  "torch==2.13.0 60fcdcb2f3876e21146cb4524ef06397d727ca9ad5f020818547e25075fe3cb7 torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"
  "nvidia-cuda-runtime==13.0.96 7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548 nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
  "nvidia-cuda-cupti==13.0.85 4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8 nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl"
)

mkdir -p "$wheels"
fetch_wheel() { # spec sha file
  local spec=$1 sha=$2 file=$3
  if [ -f "$wheels/$file" ] && echo "$sha  $wheels/$file" | sha256sum -c --status; then
    return 0
  fi
  echo "downloading $spec"
  "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_25_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$wheels" "$spec" \
    || die "download of $spec failed (is the package registry reachable?)"
  [ -f "$wheels/$file" ] || die "download of $spec did not produce $file"
  echo "$sha  $wheels/$file" | sha256sum -c --status \
    || { rm -f "$wheels/$file"; die "checksum mismatch for $file: expected sha256 $sha"; }
}

if [ "$variant" = cpu ]; then
  for p in "${pins[@]}"; do fetch_wheel $p; done
  rm -rf "$site" && mkdir -p "$site"
  echo "extracting libtorch (CPU libraries only)"
  "$python" - "$wheels" "$site" <<'PY'
import sys, zipfile, os
wheels, site = sys.argv[1], sys.argv[2]
skip = ("libtorch_cuda", "libc10_cuda", "libtorch_nvshmem", "libcaffe2_nvrtc", "libtorch_python")
for name in sorted(os.listdir(wheels)):
    with zipfile.ZipFile(os.path.join(wheels, name)) as z:
        for m in z.namelist():
            base = os.path.basename(m)
            if name.startswith("torch-"):
                if not (m.startswith("torch/lib/") or m.startswith("torch/include/")):
                    continue
                if base.startswith(skip):
                    continue
            elif not m.startswith("nvidia/"):
                continue
            z.extract(m, site)
PY
elif [ "$variant" = cuda ]; then
  rm -rf "$site"
  "$python" -m pip install --quiet --target "$site" "torch==2.13.0" \
    || die "pip install torch==2.13.0 (CUDA) failed"
else
  die "TORCH_VARIANT must be cpu or cuda, found '$variant'"
fi

# LIBTORCH layout for torch-sys: include/ and lib/ (lib/ links to the real files so that
# libtorch_cpu.so's RPATH $ORIGIN/../../nvidia/cu13/lib still resolves from the real location).
rm -rf "$libtorch" && mkdir -p "$libtorch/lib"
ln -s "$site/torch/include" "$libtorch/include"
for f in "$site"/torch/lib/*.so*; do ln -s "$f" "$libtorch/lib/"; done
echo "$site/torch/lib" > "$libtorch/rpath"
touch "$libtorch/.complete-$variant"
echo "libtorch 2.13.0 ($variant) installed in .deps/libtorch"
