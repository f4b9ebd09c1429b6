#!/usr/bin/env bash
# --tensorboard_dir: a V-MoE run on 1 and 2 ranks writes one event file whose
# scalars are exactly metrics.jsonl's numbers (as float32) at their steps:
# train/loss, train/learning_rate, eval/precision_at_1, per-layer drops and
# expert loads. Read with TensorBoard's own EventAccumulator when the Python
# at $VMOE_TENSORBOARD_PYTHON (default /usr/bin/python3) has the tensorboard
# package; otherwise decoded with the protobuf package against event.proto's
# and summary.proto's fields (the test says which reader it used).
#   tensorboard_events.sh MPIEXEC BIN_DIR FMNIST_DIR SCRATCH
set -euo pipefail
mpiexec=$1
bin=$2
fmnist=$3
work=$4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
python=${VMOE_TENSORBOARD_PYTHON:-/usr/bin/python3}
rm -rf "$work"
mkdir -p "$work"
for ranks in 1 2; do
  "$mpiexec" -np $ranks --oversubscribe "$bin/vmoe_train" --train_data="$fmnist/test.h5" \
    --eval_data="$fmnist/test.h5" --run_dir="$work/run$ranks" --tensorboard_dir="$work/tb$ranks" \
    --total_steps=20 --log_every=5 --eval_every=10 --batch_size=32 --hidden_size=16 \
    --num_layers=2 --num_heads=2 --mlp_dim=32 --patch_size=7 --moe_layers=every:2 \
    --num_experts=4 > "$work/train$ranks.log" || { tail "$work/train$ranks.log"; exit 1; }
  "$python" - "$work/tb$ranks" "$work/run$ranks/metrics.jsonl" <<'PY'
import glob, json, struct, sys
tb_dir, metrics = sys.argv[1], sys.argv[2]
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
want = {}
for line in open(metrics):
    r = json.loads(line)
    if "step" not in r:
        continue
    for k, v in r.items():
        if k not in ("step", "type") and isinstance(v, (int, float)):
            want[(f"{r['type']}/{k}", r["step"])] = struct.unpack("<f", struct.pack("<f", v))[0]
assert got == want, (sorted(set(got) ^ set(want))[:10], [k for k in want if got.get(k) != want[k]][:10])
for tag in ("train/loss", "train/learning_rate", "eval/precision_at_1", "train/moe/block_1/dropped",
            "train/moe/block_1/load_e0"):
    assert any(t == tag for t, _ in got), tag
print(f"{len(got)} scalars equal metrics.jsonl, read with {reader}")
PY
done
echo "tensorboard events ok"
