#!/usr/bin/python3
"""A visual report of a vmoe_train run directory.

    launch/report.py RUN_DIR [--out DIR]        (default DIR: RUN_DIR/report)

Reads whichever of metrics.jsonl, result.json, confusion.csv, sweep.json,
eval/sweep.json, eval/eval.json, eval/fewshot.json and eval/routing/<dataset>/*.csv
exist, writes one PNG per figure and an index.html showing them, and prints
"report: DIR/index.html" last. A figure whose inputs are missing is listed as
not available; a malformed input file is a one-line error and exit status 1.
"""
import argparse
import html
import math
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from report_inputs import Malformed, Missing, Run, check, router_order  # noqa: E402

DPI = 110
plt.rcParams.update({"axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                     "axes.spines.right": False, "font.size": 9, "axes.titlesize": 10,
                     "legend.fontsize": 8, "legend.framealpha": 0.8})


def series(records, key):
    """(steps, values) of the records that have a finite `key`."""
    pts = [(r["step"], r[key]) for r in records if key in r and math.isfinite(r[key])]
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def figure(nrows=1, ncols=1, w=6.0, h=4.0, steps=False):
    """A figure with an nrows x ncols array of axes; steps: integer x ticks."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat if steps else ():
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, axes


def save(fig, out, name):
    fig.savefig(os.path.join(out, name), dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return name


def pct(x):
    return f"{100 * x:.2f}%"


def fig_loss(run, out):
    """Training and eval loss vs step; the auxiliary loss in a second panel for MoE."""
    (s, loss), (es, eloss) = (series(run.records(t, True), "loss") for t in ("train", "eval"))
    if not len(s) and not len(es):
        raise Missing("no train or eval loss in metrics.jsonl")
    a_s, aux = series(run.records("train"), "aux_loss")
    moe = bool(run.routers()) and len(a_s) > 0
    fig, axes = figure(1, 2 if moe else 1, steps=True)
    ax = axes[0][0]
    if len(s):
        ax.plot(s, loss, label="train loss")
    if len(es):
        ax.plot(es, eloss, "o-", label="eval loss")
    ax.set(title="Loss", xlabel="step", ylabel="cross-entropy")
    ax.legend()
    if moe:
        axes[0][1].plot(a_s, aux, color="C2", label="auxiliary loss")
        axes[0][1].set(title="Auxiliary (load-balancing) loss", xlabel="step",
                       ylabel="weighted auxiliary loss")
        axes[0][1].legend()
    tail = f"; final eval loss {eloss[-1]:.4f} at step {es[-1]:.0f}" if len(es) else ""
    return [(save(fig, out, "loss.png"), "Training loss per log interval" +
             (" and the weighted auxiliary loss of the MoE routers" if moe else "") + tail + ".")]


def fig_accuracy(run, out):
    """Eval precision@1 (and the image router's super-class accuracy) vs step."""
    s, p = series(run.records("eval", True), "precision_at_1")
    if not len(s):
        raise Missing("no eval records in metrics.jsonl")
    fig, axes = figure(steps=True)
    ax = axes[0][0]
    ax.plot(s, 100 * p, "o-", label="precision@1")
    ax.annotate(pct(p[-1]), (s[-1], 100 * p[-1]), textcoords="offset points", xytext=(-8, 8),
                ha="right")
    ss, sa = series(run.records("eval"), "router_superclass_accuracy")
    if len(ss):
        ax.plot(ss, 100 * sa, "s--", label="router super-class accuracy")
    last = max([s[-1]] + [r["step"] for r in run.records("train")])
    ax.set(title="Evaluation accuracy", xlabel="step", ylabel="accuracy (%)",
           xlim=(0, 1.04 * last))
    ax.legend()
    return [(save(fig, out, "accuracy.png"),
             f"Evaluation precision@1 vs step; final {pct(p[-1])} at step {s[-1]:.0f}.")]


def fig_learning_rate(run, out):
    """Learning rate and throughput vs step, two panels."""
    (s, lr), (ts, ips) = (series(run.records("train", True), k)
                          for k in ("learning_rate", "images_per_s"))
    if not len(s) and not len(ts):
        raise Missing("no train records in metrics.jsonl")
    fig, axes = figure(1, 2, steps=True)
    axes[0][0].plot(s, lr, color="C0")
    axes[0][0].set(title="Learning rate", xlabel="step", ylabel="learning rate")
    axes[0][0].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    axes[0][1].plot(ts, ips, color="C1")
    axes[0][1].set(title="Throughput", xlabel="step", ylabel="images / s", ylim=(0, None))
    mean = f"; mean {np.mean(ips):.0f} images/s" if len(ips) else ""
    return [(save(fig, out, "learning_rate.png"),
             f"Learning-rate schedule and training throughput per log interval{mean}.")]


def fig_expert_load(run, out):
    """Per router: each expert's share of the expert choices, and the dropped fraction, vs step."""
    run.records("train", need=True)  # Missing if there is no metrics.jsonl
    routers = run.routers()
    if not routers:
        raise Missing("no MoE routing metrics (moe/.../load_e<i>) in metrics.jsonl: dense run")
    ncols = min(3, len(routers))
    fig, axes = figure(math.ceil(len(routers) / ncols), ncols, 5.0, 3.6, steps=True)
    for ax in axes.flat[len(routers):]:
        ax.set_visible(False)
    for ax, (router, experts) in zip(axes.flat, routers.items()):
        n = len(experts)
        cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "viridis")
        for i, e in enumerate(experts):
            ax.plot(*series(run.records("train"), f"moe/{router}/load_e{e}"), lw=1.2,
                    color=cmap(i if n <= 20 else i / (n - 1)), label=f"e{e}")
        ds, drop = series(run.records("train"), f"moe/{router}/dropped")
        if len(ds):
            ax.plot(ds, drop, "k--", lw=1.5, label="dropped")
        ax.axhline(1 / n, color="grey", ls=":", lw=1, label="uniform")
        ax.set(title=f"{router} ({n} experts)", xlabel="step", ylabel="fraction of expert choices",
               ylim=(0, None))
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[0][-1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1),
                       ncol=1 if len(labels) <= 18 else 2, title="expert")
    return [(save(fig, out, "expert_load.png"),
             "Expert load per MoE layer: the fraction of each layer's expert choices routed to "
             "each expert (dotted: uniform), and the fraction dropped by the capacity limit.")]


