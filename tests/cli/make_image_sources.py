#!/usr/bin/env python3
"""Builds bring-your-own-data inputs for vmoe_import from an imported
Fashion-MNIST split (real images), plus bad inputs. Exits 77 (skipped)
without h5py/numpy. PNGs are written with zlib by hand (no PIL needed).

    make_image_sources.py SOURCE.h5 OUT_DIR

OUT_DIR/png         train/CLASS/*.png (examples 0..399), test/CLASS/*.png
                    (400..499); 8-bit gray, RGB (gray replicated) and 16-bit
                    gray files mixed, so --channels=1 must give back the source
OUT_DIR/png_flat    CLASS/*.png (examples 0..299), for --test_fraction
OUT_DIR/npy         train_* (0..399, uint8 [N,28,28], int64 labels), test_*
                    (400..499, float32 [N,28,28,1] in [0,1], uint8 labels),
                    class_names.txt
OUT_DIR/bad_*       a text file named .png, train/test class sets that
                    differ, Fortran-order .npy files
"""
import os
import shutil
import struct
import sys
import zlib

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"skipped: {e} (install python3-h5py)")
    sys.exit(77)


def write_png(path, pixels, depth=8):
    """pixels: [H, W] (gray) or [H, W, 3] (RGB); depth 8 or 16, no gAMA chunk."""
    height, width = pixels.shape[:2]
    color_type = 2 if pixels.ndim == 3 else 0
    data = pixels.astype(">u2" if depth == 16 else "u1")
    raw = b"".join(b"\0" + data[y].tobytes() for y in range(height))  # filter None

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))


def write_class_folders(root, images, labels, names, first):
    """One folder per class; example i (global index first + i) as i.png in
    one of three encodings that all decode to the same gray pixels."""
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = os.path.join(root, names[label])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{first + i:05d}.png")
        if i % 3 == 1:
            write_png(path, np.repeat(image[:, :, None], 3, axis=2))
        elif i % 3 == 2:
            write_png(path, image.astype(np.uint16) * 257, depth=16)
        else:
            write_png(path, image)


def main():
    source, out = sys.argv[1], sys.argv[2]
    with h5py.File(source, "r") as f:
        images = f["images"][:500, :, :, 0]
        labels = f["labels"][:500]
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["class_names"]]
    folder_names = [n.replace("/", "_") for n in names]  # "T-shirt/top"
    shutil.rmtree(out, ignore_errors=True)

    write_class_folders(f"{out}/png/train", images[:400], labels[:400], folder_names, 0)
    write_class_folders(f"{out}/png/test", images[400:], labels[400:], folder_names, 400)
    write_class_folders(f"{out}/png_flat", images[:300], labels[:300], folder_names, 0)

    os.makedirs(f"{out}/npy")
    np.save(f"{out}/npy/train_images.npy", images[:400])
    np.save(f"{out}/npy/train_labels.npy", labels[:400].astype(np.int64))
    np.save(f"{out}/npy/test_images.npy", (images[400:, :, :, None] / 255.0).astype(np.float32))
    np.save(f"{out}/npy/test_labels.npy", labels[400:].astype(np.uint8))
    with open(f"{out}/npy/class_names.txt", "w") as f:
        f.write("\n".join(folder_names) + "\n")

    for split in ("train", "test"):
        os.makedirs(f"{out}/bad_not_png/{split}/a")
        write_png(f"{out}/bad_not_png/{split}/a/0.png", images[0])
    with open(f"{out}/bad_not_png/train/a/1.png", "w") as f:
        f.write("this is not an image\n")
    for folder in ("train/a", "train/b", "test/a"):
        os.makedirs(f"{out}/bad_classes/{folder}")
        write_png(f"{out}/bad_classes/{folder}/0.png", images[0])
    os.makedirs(f"{out}/bad_fortran")
    for split in ("train", "test"):
        np.save(f"{out}/bad_fortran/{split}_images.npy", np.asfortranarray(images[:10]))
        np.save(f"{out}/bad_fortran/{split}_labels.npy", labels[:10].astype(np.int64))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
