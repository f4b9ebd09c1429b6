#!/usr/bin/env python3
"""Compares two runs of the GPU check (standard library only: a GPU node may
have neither numpy nor h5py). Prints one line, "PASS ..." or "FAIL ...", and
exits 0 or 1.

    compare.py losses RUN_A RUN_B [--from_step N] [--rtol X]
        train losses of two run directories at every logged step (> N) agree
        within X relative (0: bit for bit)
    compare.py eval EVAL_A EVAL_B [--tol X]
        two vmoe_eval output folders: precision@1, loss and dropped share of
        each dataset, every capacity-sweep point and every few-shot mean agree
        within X (absolute; precision within X plus one test image)
    compare.py bench LOG
        a train_step_bench (or PyTorch peer) log in a few words: images/s,
        MFU against the measured GEMM peak, the largest phases
"""
import argparse
import json
import re
import sys


def train_losses(run, from_step):
    out = {}
    with open(f"{run}/metrics.jsonl") as f:
        for r in map(json.loads, f):
            if r.get("type") == "train" and r["step"] > from_step:
                out[r["step"]] = r["loss"]  # a resumed run's repeat wins
    return out


def losses(a, b, from_step, rtol):
    la, lb = train_losses(a, from_step), train_losses(b, from_step)
    if not la or la.keys() != lb.keys():
        return False, f"logged steps differ: {sorted(la)[:3]}... vs {sorted(lb)[:3]}..."
    worst, differ = 0.0, 0
    for s in la:
        d = abs(la[s] - lb[s]) / max(abs(la[s]), 1e-12)
        worst = max(worst, d)
        differ += la[s] != lb[s]
    ok = differ == 0 if rtol == 0 else worst <= rtol
    last = max(la)
    detail = (f"{len(la)} steps, {'identical' if differ == 0 else f'{differ} differ, worst relative {worst:.1e}'}"
              f"; loss at step {last}: {la[last]:.5f} vs {lb[last]:.5f}")
    return ok, detail


def load(folder, name):
    with open(f"{folder}/{name}") as f:
        return json.load(f)


def evals(a, b, tol):
    worst = 0.0
    checks = 0
    problems = []
    image = 0.0  # one test image's share of precision@1
    def near(what, x, y, t):
        nonlocal worst, checks
        checks += 1
        worst = max(worst, abs(x - y))
        if abs(x - y) > t:
            problems.append(f"{what}: {x:.5f} vs {y:.5f}")
    for da, db in zip(load(a, "eval.json")["datasets"], load(b, "eval.json")["datasets"]):
        image = 1.0 / da["examples"]
        near(f"{da['name']} precision@1", da["precision_at_1"], db["precision_at_1"], tol + image)
        near(f"{da['name']} loss", da["loss"], db["loss"], tol * max(1, da["loss"]))
        if "dropped" in da:
            near(f"{da['name']} dropped", da["dropped"], db["dropped"], tol)
    try:
        sa, sb = load(a, "sweep.json")["points"], load(b, "sweep.json")["points"]
        for pa, pb in zip(sa, sb):
            what = f"sweep {pa['capacity_ratio']} {'bpr' if pa['batch_priority'] else 'vanilla'}"
            near(what + " precision@1", pa["precision_at_1"], pb["precision_at_1"], tol + image)
            near(what + " dropped", pa["dropped"], pb["dropped"], tol)
    except FileNotFoundError:
        pass
    try:
        fa, fb = load(a, "fewshot.json")["datasets"], load(b, "fewshot.json")["datasets"]
        for ta, tb in zip(fa, fb):
            for ra, rb in zip(ta["results"], tb["results"]):
                near(f"few-shot {ra['shots']}-shot l2 {ra['l2']}", ra["mean"], rb["mean"],
                     tol + 1.0 / ta["test_examples"])
    except FileNotFoundError:
        pass
    if problems:
        return False, "; ".join(problems[:3])
    return checks > 0, f"{checks} numbers, largest difference {worst:.1e}"


def bench(log):
    with open(log) as f:
        text = f.read()
    m = re.search(r"images/s=([0-9.]+)", text)
    if not m:
        return False, "no images/s in " + log
    out = f"{float(m.group(1)):,.0f} img/s"
    mfu = re.search(r"MFU=([0-9.]+)%", text)
    if mfu:
        out += f", MFU {mfu.group(1)}%"
    phases = [(float(v), k) for k, v in re.findall(r" ([a-z_]+)=([0-9.]+)%", text) if k != "MFU"]
    top = sorted(phases, reverse=True)[:3]
    if top:
        out += " (" + ", ".join(f"{k} {v:.0f}%" for v, k in top) + ")"
    return True, out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["losses", "eval", "bench"])
    p.add_argument("a")
    p.add_argument("b", nargs="?")
    p.add_argument("--from_step", type=int, default=0)
    p.add_argument("--rtol", type=float, default=0.0)
    p.add_argument("--tol", type=float, default=1e-3)
    args = p.parse_args()
    try:
        if args.what == "losses":
            ok, detail = losses(args.a, args.b, args.from_step, args.rtol)
        elif args.what == "eval":
            ok, detail = evals(args.a, args.b, args.tol)
        else:
            ok, detail = bench(args.a)
            print(detail)
            return 0 if ok else 1
    except (OSError, ValueError, KeyError) as e:
        ok, detail = False, f"{type(e).__name__}: {e}"
    print(("PASS " if ok else "FAIL ") + detail)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
