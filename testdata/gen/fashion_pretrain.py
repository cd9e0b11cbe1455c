#!/usr/bin/python3
"""Build the embedded default model and data for `graft demo` (issue 4).

Writes, into cmd/graft/demo/ (or OUTDIR):

    pretrained.onnx                      small ResNet trained on Fashion-MNIST
                                         classes 0-4; opset 13, BatchNormalization
                                         kept; input "input" float32 [batch,1,28,28]
                                         pixels in [0,1]; output "output" = logits [batch,5];
                                         one initializer per state_dict tensor, named
                                         like torchvision (conv1.weight, layer1.0.bn1.bias, fc.weight...)
    pretrained_test_data/input_0.pb      2 real t10k images (see REF_RULE below)
    pretrained_test_data/output_0.pb     PyTorch's logits for them
    train-images-idx3-ubyte.gz           demo fine-tuning data: Fashion-MNIST TRAIN
    train-labels-idx1-ubyte.gz           classes 5-9, 200 per class, labels 5..9 -> 0..4
    val-images-idx3-ubyte.gz             demo validation data: 100 per class, same
    val-labels-idx1-ubyte.gz             source and remap, disjoint from the train sample
    classes.txt                          the 5 new class names, in label order

Usage:
    fashion_pretrain.py [OUTDIR]              # train + export + demo data
    fashion_pretrain.py --data-only [OUTDIR]  # demo data only (no training)

Fully seeded; with 2 torch threads and deterministic algorithms a rerun writes
byte-identical files. Training takes a few minutes on 2 cores.

The demo split (shared with fashion_finetune_ref.py, which records the exact
indices in fashion_finetune_ref.json): perm = numpy.random.RandomState(SPLIT_SEED)
.permutation(60000) over the TRAIN file; for each class c in 5..9 walk perm and
keep the indices whose label is c, in perm order -> order_c. Demo train =
order_c[:200], demo val = order_c[200:300]. Each demo file lists its images in
ascending TRAIN-file index order.
"""

import argparse
import gzip
import io
import os
import struct
import sys
import time

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock, conv1x1

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DEMO_DIR = os.path.join(REPO_ROOT, "cmd", "graft", "demo")
DATA_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PRETRAIN_CLASSES = [0, 1, 2, 3, 4]
DEMO_CLASSES = [5, 6, 7, 8, 9]          # remapped to 0..4 in this order

# Pretraining hyper-parameters.
TRAIN_SEED = 1234
EPOCHS = 3
BATCH = 128
PEAK_LR = 0.1
WARMUP_STEPS = 100
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
OPSET = 13

# Demo split.
SPLIT_SEED = 4
DEMO_TRAIN_PER_CLASS = 200
DEMO_VAL_PER_CLASS = 100

# Reference input for pretrained_test_data: the first REF_COUNT t10k images whose
# label is in PRETRAIN_CLASSES, in file order.
REF_COUNT = 2


def setup_torch():
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------

class FashionResNet(nn.Module):
    """torchvision ResNet-18 topology (BasicBlock, [2,2,2,2]), widths 8/16/32/64,
    stem adapted to 1x28x28: conv1 3x3 stride 1 (1->8) + BN + ReLU, then the usual
    3x3/s2 maxpool, so layer1..4 run at 14, 7, 4, 2 pixels. Attribute names match
    torchvision.models.resnet.ResNet (conv1, bn1, layer1.0.conv1, ..., fc), so the
    ONNX initializers are named like a torchvision state_dict."""

    def __init__(self, widths=(8, 16, 32, 64), layers=(2, 2, 2, 2), num_classes=5):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(1, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], layers[0], stride=1)
        self.layer2 = self._make_layer(widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * BasicBlock.expansion, stride),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        mods = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        for _ in range(1, blocks):
            mods.append(BasicBlock(self.inplanes, planes))
        return nn.Sequential(*mods)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        return self.fc(self.features(x))


# ----------------------------------------------------------------------------
# IDX files
# ----------------------------------------------------------------------------

def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    if magic >> 8 != 0x08:  # uint8 element type
        raise SystemExit(f"{path}: unexpected IDX magic {magic:#x}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: size {arr.size} != {dims}")
    return arr.reshape(dims)


