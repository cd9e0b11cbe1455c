#!/usr/bin/python3
"""Generate reference ONNX models for graft's tests.

Layout (ONNX backend-test style):
    <out>/<name>/model.onnx
    <out>/<name>/test_data_set_0/input_0.pb    seeded uniform [0,1) input, batch 2
    <out>/<name>/test_data_set_0/output_0.pb   PyTorch's output for input_0

Usage:
    export_models.py --small [OUTDIR]   # default <repo>/testdata/models (committed)
    export_models.py --big   [OUTDIR]   # default <repo>/testdata/big    (gitignored)

Everything is seeded, so reruns write identical files.
"""

import argparse
import collections
import io
import os
import sys
import zlib

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import BasicBlock, conv1x1

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BATCH = 2


# ----------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------

class MnistCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(16 * 7 * 7, 32)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout(x)
        return self.fc2(x)


def base_grid(h, w):
    """(H*W, 3) rows [x, y, 1] of normalised pixel-centre coordinates
    (align_corners=False: x_j = (2j+1)/W - 1), row-major over (i, j)."""
    xs = (2.0 * torch.arange(w, dtype=torch.float64) + 1.0) / w - 1.0
    ys = (2.0 * torch.arange(h, dtype=torch.float64) + 1.0) / h - 1.0
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    g = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(h * w, 3)
    return g.to(torch.float32)


