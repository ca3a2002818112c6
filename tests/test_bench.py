"""Smoke tests of the benchmarks on CPU with tiny settings: they run and report sane numbers.

Timing goals are for the benchmark runs themselves (bench/README.md), not for tests.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, env
from loop import synthetic

THREADS = {"OMP_NUM_THREADS": "1"}  # tiny models: one thread is fastest and steadiest on a shared CPU


def run_bench(script, args, timeout=300):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), *map(str, args)], cwd=ROOT,
                          env=env(**THREADS), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout, got:\n{proc.stdout[-3000:]}"
    return json.loads(lines[0])


@pytest.mark.slow
def test_throughput_smoke():
    out = run_bench("throughput.py", ["--model_size", "tiny", "--max_train_samples", 128, "--max_eval_samples", 64,
                                      "--warmup_steps", 2, "--steps", 4])
    assert out["precision"] == "fp32" and out["batch_size"] == 16 and out["timed_steps"] == 4
    for who in ("ours", "trainer"):
        r = out[who]
        for key in ("train_samples_per_s", "train_tokens_per_s", "padding_efficiency", "peak_memory_mb",
                    "eval_samples_per_s"):
            assert isinstance(r[key], float) and r[key] > 0, (who, key, r[key])
        assert r["padding_efficiency"] <= 1
    for key in ("train_samples_per_s", "train_tokens_per_s", "padding_efficiency", "peak_memory_mb",
                "eval_samples_per_s"):
        assert out["ratio_ours_over_trainer"][key] > 0
    epoch = out["epoch_padding_efficiency"]
    assert 0 < epoch["random"] <= epoch["grouped"] <= 1


@pytest.mark.slow
def test_accuracy_smoke(tmp_path):
    """bench/accuracy.py end to end on a tiny saved model: both frameworks, one accuracy per epoch."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    model_dir = synthetic.make_model_dir(str(tmp_path / "model"))
    AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(model_dir, num_labels=2)).save_pretrained(model_dir)
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    synthetic.write_jsonl(synthetic.make_rows(200, seed=1, label_names=False), train)
    synthetic.write_jsonl(synthetic.make_rows(80, seed=2, label_names=False), test)
    out = run_bench("accuracy.py", ["--model", model_dir, "--train_file", train, "--test_file", test,
                                    "--max_train_samples", 96, "--max_eval_samples", 40, "--max_length", 32,
                                    "--epochs", 2, "--lr", 1e-3])
    assert out["train_samples"] == 96 and out["eval_samples"] == 40
    for who in ("ours", "trainer"):
        acc = out[who]["accuracy_per_epoch"]
        assert len(acc) == 2 and all(0 <= a <= 1 for a in acc), (who, acc)
        assert out[who]["wall_s"] > 0
