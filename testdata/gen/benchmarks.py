#!/usr/bin/python3
"""The speed harness: graft against onnxruntime-node and PyTorch on the same
models and batches, interleaved (graft, reference, graft, reference, ...)
so both see the same machine load, each run its own process; writes
docs/benchmarks.md with the ratios, the peak memory of each side, the
machine and the command, and CPU profiles of graft's runs.

Usage: testdata/gen/benchmarks.py [--rounds 3] [--iters 10] [--threads 2]
                                  [--quick] [--out docs/benchmarks.md]
Needs: bash testdata/gen/setup.sh (full-size models, onnxruntime-node,
Debian's torch). ResNet-50 is exported to testdata/big on first use.
Run it on an idle machine: a run beside other work is worthless.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, "testdata", "gen")
BIG = os.environ.get("GRAFT_BIG", os.path.join(ROOT, "testdata", "big"))


def run_json(cmd, cwd=ROOT):
    out = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def child(cmd, cwd=ROOT):
    """Runs cmd and returns its stdout and its own peak RSS in bytes."""
    with tempfile.TemporaryFile(mode="w+") as out:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)}: exit {p.returncode}")
        out.seek(0)
        return out.read(), usage.ru_maxrss * 1024


def finetune_epoch(graft, photos, work, threads):
    """graft finetune without the feature cache: the median epoch."""
    metrics = os.path.join(work, "ft")
    _, rss = child([graft, "finetune", "--model", os.path.join(BIG, "resnet18_op13_bn", "model.onnx"), "--data", photos,
                    "--val-split", "0.25", "--freeze", "backbone", "--no-cache", "--epochs", "3", "--lr", "0.001",
                    "--batch", "16", "-o", os.path.join(work, "ft.onnx"), "--metrics", metrics],
                   cwd=ROOT)
    with open(os.path.join(metrics, "metrics.json")) as f:
        secs = sorted(e["seconds"] for e in json.load(f)["epochs"])
    return {"median_ms": 1000 * secs[len(secs) // 2], "peak_rss_bytes": rss}


def torch_epoch(photos, threads):
    out, rss = child(["/usr/bin/python3", os.path.join(GEN, "bench_finetune.py"), "torch", photos, "3"])
    return {"median_ms": 1000 * float(out.strip().split("=")[-1]), "peak_rss_bytes": rss}


def export_resnet50():
    """Exports torchvision's resnet50 (seeded weights) folded and with
    BatchNormalization kept, as export_models.py does for resnet18."""
    folded = os.path.join(BIG, "resnet50_op13_folded", "model.onnx")
    if os.path.exists(folded):
        return
    code = r"""
import os, sys, torch, torchvision
torch.manual_seed(0)
m = torchvision.models.resnet50(weights=None).eval()
x = torch.rand(1, 3, 224, 224)
for name, kw in [("resnet50_op13_folded", {}), ("resnet50_op13_bn", {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False})]:
    d = os.path.join(sys.argv[1], name)
    os.makedirs(d, exist_ok=True)
    torch.onnx.export(m, x, os.path.join(d, "model.onnx"), opset_version=13, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, **kw)