class STN(nn.Module):
    """Spatial transformer network (small), affine grid written by hand."""

    def __init__(self, h=28, w=28):
        super().__init__()
        self.h, self.w = h, w
        self.localization = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=7),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(True),
            nn.Conv2d(8, 10, kernel_size=5),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(True),
        )
        self.fc_loc = nn.Sequential(
            nn.Linear(10 * 3 * 3, 32),
            nn.ReLU(True),
            nn.Linear(32, 6),
        )
        self.register_buffer("base_grid", base_grid(h, w), persistent=False)
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def init_theta(self):
        # Near-identity (but not identity) transform from the start.
        with torch.no_grad():
            self.fc_loc[2].weight.mul_(0.1)
            self.fc_loc[2].bias.add_(torch.tensor([1, 0, 0, 0, 1, 0], dtype=torch.float32))

    def theta(self, x):
        xs = self.localization(x)
        xs = xs.reshape(-1, 10 * 3 * 3)
        return self.fc_loc(xs).reshape(-1, 2, 3)

    def affine_grid(self, theta):
        # (HW,3) @ (N,3,2) -> (N,HW,2) -> (N,H,W,2)
        g = torch.matmul(self.base_grid, theta.transpose(1, 2))
        return g.reshape(-1, self.h, self.w, 2)

    def stn(self, x):
        grid = self.affine_grid(self.theta(x))
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def forward(self, x):
        x = self.stn(x)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class TinyResNet(nn.Module):
    """torchvision ResNet-18 topology (BasicBlock, [2,2,2,2]) with reduced widths.

    Attribute names match torchvision.models.resnet.ResNet so exported node
    names are the same (/conv1/Conv, /layer1/layer1.0/..., /fc/Gemm)."""

    def __init__(self, widths=(8, 16, 32, 64), layers=(2, 2, 2, 2), num_classes=10):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
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

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def randomise_bn(model):
    """Give every BatchNorm non-trivial statistics and affine parameters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c) * 0.1)
                m.running_var.copy_(torch.rand(c) + 0.5)
                m.weight.copy_(torch.rand(c) + 0.5)
                m.bias.copy_(torch.randn(c) * 0.1)


# ----------------------------------------------------------------------------
# Export helpers
# ----------------------------------------------------------------------------

def seed_all(name):
    seed = zlib.crc32(name.encode()) & 0x7FFFFFFF
    torch.manual_seed(seed)
    np.random.seed(seed)
    return seed


def make_input(shape):
    return np.random.random_sample((BATCH,) + tuple(shape)).astype(np.float32)


def write_tensor(path, arr, name):
    t = onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name=name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def export(model, x, opset, keep_bn):
    buf = io.BytesIO()
    kwargs = dict(
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=opset,
    )
    if keep_bn:
        kwargs.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    else:
        kwargs.update(training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True)
    torch.onnx.export(model, (x,), buf, **kwargs)
    return buf.getvalue()


def op_histogram(m):
    return collections.Counter(n.op_type for n in m.graph.node)


SUMMARY = []


def save_case(outdir, name, model, x_np, opset, keep_bn=False, expect_bn=None):
    """Export model (already in eval mode) and write model + test data set."""
    model.eval()
    x = torch.from_numpy(x_np)
    with torch.no_grad():
        y = model(x).numpy()
    data = export(model, x, opset, keep_bn)
    m = onnx.load_from_string(data)
    onnx.checker.check_model(m, full_check=True)
    hist = op_histogram(m)
    if expect_bn is not None:
        has_bn = hist.get("BatchNormalization", 0) > 0
        if has_bn != expect_bn:
            raise SystemExit(f"{name}: BatchNormalization present={has_bn}, expected {expect_bn}")
    assert [i.name for i in m.graph.input] == ["input"], [i.name for i in m.graph.input]
    assert [o.name for o in m.graph.output] == ["output"]
    d = os.path.join(outdir, name)
    ds = os.path.join(d, "test_data_set_0")
    os.makedirs(ds, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    with open(path, "wb") as f:
        f.write(data)
    write_tensor(os.path.join(ds, "input_0.pb"), x_np, "input")
    write_tensor(os.path.join(ds, "output_0.pb"), y, "output")
    SUMMARY.append((name, opset, len(m.graph.node), hist, len(data), float(np.abs(y).max())))
    return d


def print_summary():
    print()
    print(f"{'name':28s} {'opset':>5s} {'nodes':>5s} {'bytes':>10s} {'max|y|':>9s}  ops")
    for name, opset, nodes, hist, size, ymax in SUMMARY:
        ops = ", ".join(f"{k}:{v}" for k, v in sorted(hist.items()))
        print(f"{name:28s} {opset:5d} {nodes:5d} {size:10d} {ymax:9.3g}  {ops}")


# ----------------------------------------------------------------------------
# Sets
# ----------------------------------------------------------------------------

def check_hand_grid():
    torch.manual_seed(0)
    theta = torch.eye(2, 3).unsqueeze(0).repeat(3, 1, 1) + 0.2 * torch.randn(3, 2, 3)
    stn = STN()
    mine = stn.affine_grid(theta)
    ref = F.affine_grid(theta, (3, 1, 28, 28), align_corners=False)
    err = (mine - ref).abs().max().item()
    if err > 1e-5:
        raise SystemExit(f"hand-written affine grid differs from F.affine_grid: {err}")
    print(f"hand affine grid vs F.affine_grid: max abs diff {err:.2e}")


def small_set(outdir):
    # cnn
    seed_all("cnn")
    model = MnistCNN().eval()
    save_case(outdir, "cnn", model, make_input((1, 28, 28)), 13)

    # stn
    check_hand_grid()
    seed_all("stn")
    model = STN()
    model.init_theta()
    model.eval()
    x_np = make_input((1, 28, 28))
    with torch.no_grad():
        th = model.theta(torch.from_numpy(x_np))
        ident = torch.tensor([[1, 0, 0], [0, 1, 0]], dtype=torch.float32)
        dev = (th - ident).abs().max().item()
        grid_err = (model.affine_grid(th) - F.affine_grid(th, (BATCH, 1, 28, 28), align_corners=False)).abs().max().item()
    print(f"stn: max |theta - identity| = {dev:.3g}, hand grid err on model theta = {grid_err:.2e}")
    if dev < 1e-3:
        raise SystemExit("stn theta is (nearly) identity")
    if grid_err > 1e-5:
        raise SystemExit("stn hand grid mismatch")
    save_case(outdir, "stn", model, x_np, 16)

    # tiny resnets: same weights and input for all four variants
    for opset in (13, 17):
        for variant in ("folded", "bn"):
            seed_all("resnet_tiny")
            model = TinyResNet()
            randomise_bn(model)
            model.eval()
            x_np = make_input((3, 64, 64))
            save_case(outdir, f"resnet_tiny_op{opset}_{variant}", model, x_np, opset,
                      keep_bn=(variant == "bn"), expect_bn=(variant == "bn"))


def big_set(outdir):
    for opset in (13, 17):
        for variant in ("folded", "bn"):
            seed_all("resnet18")
            model = torchvision.models.resnet18(weights=None)
            randomise_bn(model)
            model.eval()
            x_np = make_input((3, 224, 224))
            labels = np.random.randint(0, 1000, size=(BATCH,)).astype(np.int64)
            name = f"resnet18_op{opset}_{variant}"
            d = save_case(outdir, name, model, x_np, opset,
                          keep_bn=(variant == "bn"), expect_bn=(variant == "bn"))
            if opset == 13 and variant == "bn":
                x = torch.from_numpy(x_np).clone().requires_grad_(True)
                loss = F.cross_entropy(model(x), torch.from_numpy(labels))
                (g,) = torch.autograd.grad(loss, x)
                ds = os.path.join(d, "test_data_set_0")
                write_tensor(os.path.join(ds, "labels.pb"), labels, "labels")
                write_tensor(os.path.join(ds, "grad_input_0.pb"), g.numpy().astype(np.float32), "grad_input")
                print(f"{name}: loss {loss.item():.6g}, max|grad| {g.abs().max().item():.3g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    grp = ap.add_mutually_exclusive_group(required=True)
    grp.add_argument("--small", action="store_true", help="write the small (committed) set")
    grp.add_argument("--big", action="store_true", help="write the full-size set")
    ap.add_argument("outdir", nargs="?", help="output directory")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.small:
        outdir = args.outdir or os.path.join(REPO_ROOT, "testdata", "models")
        small_set(outdir)
    else:
        outdir = args.outdir or os.path.join(REPO_ROOT, "testdata", "big")
        big_set(outdir)
    print_summary()
    print(f"\nwrote {outdir}")


if __name__ == "__main__":
    main()
