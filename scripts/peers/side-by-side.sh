#!/usr/bin/env bash
# tumor-audit beside Xplique and Captum, in one invocation, on the same workload: the seed profile
# (IG 80, SmoothGrad 80, LIME 1000, Kernel SHAP 1000, batch 64, Guided Backprop, Grad-CAM), the default
# CNN's layer shape at 128x128x1, the same 4 test images. A benchmark, not a test.
#
# Installs the peers (pinned in requirements.txt) from the package registry into a scratch venv outside
# the source tree (PEERS_VENV, default target/peers-venv, ~6 GB: the registry's torch wheel brings its CUDA
# libraries), then runs: tumor-audit, Xplique, Captum, tumor-audit again (the two tumor-audit runs
# bracket the peers, so that a change of machine load shows), and prints the three figures and the ratios.
# Usage: bash scripts/peers/side-by-side.sh [IMAGES] [REPEATS]   (after `make setup`)
# OURS_SET="--set explain.shared_evaluations=true" adds settings to tumor-audit's runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=scripts/peers
bin=target/release/tumor-audit
images=${1:-4}
repeats=${2:-2}
venv=$(realpath -m "${PEERS_VENV:-target/peers-venv}")   # absolute: the peers run from scripts/peers
test_dir=${PEERS_TEST_DIR:-data/br35h/Testing}

stamp=$(sha256sum "$here/requirements.txt" | cut -c1-16)
if [ ! -f "$venv/.installed-$stamp" ]; then
  echo "== installing the peers into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
  touch "$venv/.installed-$stamp"
fi
py="$venv/bin/python"
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
flags=$(grep -m1 '^flags' /proc/cpuinfo)
isa="AVX2-only"
case "$flags" in *avx512f*) isa="AVX-512";; esac
case "$flags" in *amx_bf16*) isa="AVX-512 + AMX";; esac
echo "== CPU: $cpu, $(nproc) cores ($isa); tumor-audit settings: seed profile ${OURS_SET:-}"
ours() {
  echo "== tumor-audit ($1); load: $(uptime | sed 's/.*load average/load average/')"
  # shellcheck disable=SC2086
  "$bin" --set explain.profile=seed ${OURS_SET:-} bench --images "$images" --repeats "$repeats" --audit | tee "$log/ours-$1.txt"
}
ours first
for peer in xplique captum; do
  echo "== $peer; load: $(uptime | sed 's/.*load average/load average/')"
  # No GPU for the peers (TensorFlow would look for CUDA), and no library warnings in the figures.
  (cd "$here" && CUDA_VISIBLE_DEVICES="" TF_CPP_MIN_LOG_LEVEL=3 PYTHONWARNINGS=ignore \
    "$py" "${peer}_peer.py" "../../$test_dir" "$images") | tee "$log/$peer.txt"
done
ours second
echo "== load at the end: $(uptime | sed 's/.*load average/load average/')"

python3 - "$log" "$cpu" "$isa" <<'PY'
import re, sys, statistics
log, cpu, isa = sys.argv[1:]
def ours(tag):
    rows = {}
    for line in open(f"{log}/ours-{tag}.txt"):
        for key, name in [("Guided Backprop", "guided_backprop"), ("Integrated Gradients", "integrated_gradients"),
                          ("SmoothGrad", "smoothgrad"), ("Grad-CAM", "gradcam"), ("LIME", "lime"),
                          ("Kernel SHAP", "kernel_shap"), ("all methods", "all_six"),
                          ("full audit (end to end)", "audit")]:
            if line.startswith(key + " "):
                try:
                    rows[name] = float(line[len(key):].split()[0])
                except ValueError:  # Kernel SHAP timed in the LIME row (shared evaluations)
                    rows[name] = 0.0
    return rows
def peer(name):
    rows = {}
    for line in open(f"{log}/{name}.txt"):
        p = line.split()
        if len(p) >= 3 and p[0] == name:
            rows[p[1]] = float(p[2])
    return rows
a, b, x, c = ours("first"), ours("second"), peer("xplique"), peer("captum")
order = ["guided_backprop", "integrated_gradients", "smoothgrad", "gradcam", "lime", "kernel_shap", "all_six"]
print(f"\nseconds per image on {cpu} ({isa})")
print(f"{'method':<22} {'tumor-audit (1st / 2nd)':>24} {'Xplique':>9} {'Captum':>9}")
for m in order:
    print(f"{m:<22} {a.get(m, float('nan')):>11.3f} / {b.get(m, float('nan')):<10.3f} {x.get(m, float('nan')):>9.3f} {c.get(m, float('nan')):>9.3f}")
print(f"{'full audit end to end':<22} {a['audit']:>11.3f} / {b['audit']:<10.3f}")
ta = statistics.mean([a["audit"], b["audit"]])
print(f"\ntumor-audit full audit {ta:.3f} s/image (mean of the two runs), Xplique {x['all_six']:.3f}, Captum {c['all_six']:.3f}")
print(f"ratios: Xplique / tumor-audit = {x['all_six'] / ta:.2f}x (target >= 3), Captum / tumor-audit = {c['all_six'] / ta:.2f}x (target >= 8)")
PY
