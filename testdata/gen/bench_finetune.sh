#!/usr/bin/env bash
# A frozen-backbone fine-tuning epoch of the full-size ResNet-18 on 64 real
# photo crops (4 classes, 224x224 inputs): graft with the feature cache,
# graft without it, and PyTorch's tutorial-style loop, in one run.
# Needs: bash testdata/gen/setup.sh (models, photos, PyTorch).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
testdata/gen/bench_finetune.py make "$work/photos"
go build -o "$work/graft" ./cmd/graft
epochs=3
per_epoch() { # median epoch seconds from metrics.json
  python3 -c 'import json,sys; s=sorted(e["seconds"] for e in json.load(open(sys.argv[1]))["epochs"]); print("%.3f" % s[len(s)//2])' "$1"
}
run_graft() {
  "$work/graft" finetune --model testdata/big/resnet18_op13_bn/model.onnx --data "$work/photos" --val-split 0.25 \
    --freeze backbone --epochs $epochs --lr 0.001 --batch 16 "$@" -o "$work/out.onnx" --metrics "$work/m" >/dev/null
  per_epoch "$work/m/metrics.json"
}
start=$(date +%s.%N)
cached=$(run_graft)
cached_total=$(python3 -c "import time; print('%.3f' % (time.time() - $start))")
nocache=$(run_graft --no-cache)
torch=$(testdata/gen/bench_finetune.py torch "$work/photos" $epochs | sed 's/.*=//')
echo "graft, feature cache:   epoch ${cached} s (whole run, features included: ${cached_total} s)"
echo "graft, no cache:        epoch ${nocache} s"
echo "pytorch tutorial loop:  epoch ${torch} s"
python3 -c "
c, n, t = $cached, $nocache, $torch
print('no cache / cache: %.0fx;  graft no cache / pytorch: %.2fx;  graft cache / pytorch: %.3fx' % (n / c, n / t, c / t))"
