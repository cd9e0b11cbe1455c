#!/usr/bin/env bash
# ResNet-18 inference: graft's Go benchmark and onnxruntime-node, interleaved
# in one run so the ratio is measured under the same machine load.
# Needs: bash testdata/gen/setup.sh (full-size models, onnxruntime-node).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
model="$root/testdata/big/resnet18_op13_folded/model.onnx"
cd "$root"
for batch in 1 8; do
  node testdata/gen/bench_ort.js "$model" "$batch" 10 2
  go test ./runtime -run NONE -bench "ResNet18Inference/batch${batch}\$" -benchtime 5x | grep -E "^Benchmark"
  node testdata/gen/bench_ort.js "$model" "$batch" 10 2
done
