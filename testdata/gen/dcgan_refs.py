#!/usr/bin/python3
"""PyTorch's DCGAN tutorial loop for a few iterations from graft's initial
networks: the reference cmd/examples/dcgan's training step is checked
against (run by its test).

    dcgan_refs.py DIR

reads DIR/generator.onnx and DIR/discriminator.onnx (the networks of
cmd/examples/dcgan/nets.go, any widths), DIR/real.pb [K, B, 1, 28, 28]
(real batches in [-1, 1]) and DIR/noise.pb [K, B, nz, 1, 1], loads the
ONNX initializers into the same networks as torch modules, runs K
iterations of the tutorial's loop (BCELoss, two Adams lr 2e-4, betas (0.5,
0.999), D on real then on G(z).detach(), G on D(G(z)) labelled real, both
networks in train mode) and writes DIR/reference.json: per iteration
errD (real + fake), errG, D(x) and D(G(z)) before D's update, and every
parameter and running statistic after the last iteration, by ONNX name.
float32, 1 thread, deterministic.
"""

import json
import os
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn


def initializers(path):
    m = onnx.load(path)
    return {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}


def load(module, names, weights):
    """Copy ONNX initializers into module.<attr> by the name map."""
    for onnx_name, (layer, attr) in names.items():
        getattr(module[layer], attr).data.copy_(torch.from_numpy(weights[onnx_name].copy()))


def bn_names(prefix, layer):
    return {f"{prefix}.weight": (layer, "weight"), f"{prefix}.bias": (layer, "bias"),
            f"{prefix}.running_mean": (layer, "running_mean"), f"{prefix}.running_var": (layer, "running_var")}


def main():
    d = sys.argv[1]
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    gw, dw = initializers(os.path.join(d, "generator.onnx")), initializers(os.path.join(d, "discriminator.onnx"))
    nz, c4 = gw["deconv1.weight"].shape[:2]
    c2 = gw["deconv2.weight"].shape[1]
    ndf = dw["conv1.weight"].shape[0]

    G = nn.Sequential(
        nn.ConvTranspose2d(nz, c4, 7, 1, 0, bias=False), nn.BatchNorm2d(c4), nn.ReLU(True),
        nn.ConvTranspose2d(c4, c2, 4, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(True),
        nn.ConvTranspose2d(c2, 1, 4, 2, 1, bias=False), nn.Tanh())
    gmap = {"deconv1.weight": (0, "weight"), "deconv2.weight": (3, "weight"), "deconv3.weight": (6, "weight"),
            **bn_names("bn1", 1), **bn_names("bn2", 4)}
    D = nn.Sequential(
        nn.Conv2d(1, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ndf), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(2 * ndf, 1, 7, 1, 0, bias=False), nn.Sigmoid())
    dmap = {"conv1.weight": (0, "weight"), "conv2.weight": (2, "weight"), "conv3.weight": (5, "weight"),
            **bn_names("bn2", 3)}
    load(G, gmap, gw)
    load(D, dmap, dw)
    G.train()
    D.train()

    real = torch.from_numpy(onnx.numpy_helper.to_array(onnx.load_tensor(os.path.join(d, "real.pb"))).copy())
    noise = torch.from_numpy(onnx.numpy_helper.to_array(onnx.load_tensor(os.path.join(d, "noise.pb"))).copy())
    criterion = nn.BCELoss()
    optD = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    steps = []
    for k in range(real.shape[0]):
        x, z = real[k], noise[k]
        b = x.shape[0]
        ones, zeros = torch.ones(b), torch.zeros(b)
        D.zero_grad()
        out = D(x).view(-1)
        err_real = criterion(out, ones)
        err_real.backward()
        d_x = out.mean().item()
        fake = G(z)
        out = D(fake.detach()).view(-1)
        err_fake = criterion(out, zeros)
        err_fake.backward()
        d_gz = out.mean().item()
        optD.step()
        G.zero_grad()
        out = D(fake).view(-1)
        err_g = criterion(out, ones)
        err_g.backward()
        optG.step()
        steps.append({"d_loss": (err_real + err_fake).item(), "g_loss": err_g.item(), "d_real": d_x, "d_fake": d_gz})

    params = {}
    for module, names in ((G, gmap), (D, dmap)):
        for onnx_name, (layer, attr) in names.items():
            params[("D/" if module is D else "") + onnx_name] = getattr(module[layer], attr).detach().reshape(-1).tolist()
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"torch": torch.__version__, "steps": steps, "params": params}, f)


if __name__ == "__main__":
    main()