def heatmap(ax, matrix, rows, cols, vmax=None, cmap="viridis", annotate=None):
    """Draws matrix on ax with labelled ticks; annotate formats each cell (None: no text)."""
    im = ax.imshow(matrix, cmap=cmap, vmin=0, vmax=vmax, aspect="auto", interpolation="nearest")
    rs, cs = max(1, len(rows) // 40), max(1, len(cols) // 32)
    ax.set_yticks(range(0, len(rows), rs), rows[::rs])
    ax.set_xticks(range(0, len(cols), cs), cols[::cs],
                  rotation=90 if max(len(c) for c in cols) > 3 else 0)
    ax.grid(False)
    for (i, j), v in np.ndenumerate(matrix) if annotate else ():
        r, g, b, _ = im.cmap(im.norm(v))
        ax.text(j, i, annotate.format(v) if v >= 0.005 else "", ha="center", va="center",
                fontsize=7, color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white")
    return im


def fig_routing(run, out):
    """Per dataset: each router's class x expert routing frequencies side by side."""
    if not run.routing and not run.superclass:
        raise Missing("no eval/routing/<dataset>/<router>.csv (written by the evaluation tool)")
    made = []
    for ds, routers in run.routing.items():
        names = sorted(routers, key=router_order)
        vmax = max(t[2].max() for t in routers.values()) or 1
        w = max(3.2, 0.3 * max(len(t[1]) for t in routers.values()) + 1.8)
        h = max(3.0, 0.22 * max(len(t[0]) for t in routers.values()) + 1.2)
        fig, axes = figure(1, len(names), w, h)
        for k, (ax, r) in enumerate(zip(axes[0], names)):
            rows, cols, m = routers[r]
            im = heatmap(ax, m, rows if k == 0 else [""] * len(rows), cols, vmax, cmap="magma")
            if cols[-1] == "dropped":
                ax.axvline(len(cols) - 1.5, color="white", lw=2)
            ax.set(title=r, xlabel="expert", ylabel="class" if k == 0 else "")
        fig.colorbar(im, ax=list(axes[0]), shrink=0.9, pad=0.01, aspect=30,
                     label="fraction of the class's choices")
        fig.suptitle(f"Routing by class: {ds}")
        made.append((save(fig, out, f"routing_{ds}.png"),
                     f"{ds}: for each router, the fraction of each class's expert choices that "
                     "went to each expert (last column: dropped), as in the V-MoE paper."))
    for ds, (rows, cols, m) in run.superclass.items():
        fig, axes = figure(1, 1, max(3.5, 0.45 * len(cols) + 2), max(2.5, 0.4 * len(rows) + 1.2))
        im = heatmap(axes[0][0], m, rows, cols, cmap="Blues",
                     annotate="{:.0f}" if m.size <= 150 else None)
        axes[0][0].set(title=f"Super-class x chosen expert: {ds}", xlabel="expert",
                       ylabel="super-class")
        fig.colorbar(im, ax=axes[0][0], label="images")
        made.append((save(fig, out, f"superclass_confusion_{ds}.png"),
                     f"{ds}: how often the image router sent each super-class to each expert."))
    return made


def fig_capacity_sweep(run, out):
    """Precision@1 and dropped fraction vs capacity ratio, BPR against vanilla routing."""
    if not run.sweep or not run.sweep["points"]:
        raise Missing("no sweep.json or eval/sweep.json (train with --eval_capacity_sweep)")
    fig, axes = figure(1, 2, 5.0, 3.8)
    for bpr, label, style in ((1, "BPR", "o-"), (0, "vanilla", "s--")):
        pts = sorted((p for p in run.sweep["points"] if p["batch_priority"] == bpr),
                     key=lambda p: p["capacity_ratio"])
        c = [p["capacity_ratio"] for p in pts]
        if not pts:
            continue
        axes[0][0].plot(c, [100 * p["precision_at_1"] for p in pts], style, label=label)
        axes[0][1].plot(c, [100 * p["dropped"] for p in pts], style, label=label)
    axes[0][0].set(title="Precision@1 vs capacity", xlabel="capacity ratio C",
                   ylabel="precision@1 (%)")
    axes[0][1].set(title="Dropped expert choices", xlabel="capacity ratio C", ylabel="dropped (%)")
    for ax in axes[0]:
        ax.legend()
    if isinstance(run.sweep.get("dataset"), str):
        fig.suptitle(run.sweep["dataset"])
    return [(save(fig, out, "capacity_sweep.png"),
             f"Capacity sweep ({run.sweep_name}): evaluation precision@1 and the fraction of "
             "expert choices dropped at each capacity ratio, with batch prioritized routing "
             "(BPR) and vanilla routing.")]


def fewshot_at(d):
    """(l2, results sorted by shots) at best_l2, else at l2 = 1024, else at the first l2."""
    l2s = list(dict.fromkeys(r["l2"] for r in d["results"]))
    best = d.get("best_l2")
    pick = best if best in l2s else 1024.0 if 1024.0 in l2s else (l2s[0] if l2s else None)
    return pick, sorted((r for r in d["results"] if r["l2"] == pick), key=lambda r: r["shots"])


def log_ticks(ax, values, base=10):
    """A log x axis with ticks exactly at values (if there are few)."""
    ax.set_xscale("log", base=base)
    if len(values) <= 10:
        ax.set_xticks(sorted(values), [f"{v:g}" for v in sorted(values)])
        ax.minorticks_off()
    ax.margins(x=0.06)


def fig_fewshot(run, out):
    """Few-shot accuracy vs shots per dataset, error bars = std over seeds."""
    if not run.fewshot or not run.fewshot["datasets"]:
        raise Missing("no eval/fewshot.json (written by the evaluation tool)")
    fig, axes = figure(1, 1, 6.0, 4.2)
    ax, shots = axes[0][0], set()
    for d in run.fewshot["datasets"]:
        l2, res = fewshot_at(d)
        shots.update(r["shots"] for r in res)
        ax.errorbar([r["shots"] for r in res], [100 * r["mean"] for r in res],
                    [100 * np.nan_to_num(r["std"]) for r in res], fmt="o-", capsize=3,
                    label=f"{d['name']} (l2={l2:g})" if res else d["name"])
    log_ticks(ax, shots)
    ax.set(title="Few-shot linear probe", xlabel="examples per class (shots)",
           ylabel="accuracy (%)")
    ax.legend()
    return [(save(fig, out, "fewshot.png"),
             f"Few-shot accuracy of a linear probe on the frozen representation, mean ± std "
             f"over {run.fewshot.get('seeds', '?')} seeds, at the l2 given in the legend "
             "(each dataset's best_l2, else 1024).")]


def fig_fewshot_l2(run, out):
    """Few-shot accuracy vs the l2 regularisation (log2 axis), one line per shot count."""
    multi = [d for d in (run.fewshot or {}).get("datasets", [])
             if len({r["l2"] for r in d["results"]}) > 1]
    if not multi:
        raise Missing("fewshot.json has a single l2 value" if run.fewshot else
                      "no eval/fewshot.json (written by the evaluation tool)")
    fig, axes = figure(1, len(multi), 4.6, 3.8)
    for ax, d in zip(axes[0], multi):
        for i, s in enumerate(sorted({r["shots"] for r in d["results"]})):
            res = sorted((r for r in d["results"] if r["shots"] == s), key=lambda r: r["l2"])
            ax.errorbar([r["l2"] for r in res], [100 * r["mean"] for r in res],
                        [100 * np.nan_to_num(r["std"]) for r in res], fmt="o-", capsize=3,
                        color=f"C{i % 10}", label=f"{s:g}-shot")
        log_ticks(ax, {r["l2"] for r in d["results"]}, base=2)
        if math.isfinite(d.get("best_l2", math.nan)):
            ax.axvline(d["best_l2"], color="grey", ls=":", label="best l2")
        ax.set(title=d["name"], xlabel="l2 regularisation", ylabel="accuracy (%)")
        ax.legend()
    return [(save(fig, out, "fewshot_l2.png"),
             "Few-shot accuracy vs the probe's l2 regularisation, one line per shot count "
             "(dotted: the best l2, by mean accuracy over shot counts).")]


def fig_confusion(run, out):
    """Row-normalised confusion matrix of the final evaluation."""
    if run.confusion is None:
        raise Missing("no confusion.csv")
    rows, cols, m = run.confusion
    check(m.shape[0] == m.shape[1], run.path("confusion.csv"), "the matrix is not square")
    n = len(rows)
    fig, axes = figure(1, 1, max(4.5, 0.42 * n + 2.5), max(3.8, 0.38 * n + 1.8))
    im = heatmap(axes[0][0], m / np.maximum(m.sum(axis=1, keepdims=True), 1), rows, cols, 1.0,
                 cmap="Blues", annotate="{:.2f}" if n <= 20 else None)
    axes[0][0].set(title="Confusion matrix (row-normalised)", xlabel="predicted", ylabel="true")
    axes[0][0].set_xticks(axes[0][0].get_xticks(), axes[0][0].get_xticklabels(), rotation=45,
                          ha="right")
    fig.colorbar(im, ax=axes[0][0], label="fraction of the true class")
    return [(save(fig, out, "confusion.png"),
             "Final evaluation's confusion matrix, each row divided by the class's count "
             f"(diagonal: per-class recall); accuracy {pct(np.trace(m) / max(m.sum(), 1))} "
             f"over {m.sum():.0f} images.")]


FIGURES = [("loss.png", fig_loss), ("accuracy.png", fig_accuracy),
           ("learning_rate.png", fig_learning_rate), ("expert_load.png", fig_expert_load),
           ("routing_<dataset>.png", fig_routing), ("capacity_sweep.png", fig_capacity_sweep),
           ("fewshot.png", fig_fewshot), ("fewshot_l2.png", fig_fewshot_l2),
           ("confusion.png", fig_confusion)]


def duration(s):
    return f"{s:.2f} s" if s < 60 else f"{s // 60:.0f} min {s % 60:.0f} s" if s < 3600 else \
        f"{s // 3600:.0f} h {s % 3600 // 60:.0f} min"


def headline(run):
    """(label, value) rows from result.json, else from the last records of metrics.jsonl."""
    r, ev, tr = run.result or {}, run.records("eval"), run.records("train")
    last_eval, last_train = ev[-1] if ev else {}, tr[-1] if tr else {}
    rows = [("precision@1", r.get("precision_at_1", last_eval.get("precision_at_1")), pct),
            ("eval loss", r.get("eval_loss", last_eval.get("loss")), "{:.4f}".format),
            ("eval examples", r.get("eval_examples"), "{:.0f}".format),
            ("dropped expert choices", r.get("dropped"), pct),
            ("router super-class accuracy", r.get("router_superclass_accuracy"), pct),
            ("parameters", r.get("parameters"), "{:,.0f}".format),
            ("forward MFLOP / image", r.get("forward_mflops_per_image"), "{:.2f}".format),
            ("train time", r.get("train_seconds"), duration),
            ("wall time at the last log", last_train.get("elapsed_s"), duration),
            ("ranks", r.get("ranks"), "{:.0f}".format),
            ("steps", r.get("steps", last_train.get("step")), "{:.0f}".format),
            ("epochs", r.get("epochs"), "{:.2f}".format)]
    return [(label, fmt(v)) for label, v, fmt in rows
            if type(v) in (int, float) and math.isfinite(v)]


def table(header, rows):
    """An html table; header None for none."""
    cells = lambda tag, r: "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in r)  # noqa
    return ("<table>" + (f"<tr>{cells('th', header)}</tr>" if header else "") +
            "".join(f"<tr>{cells('td', r)}</tr>" for r in rows) + "</table>")


def write_html(run, out, made, missing):
    """index.html: headline tables, every figure with its caption, what is not available."""
    esc, name = html.escape, os.path.basename(os.path.abspath(run.root))
    parts = [table(None, headline(run)) if headline(run) else "<p>No result.json or metrics.</p>"]
    if run.eval and isinstance(run.eval.get("datasets"), list):
        fmt = lambda d, k, f: f(d[k]) if isinstance(d.get(k), (int, float)) else ""  # noqa
        parts += [f"<h3>Evaluation of {esc(str(run.eval.get('checkpoint', '?')))} "
                  f"(step {esc(str(run.eval.get('step', '?')))})</h3>",
                  table(["dataset", "precision@1", "loss", "examples", "dropped"], [
                      (d.get("name", "?"), fmt(d, "precision_at_1", pct),
                       fmt(d, "loss", "{:.4f}".format), fmt(d, "examples", "{:.0f}".format),
                       fmt(d, "dropped", pct))
                      for d in run.eval["datasets"] if isinstance(d, dict)])]
    if run.fewshot and run.fewshot["datasets"]:
        picked = [(d["name"], *fewshot_at(d)) for d in run.fewshot["datasets"]]
        shots = sorted({r["shots"] for _, _, res in picked for r in res})
        cell = lambda res, s: next((f"{100 * r['mean']:.1f}" + (  # noqa: E731
            f" ± {100 * r['std']:.1f}" if math.isfinite(r["std"]) else "")
            for r in res if r["shots"] == s), "")
        parts += ["<h3>Few-shot accuracy (%, mean ± std over seeds)</h3>",
                  table(["dataset", "l2"] + [f"{s:g}-shot" for s in shots],
                        [[n, "" if l2 is None else f"{l2:g}"] + [cell(res, s) for s in shots]
                         for n, l2, res in picked])]
    parts += [f'<figure><img src="{esc(png)}" alt="{esc(png)}"><figcaption><b>{esc(png)}</b>: '
              f"{esc(caption)}</figcaption></figure>" for png, caption in made]
    if missing:
        parts.append("<h3>Not available</h3><ul>" + "".join(
            f"<li>{esc(png)}: not available: {esc(why)}</li>" for png, why in missing) + "</ul>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
             "td,th{border:1px solid #ccc;padding:3px 10px;text-align:left}"
             "figure{margin:2em 0}img{max-width:100%;border:1px solid #eee}"
             "figcaption{color:#444;font-size:0.95em}")
    page = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Run report: {esc(name)}'
            f"</title><style>{style}</style></head><body>\n<h1>Run report: {esc(name)}</h1>\n"
            f"<p>{esc(os.path.abspath(run.root))}</p>\n" + "\n".join(parts) + "\n</body></html>\n")
    path = os.path.join(out, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def main():
    ap = argparse.ArgumentParser(description="A visual report (PNGs + index.html) of a run dir.")
    ap.add_argument("run_dir")
    ap.add_argument("--out", help="output directory (default RUN_DIR/report)")
    args = ap.parse_args()
    try:
        check(os.path.isdir(args.run_dir), args.run_dir, "not a directory")
        run = Run(args.run_dir)
        out = args.out or os.path.join(args.run_dir, "report")
        os.makedirs(out, exist_ok=True)
        made, missing = [], []
        for png, fn in FIGURES:
            try:
                made += fn(run, out)
            except Missing as e:
                missing.append((png, str(e)))
        path = write_html(run, out, made, missing)
    except (Malformed, OSError) as e:
        print(f"report: error: {e}", file=sys.stderr)
        return 1
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
