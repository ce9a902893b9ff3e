#!/usr/bin/python3
"""dtrain-report: a run's metrics file (dtrain --metrics-file, JSON lines) as a summary table and PNG plots.

The table (markdown, on standard output) gives throughput, the mean step time and where it went (data wait, forward,
backward, exposed communication, pipeline wait = bubble plus transfers, optimizer), the shares of exposed
communication, bubble and data wait, peak memory, and the final training and evaluation figures. The plots are
loss.png (training and evaluation loss against steps), accuracy.png (evaluation accuracy, and bits per prediction
for next-token models) and step_time.png (the step-time breakdown against steps).

A metrics file that holds several runs (a resumed run appends to it) is reported from the last run start on, where
the step count falls back, unless --all is given.

usage: dtrain-report METRICS.jsonl [--plots FOLDER] [--all]
"""
import argparse
import json
import os
import sys

PARTS = [("data_wait_ms", "data wait"), ("forward_ms", "forward"), ("backward_ms", "backward"),
         ("exposed_comm_ms", "exposed communication"), ("pipeline_wait_ms", "pipeline wait"),
         ("optimizer_ms", "optimizer")]


def fail(message):
    print(f"dtrain-report: error: {message}", file=sys.stderr)
    sys.exit(2)


def read_records(path):
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            fail(f"{path}:{number}: not a JSON line ({e.msg})")
    return records


def last_run(records):
    """The records from the last point where the step count fell back (a new or resumed run) on."""
    start, previous = 0, -1
    for i, record in enumerate(records):
        if record.get("event") == "train":
            if record["step"] <= previous:
                start = i
            previous = record["step"]
    return records[start:]


def summarize(train, evals):
    """Interval-weighted figures: each train record covers the steps since the previous one."""
    steps = seconds = samples = 0.0
    parts = {key: 0.0 for key, _ in PARTS}
    previous = 0
    for record in train:
        # A step count that falls back starts another run (--all): its first record covers its steps from 0.
        n = record["step"] - previous if record["step"] > previous else record["step"]
        previous = record["step"]
        interval = n * record["step_ms"] / 1000
        steps += n
        seconds += interval
        samples += record["samples_per_s"] * interval
        for key, _ in PARTS:
            parts[key] += n * record.get(key, 0.0)
    step_ms = 1000 * seconds / steps
    mean = {key: parts[key] / steps for key, _ in PARTS}
    rows = [("steps", f"{steps:.0f}"),
            ("throughput", f"{samples / seconds:.1f} samples/s"),
            ("step time", f"{step_ms:.2f} ms")]
    for key, label in PARTS:
        rows.append((f"  {label}", f"{mean[key]:.2f} ms ({100 * mean[key] / step_ms:.1f}%)"))
    rows += [("exposed communication share", f"{100 * mean['exposed_comm_ms'] / step_ms:.1f}%"),
             ("pipeline bubble + transfers share", f"{100 * mean['pipeline_wait_ms'] / step_ms:.1f}%"),
             ("data-wait share", f"{100 * mean['data_wait_ms'] / step_ms:.1f}%"),
             ("peak memory (any rank)", f"{max(r.get('rss_gb', 0) for r in train):.2f} GB"),
             ("final training loss", f"{train[-1]['loss']:.4f}")]
    if evals:
        last = evals[-1]
        rows.append(("final evaluation", f"loss {last['loss']:.4f}, accuracy {last['accuracy']:.4f}"
                     + (f", {last['bits_per_prediction']:.3f} bits per prediction"
                        if last.get("predictions", 0) > last.get("samples", 0) else "")))
        best = max(evals, key=lambda e: e["accuracy"])
        rows.append(("best evaluation accuracy", f"{best['accuracy']:.4f} (step {best['step']})"))
    return rows


def training_state(record):
    """The bytes of model state and activations the fullest rank kept (what --zero-stage and activation
    checkpointing saved)."""
    mib = lambda key: f"{record.get(key, 0) / 2**20:.2f} MiB"
    rows = [(f"training state per rank (largest, --zero-stage {record.get('zero_stage', 0)})",
             f"parameters {mib('parameters')}, gradients {mib('gradients')}, "
             f"optimizer state {mib('optimizer_state')}")]
    if "peak_activations" in record:
        every = record.get("activation_checkpoint_every", 0)
        rows.append(("peak activations per rank (largest)",
                     mib("peak_activations")
                     + (f" (--activation-checkpointing-every {every})" if every else " (no activation checkpointing)")))
    return rows


def plot(train, evals, folder):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    steps = [r["step"] for r in train]
    written = []

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["loss"] for r in train], marker=".", label="training loss")
    if evals:
        ax.plot([e["step"] for e in evals], [e["loss"] for e in evals], marker="o", label="evaluation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    written.append(os.path.join(folder, "loss.png"))
    fig.tight_layout()
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    if evals:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([e["step"] for e in evals], [e["accuracy"] for e in evals], marker="o", color="tab:green",
                label="evaluation accuracy")
        ax.set_xlabel("step")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        if any(e.get("predictions", 0) > e.get("samples", 0) for e in evals):
            bits = ax.twinx()
            bits.plot([e["step"] for e in evals], [e["bits_per_prediction"] for e in evals], marker="s",
                      color="tab:red", label="bits per prediction")
            bits.set_ylabel("bits per prediction")
            bits.legend(loc="upper right")
        ax.legend(loc="upper left")
        ax.set_title("evaluation")
        written.append(os.path.join(folder, "accuracy.png"))
        fig.tight_layout()
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.stackplot(steps, *[[r.get(key, 0.0) for r in train] for key, _ in PARTS], labels=[l for _, l in PARTS])
    ax.set_xlabel("step")
    ax.set_ylabel("ms per step (mean over ranks)")
    ax.set_title("step-time breakdown")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")  # beside the areas, not over them
    ax.grid(alpha=0.3)
    written.append(os.path.join(folder, "step_time.png"))
    fig.tight_layout()
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written


def main():
    parser = argparse.ArgumentParser(prog="dtrain-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", help="a metrics file written by dtrain --metrics-file")
    parser.add_argument("--plots", help="folder for loss.png, accuracy.png and step_time.png")
    parser.add_argument("--all", action="store_true", help="report every run in the file, not only the last")
    args = parser.parse_args()
    records = read_records(args.metrics)
    if not args.all:
        records = last_run(records)
    train = [r for r in records if r.get("event") == "train"]
    evals = [r for r in records if r.get("event") == "eval"]
    if not train:
        fail(f"{args.metrics}: no training records (event 'train'); was it written by dtrain --metrics-file?")
    missing = [key for key in ("step", "loss", "step_ms", "samples_per_s") if key not in train[0]]
    if missing:
        fail(f"{args.metrics}: training records lack {', '.join(missing)}")
    print(f"dtrain run report: {args.metrics}\n")
    print("| figure | value |\n|---|---|")
    states = [r for r in records if r.get("event") == "training_state_bytes"]
    for name, value in summarize(train, evals) + (training_state(states[-1]) if states else []):
        print(f"| {name} | {value} |")
    if args.plots:
        for path in plot(train, evals, args.plots):
            print(f"\nplot: {path}", end="")
        print()


if __name__ == "__main__":
    main()
