#!/usr/bin/env bash
# One FGSM step on a batch of 8 of the full-size ResNet-18: graft's Go
# benchmark and PyTorch (2 threads), interleaved in one run so the ratio is
# measured under the same machine load.
# Needs: bash testdata/gen/setup.sh (full-size models, Debian's torch).
# Usage: bench_fgsm.sh [ROUNDS]   (default 2)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
rounds="${1:-2}"
go test -c -o /tmp/graft-attacks.test ./attacks
go_ms=() py_ms=()
for ((r = 1; r <= rounds; r++)); do
  line=$(testdata/gen/bench_fgsm.py 8 5 2 2>/dev/null)
  echo "$line"
  py_ms+=("$(sed -E 's/.*median ([0-9.]+) ms.*/\1/' <<<"$line")")
  line=$(cd attacks && /tmp/graft-attacks.test -test.run NONE -test.bench 'FGSMResNet18$' -test.benchtime 3x | grep -E '^Benchmark')
  echo "graft $line"
  go_ms+=("$(awk '{for (i = 1; i < NF; i++) if ($(i+1) == "ms/step") print $i}' <<<"$line")")
done
rm -f /tmp/graft-attacks.test
python3 - "${go_ms[*]}" "${py_ms[*]}" <<'PY'
import statistics, sys
g = [float(v) for v in sys.argv[1].split()]
p = [float(v) for v in sys.argv[2].split()]
print(f"FGSM step, ResNet-18, batch 8: graft {statistics.median(g):.0f} ms, PyTorch {statistics.median(p):.0f} ms: "
      f"graft takes {statistics.median(g) / statistics.median(p):.2f}x PyTorch's time")
PY
