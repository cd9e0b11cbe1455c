#!/usr/bin/env bash
# The full-size family checks: exports one architecture per torchvision
# family at its usual input size (vit_b_16, vgg16_bn, ...; about 15 GB in
# testdata/big/families/full), runs cmd/graft's TestFamilies on them and
# writes the README's full-size table. About an hour on 2 cores; needs
# testdata/gen/setup.sh first. FAMILIES=vit,swin limits the export (the
# table is written only when every family is present).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -n "${FAMILIES:-}" ]; then
  "$root/testdata/gen/families.py" --full --family "$FAMILIES"
else
  "$root/testdata/gen/families.py" --full
fi
cd "$root"
GRAFT_FAMILIES=full GRAFT_WRITE_FAMILIES=${GRAFT_WRITE_FAMILIES:-1} go test ./cmd/graft -run '^TestFamilies$' -count=1 -timeout 6h -v | grep -E '^(=== RUN|--- |\s+families_test|ok|FAIL|PASS)'
