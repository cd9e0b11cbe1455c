#!/usr/bin/python3
"""Run the ONNX checker (full_check=True) on each model given.

Usage: check_model.py MODEL.onnx [MODEL2.onnx ...]
Prints "ok <path>" per valid model, the checker's error otherwise, and exits
non-zero if any model fails.

The model is read into memory and checked from bytes: with onnx 1.12,
check_model(<path>, full_check=True) runs infer_shapes_path(path), which
REWRITES the model file in place with inferred value_info.
"""

import sys

import onnx


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    failed = 0
    for path in argv:
        try:
            with open(path, "rb") as f:
                data = f.read()
            onnx.checker.check_model(data, full_check=True)
        except Exception as e:  # checker errors, I/O errors, parse errors
            failed += 1
            print(f"FAIL {path}: {type(e).__name__}: {e}")
        else:
            print(f"ok {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
