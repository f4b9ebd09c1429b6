#!/usr/bin/env bash
# The GPU check: what this project verifies on a GPU machine, in one run that
# ends with one table. Needs only the programs, mpirun and a plain python3 (no
# numpy, no h5py): it makes its own data.
#
#   tests/gpu/check.sh BUILD_DIR          a CUDA build (programs in launch/, tests/)
#   tests/gpu/check.sh BUNDLE.tar.xz      the tarball of make_bundle.sh, or the
#   tests/gpu/check.sh BUNDLE_DIR         folder it was unpacked into (env.sh is sourced)
#
# Rows: the op tests (cuda_backend_test, cuda_routing_test, cuda_bf16_test, cuda_packs_test; again under
# compute-sanitizer memcheck where installed, VMOE_CHECK_SANITIZE=0: skip), NCCL (nccl_test on 1 rank, and on N
# when N GPUs are visible), checkpoints GPU <-> CPU bit for bit, our error for
# two ranks on one GPU, then on 1 rank (and N) a small V-MoE trained on the
# GPU against the CPU: losses, periodic checkpoints with keep-N, resume on the
# GPU (bit for bit), each backend resuming the other's checkpoint, the
# step captured as a CUDA graph (--capture_step, same losses bit for bit),
# fine-tuning (--init_from), vmoe_eval (precision@1, capacity sweep, routing
# analysis, few-shot) GPU against CPU; last the training-step benchmark
# (train_step_bench: V-MoE-S/32 and B/16 at 224², fp32, bf16, bf16 captured
# as a CUDA graph, TF32, B/16 bf16 with strided attention (the default is
# head-major); the batch on the device): images/s, MFU against a GEMM peak
# measured on the same GPU, the largest phases; one B/16 bf16 step's kernel
# times under ncu where it is installed (VMOE_CHECK_NCU=0: skip); and the
# input pipeline (loader_bench: 224² JPEG shards to 8-bit batches on all but
# two cores). Exit status 1 if any
# row fails.
#
# Environment:
#   VMOE_CHECK_OUT=DIR       where runs and logs go (default: a new temp folder)
#   VMOE_TORCH_PEER=FILE     also time the PyTorch peer (vmoe_torch.py) on the
#                            benchmark models, with VMOE_TORCH_PYTHON (default:
#                            python3) and its torch
#   VMOE_CHECK_QUICK=1       every correctness row, but of the benchmark only the
#                            S/32 bf16 captured row and the B/16 bf16 rows
#                            (uncaptured, captured, strided), no
#                            peer and no input pipeline: about 2 minutes, for a
#                            second look after a change within one GPU lease
#   VMOE_CHECK_BACKEND=cpu   no GPU: the "GPU" side runs on the CPU backend under
#                            the stand-in world, benchmarks on tiny models. This
#                            checks the script itself (ctest runs it so).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -eq 1 ]] || { sed -n '2,12p' "$0"; exit 2; }
target=$1
out=${VMOE_CHECK_OUT:-$(mktemp -d /tmp/vmoe_gpu_check.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# A reused folder: nothing of an earlier check may be read as this one's.
rm -rf "$out"/train_* "$out"/npy "$out"/data "$out"/shared_gpu "$out"/bundle "$out"/synth \
  "$out"/*.log "$out"/table.txt
start=$SECONDS
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 GTEST_COLOR=no
py=$(command -v python3)  # the machine's, before a bundle's env.sh changes PATH

# ---- the programs -----------------------------------------------------------
if [[ -f $target && $target == *.tar.xz ]]; then
  mkdir -p "$out/bundle"
  tar -C "$out/bundle" -xJf "$target" || { echo "check: cannot unpack $target"; exit 2; }
  target=$out/bundle
fi
if [[ -f $target/env.sh ]]; then
  # shellcheck disable=SC1091
  source "$target/env.sh"
fi
prog() {  # the path of program $1
  local d
  for d in "$target/bin" "$target/launch" "$target/tests" "$target"; do
    [[ -x $d/$1 && -f $d/$1 ]] && { echo "$d/$1"; return; }
  done
  echo "check: $1 not found under $target" >&2
  echo "/nonexistent/$1"
}
mpiexec=$(command -v mpirun || command -v mpiexec) || { echo "check: no mpirun on PATH"; exit 2; }

backend=${VMOE_CHECK_BACKEND:-cuda}
if [[ $backend == cuda ]]; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  [[ $gpus -ge 1 ]] || { echo "check: no GPU visible (nvidia-smi -L); VMOE_CHECK_BACKEND=cpu checks the script"; exit 77; }
  device="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), $gpus visible"
  gpu_flags=(--backend=cuda)
  stand_in=0
else
  gpus=2  # exercises the multi-rank rows
  device="none: the GPU side ran on the CPU backend under the stand-in world"
  gpu_flags=(--backend=cpu)
  stand_in=1
fi
ranks_n=$((gpus > 8 ? 8 : gpus))

# ---- the table --------------------------------------------------------------
table=$out/table.txt
: >"$table"
failed=0
row() {  # STATUS NAME DETAIL
  printf "%-5s  %-46s  %s\n" "$1" "$2" "$3" | tee -a "$table"
  [[ $1 == FAIL ]] && failed=1
  return 0
}
# A gtest binary's summary as a row: PASS (n passed), SKIP (all skipped) or FAIL.
gtest_row() {  # NAME LOG EXIT_CODE
  local name=$1 log=$2 rc=$3 passed skipped
  passed=$(sed -n 's/.*\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  skipped=$(sed -n 's/.*\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  if [[ $rc -ne 0 ]]; then
    row FAIL "$name" "exit $rc: $(grep -m1 -E 'FAILED|error' "$log" || tail -n 1 "$log")"
  elif [[ ${passed:-0} -eq 0 && ${skipped:-0} -gt 0 ]]; then
    row SKIP "$name" "$skipped skipped: $(grep -m1 -o 'no CUDA device[^"]*' "$log" | head -c 80)"
  else
    row PASS "$name" "${passed:-0} passed, ${skipped:-0} skipped"
  fi
}
# mpirun -np R PROGRAM FLAGS..., the "GPU" side (stand-in world in CPU mode).
on() {  # cpu|gpu RANKS LOG PROGRAM FLAGS...
  local side=$1 ranks=$2 log=$3 program=$4 flags=()
  shift 4
  if [[ $side == gpu ]]; then flags=("${gpu_flags[@]}"); else flags=(--backend=cpu); fi
  VMOE_TEST_STAND_IN_WORLD=$([[ $side == gpu ]] && echo $stand_in || echo 0) \
    "$mpiexec" -np "$ranks" --oversubscribe -x VMOE_TEST_STAND_IN_WORLD -x OPENBLAS_NUM_THREADS \
    "$(prog "$program")" "$@" "${flags[@]}" >"$log" 2>&1
}
# A row from compare.py's one line.
compare_row() {  # NAME compare.py ARGS...
  local name=$1 line
  shift
  line=$("$py" "$here/compare.py" "$@" 2>&1 | tail -n 1)
  row "${line%% *}" "$name" "${line#* }"
}
failed_run() {  # NAME LOG
  row FAIL "$1" "$(grep -m1 'error' "$2" || tail -n 1 "$2")"
}

echo "GPU check of $target -> $out"
echo "device: $device"

# ---- op, NCCL and checkpoint tests ---------------------------------------------
if [[ -z $(prog cuda_backend_test 2>/dev/null | grep -v nonexistent) && $backend == cpu ]]; then
  row SKIP "cuda_backend_test, nccl_test" "not in this build (configure with -DVMOE_CUDA=ON)"
else
  log=$out/cuda_backend_test.log
  "$(prog cuda_backend_test)" >"$log" 2>&1
  gtest_row "cuda_backend_test (every op vs the CPU)" "$log" $?
  log=$out/cuda_routing_test.log
  "$(prog cuda_routing_test)" >"$log" 2>&1
  gtest_row "cuda_routing_test (routing, dispatch, combine)" "$log" $?
  log=$out/cuda_bf16_test.log
  "$(prog cuda_bf16_test)" >"$log" 2>&1
  gtest_row "cuda_bf16_test (bf16 GEMMs, the copies GEMM inputs carry)" "$log" $?
  log=$out/cuda_packs_test.log
  "$(prog cuda_packs_test)" >"$log" 2>&1
  gtest_row "cuda_packs_test (128-bit element-wise kernels)" "$log" $?
  for n in 1 $([[ $ranks_n -gt 1 && $backend == cuda ]] && echo "$ranks_n"); do
    log=$out/nccl_test_$n.log
    "$mpiexec" -np "$n" --oversubscribe "$(prog nccl_test)" >"$log" 2>&1
    rc=$?
    gtest_row "nccl_test ($n rank(s))" "$log" $rc
  done
fi
# Out-of-bounds and misaligned accesses of every op test's kernels (compute-sanitizer, if installed).
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [[ $backend == cuda && -n $sanitizer && ${VMOE_CHECK_SANITIZE:-1} != 0 ]]; then
  for t in cuda_backend_test cuda_routing_test cuda_bf16_test cuda_packs_test; do
    log=$out/memcheck_$t.log
    timeout 180 "$sanitizer" --tool memcheck --error-exitcode 1 "$(prog "$t")" >"$log" 2>&1
    rc=$?
    if [[ $rc -eq 0 ]]; then
      row PASS "memcheck $t" "$(grep -m1 -o 'ERROR SUMMARY: [0-9]* errors' "$log")"
    else
      row FAIL "memcheck $t" "exit $rc: $(grep -m1 -E 'Invalid|ERROR SUMMARY' "$log" | head -c 120)"
    fi
  done
fi
log=$out/checkpoint_gpu_test.log
"$(prog checkpoint_test)" --gtest_filter='*Gpu*' >"$log" 2>&1
gtest_row "checkpoints GPU <-> CPU, bit for bit" "$log" $?
# The data of the training rows (made here: a GPU node may have no datasets).
data=$out/data
"$py" "$here/make_dataset.py" "$out/npy" >"$out/data.log" 2>&1 &&
  "$(prog vmoe_import)" --format=npy --input="$out/npy" --output="$data" >>"$out/data.log" 2>&1 ||
  { row FAIL "dataset (make_dataset.py, vmoe_import)" "$(tail -n 1 "$out/data.log")"; data=; }
if [[ $backend == cuda ]]; then
  log=$out/shared_gpu.log
  # One rank more than GPUs: two ranks must share one, and our error says so.
  "$mpiexec" -np $((gpus + 1)) --oversubscribe "$(prog vmoe_train)" --backend=cuda \
    --train_data="$data/train.h5" --total_steps=1 --batch_size=$((8 * (gpus + 1))) \
    --hidden_size=8 --num_layers=1 --num_heads=1 --mlp_dim=8 --patch_size=4 \
    --run_dir="$out/shared_gpu" >"$log" 2>&1
  if grep -q "needs one GPU per rank: ranks 0 and $gpus both use GPU 0" "$log"; then
    row PASS "$((gpus + 1)) ranks on $gpus GPU(s): our error" "$(grep -m1 -o 'ranks 0 and.*' "$log" | head -c 90)"
  else
    row FAIL "$((gpus + 1)) ranks on $gpus GPU(s): our error" "$(grep -m1 -i 'error' "$log" | head -c 120)"
  fi
else
  row SKIP "ranks sharing a GPU: our error" "no GPU"
fi

# ---- training, checkpoints, resume, evaluation: GPU against CPU ----------------
model=(--train_data="$data/train.h5" --eval_data="$data/test.h5" --batch_size=64
  --eval_batch_size=256 --hidden_size=64 --num_layers=4 --num_heads=4 --mlp_dim=128 --patch_size=4
  --pre_logits_size=32 --moe_layers=every:2 --num_experts=4 --num_selected=2 --warmup_steps=5
  --learning_rate=3e-3 --log_every=2 --seed=3 --checkpoint_every=10 --keep_checkpoints=2)
for r in 1 $([[ $ranks_n -gt 1 ]] && echo "$ranks_n"); do
  [[ -n $data ]] || break
  w=$out/train_$r
  rs="$r rank$([[ $r -gt 1 ]] && echo s)"
  mkdir -p "$w"
  on gpu "$r" "$w/gpu.log" vmoe_train "${model[@]}" --total_steps=40 --run_dir="$w/gpu" ||
    { failed_run "train on $rs (GPU)" "$w/gpu.log"; continue; }
  on cpu "$r" "$w/cpu.log" vmoe_train "${model[@]}" --total_steps=40 --run_dir="$w/cpu" ||
    { failed_run "train on $rs (CPU)" "$w/cpu.log"; continue; }
  compare_row "train $rs: GPU vs CPU losses" losses "$w/gpu" "$w/cpu" --rtol=1e-3
  kept=$(cd "$w/gpu/checkpoints" && ls | tr '\n' ' ')
  if [[ $kept == "ckpt-0000000030.h5 ckpt-0000000040.h5 " ]]; then
    row PASS "  periodic checkpoints, keep 2" "$kept"
  else
    row FAIL "  periodic checkpoints, keep 2" "found: $kept"
  fi
  # Resume from step 30 as after a crash: on the GPU, and each backend from the other's file.
  for pair in gpu:gpu gpu:cpu cpu:gpu; do
    from=${pair%%:*} to=${pair##*:}
    mkdir -p "$w/resume_${from}_$to/checkpoints"
    cp "$w/$from/checkpoints/ckpt-0000000030.h5" "$w/resume_${from}_$to/checkpoints/"
    if ! on "$to" "$r" "$w/resume_${from}_$to.log" vmoe_train "${model[@]}" --total_steps=40 \
      --run_dir="$w/resume_${from}_$to" --resume; then
      failed_run "  resume: ${from^^} checkpoint on ${to^^}" "$w/resume_${from}_$to.log"
      continue
    fi
    if [[ $from == "$to" ]]; then
      compare_row "  resume on GPU (same losses bit for bit)" losses "$w/gpu" "$w/resume_gpu_gpu" \
        --from_step=30
    else
      compare_row "  resume: ${from^^} checkpoint on ${to^^}" losses "$w/$to" "$w/resume_${from}_$to" \
        --from_step=30 --rtol=1e-3
    fi
  done
  # The step captured as a CUDA graph and replayed: the same kernels, so the
  # same losses bit for bit (evaluations between steps make it recapture).
  if on gpu "$r" "$w/captured.log" vmoe_train "${model[@]}" --total_steps=40 --capture_step --eval_every=15 \
    --run_dir="$w/captured"; then
    if grep -q 'could not be captured' "$w/captured.log"; then
      row FAIL "  captured step (CUDA graph)" "$(grep -m1 'could not be captured' "$w/captured.log" | head -c 160)"
    else
      compare_row "  captured step (CUDA graph): same losses bit for bit" losses "$w/gpu" "$w/captured"
    fi
  else
    failed_run "  captured step (CUDA graph)" "$w/captured.log"
  fi
  if on gpu "$r" "$w/finetune.log" vmoe_train "${model[@]}" --total_steps=10 \
    --run_dir="$w/finetune" --init_from="$w/gpu/checkpoints/ckpt-0000000040.h5" --init_skip=head; then
    row PASS "  fine-tune on GPU (--init_from)" "$(grep -m1 -o '(step [0-9]*) in .*' "$w/finetune.log" | sed 's/ in [0-9.]*s:/:/')"
  else
    failed_run "  fine-tune on GPU (--init_from)" "$w/finetune.log"
  fi
  if [[ $r -eq 1 ]]; then
    # Mixed precision: the GPU's bf16 against the CPU's emulation of it.
    if on gpu 1 "$w/gpu_bf16.log" vmoe_train "${model[@]}" --total_steps=40 --precision=bf16 \
      --run_dir="$w/gpu_bf16" &&
      on cpu 1 "$w/cpu_bf16.log" vmoe_train "${model[@]}" --total_steps=40 --precision=bf16 \
        --run_dir="$w/cpu_bf16"; then
      compare_row "  bf16: GPU vs CPU (emulated) losses" losses "$w/gpu_bf16" "$w/cpu_bf16" --rtol=1e-2
    else
      failed_run "  bf16 training" "$([[ -s $w/cpu_bf16.log ]] && echo "$w/cpu_bf16.log" || echo "$w/gpu_bf16.log")"
    fi
  fi
  eval_flags=(--checkpoint="$w/gpu" --eval_capacity_sweep=0.5,1.05 --fewshot="$data"
    --fewshot_shots=1,5,10 --fewshot_seeds=2)
  if on gpu "$r" "$w/eval_gpu.log" vmoe_eval "${eval_flags[@]}" --out_dir="$w/eval_gpu" &&
    on cpu "$r" "$w/eval_cpu.log" vmoe_eval "${eval_flags[@]}" --out_dir="$w/eval_cpu"; then
    compare_row "  vmoe_eval GPU vs CPU (sweep, few-shot)" eval "$w/eval_gpu" "$w/eval_cpu" --tol=2e-3
    if ls "$w/eval_gpu/routing/"*/block_1.csv >/dev/null 2>&1; then
      row PASS "  routing analysis on GPU" "$(ls "$w/eval_gpu/routing/"* | tr '\n' ' ')"
    else
      row FAIL "  routing analysis on GPU" "no routing tables in $w/eval_gpu/routing"
    fi
  else
    failed_run "  vmoe_eval on $rs" "$([[ -s $w/eval_cpu.log ]] && echo "$w/eval_cpu.log" || echo "$w/eval_gpu.log")"
  fi
done

# ---- the training-step benchmark -------------------------------------------------
if [[ $backend == cuda ]]; then
  s32=(--image=224 --channels=3 --patch=32 --dim=512 --depth=8 --heads=8 --mlp=2048 --batch=256)
  b16=(--image=224 --channels=3 --patch=16 --dim=768 --depth=12 --heads=12 --mlp=3072 --batch=128)
  models=("V-MoE-S/32 224 batch 256" "V-MoE-B/16 224 batch 128")
else
  s32=(--image=28 --channels=1 --patch=7 --dim=32 --depth=2 --heads=2 --mlp=64 --batch=64)
  b16=(--image=28 --channels=1 --patch=4 --dim=32 --depth=2 --heads=2 --mlp=64 --batch=64)
  models=("tiny (patch 7)" "tiny (patch 4)")
fi
common=(--experts=8 --k=2 --moe_every=2 --group=8 --steps=10 --warmup=3)
peer_ok=0
if [[ -n ${VMOE_TORCH_PEER:-} ]] &&
  env -u LD_LIBRARY_PATH "${VMOE_TORCH_PYTHON:-$py}" -c 'import torch' >/dev/null 2>&1; then
  peer_ok=1
fi
runs=(0:fp32 0:bf16 0:bf16-captured 0:tf32 1:fp32 1:bf16 1:bf16-captured 1:bf16-strided)
quick=${VMOE_CHECK_QUICK:-0}
if [[ $quick == 1 ]]; then
  runs=(0:bf16-captured 1:bf16 1:bf16-captured 1:bf16-strided)
  peer_ok=0
fi
for run in "${runs[@]}"; do
  i=${run%%:*} precision=${run##*:}
  if [[ $i -eq 0 ]]; then flags=("${s32[@]}"); else flags=("${b16[@]}"); fi
  log=$out/bench_${i}_$precision.log
  name="step ${models[$i]}, $precision"
  extra=(--precision="$precision")
  [[ $precision == tf32 ]] && extra=(--precision=fp32 --tf32)
  [[ $precision == bf16-strided ]] && extra=(--precision=bf16 --attention_pad_to=0)
  [[ $precision == bf16-captured ]] && extra=(--precision=bf16 --capture_step)
  if [[ $precision != fp32 && $precision != bf16 && $backend != cuda ]]; then continue; fi
  if on gpu 1 "$log" train_step_bench "${flags[@]}" "${common[@]}" "${extra[@]}"; then
    if [[ $precision == *captured* ]] && ! grep -q 'replayed=yes' "$log"; then
      # Timed uncaptured, the row would pass for a captured figure.
      row FAIL "$name" "not replayed: $(grep -m1 -o 'could not be captured.*' "$log" | head -c 120)"
      continue
    fi
    detail="ours $("$py" "$here/compare.py" bench "$log")"
    if [[ $peer_ok -eq 1 && ($precision == fp32 || $precision == bf16) ]]; then
      plog=$out/peer_${i}_$precision.log
      env -u LD_LIBRARY_PATH "${VMOE_TORCH_PYTHON:-$py}" "$VMOE_TORCH_PEER" "${flags[@]}" \
        --experts=8 --k=2 --moe_every=2 --group=8 --steps=10 --warmup=3 \
        --device="$([[ $backend == cuda ]] && echo cuda || echo cpu)" --precision="$precision" \
        >"$plog" 2>&1 && detail+="; PyTorch $("$py" "$here/compare.py" bench "$plog")"
    fi
    row INFO "$name" "$detail"
  else
    failed_run "$name" "$log"
  fi
done

# ---- where one B/16 bf16 step's time goes, per kernel (Nsight Compute, if installed) ----
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [[ $backend == cuda && -n $ncu && ${VMOE_CHECK_NCU:-1} != 0 ]]; then
  log=$out/kernels_b16_bf16.csv
  if timeout 120 "$ncu" --clock-control none --metrics gpu__time_duration.sum --csv --page raw \
    "$(prog train_step_bench)" "${b16[@]}" "${common[@]}" --steps=1 --warmup=0 --peak_gemm=-1 \
    --phases=false --precision=bf16 --backend=cuda >"$log" 2>"$out/ncu.err"; then
    "$py" "$here/kernel_times.py" "$log" --top 25 >"$out/kernels_b16_bf16.txt"
    row INFO "kernels of one B/16 bf16 step (ncu)" \
      "$(head -n 1 "$out/kernels_b16_bf16.txt"); top: $(sed -n 2p "$out/kernels_b16_bf16.txt" | cut -c1-60) (kernels_b16_bf16.txt)"
  else
    row INFO "kernels of one B/16 bf16 step (ncu)" "ncu failed: $(tail -n 1 "$out/ncu.err")"
  fi
fi

# ---- the input pipeline: 224² JPEG shards to 8-bit batches, no model ----------------
cores=$(nproc)
threads=$((cores > 2 ? cores - 2 : 1))
if [[ $backend == cuda && $quick != 1 ]]; then
  "$(prog vmoe_synth)" --output="$out/synth" --num_images=16384 --num_classes=1000 \
    --images_per_shard=4096 --image_size=224 >"$out/synth.log" 2>&1
  log=$out/loader_bench.log
  if "$(prog loader_bench)" --data="$out/synth/train-*.h5" --image_size=224 --uint8 \
    --threads="1,$threads" --seconds=4 >"$log" 2>&1; then
    row INFO "input pipeline: 224² JPEG, uint8, $threads threads" \
      "$(grep -o 'loader, [0-9]* thread.*' "$log" | tail -n 1) | $(grep -m1 -o 'shard reads alone.*' "$log")"
  else
    failed_run "input pipeline (loader_bench)" "$log"
  fi
fi

echo
echo "GPU check: $device; $((SECONDS - start)) s; logs in $out"
printf "%-5s  %-46s  %s\n" "" "check" "result"
cat "$table"
exit $failed
