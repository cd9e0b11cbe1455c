#!/usr/bin/python3
"""Reference image preprocessing for graft's runtime/data package.

Runs torchvision's transforms on PIL images and writes the resulting tensors
as TensorProto .pb files plus a manifest.json the Go test reads:

    preprocess_refs.py
        (re)creates the synthetic test images in runtime/data/testdata
        (deterministic: gradients, noise, shapes; odd sizes; gray and RGB;
        PNG and JPEG) and their references for Resize(40)+CenterCrop(32)
        (and Resize(24)+CenterCrop(32), which pads), 3 and 1 channels.

    preprocess_refs.py --out DIR [--resize 256] [--crop 224] IMAGE...
        references for the given images (any format PIL reads) into DIR,
        3 channels with the ImageNet mean/std and 1 channel without
        normalisation.

Each case: the image converted with PIL (convert("RGB") or convert("L"),
as torchvision's ImageFolder loader and a 1-channel model would),
transforms.Resize(resize), transforms.CenterCrop(crop), ToTensor() saved as
<case>.tensor.pb, then Normalize(mean, std) saved as <case>.norm.pb.
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw
import torch
from torchvision import transforms

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "runtime", "data", "testdata")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
GRAY_MEAN, GRAY_STD = [0.5], [0.25]


def write_tensor(path, arr, name):
    from onnx import numpy_helper  # imported late: only needed to write
    t = numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def synthetic_images(outdir):
    """Writes the synthetic test images; returns their file names."""
    rng = np.random.RandomState(20240611)
    names = []

    def save(im, name, **kw):
        im.save(os.path.join(outdir, name), **kw)
        names.append(name)

    # Smooth RGB gradients with shapes and a little noise, 317x211.
    w, h = 317, 211
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / (w - 1)
    g = 255 * y / (h - 1)
    b = 127.5 + 127.5 * np.sin(x / 9.0) * np.cos(y / 13.0)
    arr = np.stack([r, g, b], -1) + rng.normal(0, 6, (h, w, 3))
    im = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    d.ellipse((40, 30, 150, 120), fill=(250, 30, 20))
    d.rectangle((180, 90, 300, 200), fill=(10, 200, 60), outline=(255, 255, 255), width=3)
    d.line((0, 210, 316, 0), fill=(0, 0, 0), width=2)
    save(im, "shapes_317x211.png")
    # The same scene as a JPEG (4:2:0 chroma, quality 90).
    save(im, "shapes_317x211.jpg", quality=90, subsampling=2)
    # The scene rotated to portrait, JPEG 4:4:4: exercises width <= height.
    save(im.transpose(Image.Transpose.ROTATE_90), "shapes_211x317_444.jpg", quality=85, subsampling=0)

    # Uniform noise, 64x97: the worst case for resampling.
    save(Image.fromarray(rng.randint(0, 256, (97, 64, 3), dtype=np.uint8), "RGB"), "noise_64x97.png")

    # Gray: radial gradient with rings, 211x149, PNG and JPEG.
    w, h = 211, 149
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    rad = np.hypot(x - 0.4 * w, y - 0.6 * h)
    arr = 127.5 + 100 * np.cos(rad / 6.0) * np.exp(-rad / 150) + rng.normal(0, 4, (h, w))
    gray = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "L")
    save(gray, "rings_211x149_gray.png")
    save(gray, "rings_211x149_gray.jpg", quality=80)

    # Palette and RGBA PNGs (PIL's convert("RGB") uses the palette and drops
    # alpha), small enough that Resize(40) enlarges them.
    pal = im.resize((45, 37), Image.Resampling.NEAREST).convert("P", palette=Image.Palette.ADAPTIVE, colors=17)
    save(pal, "palette_45x37.png")
    rgba = Image.fromarray(rng.randint(0, 256, (29, 33, 4), dtype=np.uint8), "RGBA")
    save(rgba, "alpha_33x29.png")
    return names


def cases_for(image, resize, crop, tag):
    return [
        dict(image=image, channels=3, resize=resize, crop=crop, mean=IMAGENET_MEAN, std=IMAGENET_STD, tag=tag),
        dict(image=image, channels=1, resize=resize, crop=crop, mean=GRAY_MEAN, std=GRAY_STD, tag=tag),
    ]


def run_case(c, path, outdir, prefix):
    im = Image.open(path)
    im = im.convert("RGB" if c["channels"] == 3 else "L")
    x = transforms.Compose([
        transforms.Resize(c["resize"]),
        transforms.CenterCrop(c["crop"]),
        transforms.ToTensor(),
    ])(im)
    n = transforms.Normalize(c["mean"], c["std"])(x.clone())
    base = f"{prefix}.c{c['channels']}.r{c['resize']}.c{c['crop']}"
    c["tensor"], c["norm"] = base + ".tensor.pb", base + ".norm.pb"
    write_tensor(os.path.join(outdir, c["tensor"]), x.numpy(), "tensor")
    write_tensor(os.path.join(outdir, c["norm"]), n.numpy(), "normalized")
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output folder (default: regenerate runtime/data/testdata)")
    ap.add_argument("--resize", type=int, default=256)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("images", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(1)

    cases = []
    if args.out is None:
        if args.images:
            ap.error("images need --out")
        outdir = DEFAULT_OUT
        os.makedirs(outdir, exist_ok=True)
        for f in os.listdir(outdir):
            if f.endswith(".pb") or f == "manifest.json":
                os.remove(os.path.join(outdir, f))
        names = synthetic_images(outdir)
        for name in names:
            for c in cases_for(name, 40, 32, "small"):
                cases.append(run_case(c, os.path.join(outdir, name), outdir, name.replace(".", "_")))
        for name in ("shapes_317x211.jpg", "alpha_33x29.png"):
            for c in cases_for(name, 24, 32, "pad"):
                cases.append(run_case(c, os.path.join(outdir, name), outdir, name.replace(".", "_")))
    else:
        outdir = args.out
        os.makedirs(outdir, exist_ok=True)
        for k, path in enumerate(args.images):
            prefix = f"img{k}_" + os.path.basename(path).replace(".", "_")
            for c in cases_for(os.path.abspath(path), args.resize, args.crop, "custom"):
                cases.append(run_case(c, path, outdir, prefix))

    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump({"generator": "testdata/gen/preprocess_refs.py",
                   "torchvision": __import__("torchvision").__version__,
                   "pil": Image.__version__ if hasattr(Image, "__version__") else __import__("PIL").__version__,
                   "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {outdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
