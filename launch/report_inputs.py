"""The inputs of launch/report.py: a run directory's files, parsed and checked.

Every file is optional (absent: None or empty); a present file that cannot
be understood raises Malformed with a one-line message naming it.
"""
import csv
import io
import json
import math
import os
import re

import numpy as np

LOAD_KEY = re.compile(r"^moe/(block_\d+|image_router)/load_e(\d+)$")
NUMERIC = {"step", "epoch", "loss", "aux_loss", "grad_norm", "learning_rate", "images_per_s",
           "elapsed_s", "precision_at_1", "examples", "dropped", "router_superclass_accuracy",
           "seconds"}


class Malformed(Exception):
    """A present input file that cannot be understood; the message names it."""


class Missing(Exception):
    """A figure's inputs are absent; the message says which."""


def check(cond, where, why):
    """Raises Malformed("where: why") unless cond."""
    if not cond:
        raise Malformed(f"{where}: {why}")


def numbers(obj, keys, where, what="", optional=()):
    """Makes obj[k] a float for k in keys (required) and optional (absent or null: NaN)."""
    check(isinstance(obj, dict), where, f"{what or 'a record'} is not a JSON object")
    for k in (*keys, *optional):
        check(k in obj or k in optional, where, f"no {what}{k}")
        v = obj.get(k)
        check(v is None or type(v) in (int, float), where, f"{what}{k} is not a number: {v!r}")
        obj[k] = math.nan if v is None else float(v)


def router_order(name):
    """Sort key: block_1 < block_3 < block_11 < image_router."""
    m = re.fullmatch(r"block_(\d+)", name)
    return (0, int(m.group(1)), "") if m else (1, 0, name)


class Run:
    """The parsed and checked inputs of a run directory; absent files are None or empty."""

    def __init__(self, root):
        self.root = root
        self.metrics = self.read_metrics("metrics.jsonl")
        self.result, self.eval = self.read_json("result.json"), self.read_json("eval/eval.json")
        self.sweep_name = "eval/sweep.json" if self.exists("eval/sweep.json") else "sweep.json"
        self.sweep, where = self.read_json(self.sweep_name), self.path(self.sweep_name)
        check(self.sweep is None or isinstance(self.sweep.get("points"), list), where,
              'no "points" list')
        for i, p in enumerate(self.sweep["points"] if self.sweep else []):
            numbers(p, ("capacity_ratio", "batch_priority", "precision_at_1"), where,
                    f"points[{i}].", ("dropped", "loss"))
        self.fewshot, where = self.read_json("eval/fewshot.json"), self.path("eval/fewshot.json")
        check(self.fewshot is None or isinstance(self.fewshot.get("datasets"), list), where,
              'no "datasets" list')
        for i, d in enumerate(self.fewshot["datasets"] if self.fewshot else []):
            numbers(d, (), where, f"datasets[{i}].", ("best_l2",))
            check(isinstance(d.get("name"), str) and isinstance(d.get("results"), list), where,
                  f'datasets[{i}] needs a "name" and a "results" list')
            for j, r in enumerate(d["results"]):
                numbers(r, ("shots", "l2", "mean"), where, f"datasets[{i}].results[{j}].",
                        ("std",))
        self.confusion = self.read_csv("confusion.csv") if self.exists("confusion.csv") else None
        self.routing, self.superclass = {}, {}  # {dataset: {router: table}}, {dataset: table}
        for ds in self.listdir("eval/routing"):
            for f in self.listdir(f"eval/routing/{ds}"):
                table = self.read_csv(f"eval/routing/{ds}/{f}") if f.endswith(".csv") else None
                if f == "superclass_confusion.csv":
                    self.superclass[ds] = table
                elif table:
                    self.routing.setdefault(ds, {})[f[:-4]] = table

    def listdir(self, name):
        return sorted(os.listdir(self.path(name))) if os.path.isdir(self.path(name)) else []

    def path(self, name):
        return os.path.join(self.root, name)

    def exists(self, name):
        return os.path.isfile(self.path(name))

    def text(self, name):
        """The contents of a UTF-8 text file."""
        try:
            with open(self.path(name), encoding="utf-8", newline="") as f:
                return f.read()
        except UnicodeDecodeError:
            raise Malformed(f"{self.path(name)}: not UTF-8 text") from None

    def read_json(self, name):
        """The top-level object of a JSON file, or None if absent."""
        if not self.exists(name):
            return None
        try:
            obj = json.loads(self.text(name))
        except ValueError as e:
            raise Malformed(f"{self.path(name)}: malformed JSON ({e})") from None
        check(isinstance(obj, dict), self.path(name), "not a JSON object")
        return obj

    def read_metrics(self, name):
        """{type: records sorted by step}, keeping the last record of each (type, step)."""
        if not self.exists(name):
            return None
        last = {}
        for n, line in enumerate(self.text(name).splitlines(), 1):
            where = f"{self.path(name)}:{n}"
            try:
                rec = json.loads(line) if line.strip() else {"type": "blank"}
            except ValueError as e:
                raise Malformed(f"{where}: malformed JSON ({e})") from None
            check(isinstance(rec, dict) and isinstance(rec.get("type"), str), where,
                  'not a JSON object with a string "type"')
            if rec["type"] in ("train", "eval", "checkpoint"):
                numbers(rec, ["step"] + [k for k in rec if k in NUMERIC or k.startswith("moe/")],
                        where)
                check(math.isfinite(rec["step"]), where, '"step" is null')
                last[(rec["type"], rec["step"])] = rec
        out = {"train": [], "eval": [], "checkpoint": []}
        for (kind, _), rec in sorted(last.items(), key=lambda kv: kv[0][1]):
            out[kind].append(rec)
        return out

    def read_csv(self, name):
        """(row names, column names, float matrix) of a CSV table with row labels."""
        where, rows = self.path(name), [r for r in csv.reader(io.StringIO(self.text(name))) if r]
        check(len(rows) >= 2 and len(rows[0]) >= 2, where, "needs a header and a data row")
        values = []
        for n, r in enumerate(rows[1:], 2):
            check(len(r) == len(rows[0]), where,
                  f"line {n} has {len(r)} fields, the header {len(rows[0])}")
            try:
                values.append([float(x) for x in r[1:]])
            except ValueError:
                raise Malformed(f"{where}: line {n}: a value is not a number") from None
        return [r[0] for r in rows[1:]], rows[0][1:], np.array(values)

    def records(self, kind, need=False):
        """The records of a type; need: raise Missing if there is no metrics.jsonl."""
        if need and self.metrics is None:
            raise Missing("no metrics.jsonl")
        return self.metrics[kind] if self.metrics else []

    def routers(self):
        """{router: sorted expert indices} from the training records' load_e<i> keys."""
        found = {}
        for m in (LOAD_KEY.match(k) for rec in self.records("train") for k in rec):
            if m:
                found.setdefault(m.group(1), set()).add(int(m.group(2)))
        return {r: sorted(found[r]) for r in sorted(found, key=router_order)}
