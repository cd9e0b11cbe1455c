#!/usr/bin/python3
"""The speed harness: graft against onnxruntime-node and PyTorch on the same
models and batches, interleaved (graft, reference, graft, reference, ...)
so both see the same machine load, each run its own process; writes
docs/benchmarks.md with the ratios, the peak memory of each side, the
machine and the command, and CPU profiles of graft's runs.

Usage: testdata/gen/benchmarks.py [--rounds 3] [--iters 10] [--threads 2]
                                  [--quick] [--before REV] [--out docs/benchmarks.md]

--before REV also times graft as of git revision REV (built from a
temporary worktree) in every round, and profiles it, for a before/after
table. The README's speed table (between <!-- speed --> markers) is
rewritten from the results unless --out names another file.
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


def interleave(rounds, *runs):
    """Runs each of runs in turn, rounds times (a b c a b c ...); returns
    each one's median of medians, largest peak RSS and per-round medians
    (for ratios taken round by round: this machine's speed drifts over
    minutes, and runs of one round are seconds apart)."""
    results = [[] for _ in runs]
    for _ in range(rounds):
        for r, run in zip(results, runs):
            r.append(run())

    def summary(rs):
        return (statistics.median(r["median_ms"] for r in rs), max(r["peak_rss_bytes"] for r in rs),
                [r["median_ms"] for r in rs])
    return [summary(r) for r in results]


def paired(a, b):
    """The median of a's per-round times over b's, and each round's."""
    per = [x / y for x, y in zip(a[2], b[2])]
    return statistics.median(per), per


def build_before(rev, work):
    """Builds graft as of rev into work; returns the binary's path."""
    tree = os.path.join(work, "before-src")
    subprocess.run(["git", "worktree", "add", "--detach", tree, rev], cwd=ROOT, check=True, capture_output=True)
    try:
        out = os.path.join(work, "graft-before")
        subprocess.run(["go", "build", "-o", out, "./cmd/graft"], cwd=tree, check=True)
        return out
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, check=True, capture_output=True)


