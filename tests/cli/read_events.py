"""Reads the scalars of the one TensorBoard event file in a folder:
{(tag, step): value}, with TensorBoard's EventAccumulator where the tensorboard
package is installed, else with the protobuf package against event.proto's and
summary.proto's fields. read(dir) returns (scalars, the reader's name)."""
import glob
import struct


def read(tb_dir):
    files = glob.glob(f"{tb_dir}/events.out.tfevents.*")
    assert len(files) == 1, files
    got = {}  # (tag, step) -> value
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        ea = EventAccumulator(tb_dir, size_guidance={"scalars": 0})
        ea.Reload()
        for tag in ea.Tags()["scalars"]:
            for e in ea.Scalars(tag):
                got[(tag, e.step)] = e.value
        reader = "TensorBoard's EventAccumulator"
    except ImportError:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
        f = descriptor_pb2.FileDescriptorProto(name="event.proto", package="tensorflow", syntax="proto3")
        T = descriptor_pb2.FieldDescriptorProto
        value = f.message_type.add(name="Value")
        value.field.add(name="tag", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
        value.field.add(name="simple_value", number=2, type=T.TYPE_FLOAT, label=T.LABEL_OPTIONAL)
        summary = f.message_type.add(name="Summary")
        summary.field.add(name="value", number=1, type=T.TYPE_MESSAGE, label=T.LABEL_REPEATED,
                          type_name=".tensorflow.Value")
        event = f.message_type.add(name="Event")
        event.field.add(name="wall_time", number=1, type=T.TYPE_DOUBLE, label=T.LABEL_OPTIONAL)
        event.field.add(name="step", number=2, type=T.TYPE_INT64, label=T.LABEL_OPTIONAL)
        event.field.add(name="file_version", number=3, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
        event.field.add(name="summary", number=5, type=T.TYPE_MESSAGE, label=T.LABEL_OPTIONAL,
                        type_name=".tensorflow.Summary")
        pool = descriptor_pool.DescriptorPool()
        pool.Add(f)
        factory = message_factory.MessageFactory(pool)
        Event = factory.GetPrototype(pool.FindMessageTypeByName("tensorflow.Event"))
        data = open(files[0], "rb").read()
        pos, first = 0, True
        while pos < len(data):
            (length,) = struct.unpack_from("<Q", data, pos)
            ev = Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            if first:
                assert ev.file_version == "brain.Event:2", ev
                first = False
            for v in ev.summary.value:
                got[(v.tag, ev.step)] = v.simple_value
        reader = "the protobuf package (no tensorboard package here)"
    return got, reader
