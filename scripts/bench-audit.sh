#!/usr/bin/env bash
# Benchmark of the full audit (decode, brain mask, every method, metrics, SQLite writes), not a test:
#  1. images/s with 1 and 2 decode worker threads (RAYON_NUM_THREADS) on the default profile;
#  2. peak memory for 100 vs 600 images (streaming: it must stay flat), on a light profile so that 600
#     images fit in minutes; the images come from the training split (the test split has 450).
# Usage: bash scripts/bench-audit.sh [IMAGES_FOR_THROUGHPUT]   (after `make setup`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/tumor-audit
n=${1:-8}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== throughput, default profile, $n images"
for w in 1 2; do
  RAYON_NUM_THREADS=$w $bin audit --limit "$n" --db "$tmp/w$w.sqlite" --run bench | grep "images audited"
done
light=(--set explain.lime.samples=16 --set explain.kernel_shap.samples=16 --set explain.smoothgrad.samples=4
       --set explain.integrated_gradients.steps=4)
echo "== peak memory, light profile"
for m in 100 600; do
  $bin "${light[@]}" audit --data data/br35h/Training --limit "$m" --db "$tmp/m$m.sqlite" --run bench | grep "images audited"
done
