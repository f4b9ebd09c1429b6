#!/usr/bin/env python3
"""Reads a checkpoint written by vmoe_train with h5py, as a user would: the
file is the interface. Exits 77 (skipped) when h5py is not installed.

    read_checkpoint.py CHECKPOINT NUM_EXPERTS HIDDEN MLP
"""
import sys
import zlib

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"skipped: {e} (install python3-h5py)")
    sys.exit(77)

path, experts, hidden, mlp = sys.argv[1], *map(int, sys.argv[2:5])
with h5py.File(path, "r") as f:
    assert f.attrs["format_version"] == 2, f.attrs["format_version"]
    step = int(f.attrs["step"])

    def text(name):
        value = f.attrs[name][0]
        return value.decode() if isinstance(value, bytes) else value

    # The attributes' checksum, as checkpoints/README.md defines it.
    canonical = b""
    for name in ("format_version", "step", "seed", "global_batch", "world", "expert_parallel"):
        canonical += name.encode() + b"\0" + str(int(f.attrs[name])).encode() + b"\0"
    for name in ("model_flags", "optimizer_flags", "flagfile"):
        canonical += name.encode() + b"\0" + text(name).encode() + b"\0"
    assert zlib.crc32(canonical) == int(f.attrs["attributes_crc32"]), "attribute checksum"
    model = text("model_flags")
    assert f"hidden_size={hidden}" in model, model
    w = f["params/encoder/block_1/mlp/experts/fc1/kernel"]
    assert w.shape == (experts, hidden, mlp), w.shape
    assert w.fletcher32 and w.chunks == (1, hidden, mlp), (w.fletcher32, w.chunks)
    kernel = w[...]
    assert np.isfinite(kernel).all()
    assert not np.allclose(kernel[0], kernel[1]), "every expert must have its own weights"
    m = f["optimizer/adam_m/head/bias"][...]
    assert m.shape == f["params/head/bias"].shape
    names = []
    f.visit(lambda name: names.append(name) if isinstance(f[name], h5py.Dataset) else None)
    params = sum(1 for n in names if n.startswith("params/"))
    print(f"ok: step {step}, {params} parameter tensors, experts fc1 kernel {w.shape}, "
          f"|w| mean {np.abs(kernel).mean():.4f}")
