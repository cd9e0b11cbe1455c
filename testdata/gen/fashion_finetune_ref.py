#!/usr/bin/python3
"""PyTorch reference for graft's transfer learning on Fashion-MNIST (issue 4).

Starts from exactly the weights in cmd/graft/demo/pretrained.onnx (made by
fashion_pretrain.py): the torch module is rebuilt and every parameter / BN
statistic is copied from the ONNX initializer of the same name, and the rebuilt
model must reproduce pretrained_test_data/output_0.pb. Then:

  * fc is replaced by a fresh Linear(64, 5) (torch default init after
    torch.manual_seed(seed)),
  * the backbone is frozen: requires_grad=False, eval mode (BatchNorm uses its
    running statistics),
  * the head is trained with SGD (lr 0.01, momentum 0.9, no dampening, no
    nesterov, no weight decay), mean cross-entropy, batch 32 (last batch
    partial), EPOCHS epochs, no augmentation, a fresh shuffle every epoch
    (torch.randperm with a torch.Generator seeded with the same seed),
  * val accuracy is measured after every epoch.

Since the backbone is frozen and in eval mode and there is no augmentation, the
64-d pooled features are computed once per image and the head is trained on
them (the same computation as running the whole model every step).

Settings:
  a  train on the committed demo sample (cmd/graft/demo/train-*), validate on
     cmd/graft/demo/val-* (1000 / 500 images).
  b  train: Fashion-MNIST TRAIN classes 5-9, 1000 per class chosen by the
     seeded permutation rule below; val: every t10k image of classes 5-9 (5000).

Split rule (also used for the demo sample by fashion_pretrain.py):
  perm = numpy.random.RandomState(4).permutation(60000) over the TRAIN file;
  order_c = [i for i in perm if label[i] == c] for c in 5..9;
  demo train = order_c[:200], demo val = order_c[200:300], b train = order_c[:1000].
  Images are used in ascending TRAIN-file index order; labels are remapped c -> c-5.
  The JSON lists every index explicitly.

Each setting runs with head seeds 0, 1, 2. Results, settings, and the fine-tuned
head of (b, seed 0) go to testdata/gen/fashion_finetune_ref.json.

Usage: fashion_finetune_ref.py [--out JSON] [--demo-dir DIR]
"""

import argparse
import copy
import hashlib
import json
import os
import sys
import time

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion_pretrain as fp  # noqa: E402

OUT_JSON = os.path.join(fp.HERE, "fashion_finetune_ref.json")

LR = 0.01
MOMENTUM = 0.9
BATCH = 32
EPOCHS = 15
SEEDS = [0, 1, 2]
B_TRAIN_PER_CLASS = 1000
FEATURE_BATCH = 500


def rel(path):
    p = os.path.abspath(path)
    return os.path.relpath(p, fp.REPO_ROOT) if p.startswith(fp.REPO_ROOT + os.sep) else p


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ----------------------------------------------------------------------------
# Pretrained weights from ONNX
# ----------------------------------------------------------------------------

def load_pretrained(demo_dir):
    path = os.path.join(demo_dir, "pretrained.onnx")
    m = onnx.load(path)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    model = fp.FashionResNet()
    sd = model.state_dict()
    want = {k for k in sd if not k.endswith("num_batches_tracked")}
    missing = sorted(want - set(inits))
    extra = sorted(set(inits) - want)
    assert not missing, f"initializers missing for {missing}"
    assert not extra, f"unexpected initializers {extra}"
    new_sd = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            new_sd[k] = v
            continue
        a = inits[k]
        assert a.shape == tuple(v.shape) and a.dtype == np.float32, (k, a.shape, v.shape, a.dtype)
        new_sd[k] = torch.from_numpy(a.copy())
    model.load_state_dict(new_sd)
    model.eval()
    # The weights are exactly the ONNX ones ...
    for k, v in model.state_dict().items():
        if k in inits:
            assert np.array_equal(v.numpy(), inits[k]), k
    # ... and the rebuilt module reproduces the exported reference output.
    ds = os.path.join(demo_dir, "pretrained_test_data")
    x = onnx.numpy_helper.to_array(onnx.load_tensor(os.path.join(ds, "input_0.pb")))
    y = onnx.numpy_helper.to_array(onnx.load_tensor(os.path.join(ds, "output_0.pb")))
    with torch.no_grad():
        got = model(torch.from_numpy(x.copy())).numpy()
    err = float(np.abs(got - y).max())
    assert err < 1e-5, f"rebuilt model differs from output_0.pb by {err}"
    print(f"loaded {len(want)} tensors from {rel(path)}; reference output max |diff| {err:.2e}")
    return model, path, len(want), err


