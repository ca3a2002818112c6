"""Host-side scale: how long a large labelled file takes to reach the first training step.

Writes N synthetic rows (short texts; labels as names, integer ids, K classes or K-label multi-label
lists), then runs `loop/train.py --max_steps 1` on them twice with one fresh datasets cache: a cold
start (loading, label checks, tokenizing) and a warm one (what every restart and resume pays: the
tokenized data come from the cache). Each line the loop prints is timestamped as it arrives, so the
phases show: `load` (to "rows loaded"), `labels` (to "tokenizing": the label checks and encoding),
`tokenize` (to the first line after it), `total` (process wall time). One JSON line on stdout.

    python bench/data_scale.py --rows 1000000                    # names, 2 classes
    python bench/data_scale.py --rows 200000 --labels multi --classes 1000

The model is a 1-layer, 32-wide DistilBERT built from a config (no weights) with a word-level tokenizer, so
the numbers are the data path's, not the model's. Measured on the 2-core CPU machine (audit28, 1M
rows of names): label checks 163 s cold and 91 s warm before they read columns through Arrow; see the
README's Performance section for the current numbers.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from common import OFFLINE, ROOT, log


def write_rows(path, n, labels, classes, seed=0):
    """n jsonl rows of 8-24 random words; a label each as `labels` says."""
    from loop import synthetic

    rng = random.Random(seed)
    words = synthetic.POSITIVE + synthetic.NEGATIVE + synthetic.NEUTRAL  # the tiny tokenizer's vocabulary
    with open(path, "w") as f:
        for i in range(n):
            text = " ".join(rng.choices(words, k=rng.randint(8, 24)))
            c = rng.randrange(classes)
            label = {"names": f"L{c:05d}", "ids": c,
                     "multi": sorted({f"L{c:05d}", f"L{rng.randrange(classes):05d}"})}[labels]
            f.write(json.dumps({"text": text, "label": label}) + "\n")


def timed_run(cmd, env):
    """(seconds since start of each printed line, wall seconds, return code)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append((time.perf_counter() - started, line.rstrip()))
        print(line.rstrip()[:200], file=sys.stderr)
    rc = proc.wait()
    return lines, time.perf_counter() - started, rc


def phases(lines, total):
    def at(fragment):
        return next((t for t, line in lines if fragment in line), None)

    loaded, tokenizing = at("rows loaded"), at("tokenizing (")
    after = next((t for t, line in lines if tokenizing is not None and t > tokenizing and line.startswith("[loop]")), None)
    out = {"load": loaded, "labels": tokenizing - loaded if None not in (loaded, tokenizing) else None,
           "tokenize": after - tokenizing if None not in (after, tokenizing) else None, "total": total}
    return {k: round(v, 2) if v is not None else None for k, v in out.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000, help="training rows")
    p.add_argument("--labels", choices=["names", "ids", "multi"], default="names")
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--workdir", help="where data, cache and runs go (default: a temporary folder, removed)")
    args = p.parse_args(argv)

    # absolute: the runs start in the repository root (loop/train.py), and a relative --workdir is the caller's
    work = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="data_scale_"))
    os.makedirs(work, exist_ok=True)
    from loop import synthetic

    model = os.path.join(work, "model")
    synthetic.make_model_dir(model, n_layers=1, dim=32)
    train, validation = os.path.join(work, "train.jsonl"), os.path.join(work, "validation.jsonl")
    log(f"writing {args.rows:,} rows ({args.labels}, {args.classes} classes)")
    write_rows(train, args.rows, args.labels, args.classes, seed=0)
    write_rows(validation, 200, args.labels, args.classes, seed=1)
    env = {**os.environ, **OFFLINE, "HF_DATASETS_CACHE": os.path.join(work, "cache")}
    cmd = [sys.executable, "loop/train.py", "--model_name_or_path", model, "--from_scratch", "true",
           "--train_file", train, "--validation_file", validation, "--max_length", "64", "--max_steps", "1",
           "--per_device_train_batch_size", "8", "--metric", "loss",
           "--output_dir", os.path.join(work, "out")]
    result = {"rows": args.rows, "labels": args.labels, "classes": args.classes, "cpus": os.cpu_count()}
    for name in ("cold", "warm"):
        shutil.rmtree(os.path.join(work, "out"), ignore_errors=True)
        lines, total, rc = timed_run(cmd, env)
        result[name] = {**phases(lines, total), "rc": rc}
    print(json.dumps(result))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