def write_idx_gz(path, arr):
    """uint8 IDX file, gzip level 9 with a zero mtime and no file name (reproducible)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
            f.write(header)
            f.write(arr.tobytes())


def load_fashion(split):
    """split 'train' or 't10k' -> (uint8 [N,28,28], uint8 [N])."""
    x = read_idx(os.path.join(DATA_DIR, f"{split}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(DATA_DIR, f"{split}-labels-idx1-ubyte.gz"))
    assert x.shape[0] == y.shape[0] and x.shape[1:] == (28, 28), (x.shape, y.shape)
    return x, y


def to_input(x_u8):
    """uint8 [N,28,28] -> float32 [N,1,28,28] = x/255 (the model's input convention)."""
    return (x_u8.astype(np.float32) / np.float32(255.0))[:, None, :, :]


def class_orders(labels, classes, seed):
    """{c: TRAIN indices of class c in the order of a seeded permutation}."""
    perm = np.random.RandomState(seed).permutation(labels.shape[0])
    return {c: perm[labels[perm] == c] for c in classes}


def demo_split(labels):
    """(train_idx, val_idx): ascending TRAIN-file indices of the demo sample."""
    orders = class_orders(labels, DEMO_CLASSES, SPLIT_SEED)
    tr = np.concatenate([orders[c][:DEMO_TRAIN_PER_CLASS] for c in DEMO_CLASSES])
    va = np.concatenate([orders[c][DEMO_TRAIN_PER_CLASS:DEMO_TRAIN_PER_CLASS + DEMO_VAL_PER_CLASS]
                         for c in DEMO_CLASSES])
    return np.sort(tr), np.sort(va)


def remap_demo(labels):
    out = labels.astype(np.int64) - DEMO_CLASSES[0]
    assert out.min() >= 0 and out.max() < len(DEMO_CLASSES)
    return out.astype(np.uint8)


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------

def lr_at(step, total):
    if step < WARMUP_STEPS:
        return PEAK_LR * (step + 1) / WARMUP_STEPS
    t = (step - WARMUP_STEPS) / max(1, total - WARMUP_STEPS)
    return 0.5 * PEAK_LR * (1.0 + np.cos(np.pi * t))


@torch.no_grad()
def accuracy(model, x, y, batch=500):
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch):
        correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / x.shape[0]


