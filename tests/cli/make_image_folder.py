#!/usr/bin/env python3
"""Writes an ImageNet-style folder of class folders for the import and
fine-tuning tests: ROOT/train/<class>/NNN.jpg (JPEG via libjpeg-turbo's
cjpeg) and .png (written here with zlib), and ROOT/val/<class>/... Each
class has its own colour plus a per-image pattern, so a small model learns
it in a few steps; sizes vary from image to image.

  make_image_folder.py ROOT CLASS[,CLASS...] TRAIN_PER_CLASS VAL_PER_CLASS [SEED]
"""
import os
import struct
import subprocess
import sys
import zlib


def pixels(cls, seed, h, w):
    base = [(cls * 97) % 256, (cls * 57 + 80) % 256, (cls * 31 + 160) % 256]
    return bytes((base[c] + (seed * 37 + y * 11 + x * 5) % 40) % 256
                 for y in range(h) for x in range(w) for c in range(3))


def png(h, w, data):
    raw = b"".join(b"\0" + data[y * w * 3:(y + 1) * w * 3] for y in range(h))
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    root, classes = sys.argv[1], sys.argv[2].split(",")
    counts = {"train": int(sys.argv[3]), "val": int(sys.argv[4])}
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    for split, n in counts.items():
        for c, name in enumerate(classes):
            os.makedirs(f"{root}/{split}/{name}", exist_ok=True)
            for i in range(n):
                seed += 1
                h, w = 20 + seed % 7, 18 + seed % 5
                data = pixels(c, seed, h, w)
                if i % 4 == 3:
                    out, path = png(h, w, data), f"{root}/{split}/{name}/{i:03d}.png"
                else:
                    ppm = b"P6 %d %d 255\n" % (w, h) + data
                    out = subprocess.run(["cjpeg", "-quality", "90"], input=ppm, capture_output=True,
                                         check=True).stdout
                    path = f"{root}/{split}/{name}/{i:03d}.jpg"
                with open(path, "wb") as f:
                    f.write(out)


if __name__ == "__main__":
    main()
