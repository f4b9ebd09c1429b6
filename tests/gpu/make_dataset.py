#!/usr/bin/env python3
"""Writes a small learnable image-classification dataset as NumPy .npy files
(train/test images and labels), with the standard library only, so that a
GPU node without numpy or the Debian datasets can make data for
`vmoe_import --format=npy`. Class c is a stripe pattern of its own angle and
period, at a random phase, plus noise; uint8, H x W x 1.

    make_dataset.py OUT_DIR [--train N] [--test N] [--size S] [--classes C] [--seed S]
"""
import argparse
import math
import os
import random
import struct


def write_npy(path, descr, shape, payload):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join(f"{n}, " for n in shape))
    # Magic, version 1.0, header length; the header ends in \n at a multiple of 64.
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("ascii"))
        f.write(payload)


def make(count, size, classes, rng):
    pixels = bytearray(count * size * size)
    labels = []
    at = 0
    for _ in range(count):
        c = rng.randrange(classes)
        labels.append(c)
        angle = math.pi * c / classes
        period = 3.0 + (c % 3)
        dx, dy = math.cos(angle), math.sin(angle)
        phase = rng.random() * 2 * math.pi
        for y in range(size):
            for x in range(size):
                v = 128 + 90 * math.sin(2 * math.pi * (x * dx + y * dy) / period + phase)
                v += rng.gauss(0, 25)
                pixels[at] = max(0, min(255, int(v)))
                at += 1
    return bytes(pixels), labels


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--train", type=int, default=2048)
    p.add_argument("--test", type=int, default=512)
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    for split, count in (("train", a.train), ("test", a.test)):
        pixels, labels = make(count, a.size, a.classes, rng)
        write_npy(f"{a.out}/{split}_images.npy", "|u1", (count, a.size, a.size), pixels)
        write_npy(f"{a.out}/{split}_labels.npy", "<i4", (count,), struct.pack(f"<{count}i", *labels))
    print(f"{a.out}: {a.train} train and {a.test} test images, {a.size}x{a.size}, {a.classes} classes")


if __name__ == "__main__":
    main()