@torch.no_grad()
def features(model, x_u8):
    x = torch.from_numpy(fp.to_input(x_u8))
    model.eval()
    out = [model.features(x[i:i + FEATURE_BATCH]) for i in range(0, x.shape[0], FEATURE_BATCH)]
    return torch.cat(out)


@torch.no_grad()
def logits_accuracy(model, x_u8, y):
    x = torch.from_numpy(fp.to_input(x_u8))
    pred = torch.cat([model(x[i:i + FEATURE_BATCH]).argmax(1) for i in range(0, x.shape[0], FEATURE_BATCH)])
    return int((pred.numpy() == y).sum())


# ----------------------------------------------------------------------------
# Head training
# ----------------------------------------------------------------------------

def new_head(seed):
    torch.manual_seed(seed)
    return nn.Linear(64, 5)


def evaluate(head, f, y):
    with torch.no_grad():
        return int((head(f).argmax(1) == y).sum())


def train_head(head, ftr, ytr, fva, yva, epochs, gen=None):
    """SGD on the head. gen=None: no shuffling (ascending order of ftr)."""
    opt = torch.optim.SGD(head.parameters(), lr=LR, momentum=MOMENTUM)
    n = ftr.shape[0]
    hist = []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
        loss_sum = 0.0
        for i in range(0, n, BATCH):
            idx = order[i:i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(head(ftr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            loss_sum += float(loss) * idx.shape[0]
        correct = evaluate(head, fva, yva)
        hist.append({"epoch": epoch + 1, "train_loss": round(loss_sum / n, 6),
                     "val_correct": correct, "val_accuracy": correct / yva.shape[0]})
    return hist


def run_setting(name, ftr, ytr, fva, yva):
    results = {}
    for seed in SEEDS:
        head = new_head(seed)
        gen = torch.Generator().manual_seed(seed)
        t0 = time.time()
        hist = train_head(head, ftr, ytr, fva, yva, EPOCHS, gen)
        accs = [h["val_accuracy"] for h in hist]
        best = int(np.argmax(accs))
        results[str(seed)] = {
            "final_val_accuracy": accs[-1],
            "best_val_accuracy": accs[best],
            "best_epoch": best + 1,
            "per_epoch": hist,
        }
        print(f"  {name} seed {seed}: final {accs[-1]:.4f} best {accs[best]:.4f} (epoch {best + 1}) "
              f"[{' '.join(f'{a:.3f}' for a in accs)}] {time.time() - t0:.1f}s", flush=True)
        if seed == 0:
            head0 = copy.deepcopy(head)
    finals = np.array([r["final_val_accuracy"] for r in results.values()])
    bests = np.array([r["best_val_accuracy"] for r in results.values()])
    summary = {k: round(float(v), 6) for k, v in (
        ("final_mean", finals.mean()), ("final_min", finals.min()), ("final_max", finals.max()),
        ("final_std", finals.std()), ("best_mean", bests.mean()), ("best_min", bests.min()),
        ("best_max", bests.max()))}
    print(f"  {name}: final {summary['final_mean']:.4f} [{summary['final_min']:.4f}, "
          f"{summary['final_max']:.4f}], best {summary['best_mean']:.4f}")
    return results, summary, head0


def head_json(head):
    return {
        "fc.weight": head.weight.detach().numpy().astype(np.float32).tolist(),
        "fc.bias": head.bias.detach().numpy().astype(np.float32).tolist(),
    }


def to_json(v, indent=0, per_line=16):
    """json with 1-space indentation, lists of numbers wrapped per_line to a line."""
    pad = " " * (indent + 1)
    if isinstance(v, dict):
        if not v:
            return "{}"
        if len(v) <= 6 and all(isinstance(x, (int, float, bool)) for x in v.values()):
            return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(x)}" for k, x in v.items()) + "}"
        items = [f"{pad}{json.dumps(k)}: {to_json(x, indent + 1, per_line)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(v, list):
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            rows = [", ".join(json.dumps(x) for x in v[i:i + per_line]) for i in range(0, len(v), per_line)]
            if len(rows) <= 1:
                return "[" + (rows[0] if rows else "") + "]"
            return "[\n" + ",\n".join(pad + r for r in rows) + "\n" + " " * indent + "]"
        return "[\n" + ",\n".join(pad + to_json(x, indent + 1, per_line) for x in v) + "\n" + " " * indent + "]"
    return json.dumps(v)


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT_JSON)
    ap.add_argument("--demo-dir", default=fp.DEMO_DIR)
    args = ap.parse_args()
    fp.setup_torch()
    demo = args.demo_dir

    model, onnx_path, n_tensors, ref_err = load_pretrained(demo)

    xtr_all, ytr_all = fp.load_fashion("train")
    xte_all, yte_all = fp.load_fashion("t10k")

    # Pretrained accuracy on t10k classes 0-4 (the original 5-class head).
    m04 = np.isin(yte_all, fp.PRETRAIN_CLASSES)
    pre_correct = logits_accuracy(model, xte_all[m04], yte_all[m04].astype(np.int64))
    pre_acc = pre_correct / int(m04.sum())
    print(f"pretrained accuracy on t10k classes 0-4: {pre_acc:.4f} ({pre_correct}/{int(m04.sum())})")

    # Setting a: the committed demo files, checked against the split rule.
    demo_tr_idx, demo_va_idx = fp.demo_split(ytr_all)
    files = {}
    dem = {}
    for part, idx in (("train", demo_tr_idx), ("val", demo_va_idx)):
        ip = os.path.join(demo, f"{part}-images-idx3-ubyte.gz")
        lp = os.path.join(demo, f"{part}-labels-idx1-ubyte.gz")
        x, y = fp.read_idx(ip), fp.read_idx(lp)
        assert np.array_equal(x, xtr_all[idx]), f"{ip} does not match the split rule"
        assert np.array_equal(y, fp.remap_demo(ytr_all[idx])), f"{lp} does not match the split rule"
        dem[part] = (x, y.astype(np.int64))
        files[part] = {"images": rel(ip), "labels": rel(lp),
                       "images_sha256": sha256_file(ip), "labels_sha256": sha256_file(lp),
                       "count": int(idx.shape[0]),
                       "source": "/usr/share/datasets/fashion-mnist/train-*-ubyte.gz",
                       "source_indices": idx.tolist()}

    # Setting b: the larger real split.
    orders = fp.class_orders(ytr_all, fp.DEMO_CLASSES, fp.SPLIT_SEED)
    b_tr_idx = np.sort(np.concatenate([orders[c][:B_TRAIN_PER_CLASS] for c in fp.DEMO_CLASSES]))
    b_va_idx = np.nonzero(np.isin(yte_all, fp.DEMO_CLASSES))[0]
    assert b_tr_idx.shape[0] == 5 * B_TRAIN_PER_CLASS and b_va_idx.shape[0] == 5000
    assert set(demo_tr_idx.tolist()) | set(demo_va_idx.tolist()) <= set(b_tr_idx.tolist())

    t0 = time.time()
    feats = {
        "a": (features(model, dem["train"][0]), torch.from_numpy(dem["train"][1]),
              features(model, dem["val"][0]), torch.from_numpy(dem["val"][1])),
        "b": (features(model, xtr_all[b_tr_idx]), torch.from_numpy(fp.remap_demo(ytr_all[b_tr_idx]).astype(np.int64)),
              features(model, xte_all[b_va_idx]), torch.from_numpy(fp.remap_demo(yte_all[b_va_idx]).astype(np.int64))),
    }
    print(f"features computed in {time.time() - t0:.1f}s")

    results = {}
    heads = {}
    for name in ("a", "b"):
        res, summ, head0 = run_setting(name, *feats[name])
        results[name] = (res, summ)
        heads[name] = head0

    # Sanity check reference: the fine-tuned head of (b, seed 0), checked by
    # putting it back into the full model and scoring the 5000 val images.
    full = copy.deepcopy(model)
    full.fc = heads["b"]
    full.eval()
    b_correct = logits_accuracy(full, xte_all[b_va_idx], fp.remap_demo(yte_all[b_va_idx]).astype(np.int64))
    assert b_correct == results["b"][0]["0"]["per_epoch"][-1]["val_correct"], b_correct

    # Exact-trajectory check (no RNG beyond the recorded initial head): seed-0
    # head, demo train in file order (no shuffle), one epoch.
    head = new_head(0)
    init = head_json(head)
    hist = train_head(head, feats["a"][0], feats["a"][1], feats["a"][2], feats["a"][3], 1, gen=None)
    exact = {
        "description": "Deterministic step check: start from 'initial_head' (= torch init of seed 0), "
                       "train on the demo train file in file order (no shuffling), batches of 32 "
                       "(the last has 8), SGD lr 0.01 momentum 0.9 (v = 0.9*v + g, w -= 0.01*v; v starts at 0), "
                       "1 epoch; then evaluate on the demo val file.",
        "setting": "a", "epochs": 1, "shuffle": False,
        "initial_head": init,
        "final_head": head_json(head),
        "train_loss": hist[0]["train_loss"],
        "val_correct": hist[0]["val_correct"],
        "val_accuracy": hist[0]["val_accuracy"],
    }
    print(f"exact check: 1 epoch no shuffle, demo val {hist[0]['val_accuracy']:.4f}")

    tr_path = "/usr/share/datasets/fashion-mnist/train-{images-idx3,labels-idx1}-ubyte.gz"
    te_path = "/usr/share/datasets/fashion-mnist/t10k-{images-idx3,labels-idx1}-ubyte.gz"
    out = {
        "generated_by": "testdata/gen/fashion_finetune_ref.py (pretrained model: testdata/gen/fashion_pretrain.py)",
        "torch_version": torch.__version__,
        "pretrained": {
            "file": rel(onnx_path),
            "sha256": sha256_file(onnx_path),
            "architecture": "torchvision ResNet-18 topology (BasicBlock [2,2,2,2]), widths 8/16/32/64, "
                            "stem conv1 3x3 stride 1 (1->8 channels, no bias) + BN + ReLU + maxpool 3x3/s2/p1, "
                            "global average pool, fc Linear(64,5); ONNX opset 13 with BatchNormalization kept",
            "input": "float32 [N,1,28,28], pixel = uint8/255 (no normalisation)",
            "trained_on": "Fashion-MNIST TRAIN classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat), 30000 images",
            "tensors_loaded": n_tensors,
            "reference_output_max_abs_diff": ref_err,
            "t10k_classes_0_4_accuracy": pre_acc,
            "t10k_classes_0_4_correct": pre_correct,
            "t10k_classes_0_4_count": int(m04.sum()),
        },
        "classes": [fp.FASHION_CLASSES[c] for c in fp.DEMO_CLASSES],
        "label_map": {str(c): c - fp.DEMO_CLASSES[0] for c in fp.DEMO_CLASSES},
        "finetune": {
            "head": "fc replaced by Linear(64, 5), torch default init (kaiming_uniform a=sqrt(5): "
                    "weight and bias ~ U(-1/8, 1/8)) right after torch.manual_seed(seed)",
            "backbone": "frozen: requires_grad=False, eval mode (BatchNorm uses running statistics)",
            "optimizer": "SGD", "lr": LR, "momentum": MOMENTUM, "dampening": 0.0, "nesterov": False,
            "weight_decay": 0.0,
            "loss": "mean cross-entropy over the batch",
            "batch": BATCH, "drop_last": False, "epochs": EPOCHS,
            "shuffle": "every epoch torch.randperm(n, generator=torch.Generator().manual_seed(seed)) "
                       "(one generator per run, advanced epoch by epoch)",
            "augmentation": "none",
            "seeds": SEEDS,
            "evaluation": "val accuracy (argmax of logits) after every epoch; "
                          "final = after the last epoch, best = max over epochs",
        },
        "split": {
            "rule": "perm = numpy.random.RandomState(split_seed).permutation(60000) over the Fashion-MNIST TRAIN "
                    "file; for each class c in 5..9, order_c = the indices i in perm (in perm order) with "
                    "label[i] == c. demo train = order_c[:200], demo val = order_c[200:300], "
                    "b train = order_c[:1000]; each set is used in ascending TRAIN-file index order "
                    "(the demo IDX files store their images in that order). b val = every t10k image "
                    "with label in 5..9, in file order. Labels are remapped c -> c-5. "
                    "Indices are 0-based image positions in the IDX files.",
            "split_seed": fp.SPLIT_SEED,
        },
        "settings": {
            "a": {
                "description": "committed demo sample (200/class train, 100/class val)",
                "train": files["train"],
                "val": files["val"],
                "summary": results["a"][1],
                "results_by_seed": results["a"][0],
            },
            "b": {
                "description": "Fashion-MNIST TRAIN classes 5-9, 1000/class (split rule) for training; "
                               "all 5000 t10k images of classes 5-9 for validation",
                "train": {"images_and_labels": tr_path, "per_class": B_TRAIN_PER_CLASS,
                          "count": int(b_tr_idx.shape[0]), "indices": b_tr_idx.tolist()},
                "val": {"images_and_labels": te_path,
                        "rule": "every t10k image with label in 5..9, in file order",
                        "count": int(b_va_idx.shape[0])},
                "summary": results["b"][1],
                "results_by_seed": results["b"][0],
            },
        },
        "sanity_check": {
            "description": "fine-tuned head after setting b, seed 0, all epochs; put it into "
                           "pretrained.onnx as fc (Gemm, weight [5,64] used transposed: "
                           "logits = feat @ W^T + b) and score the b val set",
            "setting": "b", "seed": 0, "epochs": EPOCHS,
            "head": head_json(heads["b"]),
            "val_correct": b_correct,
            "val_accuracy": b_correct / int(b_va_idx.shape[0]),
        },
        "exact_check": exact,
    }
    with open(args.out, "w") as f:
        f.write(to_json(out) + "\n")
    print(f"wrote {rel(args.out)} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
