#!/usr/bin/env python3
"""Writes TFRecord files of tf.Example protos for the tfrecord import test,
with the protobuf package's own serializer (the tf.Example schema is built
here as a descriptor, so TensorFlow is not needed): JPEGs from cjpeg and PNGs
in TFDS's ImageNet feature names ("image", "label", "file_name").

  make_tfrecords.py OUT_DIR
writes OUT_DIR/{train,test}.tfrecord-0000N-of-0000M,
OUT_DIR/expected-{train,test}.txt ("sha256 label" per record, in order), and
OUT_DIR/bad.tfrecord: a good record, then one whose image is not an image.
The framing's CRC-32C is computed bit by bit here and checked against the
standard check value first.
"""
import hashlib
import os
import struct
import subprocess
import sys
import zlib

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def example_class():
    f = descriptor_pb2.FileDescriptorProto(name="example.proto", package="tensorflow", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    def message(name, fields, oneof=None):
        m = f.message_type.add(name=name)
        if oneof:
            m.oneof_decl.add(name=oneof)
        for number, fname, ftype, label, type_name in fields:
            field = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
            if oneof:
                field.oneof_index = 0
        return m
    message("BytesList", [(1, "value", T.TYPE_BYTES, T.LABEL_REPEATED, None)])
    message("FloatList", [(1, "value", T.TYPE_FLOAT, T.LABEL_REPEATED, None)])
    message("Int64List", [(1, "value", T.TYPE_INT64, T.LABEL_REPEATED, None)])
    message("Feature", [(1, "bytes_list", T.TYPE_MESSAGE, T.LABEL_OPTIONAL, ".tensorflow.BytesList"),
                        (2, "float_list", T.TYPE_MESSAGE, T.LABEL_OPTIONAL, ".tensorflow.FloatList"),
                        (3, "int64_list", T.TYPE_MESSAGE, T.LABEL_OPTIONAL, ".tensorflow.Int64List")],
            oneof="kind")
    features = message("Features", [(1, "feature", T.TYPE_MESSAGE, T.LABEL_REPEATED,
                                      ".tensorflow.Features.FeatureEntry")])
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=T.TYPE_MESSAGE, label=T.LABEL_OPTIONAL,
                    type_name=".tensorflow.Feature")
    message("Example", [(1, "features", T.TYPE_MESSAGE, T.LABEL_OPTIONAL, ".tensorflow.Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName("tensorflow.Example"))


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def masked(c):
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def png(h, w, seed):
    raw = b"".join(b"\0" + bytes((seed * 13 + y * 7 + x * 3 + c * 40) % 256 for x in range(w) for c in range(3))
                   for y in range(h))
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def jpeg(h, w, seed):
    ppm = b"P6 %d %d 255\n" % (w, h) + bytes((seed * 29 + i * 5) % 256 for i in range(h * w * 3))
    return subprocess.run(["cjpeg", "-quality", "90"], input=ppm, capture_output=True, check=True).stdout


def main():
    assert crc32c(b"123456789") == 0xE3069283, "CRC-32C check value"
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    Example = example_class()
    def record(image, label, name):
        ex = Example()
        ex.features.feature["image"].bytes_list.value.append(image)
        ex.features.feature["label"].int64_list.value.append(label)
        ex.features.feature["file_name"].bytes_list.value.append(name)
        data = ex.SerializeToString()
        length = struct.pack("<Q", len(data))
        return (length + struct.pack("<I", masked(crc32c(length))) + data
                + struct.pack("<I", masked(crc32c(data))))

    seed = 0
    for split, files, per_file in (("train", 3, 7), ("test", 1, 5)):
        with open(f"{out}/expected-{split}.txt", "w") as expected:
            for k in range(files):
                with open(f"{out}/{split}.tfrecord-{k:05d}-of-{files:05d}", "wb") as f:
                    for i in range(per_file):
                        seed += 1
                        label = seed % 4
                        image = png(10 + seed % 4, 12, seed) if seed % 3 == 0 else jpeg(12, 10 + seed % 5, seed)
                        f.write(record(image, label, b"n%08d.JPEG" % seed))
                        expected.write(f"{hashlib.sha256(image).hexdigest()} {label}\n")
    with open(f"{out}/bad.tfrecord", "wb") as f:
        f.write(record(png(8, 8, 1), 1, b"good.png") + record(b"not an image", 2, b"bad.jpg"))


if __name__ == "__main__":
    main()
