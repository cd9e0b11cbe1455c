#!/usr/bin/python3
"""PyTorch's FGSM on the full-size ResNet-18, the reference for graft's.

For testdata/big/resnet18_op13_bn (written by export_models.py --big), loads
the weights from its ONNX initializers into torchvision's resnet18 (eval
mode), checks the output against test_data_set_0/output_0.pb, and writes to
test_data_set_0:

    fgsm_grad.pb     d mean-cross-entropy / d input for labels.pb
    fgsm_grad64.pb   the same computed in float64
    fgsm_eps.pb      the radius, 0.03 (float32 scalar)
    fgsm_adv.pb      clamp(input + eps*sign(grad), 0, 1), as the FGSM tutorial
    output64.pb      the output computed in float64 (the reference for the
                     rounding of graft's fast paths: TestWinogradResNet18)

The input is uniform in [0, 1), so the clamp applies to the attacked pixels
only.

Usage: fgsm_refs.py [MODEL_DIR]
"""

import os
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn.functional as F
import torchvision

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EPS = 0.03


def load(path):
    return onnx.numpy_helper.to_array(onnx.load_tensor(path))


def write_tensor(path, arr, name):
    t = onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name=name)
    with open(path + ".tmp", "wb") as f:
        f.write(t.SerializeToString())
    os.replace(path + ".tmp", path)


def load_resnet18(d):
    """torchvision's resnet18 in eval mode with the weights of d/model.onnx
    (an export that keeps BatchNormalization, so initializers are named as
    the state dict)."""
    m = onnx.load(os.path.join(d, "model.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    model = torchvision.models.resnet18(weights=None)
    state = model.state_dict()
    for k in state:
        if k.endswith("num_batches_tracked"):
            continue
        if k not in inits:
            raise SystemExit(f"{d}: no initializer for {k}")
        state[k] = torch.from_numpy(inits[k].copy())
    model.load_state_dict(state)
    return model.eval()


def main():
    torch.set_num_threads(2)
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO_ROOT, "testdata", "big", "resnet18_op13_bn")
    ds = os.path.join(d, "test_data_set_0")
    model = load_resnet18(d)

    x_np = load(os.path.join(ds, "input_0.pb"))
    labels = torch.from_numpy(load(os.path.join(ds, "labels.pb")).copy())
    assert x_np.min() >= 0 and x_np.max() <= 1
    x = torch.from_numpy(x_np.copy()).requires_grad_(True)
    out = model(x)
    want = load(os.path.join(ds, "output_0.pb"))
    err = np.abs(out.detach().numpy() - want).max()
    if err > 1e-4:
        raise SystemExit(f"{d}: weights loaded from ONNX give outputs {err} away from output_0.pb")
    loss = F.cross_entropy(out, labels)
    (grad,) = torch.autograd.grad(loss, x)
    with torch.no_grad():
        adv = torch.clamp(x + EPS * grad.sign(), 0, 1)
        pred = model(adv).argmax(1)
    # The same gradient in float64: where float32 rounding decides a
    # near-tie (a ReLU or max-pool input within rounding of its rival), the
    # float32 gradient can take the other sign; float64 tells those apart.
    model64 = load_resnet18(d).double()
    x64 = torch.from_numpy(x_np.astype(np.float64)).requires_grad_(True)
    out64 = model64(x64)
    (grad64,) = torch.autograd.grad(F.cross_entropy(out64, labels), x64)
    write_tensor(os.path.join(ds, "output64.pb"), out64.detach().numpy(), "output64")
    flips = int(((grad.double().sign() != grad64.sign()) & (grad64.abs() > 1e-6)).sum())
    write_tensor(os.path.join(ds, "fgsm_grad.pb"), grad.numpy(), "fgsm_grad")
    write_tensor(os.path.join(ds, "fgsm_grad64.pb"), grad64.numpy(), "fgsm_grad64")
    write_tensor(os.path.join(ds, "fgsm_eps.pb"), np.array(EPS, dtype=np.float32), "fgsm_eps")
    write_tensor(os.path.join(ds, "fgsm_adv.pb"), adv.numpy(), "fgsm_adv")
    print(f"{d}: loss {loss.item():.6g}, output check {err:.2g}, float32 gradient signs differing from "
          f"float64 where |grad| > 1e-6: {flips}, zero gradient components "
          f"{int((grad == 0).sum())}, clean prediction {out.argmax(1).tolist()}, "
          f"adversarial {pred.tolist()}, labels {labels.tolist()}")


if __name__ == "__main__":
    main()
