#!/usr/bin/env bash
# Installs the reference tools graft's tests compare against, and generates
# the full-size models. Idempotent; needs root for apt (CI and dev machines
# run as root). Nothing here is needed to build or use graft itself.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

pkgs=(python3-torch python3-torchvision python3-onnx python3-numpy python3-pil libonnx-testdata dataset-fashion-mnist)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# onnxruntime-node: its install script would download CUDA binaries from a
# host this machine cannot reach; the CPU library ships inside the package.
if [ ! -d "$root/testdata/gen/node_modules/onnxruntime-node" ]; then
  echo "setup: installing onnxruntime-node"
  (cd "$root/testdata/gen" && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error)
fi

# Full-size ResNet-18 exports (about 190 MB, gitignored), deterministic.
if [ ! -f "$root/testdata/big/resnet18_op17_bn/model.onnx" ]; then
  echo "setup: exporting full-size models to testdata/big"
  "$root/testdata/gen/export_models.py" --big >/dev/null
fi
grep -qs full_float64 "$root/testdata/big/finetune_parity/losses.json" || { echo "setup: writing fine-tuning references to testdata/big/finetune_parity"; "$root/testdata/gen/finetune_refs.py" >/dev/null; }
# Real RGB photos for the fine-tuning tests: scikit-image's sample images,
# taken from Debian's package without installing it (or its dependencies).
photos="$root/testdata/big/photos"
if [ ! -f "$photos/chelsea.png" ]; then
  echo "setup: extracting sample photos from python3-skimage"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q python3-skimage >/dev/null 2>&1 && dpkg-deb -x python3-skimage_*.deb x)
  mkdir -p "$photos"
  for f in astronaut.png chelsea.png coffee.png rocket.jpg motorcycle_left.png; do
    cp "$tmp/x/usr/lib/python3/dist-packages/skimage/data/$f" "$photos/"
  done
  rm -rf "$tmp"
fi
[ -f "$root/testdata/big/resnet18_op13_bn/test_data_set_0/output64.pb" ] || { echo "setup: writing FGSM references to testdata/big/resnet18_op13_bn"; "$root/testdata/gen/fgsm_refs.py" >/dev/null; }
# Every torchvision family, small variants (cmd/graft/families_test.go),
# remade when families.py changes.
fam="$root/testdata/big/families/small"
sum=$(sha256sum "$root/testdata/gen/families.py" | cut -d' ' -f1)
if [ "$(cat "$fam/.families.py.sha256" 2>/dev/null)" != "$sum" ]; then
  echo "setup: exporting every torchvision family (small variants) to testdata/big/families/small"
  mkdir -p "$fam"
  "$root/testdata/gen/families.py" --small >/dev/null 2>"$fam.log" || { tail -20 "$fam.log"; exit 1; }
  echo "$sum" >"$fam/.families.py.sha256"
fi
echo "setup: reference tools ready"