def top_profile(graft, model, mode, batch, iters, threads, work):
    prof = os.path.join(work, os.path.basename(graft) + "-" + mode + ".prof")
    graft_bench(graft, model, mode, batch, iters, threads, profile=prof)
    top = subprocess.run(["go", "tool", "pprof", "-top", "-nodecount", "12", graft, prof],
                         capture_output=True, text=True, check=True).stdout
    return "\n".join(l for l in top.splitlines() if re.match(r"\s*[\d.]+m?s\s", l) or l.strip().startswith("flat"))


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
    ap.add_argument("--before", help="also time graft as of this git revision")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="graft-bench-")
    graft = os.path.join(work, "graft")
    subprocess.run(["go", "build", "-o", graft, "./cmd/graft"], cwd=ROOT, check=True)
    before = build_before(args.before, work) if args.before else None
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
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
    # Each row: what, graft (ms, rss), before (ms, rss) or None, reference
    # name, reference (ms, rss), target ratio.
    results = []

    def record(what, runs, ref_name, target):
        out = interleave(n, *runs)
        g, ref = out[0], out[-1]
        b = out[1] if before else None
        results.append((what, g, b, ref_name, ref, target))
        was = f", before {b[0]:.1f} ms ({mib(b[1])})" if b else ""
        print(f"{what}: graft {g[0]:.1f} ms ({mib(g[1])}){was}, {ref_name} {ref[0]:.1f} ms ({mib(ref[1])}): "
              f"{paired(g, ref)[0]:.2f}x (rounds {' '.join(f'{x:.2f}' for x in paired(g, ref)[1])}), target {target}x", flush=True)

    record("frozen-backbone fine-tuning epoch, ResNet-18, 64 photos, no feature cache",
           [lambda: finetune_epoch(graft, photos, work, t)] + ([lambda: finetune_epoch(before, photos, work, t)] if before else [])
           + [lambda: torch_epoch(photos, t)], "PyTorch's tutorial loop", 0.8)
    for what, model, mode, batch, ref_name, ref, target in rows:
        iters = k if batch < 32 and "50" not in what else max(k // 2, 3)
        runs = [lambda g=graft: graft_bench(g, model, mode, batch, iters, t)]
        if before:
            runs.append(lambda g=before: graft_bench(g, model, mode, batch, iters, t))
        record(what, runs + [ref], ref_name, target)

    profiles = []
    for what, model, mode, batch in [("inference, batch 1", r18f, "infer", 1), ("FGSM, batch 8", r18f, "fgsm", 8),
                                     ("training step, batch 8", r18b, "train", 8)]:
        tops = [("graft", top_profile(graft, model, mode, batch, k, t, work))]
        if before:
            tops.insert(0, (f"before ({args.before})", top_profile(before, model, mode, batch, k, t, work)))
        profiles.append((what, tops))

    # Allocations per inference run and per gradient step, from the Go
    # benchmarks (steady state: activations and gradients come from the
    # session's pool).
    gobench = subprocess.run(["go", "test", "./runtime", "-run", "XXX", "-bench", "ResNet18Inference|ResNet18Gradients", "-benchtime", "5x"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    allocs = "\n".join(l for l in gobench.splitlines() if l.startswith("Benchmark"))

    cmd = "testdata/gen/benchmarks.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    table = ["| benchmark | graft | reference | graft / reference | each round | target | graft peak memory | reference peak memory |",
             "|---|---|---|---|---|---|---|---|"]
    for what, g, b, ref_name, ref, target in results:
        ratio, per = paired(g, ref)
        met = "met" if ratio <= target else "missed"
        mem = "" if g[1] <= ref[1] else " (more)"
        table.append(f"| {what} | {g[0]:.1f} ms | {ref_name}: {ref[0]:.1f} ms | {ratio:.2f} | {' '.join(f'{x:.2f}' for x in per)} | "
                     f"{target} ({met}) | {mib(g[1])}{mem} | {mib(ref[1])} |")
    with open(args.out, "w") as f:
        f.write("# graft's speed against onnxruntime and PyTorch\n\n")
        f.write(f"Written by `{cmd.strip()}` at graft {head} on {datetime.date.today()}: every row runs graft (`graft bench`) "
                f"and the reference alternately, {n} rounds, each a separate process, {t} threads each; times are the median "
                f"of each run's median; a ratio is the median of the rounds' ratios (each round's runs are seconds apart, "
                f"while this machine's speed drifts over minutes); peak memory the largest of the runs (RSS of the whole "
                f"process).\n\n")
        f.write(f"Machine: {machine()}.\n\n")
        f.write("\n".join(table) + "\n")
        if before:
            f.write(f"\n## Before and after\n\ngraft as of `{args.before}`, timed in the same rounds:\n\n")
            f.write("| benchmark | before | after | after / before | before / reference | before peak memory |\n|---|---|---|---|---|---|\n")
            for what, g, b, ref_name, ref, target in results:
                f.write(f"| {what} | {b[0]:.1f} ms | {g[0]:.1f} ms | {paired(g, b)[0]:.2f} | {paired(b, ref)[0]:.2f} | {mib(b[1])} |\n")
        f.write("\n## Allocations\n\n`go test ./runtime -run XXX -bench 'ResNet18Inference|ResNet18Gradients' -benchtime 5x` "
                "(GOMAXPROCS as the machine has it; B/op and allocs/op are what one run allocates once the session exists: "
                "a gradient step's are mostly the gradients it returns):\n\n"
                f"```\n{allocs}\n```\n")
        f.write("\n## Where graft's time goes\n\nTop of `go tool pprof -top` for each (flat time, the function itself; "
                "the whole `graft bench` process, loading included):\n")
        for what, tops in profiles:
            for who, top in tops:
                f.write(f"\n### ResNet-18 {what}: {who}\n\n```\n{top}\n```\n")
    print("wrote", args.out)
    readme = os.path.join(ROOT, "README.md")
    if os.path.abspath(args.out) == os.path.join(ROOT, "docs", "benchmarks.md"):
        with open(readme) as f:
            text = f.read()
        start, end = text.index("<!-- speed -->"), text.index("<!-- /speed -->")
        block = (f"<!-- speed -->\nFrom `docs/benchmarks.md` ({datetime.date.today()}, graft {head}, {t} threads each, "
                 f"interleaved, idle machine):\n\n" + "\n".join(table) + "\n")
        with open(readme, "w") as f:
            f.write(text[:start] + block + text[end:])
        print("updated", readme)


if __name__ == "__main__":
    main()