"""
    subprocess.run(["/usr/bin/python3", "-c", code, BIG], check=True)


def graft_bench(graft, model, mode, batch, iters, threads, profile=None):
    cmd = [graft, "bench", model, "--mode", mode, "--batch", str(batch), "--iters", str(iters),
           "--threads", str(threads), "--json"]
    if profile:
        cmd += ["--cpuprofile", profile]
    r = run_json(cmd)
    return {"median_ms": r["median_ns"] / 1e6, "peak_rss_bytes": r["peak_rss_bytes"]}


def ort_bench(model, batch, iters, threads):
    return run_json(["node", os.path.join(GEN, "bench_ort.js"), model, str(batch), str(iters), str(threads), "json"], cwd=GEN)


def torch_bench(name, mode, batch, iters, threads):
    return run_json(["/usr/bin/python3", os.path.join(GEN, "bench_torch.py"), name, mode, str(batch), str(iters), "2", str(threads)])


def interleave(rounds, a, b):
    """Runs a and b alternately; returns each side's median of medians and
    largest peak RSS."""
    ra, rb = [], []
    for _ in range(rounds):
        ra.append(a())
        rb.append(b())

    def summary(rs):
        return statistics.median(r["median_ms"] for r in rs), max(r["peak_rss_bytes"] for r in rs)
    return summary(ra), summary(rb)


def machine():
    model, flags = "?", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    simd = " ".join(x for x in ["sse4_2", "avx", "avx2", "fma", "avx512f"] if x in flags) or "none"
    go = subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()
    return f"{model}, {os.cpu_count()} cores, SIMD {simd}; {platform.system()} {platform.release()}; {go}"


def mib(n):
    return f"{n / (1 << 20):.0f} MiB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer rows: for trying the harness, not for results")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="graft-bench-")
    graft = os.path.join(work, "graft")
    subprocess.run(["go", "build", "-o", graft, "./cmd/graft"], cwd=ROOT, check=True)
    r18f = os.path.join(BIG, "resnet18_op13_folded", "model.onnx")
    r18b = os.path.join(BIG, "resnet18_op13_bn", "model.onnx")
    if not args.quick:
        export_resnet50()
    r50f = os.path.join(BIG, "resnet50_op13_folded", "model.onnx")
    r50b = os.path.join(BIG, "resnet50_op13_bn", "model.onnx")
    t, k, n = args.threads, args.iters, args.rounds

    # (what, graft's model, mode, batch, reference name, reference run, target ratio)
    rows = [
        ("ResNet-18 inference, batch 1", r18f, "infer", 1, "onnxruntime-node", lambda: ort_bench(r18f, 1, k, t), 1.0),
        ("ResNet-18 inference, batch 8", r18f, "infer", 8, "onnxruntime-node", lambda: ort_bench(r18f, 8, k, t), 1.0),
        ("ResNet-18 FGSM step, batch 8", r18f, "fgsm", 8, "PyTorch", lambda: torch_bench("resnet18", "fgsm", 8, k, t), 0.8),
        ("ResNet-18 training step, batch 8", r18b, "train", 8, "PyTorch", lambda: torch_bench("resnet18", "train", 8, k, t), 0.8),
        ("ResNet-18 head-only step, batch 8", r18b, "train-head", 8, "PyTorch", lambda: torch_bench("resnet18", "train-head", 8, k, t), 0.8),
    ]
    if not args.quick:
        rows += [
            ("ResNet-18 inference, batch 32", r18f, "infer", 32, "onnxruntime-node", lambda: ort_bench(r18f, 32, max(k // 2, 3), t), 1.0),
            ("ResNet-50 inference, batch 1", r50f, "infer", 1, "onnxruntime-node", lambda: ort_bench(r50f, 1, k, t), 1.0),
            ("ResNet-50 inference, batch 8", r50f, "infer", 8, "onnxruntime-node", lambda: ort_bench(r50f, 8, max(k // 2, 3), t), 1.0),
            ("ResNet-50 training step, batch 8", r50b, "train", 8, "PyTorch", lambda: torch_bench("resnet50", "train", 8, max(k // 2, 3), t), 0.8),
        ]
    photos = os.path.join(work, "photos")
    subprocess.run(["/usr/bin/python3", os.path.join(GEN, "bench_finetune.py"), "make", photos], check=True)
    results = []
    (g_ms, g_rss), (r_ms, r_rss) = interleave(n, lambda: finetune_epoch(graft, photos, work, t), lambda: torch_epoch(photos, t))
    results.append(("frozen-backbone fine-tuning epoch, ResNet-18, 64 photos, no feature cache", g_ms, g_rss,
                    "PyTorch's tutorial loop", r_ms, r_rss, g_ms / r_ms, 0.8))
    print(f"{results[-1][0]}: graft {g_ms:.0f} ms, PyTorch {r_ms:.0f} ms: {g_ms / r_ms:.2f}x", flush=True)
    for what, model, mode, batch, ref_name, ref, target in rows:
        iters = k if batch < 32 and "50" not in what else max(k // 2, 3)
        (g_ms, g_rss), (r_ms, r_rss) = interleave(n, lambda: graft_bench(graft, model, mode, batch, iters, t), ref)
        ratio = g_ms / r_ms
        results.append((what, g_ms, g_rss, ref_name, r_ms, r_rss, ratio, target))
        print(f"{what}: graft {g_ms:.1f} ms ({mib(g_rss)}), {ref_name} {r_ms:.1f} ms ({mib(r_rss)}): {ratio:.2f}x, target {target}x",
              flush=True)

    profiles = []
    for what, model, mode, batch in [("inference, batch 1", r18f, "infer", 1), ("FGSM, batch 8", r18f, "fgsm", 8),
                                     ("training step, batch 8", r18b, "train", 8)]:
        prof = os.path.join(work, mode + ".prof")
        graft_bench(graft, model, mode, batch, k, t, profile=prof)
        top = subprocess.run(["go", "tool", "pprof", "-top", "-nodecount", "12", graft, prof],
                             capture_output=True, text=True, check=True).stdout
        lines = [l for l in top.splitlines() if re.match(r"\s*[\d.]+m?s\s", l) or l.strip().startswith("flat")]
        profiles.append((what, "\n".join(lines)))

    cmd = "testdata/gen/benchmarks.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with open(args.out, "w") as f:
        f.write("# graft's speed against onnxruntime and PyTorch\n\n")
        f.write(f"Written by `{cmd.strip()}` on {datetime.date.today()}: every row runs graft (`graft bench`) and the reference "
                f"alternately, {n} rounds, each a separate process, {t} threads each; times are the median of each run's "
                f"median, peak memory the largest of the runs (RSS of the whole process).\n\n")
        f.write(f"Machine: {machine()}.\n\n")
        f.write("| benchmark | graft | reference | graft / reference | target | graft peak memory | reference peak memory |\n")
        f.write("|---|---|---|---|---|---|---|\n")
        for what, g_ms, g_rss, ref_name, r_ms, r_rss, ratio, target in results:
            met = "met" if ratio <= target else "missed"
            f.write(f"| {what} | {g_ms:.1f} ms | {ref_name}: {r_ms:.1f} ms | {ratio:.2f} | {target} ({met}) | {mib(g_rss)} | {mib(r_rss)} |\n")
        f.write("\n## Where graft's time goes\n\nTop of `go tool pprof -top` for each (flat time, the function itself):\n")
        for what, top in profiles:
            f.write(f"\n### ResNet-18 {what}\n\n```\n{top}\n```\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
