#!/usr/bin/env python3
"""Checks that an imported split holds exactly the examples [FIRST, FIRST +
COUNT) of the source file: the same (class name, pixels) pairs, in any order
(png_folder reorders by class). Exits 77 (skipped) without h5py/numpy.

    check_image_import.py SOURCE.h5 IMPORTED.h5=FIRST:COUNT [...]
"""
import collections
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"skipped: {e} (install python3-h5py)")
    sys.exit(77)


def examples(path, first=0, count=None):
    with h5py.File(path, "r") as f:
        stop = None if count is None else first + count
        images = f["images"][first:stop]
        labels = f["labels"][first:stop]
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["class_names"]]
    # Class folders cannot hold '/', so the generator replaced it.
    return collections.Counter(
        (names[label].replace("/", "_"), image.tobytes()) for image, label in zip(images, labels))


def main():
    source = sys.argv[1]
    for spec in sys.argv[2:]:
        path, extent = spec.rsplit("=", 1)
        first, count = map(int, extent.split(":"))
        want, got = examples(source, first, count), examples(path)
        if want != got:
            print(f"FAIL: {path}: {sum((got - want).values())} unexpected and "
                  f"{sum((want - got).values())} missing examples (of {count})")
            sys.exit(1)
        print(f"ok: {path} holds source examples [{first}, {first + count})")


if __name__ == "__main__":
    main()
