#!/usr/bin/python3
"""Frozen-backbone fine-tuning, PyTorch's transfer-learning-tutorial loop.

Usage: bench_finetune.py make FOLDER     write an image folder of photo crops
       bench_finetune.py torch FOLDER EPOCHS
The torch mode trains a new fc on a frozen torchvision ResNet-18 (eval-mode
BatchNorm, every epoch a full forward pass, as the tutorial's "ConvNet as
fixed feature extractor" does) and prints "torch epoch_seconds=S" (median).
"""
import os
import sys
import time

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PHOTOS = {"cat": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg", "astronaut": "astronaut.png"}


def make(folder, per_class=16):
    rng = np.random.RandomState(0)
    for cls, f in PHOTOS.items():
        im = Image.open(os.path.join(ROOT, "testdata/big/photos", f)).convert("RGB")
        w, h = im.size
        os.makedirs(os.path.join(folder, cls), exist_ok=True)
        for i in range(per_class):
            side = h // 2 + rng.randint(h // 3)
            x, y = rng.randint(w - side), rng.randint(h - side)
            im.crop((x, y, x + side, y + side)).save(os.path.join(folder, cls, "%s%02d.png" % (cls, i)))


def bench(folder, epochs):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = torchvision.datasets.ImageFolder(folder, tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, num_workers=0)
    model = torchvision.models.resnet18(weights=None)
    for p in model.parameters():
        p.requires_grad = False
    model.fc = torch.nn.Linear(512, len(ds.classes))
    model.eval()  # frozen BatchNorm, as graft runs frozen layers
    opt = torch.optim.SGD(model.fc.parameters(), lr=0.001, momentum=0.9)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for x, y in dl:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    print("torch epoch_seconds=%.3f" % sorted(times)[len(times) // 2])


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("make", "torch"):
        sys.exit(__doc__)
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        bench(sys.argv[2], int(sys.argv[3]))
