#!/usr/bin/python3
"""Export every classification family of torchvision 0.14 with PyTorch's
references, for graft's family checks (cmd/graft/families_test.go).

Usage:
    families.py --small [--family NAME,...] [OUTDIR]   # default <repo>/testdata/big/families/small
    families.py --full  [--family NAME,...] [OUTDIR]   # default <repo>/testdata/big/families/full

--full exports the architectures as torchvision defines them (one per
family, e.g. vit_b_16, vgg16_bn) at their usual input size; --small exports
width-reduced or small-input variants built from the same torchvision
classes and blocks, with the same operators, for CI.

Weights are seeded random (no pretrained weights exist here): parameters
that torchvision initialises to a constant (LayerNorm, BatchNorm affine,
biases, ViT's zero head and class token, ConvNeXt's 1e-6 layer scale) are
perturbed so that none is trivial, and BatchNorm running statistics are
calibrated on a batch of random inputs so activations stay in range.

Each family, in OUTDIR/<family>/:
    op13_eval.onnx, op17_eval.onnx          TrainingMode.EVAL, constant folding (BN folded into Conv)
    op13_preserve.onnx, op17_preserve.onnx  TrainingMode.PRESERVE of the model in eval mode,
                                            no constant folding: BatchNormalization kept, every
                                            parameter an initializer named as in the state_dict
    ref/input.pb        float32 [2,3,S,S], N(0,1): what a normalised image looks like
    ref/labels.pb       int64 [2]
    ref/output32.pb     PyTorch's eval output in float32
    ref/grad_input32.pb d mean cross-entropy / d input, eval mode, float32
    ref/<export>/output64.pb, ref/<export>/grad_input64.pb
                        the same in float64, of the function the export describes: PyTorch
                        computing, in float64, the model with the export's float32 constants
                        (see exported_function)
    ref/train/loss.json train-mode loss (float32, float64)
    ref/train/grad32/NNNN.pb, ref/train/grad64/NNNN.pb
                        d loss / d parameter in train mode (BatchNorm on batch statistics,
                        Dropout and stochastic depth off, as the exported graph is), one file
                        per parameter, the TensorProto's name the parameter's name
    info.json           the torchvision architecture, input size, parameter count, export
                        times, operator histogram of each export

Train mode here is what graft's training step does with a PRESERVE export:
the exports come from the model in eval mode, so Dropout and stochastic
depth are not in the graph (they are the identity in eval mode); BatchNorm
is, and trains on batch statistics. Exporting the model in train mode
instead is what fails for ConvNeXt, EfficientNet and Swin: their stochastic
depth draws with aten::bernoulli_, which torch.onnx 1.13 cannot export.

Everything is seeded; reruns write identical files.
"""

import argparse
import collections
import copy
import io
import json
import os
import shutil
import sys
import time
import zlib
from functools import partial

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision import models as tvm
from torchvision.models import convnext, efficientnet, inception, mobilenetv3, regnet, resnet, vgg
from torchvision.ops import StochasticDepth

# torchvision.models.googlenet is also the name of the constructor.
tv_googlenet = sys.modules["torchvision.models.googlenet"]

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BATCH = 2
CLASSES = 1000
OPSETS = (13, 17)
MODES = ("eval", "preserve")


# ----------------------------------------------------------------------------
# Small variants: torchvision's classes and blocks, fewer channels or a
# smaller input, the same operators.
# ----------------------------------------------------------------------------

