#!/usr/bin/env bash
# The collective watchdog: 2 ranks train a small V-MoE with
# --collective_timeout=5; one rank is stopped (SIGSTOP, as a frozen node or a
# hung GPU would be). The job must end within timeout + 10 s of the stop,
# non-zero, with one message naming the collective, the step and the stopped
# rank. Done for each rank in turn.
#   collective_watchdog.sh MPIEXEC VMOE_TRAIN DATA_DIR WORK_DIR
set -u
mpiexec=$1
train=$2
data=$3
work=$4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
fail() { echo "FAIL: $*"; exit 1; }
timeout_s=5

for stopped in 1 0; do
  run=$work/run_$stopped
  rm -rf "$run"
  mkdir -p "$run"
  "$mpiexec" -np 2 --oversubscribe "$train" --train_data="$data/train.h5" --run_dir="$run" \
    --total_steps=1000000 --batch_size=32 --hidden_size=16 --num_heads=2 --mlp_dim=16 \
    --num_layers=2 --patch_size=7 --moe_layers=every:2 --num_experts=4 --log_every=100 \
    --checkpoint_every=0 --collective_timeout=$timeout_s >"$run/out.txt" 2>"$run/err.txt" &
  job=$!
  # Wait for training to be under way (both heartbeats, a logged step).
  for _ in $(seq 100); do
    [[ -f $run/.heartbeat/rank-0 && -f $run/.heartbeat/rank-1 ]] &&
      grep -q "^step" "$run/out.txt" 2>/dev/null && break
    sleep 0.2
  done
  [[ -f $run/.heartbeat/rank-$stopped ]] || { kill $job; fail "no heartbeat of rank $stopped"; }
  pid=$(awk '{print $1}' "$run/.heartbeat/rank-$stopped")
  kill -STOP "$pid" || fail "cannot stop pid $pid"
  stopped_at=$(date +%s)
  # A hang is a failure too: give up (and clean up) well after the deadline.
  for _ in $(seq 120); do kill -0 $job 2>/dev/null || break; sleep 0.5; done
  if kill -0 $job 2>/dev/null; then
    kill -CONT "$pid"; kill $job; sleep 1; pkill -9 -f "$run" 2>/dev/null
    fail "rank $stopped stopped: the job still runs after 60 s"
  fi
  wait $job
  code=$?
  elapsed=$(($(date +%s) - stopped_at))
  kill -CONT "$pid" 2>/dev/null
  err=$(cat "$run/err.txt")
  ((code != 0)) || fail "exit code 0 with rank $stopped stopped"
  ((elapsed <= timeout_s + 10)) || fail "took ${elapsed}s after the stop (timeout ${timeout_s}s)"
  line=$(grep "vmoe_train: error" <<<"$err")
  [[ $(grep -c . <<<"$line") == 1 ]] || fail "expected one error line, got: $err"
  other=$((1 - stopped))
  grep -Eq "vmoe_train: error \(rank $other of 2\): waited [0-9]+ s in MPI [a-z_]+ at step [0-9]+, longer than --collective_timeout=$timeout_s; rank $stopped \(pid $pid\): silent for [0-9]+ s \(stopped, frozen or dead\)" <<<"$line" ||
    fail "the message does not name the collective, step and rank $stopped: $err"
  echo "ok: rank $stopped stopped, exit $code ${elapsed}s later: $line"
done