def pretrain():
    xtr, ytr = load_fashion("train")
    xte, yte = load_fashion("t10k")
    mtr = np.isin(ytr, PRETRAIN_CLASSES)
    mte = np.isin(yte, PRETRAIN_CLASSES)
    x = torch.from_numpy(to_input(xtr[mtr]))
    y = torch.from_numpy(ytr[mtr].astype(np.int64))
    xt = torch.from_numpy(to_input(xte[mte]))
    yt = torch.from_numpy(yte[mte].astype(np.int64))
    print(f"pretrain: {x.shape[0]} train / {xt.shape[0]} t10k images, classes {PRETRAIN_CLASSES}")

    torch.manual_seed(TRAIN_SEED)
    gen = torch.Generator().manual_seed(TRAIN_SEED)
    model = FashionResNet()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": WEIGHT_DECAY},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=PEAK_LR, momentum=MOMENTUM, nesterov=True)
    n = x.shape[0]
    steps_per_epoch = (n + BATCH - 1) // BATCH
    total = EPOCHS * steps_per_epoch
    step = 0
    t0 = time.time()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(n, generator=gen)
        loss_sum, seen = 0.0, 0
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            xb = x[idx]
            # Random horizontal flip (seeded).
            flip = torch.rand(idx.shape[0], generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), y[idx])
            loss.backward()
            opt.step()
            step += 1
            loss_sum += float(loss) * idx.shape[0]
            seen += idx.shape[0]
        acc = accuracy(model, xt, yt)
        print(f"  epoch {epoch + 1}/{EPOCHS}: train loss {loss_sum / seen:.4f}, "
              f"t10k[0-4] acc {acc:.4f}  ({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    return model, acc


@torch.no_grad()
def fold_downsample_bias(model):
    """Move each downsample BatchNorm bias into the block's bn2 bias.

    In a BasicBlock with a downsample the two BN outputs are added before the
    ReLU, so only the sum of the two biases matters; both get the same gradient
    and start at 0, so after training they are bitwise equal. torch.onnx.export
    of an eval model then merges equal initializers into one plus an Identity
    node (layerN.0.downsample.1.bias = Identity(layerN.0.bn2.bias)). Folding the
    sum into bn2.bias and zeroing the downsample bias keeps every parameter its
    own initializer; the function changes only by float rounding."""
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for blk in layer:
            if blk.downsample is not None:
                ds_bn = blk.downsample[1]
                blk.bn2.bias.add_(ds_bn.bias)
                ds_bn.bias.zero_()


# ----------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------

def write_tensor(path, arr, name):
    t = onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name=name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def export_onnx(model, x):
    buf = io.BytesIO()
    torch.onnx.export(
        model, (x,), buf,
        input_names=["input"], output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=OPSET,
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
    )
    data = buf.getvalue()
    m = onnx.load_from_string(data)
    onnx.checker.check_model(m, full_check=True)
    ops = {}
    for node in m.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    assert ops.get("BatchNormalization", 0) == 20, ops
    assert "Identity" not in ops, ops
    assert [i.name for i in m.graph.input] == ["input"]
    assert [o.name for o in m.graph.output] == ["output"]
    inits = {i.name for i in m.graph.initializer}
    want = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert inits == want, sorted(inits ^ want)
    return data, ops


def reference_input():
    xte, yte = load_fashion("t10k")
    idx = np.nonzero(np.isin(yte, PRETRAIN_CLASSES))[0][:REF_COUNT]
    return idx, to_input(xte[idx]), yte[idx]


def write_model(outdir, model):
    idx, x_np, labels = reference_input()
    x = torch.from_numpy(x_np)
    with torch.no_grad():
        y = model(x).numpy()
    data, ops = export_onnx(model, x)
    with open(os.path.join(outdir, "pretrained.onnx"), "wb") as f:
        f.write(data)
    ds = os.path.join(outdir, "pretrained_test_data")
    os.makedirs(ds, exist_ok=True)
    write_tensor(os.path.join(ds, "input_0.pb"), x_np, "input")
    write_tensor(os.path.join(ds, "output_0.pb"), y, "output")
    print(f"pretrained.onnx: {len(data)} bytes, ops {dict(sorted(ops.items()))}")
    print(f"reference input: t10k indices {idx.tolist()} labels {labels.tolist()}, "
          f"predicted {y.argmax(1).tolist()}")


def write_demo_data(outdir):
    xtr, ytr = load_fashion("train")
    tr, va = demo_split(ytr)
    for name, idx in (("train", tr), ("val", va)):
        write_idx_gz(os.path.join(outdir, f"{name}-images-idx3-ubyte.gz"), xtr[idx])
        write_idx_gz(os.path.join(outdir, f"{name}-labels-idx1-ubyte.gz"), remap_demo(ytr[idx]))
        counts = np.bincount(remap_demo(ytr[idx]), minlength=len(DEMO_CLASSES))
        print(f"demo {name}: {idx.shape[0]} images, per class {counts.tolist()}")
    with open(os.path.join(outdir, "classes.txt"), "w") as f:
        for c in DEMO_CLASSES:
            f.write(FASHION_CLASSES[c] + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", nargs="?", default=DEMO_DIR)
    ap.add_argument("--data-only", action="store_true", help="write the demo data only")
    args = ap.parse_args()
    setup_torch()
    os.makedirs(args.outdir, exist_ok=True)
    write_demo_data(args.outdir)
    if not args.data_only:
        model, acc = pretrain()
        print(f"pretrained accuracy on t10k classes 0-4 (before folding): {acc:.4f}")
        fold_downsample_bias(model)
        write_model(args.outdir, model)
    total = 0
    for root, _, files in os.walk(args.outdir):
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    print(f"{args.outdir}: {total} bytes in total")


if __name__ == "__main__":
    sys.exit(main())