def small_alexnet():
    m = tvm.AlexNet(num_classes=CLASSES)
    m.features = nn.Sequential(
        nn.Conv2d(3, 16, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(16, 48, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(48, 96, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(96, 64, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
    m.classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(64 * 6 * 6, 256), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(256, 256), nn.ReLU(inplace=True), nn.Linear(256, CLASSES))
    return m


def small_vgg():
    cfg = [c if c == "M" else c // 8 for c in vgg.cfgs["A"]]
    m = vgg.VGG(vgg.make_layers(cfg, batch_norm=True), num_classes=CLASSES)
    m.classifier = nn.Sequential(
        nn.Linear(64 * 7 * 7, 256), nn.ReLU(True), nn.Dropout(0.5),
        nn.Linear(256, 256), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(256, CLASSES))
    return m


class NarrowResNet(resnet.ResNet):
    """torchvision's ResNet with every width divided by div."""

    def __init__(self, block, layers, div, **kwargs):
        self.div = div
        super().__init__(block, layers, num_classes=CLASSES, **kwargs)
        w = 64 // div
        self.conv1 = nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.fc = nn.Linear(512 // div * block.expansion, CLASSES)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:  # the first stage: the stem's width
            self.inplanes = 64 // self.div
        return super()._make_layer(block, planes // self.div, blocks, stride, dilate)


def narrow_conv(cls, div):
    """A conv_block factory for GoogLeNet and Inception v3 that divides
    every width (but the image's 3 channels) by div."""
    def make(in_channels, out_channels, **kwargs):
        return cls(in_channels if in_channels == 3 else in_channels // div, out_channels // div, **kwargs)
    return make


def small_googlenet():
    conv = narrow_conv(tv_googlenet.BasicConv2d, 4)
    m = tv_googlenet.GoogLeNet(num_classes=CLASSES, aux_logits=False, init_weights=True,
                               blocks=[conv, partial(tv_googlenet.Inception, conv_block=conv), tv_googlenet.InceptionAux])
    m.fc = nn.Linear(1024 // 4, CLASSES)
    return m


def small_inception_v3():
    conv = narrow_conv(inception.BasicConv2d, 4)
    blocks = [conv] + [partial(b, conv_block=conv) for b in (inception.InceptionA, inception.InceptionB, inception.InceptionC,
                                                            inception.InceptionD, inception.InceptionE)] + [inception.InceptionAux]
    m = inception.Inception3(num_classes=CLASSES, aux_logits=False, init_weights=True, inception_blocks=blocks)
    m.fc = nn.Linear(2048 // 4, CLASSES)
    return m


def small_convnext():
    cfg = convnext.CNBlockConfig
    return convnext.ConvNeXt([cfg(16, 32, 2), cfg(32, 64, 2), cfg(64, 128, 2), cfg(128, None, 2)],
                             stochastic_depth_prob=0.1, num_classes=CLASSES)


def small_efficientnet():
    setting, last = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.5)
    return efficientnet.EfficientNet(setting, dropout=0.2, stochastic_depth_prob=0.2, num_classes=CLASSES, last_channel=last)


def small_efficientnet_v2():
    fused, mb = efficientnet.FusedMBConvConfig, efficientnet.MBConvConfig
    setting = [fused(1, 3, 1, 8, 8, 1), fused(4, 3, 2, 8, 16, 2), mb(4, 3, 2, 16, 32, 2), mb(6, 3, 2, 32, 48, 2)]
    return efficientnet.EfficientNet(setting, dropout=0.2, stochastic_depth_prob=0.2, num_classes=CLASSES,
                                     norm_layer=partial(nn.BatchNorm2d, eps=1e-03), last_channel=128)


def small_mobilenet_v3():
    setting, last = mobilenetv3._mobilenet_v3_conf("mobilenet_v3_large", width_mult=0.25)
    return mobilenetv3.MobileNetV3(setting, last, num_classes=CLASSES)


def small_regnet():
    params = regnet.BlockParams.from_init_params(depth=6, w_0=16, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25)
    return regnet.RegNet(params, num_classes=CLASSES, stem_width=8)


def small_swin():
    return tvm.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
                               window_size=[4, 4], stochastic_depth_prob=0.2, num_classes=CLASSES)


def small_vit():
    return tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                 num_classes=CLASSES)


# family -> (full architecture, its input size, small variant, its input size)
FAMILIES = collections.OrderedDict([
    ("alexnet", ("alexnet", lambda: tvm.alexnet(), 224, small_alexnet, 224)),
    ("convnext", ("convnext_tiny", lambda: tvm.convnext_tiny(), 224, small_convnext, 64)),
    ("densenet", ("densenet121", lambda: tvm.densenet121(),
                  224, lambda: tvm.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, bn_size=2), 64)),
    ("efficientnet", ("efficientnet_b0", lambda: tvm.efficientnet_b0(), 224, small_efficientnet, 64)),
    ("efficientnet_v2", ("efficientnet_v2_s", lambda: tvm.efficientnet_v2_s(), 384, small_efficientnet_v2, 64)),
    ("googlenet", ("googlenet", lambda: tvm.googlenet(aux_logits=False, init_weights=True), 224, small_googlenet, 64)),
    ("inception_v3", ("inception_v3", lambda: tvm.inception_v3(aux_logits=False, init_weights=True), 299, small_inception_v3, 139)),
    ("mnasnet", ("mnasnet1_0", lambda: tvm.mnasnet1_0(), 224, lambda: tvm.MNASNet(0.25, num_classes=CLASSES), 64)),
    ("mobilenet_v2", ("mobilenet_v2", lambda: tvm.mobilenet_v2(), 224, lambda: tvm.MobileNetV2(width_mult=0.25), 64)),
    ("mobilenet_v3", ("mobilenet_v3_large", lambda: tvm.mobilenet_v3_large(), 224, small_mobilenet_v3, 64)),
    ("regnet", ("regnet_y_400mf", lambda: tvm.regnet_y_400mf(), 224, small_regnet, 64)),
    ("resnet", ("resnet50", lambda: tvm.resnet50(), 224, lambda: NarrowResNet(resnet.Bottleneck, [1, 1, 1, 1], 8), 64)),
    ("resnext", ("resnext50_32x4d", lambda: tvm.resnext50_32x4d(),
                 224, lambda: NarrowResNet(resnet.Bottleneck, [1, 1, 1, 1], 8, groups=4, width_per_group=16), 64)),
    ("shufflenet_v2", ("shufflenet_v2_x1_0", lambda: tvm.shufflenet_v2_x1_0(),
                       224, lambda: tvm.ShuffleNetV2([2, 2, 2], [8, 16, 32, 64, 128], num_classes=CLASSES), 64)),
    ("squeezenet", ("squeezenet1_1", lambda: tvm.squeezenet1_1(), 224, lambda: tvm.SqueezeNet("1_1", num_classes=CLASSES), 64)),
    ("swin", ("swin_t", lambda: tvm.swin_t(), 224, small_swin, 64)),
    ("vgg", ("vgg16_bn", lambda: tvm.vgg16_bn(), 224, small_vgg, 224)),
    ("vit", ("vit_b_16", lambda: tvm.vit_b_16(), 224, small_vit, 32)),
    ("wide_resnet", ("wide_resnet50_2", lambda: tvm.wide_resnet50_2(),
                     224, lambda: NarrowResNet(resnet.Bottleneck, [1, 1, 1, 1], 8, width_per_group=128), 64)),
])


# ----------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------

def seed_all(name):
    seed = zlib.crc32(name.encode()) & 0x7FFFFFFF
    torch.manual_seed(seed)
    np.random.seed(seed)
    return seed


def randomise(model, size):
    """Weights a trained network could have: none constant, every layer's
    output of unit scale, BatchNorm statistics those of the layer's input,
    logits of a few units. Returns the head (the last Linear, or
    SqueezeNet's 1x1 Conv, to the classes)."""
    head = [m for m in model.modules() if getattr(m, "out_features", getattr(m, "out_channels", 0)) == CLASSES][-1]
    calibration = torch.randn(8, 3, size, size)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.numel() > 1 and (p != p.flatten()[0]).any():
                continue  # not a constant (std() is not 0 for some constants: rounding)
            if p.dim() == 2:  # a zero-initialised Linear (ViT's head)
                p.normal_(0, p.shape[1] ** -0.5)
            else:  # norm scales and shifts, biases, layer scales, class tokens
                p.add_(0.1 * torch.randn_like(p))
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in bns:
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.2)
        # Unit-scale outputs layer by layer (LSUV): without it the default
        # initialisations shrink the signal through a deep net without
        # normalisation (AlexNet's features on real images are 1e-2 and
        # nearly constant), and fine-tuning a new head on them cannot learn.
        # One forward pass does it: each layer's hook rescales the layer and
        # hands the rescaled output on, so the layers after it see what they
        # would see had it been rescaled first.
        model.eval()
        done = set()

        def unit_scale(layer, inputs, out):
            if layer in done:  # a layer called twice keeps its first scale
                return None
            done.add(layer)
            s = out.std().item()
            layer.weight.div_(s)
            if layer.bias is not None:
                layer.bias.div_(s)
            return out / s

        hooks = [m.register_forward_hook(unit_scale) for m in model.modules()
                 if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not head]
        model(calibration)
        for h in hooks:
            h.remove()
        if bns:
            # A cumulative average over a few batches in train mode: each
            # layer's running statistics become those of its input, with the
            # layers before it normalised the same way.
            saved = [(m, m.momentum) for m in bns]
            for m in bns:
                m.reset_running_stats()
                m.momentum = None
            train_mode(model)
            for _ in range(4):
                model(torch.randn(8, 3, size, size))
            for m, mom in saved:
                m.momentum = mom
        model.eval()
        s = 3 / model(calibration).std().item()
        head.weight.mul_(s)
        head.bias.mul_(s)
    return head


# ----------------------------------------------------------------------------
# Export and references
# ----------------------------------------------------------------------------

def export(model, x, opset, mode):
    buf = io.BytesIO()
    kwargs = dict(input_names=["input"], output_names=["output"],
                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=opset)
    if mode == "preserve":
        kwargs.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    else:
        kwargs.update(training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True)
    torch.onnx.export(model, (x,), buf, **kwargs)
    return buf.getvalue()


def write_tensor(path, arr, name):
    t = onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name=name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def train_mode(model):
    """PyTorch's train mode as the exported graph has it: BatchNorm on batch
    statistics, Dropout and stochastic depth off (they are not in the graph)."""
    model.train()
    for m in model.modules():
        if isinstance(m, (nn.Dropout, StochasticDepth)):
            m.eval()
    return model


class OnnxHardSigmoid(nn.Module):
    """HardSigmoid as torch.onnx writes it: alpha the float32 nearest 1/6."""
    alpha = float(np.float32(1 / 6))

    def forward(self, x):
        return torch.clamp(x * self.alpha + 0.5, 0, 1)


class OnnxHardSwish13(OnnxHardSigmoid):
    """Hardswish at opsets before 14: x * HardSigmoid(x)."""

    def forward(self, x):
        return x * super().forward(x)


def exported_function(model, export_model, opset, mode, x):
    """The function an export describes, as a PyTorch module: model with the
    export's float32 constants where they differ from the module's.

    The references graft is held to are this module computed in float64. A
    float32 constant moves a kink: torch.onnx writes Hardswish at opset 13
    as x * HardSigmoid(x) with alpha = float32(1/6), whose upper kink is at
    2.99999991 rather than 3, and an eval export folds BatchNorm into the
    Conv before it in float32. Both are smooth changes of about 1e-7, but an
    activation that lands between the two kinks (full-size MobileNetV3 has
    one in its first block) changes the input gradient of its whole
    receptive field by O(1): PyTorch float64 of the module is then not a
    reference for the export, only for the module."""
    m = copy.deepcopy(model).eval()
    parent = {}
    for name, mod in m.named_modules():
        for child_name, child in mod.named_children():
            parent[child] = (mod, child_name)
    for mod in list(m.modules()):
        if isinstance(mod, nn.Hardsigmoid):
            setattr(*parent[mod], OnnxHardSigmoid())
        elif isinstance(mod, nn.Hardswish) and opset < 14:
            setattr(*parent[mod], OnnxHardSwish13())
    if mode != "eval":
        return m

    # Pair each Conv with the BatchNorm that reads its output, in the order
    # they run, which is the order of the export's Conv nodes.
    convs, bn_of, out_of = [], {}, {}

    def conv_hook(conv, inputs, out):
        convs.append(conv)
        out_of[id(out)] = (conv, out)  # out kept alive: its id is not reused

    def bn_hook(bn, inputs, out):
        conv, _ = out_of.get(id(inputs[0]), (None, None))
        if conv is not None:
            bn_of[conv] = bn

    hooks = [mod.register_forward_hook(conv_hook if isinstance(mod, nn.Conv2d) else bn_hook)
             for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.modules.batchnorm._BatchNorm))]
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in export_model.graph.initializer}
    nodes = [n for n in export_model.graph.node if n.op_type == "Conv"]
    if len(nodes) != len(convs):
        raise SystemExit(f"exported_function: {len(nodes)} Conv nodes in the export, {len(convs)} Conv2d calls")
    with torch.no_grad():
        for conv, node in zip(convs, nodes):
            w = inits[node.input[1]]
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise SystemExit(f"exported_function: Conv {node.name} weight {w.shape}, module {tuple(conv.weight.shape)}")
            bn = bn_of.get(conv)
            if bn is None:
                if not np.array_equal(w, conv.weight.numpy()):
                    raise SystemExit(f"exported_function: Conv {node.name} is not the module's Conv2d it pairs with")
                continue
            # What the export's weights should be, to check the pairing.
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            want = conv.weight * s.reshape(-1, 1, 1, 1)
            if not np.allclose(w, want.numpy(), rtol=1e-4, atol=1e-6 * float(want.abs().max())):
                raise SystemExit(f"exported_function: Conv {node.name} is not the module's Conv2d+BatchNorm folded")
            conv.weight.copy_(torch.from_numpy(w))
            conv.bias = nn.Parameter(torch.from_numpy(inits[node.input[2]].copy()))
            setattr(*parent[bn], nn.Identity())
    folded = len(bn_of)
    bns = sum(isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in model.modules())
    left = sum(n.op_type == "BatchNormalization" for n in export_model.graph.node)
    if bns - folded != left:
        raise SystemExit(f"exported_function: {bns} BatchNorms, {folded} folded, but {left} left in the export")
    return m


def export_references(model, x_np, labels_np, refdir):
    """PyTorch float64's eval output and input gradient of the function an
    export describes (see exported_function)."""
    os.makedirs(refdir, exist_ok=True)
    m = model.to(torch.float64).eval()
    x = torch.from_numpy(x_np).to(torch.float64).requires_grad_(True)
    y = m(x)
    (g,) = torch.autograd.grad(F.cross_entropy(y, torch.from_numpy(labels_np)), x)
    write_tensor(os.path.join(refdir, "output64.pb"), y.detach().numpy(), "output")
    write_tensor(os.path.join(refdir, "grad_input64.pb"), g.numpy(), "grad_input")


def references(model, x_np, labels_np, refdir):
    """PyTorch's outputs and gradients of the module, float32 and float64
    (each export's own float64 references are export_references')."""
    os.makedirs(refdir, exist_ok=True)
    write_tensor(os.path.join(refdir, "input.pb"), x_np, "input")
    write_tensor(os.path.join(refdir, "labels.pb"), labels_np, "labels")
    labels = torch.from_numpy(labels_np)
    params = [n for n, p in model.named_parameters()]
    losses = {}
    for bits, dtype in ((32, torch.float32), (64, torch.float64)):
        m = copy.deepcopy(model).to(dtype).eval()
        x = torch.from_numpy(x_np).to(dtype).requires_grad_(True)
        y = m(x)
        loss = F.cross_entropy(y, labels)
        (g,) = torch.autograd.grad(loss, x)
        if bits == 32:
            write_tensor(os.path.join(refdir, "output32.pb"), y.detach().numpy(), "output")
            write_tensor(os.path.join(refdir, "grad_input32.pb"), g.numpy(), "grad_input")
        losses[f"eval{bits}"] = loss.item()

        m = train_mode(copy.deepcopy(model).to(dtype))
        loss = F.cross_entropy(m(torch.from_numpy(x_np).to(dtype)), labels)
        grads = torch.autograd.grad(loss, [p for _, p in m.named_parameters()])
        gdir = os.path.join(refdir, "train", f"grad{bits}")
        os.makedirs(gdir, exist_ok=True)
        for i, (name, g) in enumerate(zip(params, grads)):
            write_tensor(os.path.join(gdir, f"{i:04d}.pb"), g.numpy(), name)
        losses[f"train{bits}"] = loss.item()
    with open(os.path.join(refdir, "train", "loss.json"), "w") as f:
        json.dump(losses, f, indent=1, sort_keys=True)
        f.write("\n")
    return losses


def make_family(family, full, outdir):
    arch, make_full, full_size, make_small, small_size = FAMILIES[family]
    make, size = (make_full, full_size) if full else (make_small, small_size)
    seed_all(family)
    model = make()
    head = randomise(model, size)
    x_np = np.random.standard_normal((BATCH, 3, size, size)).astype(np.float32)
    labels_np = np.random.randint(0, CLASSES, size=(BATCH,)).astype(np.int64)
    d = os.path.join(outdir, family)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    info = collections.OrderedDict(family=family, architecture=arch, size="full" if full else "small",
                                   input=[BATCH, 3, size, size], parameters=sum(p.numel() for p in model.parameters()),
                                   head_in_features=getattr(head, "in_features", getattr(head, "in_channels", 0)),
                                   torch=torch.__version__, torchvision=torchvision.__version__, exports={})
    t0 = time.time()
    losses = references(model, x_np, labels_np, os.path.join(d, "ref"))
    info["reference_seconds"] = round(time.time() - t0, 1)
    info["losses"] = losses
    with torch.no_grad():
        ymax = float(model(torch.from_numpy(x_np)).abs().max())
    info["max_abs_output"] = ymax
    names = {n for n, _ in model.named_parameters()}
    x = torch.from_numpy(x_np)
    for opset in OPSETS:
        for mode in MODES:
            t0 = time.time()
            data = export(model, x, opset, mode)
            secs = time.time() - t0
            m = onnx.load_from_string(data)
            onnx.checker.check_model(m, full_check=True)
            hist = collections.Counter(n.op_type for n in m.graph.node)
            if mode == "preserve":
                missing = names - {i.name for i in m.graph.initializer}
                if missing:
                    raise SystemExit(f"{family} op{opset} preserve: parameters not initializers by name: {sorted(missing)[:5]}")
            with open(os.path.join(d, f"op{opset}_{mode}.onnx"), "wb") as f:
                f.write(data)
            export_references(exported_function(model, m, opset, mode, x), x_np, labels_np,
                              os.path.join(d, "ref", f"op{opset}_{mode}"))
            info["exports"][f"op{opset}_{mode}"] = collections.OrderedDict(
                seconds=round(secs, 1), bytes=len(data), nodes=len(m.graph.node), ops=dict(sorted(hist.items())))
            print(f"{family:16s} op{opset} {mode:8s} {len(m.graph.node):5d} nodes {len(data) / 1e6:8.1f} MB {secs:6.1f} s",
                  file=sys.stderr)
    with open(os.path.join(d, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print(f"{family:16s} max|y| {ymax:.3g}, loss eval {losses['eval32']:.4f}, references {info['reference_seconds']} s",
          file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    grp = ap.add_mutually_exclusive_group(required=True)
    grp.add_argument("--small", action="store_true", help="width-reduced or small-input variants (CI)")
    grp.add_argument("--full", action="store_true", help="the full-size architectures")
    ap.add_argument("--family", help="comma-separated families (default: all)")
    ap.add_argument("outdir", nargs="?", help="output folder")
    args = ap.parse_args()
    torch.set_num_threads(2)
    outdir = args.outdir or os.path.join(REPO_ROOT, "testdata", "big", "families", "full" if args.full else "small")
    fams = args.family.split(",") if args.family else list(FAMILIES)
    for f in fams:
        if f not in FAMILIES:
            raise SystemExit(f"unknown family {f!r}; families: {', '.join(FAMILIES)}")
    failed = []
    for f in fams:
        try:
            make_family(f, args.full, outdir)
        except (Exception, SystemExit) as e:  # one family's failure does not stop the others
            print(f"{f}: {e}", file=sys.stderr)
            failed.append(f)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")
    print(f"wrote {outdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
