#!/usr/bin/python3
"""Writes testdata/images/fashion: an image folder (a sub-folder per class)
of real Fashion-MNIST pictures, PNG, taken from the demo's embedded
validation split (cmd/graft/demo/val-*), for examples and tests that need
image files. Reruns write byte-identical files.

    testdata/gen/fashion_folder.py [--per-class 24] [OUT]
"""
import argparse
import gzip
import os
import shutil

from PIL import Image

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
demo = os.path.join(root, "cmd", "graft", "demo")
ap = argparse.ArgumentParser()
ap.add_argument("--per-class", type=int, default=24)
ap.add_argument("out", nargs="?", default=os.path.join(root, "testdata", "images", "fashion"))
args = ap.parse_args()

images = gzip.open(os.path.join(demo, "val-images-idx3-ubyte.gz")).read()[16:]
labels = gzip.open(os.path.join(demo, "val-labels-idx1-ubyte.gz")).read()[8:]
classes = open(os.path.join(demo, "classes.txt")).read().split("\n")
classes = [c.strip() for c in classes if c.strip()]
# Three classes keep the folder small: sandals, sneakers and bags.
keep = {0: "sandal", 2: "sneaker", 3: "bag"}
assert [classes[k] for k in keep] == ["Sandal", "Sneaker", "Bag"], classes

shutil.rmtree(args.out, ignore_errors=True)
count = {k: 0 for k in keep}
for i, l in enumerate(labels):
    if l not in keep or count[l] >= args.per_class:
        continue
    d = os.path.join(args.out, keep[l])
    os.makedirs(d, exist_ok=True)
    img = Image.frombytes("L", (28, 28), images[i * 784:(i + 1) * 784])
    img.save(os.path.join(d, "%04d.png" % i), optimize=False)
    count[l] += 1
print("wrote", sum(count.values()), "images to", args.out)
