"""Issue #13, everyday use: evaluation every N steps (exact resume included), the offline metrics,
best/ by any metric or by the lowest loss, TensorBoard offline, a quiet console with a closing
summary, the array-based batch sampler and a clean --help."""

import glob
import re
import json
import os
import signal

import numpy as np
import pytest

from conftest import FAULTS, ROOT, evals, hub_cache_repo, listening_port, run_cli, tiny_args, train_logs

from loop import checkpoint as ckpt
from loop.loaders import EpochBatchSampler

METRICS_DIR = os.path.join(ROOT, "loop", "metrics")


# ---------------------------------------------------------------- metrics against closed forms
def load_metric(name):
    import evaluate

    return evaluate.load(os.path.join(METRICS_DIR, name), keep_in_memory=True)


def by_hand(preds, refs, classes):
    """Per-class TP/FP/FN loops, and Matthews from its binary definition or the K-class one."""
    out = {"precision": [], "recall": [], "f1": []}
    for c in classes:
        tp = sum(p == c and r == c for p, r in zip(preds, refs))
        fp = sum(p == c and r != c for p, r in zip(preds, refs))
        fn = sum(p != c and r == c for p, r in zip(preds, refs))
        out["precision"].append(tp / (tp + fp) if tp + fp else 0.0)
        out["recall"].append(tp / (tp + fn) if tp + fn else 0.0)
        out["f1"].append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    n = len(preds)
    cov = lambda a, b: sum(  # noqa: E731  (K-class covariance of one-hot codes, Gorodkin 2004)
        (int(a[i] == k) - sum(x == k for x in a) / n) * (int(b[i] == k) - sum(x == k for x in b) / n)
        for i in range(n) for k in classes)
    out["mcc"] = cov(preds, refs) / (cov(preds, preds) * cov(refs, refs)) ** 0.5
    return out


def test_binary_metrics_match_closed_form():
    preds = [1, 1, 0, 1, 0, 0, 1, 0, 1, 1]
    refs = [1, 0, 0, 1, 1, 0, 1, 0, 0, 1]
    # TP=4 FP=2 FN=1 TN=3
    assert load_metric("precision").compute(predictions=preds, references=refs)["precision"] == pytest.approx(4 / 6)
    assert load_metric("recall").compute(predictions=preds, references=refs)["recall"] == pytest.approx(4 / 5)
    assert load_metric("f1").compute(predictions=preds, references=refs)["f1"] == pytest.approx(8 / 11)
    mcc = (4 * 3 - 2 * 1) / np.sqrt(6 * 5 * 5 * 4)
    got = load_metric("matthews_correlation").compute(predictions=preds, references=refs)["matthews_correlation"]
    assert got == pytest.approx(mcc)
    assert load_metric("accuracy").compute(predictions=preds, references=refs)["accuracy"] == pytest.approx(0.7)


def test_multiclass_macro_metrics_match_loops():
    rng = np.random.default_rng(3)
    refs = rng.integers(0, 4, 300).tolist()
    preds = [r if rng.random() < 0.6 else int(rng.integers(0, 4)) for r in refs]
    want = by_hand(preds, refs, range(4))
    for name in ("precision", "recall", "f1"):
        got = load_metric(name).compute(predictions=preds, references=refs, average="macro")[name]
        assert got == pytest.approx(np.mean(want[name]), abs=1e-12), name
    got = load_metric("matthews_correlation").compute(predictions=preds, references=refs)["matthews_correlation"]
    assert got == pytest.approx(want["mcc"], abs=1e-12)
    assert 0.3 < got < 0.9
    with pytest.raises(ValueError, match="macro"):
        load_metric("f1").compute(predictions=preds, references=refs)


def dense_scores(preds, refs):
    """f1/precision/recall (every average) and Matthews from the whole K x K confusion matrix, as scores.py
    computed them before it took per-class counts: the reference the counts must equal exactly."""
    p, r = np.asarray(preds, dtype=np.int64), np.asarray(refs, dtype=np.int64)
    labels = np.union1d(p, r)
    n = int(labels.max()) + 1
    cm = np.bincount(r * n + p, minlength=n * n).reshape(n, n).astype(np.float64)
    tp, predicted, true = np.diag(cm), cm.sum(0), cm.sum(1)
    ratio = lambda a, b: np.divide(a, b, out=np.zeros_like(a), where=b != 0)  # noqa: E731
    out = {}
    for name, values in (("precision", ratio(tp, predicted)), ("recall", ratio(tp, true)),
                         ("f1", ratio(2 * tp, predicted + true))):
        out[f"{name}_macro"] = float(values[labels].mean())
        out[f"{name}_weighted"] = float((values[labels] * true[labels]).sum() / max(true[labels].sum(), 1))
        out[f"{name}_micro"] = float(np.trace(cm) / max(cm.sum(), 1))
    c, s = np.trace(cm), cm.sum()
    denom = np.sqrt((s * s - predicted @ predicted) * (s * s - true @ true))
    out["matthews_correlation"] = float((c * s - true @ predicted) / denom) if denom > 0 else 0.0
    return out


def test_the_scores_from_per_class_counts_equal_the_confusion_matrix_ones_exactly():
    """scores.score and scores.mcc take three bincounts (true positives, predicted and true per class), no K x K
    matrix: on random data of 2 to 3000 classes (some never true, some never predicted) every average and
    Matthews equal the matrix arithmetic to the last bit."""
    from loop import scores

    rng = np.random.default_rng(5)
    for classes, n in ((2, 40), (3, 7), (9, 500), (300, 5000), (3000, 20000)):
        refs = rng.integers(0, classes, n) // (2 if classes > 3 else 1)  # the upper half never true
        preds = np.where(rng.random(n) < 0.4, refs, rng.integers(0, classes, n))
        want = dense_scores(preds, refs)
        got = {name: scores.Shipped(name).compute(predictions=preds.tolist(), references=refs.tolist())[name]
               for name in want}
        assert got == want, (classes, n)


def test_the_scores_of_30k_classes_take_little_memory():
    """f1_macro, precision_weighted, recall_micro and Matthews of 500k examples over 30k classes in a process
    given 1 GB of address space beyond its imports (the confusion matrix was 30k x 30k: 7 GB, twice)."""
    import subprocess
    import sys

    script = """
import resource
import numpy as np
from loop import scores
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, vm + 2**30))
rng = np.random.default_rng(0)
refs = rng.integers(0, 30000, 500000)
preds = np.where(rng.random(500000) < 0.3, refs, rng.integers(0, 30000, 500000))
got = {n: scores.Shipped(n).compute(predictions=preds, references=refs)[n]
       for n in ("f1_macro", "precision_weighted", "recall_micro", "matthews_correlation")}
print(got["recall_micro"] == float((preds == refs).mean()), 0.2 < got["f1_macro"] < 0.4,
      0.2 < got["matthews_correlation"] < 0.4)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == ["True"] * 3, proc.stdout + proc.stderr[-2000:]


def test_the_loops_shipped_metrics_equal_their_evaluate_modules():
    """The loop computes the shipped metrics without importing evaluate (scores.Shipped); the modules in
    loop/metrics/ (for evaluate.load) must give the same values for the same call and options."""
    import random
    import subprocess
    import sys

    from loop import scores

    rng = random.Random(3)
    for classes, n in ((2, 50), (4, 77), (3, 1)):
        preds = [rng.randrange(classes) for _ in range(n)]
        refs = [rng.randrange(classes) for _ in range(n)]
        calls = [("accuracy", {}), ("accuracy", {"normalize": False}),
                 ("accuracy", {"sample_weight": [rng.random() for _ in range(n)]}), ("matthews_correlation", {})]
        averages = ("macro", "weighted", "micro") + (("binary",) if classes == 2 else ())
        calls += [(m, {"average": a}) for m in ("f1", "precision", "recall") for a in averages]
        for name, options in calls:
            ours = scores.Shipped(name).compute(predictions=preds, references=refs, **options)
            theirs = load_metric(name).compute(predictions=preds, references=refs, **options)
            assert ours == theirs and list(ours) == [name], (name, options, ours, theirs)
    with pytest.raises(ValueError, match="binary"):
        scores.Shipped("f1").compute(predictions=[0, 1, 2], references=[0, 1, 2])
    for name in ("f1", "recall"):  # two classes present, pos_label not one of them: scikit-learn refuses (it gave 0)
        for scorer in (scores.Shipped(name), load_metric(name)):
            with pytest.raises(ValueError, match=r"pos_label=1 is not a valid label: it should be one of \[0, 2\]"):
                scorer.compute(predictions=[0, 2, 2], references=[2, 0, 2])
    # and loading them imports no evaluate (seconds a start): a fresh interpreter
    script = ("import sys\nfrom accelerate import Accelerator\nfrom loop import scores\n"
              "m = scores.load_metrics(['accuracy', 'f1', 'precision', 'recall', 'matthews_correlation'], "
              "Accelerator(cpu=True))\nprint(sorted(m), 'evaluate' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1:] == \
        ["['accuracy', 'f1', 'matthews_correlation', 'precision', 'recall'] False"], proc.stdout + proc.stderr[-2000:]


def test_metric_options_validated():
    from loop.config import TrainConfig
    from loop.errors import UserError

    cfg = TrainConfig(metric="f1", metrics="accuracy, matthews_correlation")
    assert cfg.metric_list() == ["f1", "accuracy", "matthews_correlation"] and cfg.higher_is_better
    cfg = TrainConfig(metric="loss", metrics="accuracy,f1")
    assert cfg.metric_list() == ["accuracy", "f1"] and not cfg.higher_is_better
    assert TrainConfig(metric="wer_like", greater_is_better=False).higher_is_better is False
    # a direction the loop knows is not flipped: best/ kept the highest eval_loss under --greater_is_better true
    for metric, flag in (("loss", True), ("accuracy", False), ("mse", True)):
        with pytest.raises(UserError, match=rf"--greater_is_better {str(flag).lower()} says a (higher|lower) {metric} "
                                            r"is better, but a (lower|higher) one is: best/ would keep the worst"):
            TrainConfig(metric=metric, greater_is_better=flag, problem_type="regression" if metric == "mse" else
                        None).check_metrics(set(), set(), "Loop")
    TrainConfig(metric="accuracy", greater_is_better=True).check_metrics(set(), set(), "Loop")  # agrees: fine
    TrainConfig(metric="loss", greater_is_better=True).check_metrics({"loss"}, set(), "Loop")  # a variant's own loss
    with pytest.raises(UserError, match="--eval_steps"):
        TrainConfig(eval_steps=0)


def test_early_stopping_respects_lower_is_better(tmp_path):
    import loop

    lp = loop.Loop(loop.parse_args(["--metric", "loss", "--output_dir", str(tmp_path)]))  # nothing set up
    es = loop.EarlyStopping(patience=2)
    for loss in [0.9, 0.7, 0.5]:  # falling loss: improving every time
        es.on_evaluate(lp, {"eval_loss": loss})
    assert lp.stop_requested is None and es.bad_evals == 0
    es.on_evaluate(lp, {"eval_loss": 0.6})
    es.on_evaluate(lp, {"eval_loss": 0.5})  # equal to the best: no improvement
    assert lp.stop_requested and es.bad_evals == 2


def test_early_stopping_follows_a_variants_improved(tmp_path):
    """A variant whose improved() asks for a gain of 0.01 keeps best/ at 0.8 through 0.801 and 0.802; early
    stopping had its own copy of the rule and counted both as improvements, so it never stopped (audit60 v3)."""
    import loop

    class Margin(loop.Loop):
        def improved(self, value, best):
            return best is None or value > best + 0.01

    lp = Margin(loop.parse_args(["--output_dir", str(tmp_path)]))  # nothing set up
    es = loop.EarlyStopping(patience=2)
    for accuracy in [0.8, 0.801, 0.802]:
        es.on_evaluate(lp, {"eval_accuracy": accuracy})
    assert lp.stop_requested and es.bad_evals == 2 and es.best == 0.8


# ---------------------------------------------------------------- a run with eval_steps, several metrics, tensorboard
@pytest.fixture(scope="module")
def stepped(tiny_model, tiny_data, tmp_path_factory):
    """2 epochs of 38 steps, evaluated every 15 steps and at epoch ends; best/ by lowest loss;
    five metrics logged; TensorBoard on; a pretrained-style base model (head newly initialized)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    root = tmp_path_factory.mktemp("stepped")
    base = str(root / "base_model")  # weights without a classification head, as on the Hub
    AutoModel.from_config(AutoConfig.from_pretrained(tiny_model)).save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(base)
    out = str(root / "out")
    proc = run_cli(tiny_args(base, tiny_data, out, from_scratch="false",
                             max_eval_samples=100, eval_steps=15, metric="loss",
                             metrics="accuracy,f1,precision,recall,matthews_correlation",
                             report_to="tensorboard", logging_steps=5), how="python",
                   fresh=True,  # a process of its own: the quiet console also covers libraries imported late
                   LOOP_PROGRESS_S=0.001)  # piped, as a SLURM log: progress lines instead of bars
    return out, proc


def test_eval_steps_schedule_and_fractional_epochs(stepped):
    out, _ = stepped
    ev = evals(out)
    assert [(e["step"], e["epoch"]) for e in ev] == [(15, round(15 / 38, 4)), (30, round(30 / 38, 4)), (38, 1),
                                                      (45, round(1 + 7 / 38, 4)), (60, round(1 + 22 / 38, 4)),
                                                      (75, round(1 + 37 / 38, 4)), (76, 2)]
    for e in ev:
        assert {"eval_accuracy", "eval_f1", "eval_precision", "eval_recall", "eval_matthews_correlation",
                "eval_loss"} <= set(e)
        p, r = e["eval_precision"], e["eval_recall"]
        assert e["eval_f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0, abs=1e-9)


def test_cadences_below_1_are_fractions_of_the_run_as_in_trainer(tiny_model, tiny_data, tmp_path):
    """A Trainer user's --eval_steps 0.3 (and --logging_steps, --checkpointing_steps below 1): that share of the run's
    optimizer steps, rounded up. It was refused ("invalid int value: '0.3'"). 10 steps: 0.3 of them is 3, 0.5 is 5,
    0.25 is 3; the records keep the fractions given. The product is rounded to 9 decimals first, as --warmup_steps':
    0.07 of 100 steps is 7 (Trainer's math.ceil(100 * 0.07) is 8, from 7.000000000000001)."""
    from loop.config import TrainConfig
    from loop.config import parse_args
    from loop.errors import UserError

    out = str(tmp_path / "out")
    run_cli(tiny_args(tiny_model, tiny_data, out, num_train_epochs=1, max_train_samples=160, eval_steps=0.3,
                      logging_steps=0.5, checkpointing_steps=0.25), how="python")
    assert [e["step"] for e in evals(out)] == [3, 6, 9, 10]  # and the epoch's end
    assert [r["step"] for r in train_logs(out)] == [5, 10]
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["step_3", "step_6", "step_9"]
    # --logging_first_step (Trainer's): the first step's loss too, then the cadence as before
    first = str(tmp_path / "first")
    run_cli(tiny_args(tiny_model, tiny_data, first, num_train_epochs=1, max_train_samples=160, logging_steps=0.5,
                      logging_first_step="true"), how="python")
    assert [r["step"] for r in train_logs(first)] == [1, 5, 10]
    recorded = ckpt.read_state(os.path.join(out, "checkpoints", "step_3"))["config"]  # what a resume compares
    assert (recorded["eval_steps"], recorded["logging_steps"], recorded["checkpointing_steps"]) == (0.3, 0.5, "0.25")
    for flag, value, least in (("--eval_steps", "1.5", 1), ("--logging_steps", "2.5", 1), ("--eval_steps", "0", 1),
                               ("--logging_steps", "0.0", 1), ("--eval_steps", "-1", 1), ("--warmup_steps", "-0.5", 0),
                               ("--warmup_steps", "2.5", 0)):
        # one line for every step option (0 said "--logging_steps must be positive, got 0.0", a float's spelling)
        with pytest.raises(UserError, match=rf"^{flag} must be a whole number of steps \({least} or more\), or a "
                                            rf"fraction of the run's steps between 0 and 1 \(0.25\), "
                                            rf"got {float(value):g}\.$"):
            parse_args([flag, value])
    assert parse_args(["--logging_steps", "10.0"]).logging_steps == 10  # one setting with 10 (a resume compares them)
    cfg = TrainConfig(eval_steps=0.07, logging_steps=0.55, checkpointing_steps="0.14")
    with pytest.raises(RuntimeError, match="before Loop.setup counted them"):
        cfg.eval_every
    cfg.run_steps = 100
    assert (cfg.eval_every, cfg.logging_every, cfg.checkpoint_every) == (7, 55, 14)
    # --checkpointing_steps read as --eval_steps and Trainer's save_steps are: 1e-1 and 5.0 too, each one line otherwise
    assert [parse_args(["--checkpointing_steps", v]).checkpointing_steps for v in ("1e-1", "5.0")] == ["1e-1", "5"]
    for flag, value in (("--eval_steps", "1e20"), ("--logging_steps", "1e20"), ("--checkpointing_steps", "1e20"),
                        ("--checkpointing_steps", "100000000000000000000")):  # (digits were taken, 1e20 refused)
        with pytest.raises(UserError, match=rf"^{flag} is too large \(1e\+20\)\.$"):
            parse_args([flag, value])


def test_best_by_lowest_loss(stepped):
    out, _ = stepped
    ev = evals(out)
    best = json.load(open(os.path.join(out, "best", "best_metrics.json")))
    lowest = min(ev, key=lambda e: e["eval_loss"])
    assert best["eval_loss"] == pytest.approx(lowest["eval_loss"])
    assert (best["step"], best["epoch"]) == (lowest["step"], lowest["epoch"])
    assert ev[-1]["eval_loss"] < 0.9 * ev[0]["eval_loss"]  # it learned
    assert max(e["eval_accuracy"] for e in ev) > 0.7 and max(e["eval_f1"] for e in ev) > 0.7


def test_tensorboard_offline_holds_loss_lr_and_every_eval_metric(stepped):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = stepped
    files = glob.glob(os.path.join(out, "**", "events.out.tfevents.*"), recursive=True)
    assert files, os.listdir(out)
    tags, values = set(), {}
    for f in files:
        acc = EventAccumulator(f)
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            tags.add(tag)
            values[tag] = [(s.step, s.value) for s in acc.Scalars(tag)]
    want = {"loss", "learning_rate", "eval_accuracy", "eval_f1", "eval_precision", "eval_recall",
            "eval_matthews_correlation", "eval_loss"}
    assert want <= tags, tags
    logged = {e["step"]: e["eval_f1"] for e in evals(out)}
    assert {s: pytest.approx(v, abs=1e-6) for s, v in values["eval_f1"]} == logged
    assert [s for s, _ in values["loss"]] == [r["step"] for r in train_logs(out)]


def test_quiet_console_with_new_head_line_and_summary(stepped):
    _, proc = stepped
    text = proc.stdout + proc.stderr
    for noise in ("FutureWarning", "LOAD REPORT", "MISSING", "Map", "Generating", "Casting"):
        assert noise not in text, (noise, text[-3000:])
    assert not re.search("\x1b\\[[0-9;]*m", text), "colour codes in the output"
    head = [line for line in proc.stdout.splitlines() if line.startswith("[loop] new head:")]
    assert len(head) == 1 and "classifier.weight" in head[0] and "classifier.bias" in head[0], head
    assert "[loop] data:" in proc.stdout
    tail = proc.stdout.strip().splitlines()[-2:]
    assert tail[0].startswith("[loop] best eval_loss=") and "best" in tail[0] and "step" in tail[0], tail
    assert "samples/s" in tail[1] and "tokens/s" in tail[1] and "padding efficiency" in tail[1], tail


def test_piped_log_has_progress_lines_and_no_carriage_returns(stepped):
    _, proc = stepped
    text = proc.stdout + proc.stderr
    assert "\r" not in text, [line for line in text.split("\n") if "\r" in line][:3]
    train = re.findall(r"^\[loop\] epoch [12]: (\d+)/38 batches \(\d+%\), [\d.]+ batches/s, eta \d+", proc.stdout, re.M)
    assert train and all(1 <= int(n) <= 38 for n in train), proc.stdout[-3000:]
    assert re.search(r"^\[loop\] eval: \d+/\d+ batches", proc.stdout, re.M), proc.stdout[-3000:]


# ---------------------------------------------------------------- exact resume with step evaluations
def test_eval_steps_resume_is_exact(tiny_model, tiny_data, tmp_path):
    """8 steps per epoch, evaluations at steps 4, 8, 12, 16, checkpoints at the same steps.

    1. Killed (-9) at step 6: step_4 was saved after step 4's evaluation, so the resumed run does
       not evaluate step 4 again. 2. Killed at step 12, after its optimizer step, before the
    evaluation due then: the run resumes from step_8, saved at the end of epoch 1 *before* the
    epoch's evaluation, so it redoes that evaluation, steps 9-12 and step 12's. The result equals
    the uninterrupted run: weights, evaluations, training log."""
    from test_resume import assert_same_run

    common = dict(max_train_samples=128, num_train_epochs=2, logging_steps=2, max_eval_samples=101,
                  per_device_eval_batch_size=8, eval_steps=4, checkpointing_steps=4, metrics="accuracy,f1")
    base, out = str(tmp_path / "base"), str(tmp_path / "run")
    run_cli(tiny_args(tiny_model, tiny_data, base, **common), how="python")
    args = tiny_args(tiny_model, tiny_data, out, **common)
    p = run_cli(args, how="python", check=False, script=FAULTS, LOOP_TEST_CRASH_AT_STEP=6)
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert [e["step"] for e in evals(out)] == [4]
    p = run_cli(args + ["--resume_from_checkpoint", "latest"], how="python", check=False, script=FAULTS,
                LOOP_TEST_CRASH_AT_STEP=12)
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert "step_4" in p.stdout
    assert [e["step"] for e in evals(out)] == [4, 8]  # step 12's evaluation never happened
    p = run_cli(args + ["--resume_from_checkpoint", "latest"], how="python")
    assert "step_8" in p.stdout
    assert_same_run(out, base, last_step=16)
    assert [(e["step"], e["epoch"], e["eval_f1"]) for e in evals(out)] == \
           [(e["step"], e["epoch"], e["eval_f1"]) for e in evals(base)]
    assert [(e["step"], e["epoch"]) for e in evals(out)] == [(4, 0.5), (8, 1), (12, 1.5), (16, 2)]


# ---------------------------------------------------------------- sampler, help
def test_sampler_arrays_keep_the_list_version_batches():
    """The array version against a straight transcription of the earlier list code."""
    import torch

    def old(lengths, bs, seed, epoch, megabatch):
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(len(lengths), generator=g).tolist()
        full, tail = [], []
        for m in range(0, len(perm), megabatch):
            mega = sorted(perm[m: m + megabatch], key=lambda i: -lengths[i])
            for i in range(0, len(mega), bs):
                (full if len(mega[i: i + bs]) == bs else tail).append(mega[i: i + bs])
        order = torch.randperm(len(full), generator=g).tolist()
        full = [full[i] for i in order]
        if full:
            longest = max(range(len(full)), key=lambda b: lengths[full[b][0]])
            full[0], full[longest] = full[longest], full[0]
        return full + tail

    rng = np.random.default_rng(0)
    for n, bs in [(1, 4), (50, 16), (1000, 8), (3333, 16)]:
        lengths = rng.integers(1, 40, n).tolist()  # many ties: the stable order matters
        s = EpochBatchSampler(lengths, bs, seed=5, group_by_length=True, megabatch_size=4)
        for epoch in (0, 2):
            s.set_epoch(epoch)
            assert list(s) == old(lengths, bs, 5, epoch, 4 * bs), (n, bs, epoch)


def test_sampler_at_one_million_is_fast(tmp_path):
    import time

    lengths = np.random.default_rng(0).integers(10, 512, 1_000_000, dtype=np.int32)
    t = time.perf_counter()
    s = EpochBatchSampler(lengths, 16, seed=1, group_by_length=True)
    eff = s.padding_efficiency(multiple=8)
    first = next(iter(s))
    assert time.perf_counter() - t < 5  # ~0.1 s here; the list version took ~2.5 s
    assert 0.9 < eff <= 1 and len(first) == 16


def test_help_has_one_default_each():
    proc = run_cli(["--help"], how="python")
    text = proc.stdout
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "512). (default" not in text
    assert "Turn off --group_by_length" in text
    assert "--eval_steps" in text and "--metrics" in text and "--verbose" in text


# ---------------------------------------------------------------- fast offline failure
@pytest.mark.parametrize("offline", [True, False])
def test_unreachable_hub_fails_fast_naming_every_local_flag(monkeypatch, tmp_path, offline):
    """The default job (Hub model and dataset) without a Hub: one error in seconds, not retries."""
    import time

    from loop import hub
    from loop.config import TrainConfig
    from loop.errors import UserError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))  # nothing cached
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", str(tmp_path / "empty_datasets_cache"))
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1" if offline else "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused
    t = time.perf_counter()
    with pytest.raises(UserError) as e:
        hub.check(TrainConfig(output_dir=str(tmp_path / "out")))
    assert time.perf_counter() - t < 5
    msg = str(e.value)
    for flag in ("--model_name_or_path", "--tokenizer_name", "--train_file", "--validation_file"):
        assert flag in msg, msg
    assert "'distilbert-base-uncased'" in msg and "'imdb'" in msg and "\n" not in msg
    # local paths need nothing from the Hub
    hub.check(TrainConfig(model_name_or_path=str(tmp_path), train_file=None, dataset_name=str(tmp_path)))


def prepared(cache, folder, config="default", copy="0123abcd", info=True):
    """A prepared copy of a Hub dataset in datasets' cache layout (folder/config/version/hash)."""
    path = cache / folder / config / "0.0.0" / copy
    path.mkdir(parents=True)
    if info:
        (path / "dataset_info.json").write_text(json.dumps({"config_name": config}))
    return path


def test_a_dataset_prepared_in_the_datasets_cache_counts_as_cached(monkeypatch, tmp_path):
    """load_dataset reads a Hub dataset offline from the datasets cache alone (copied or shared without the hub
    cache, or a repo without a README), but the fast offline check looked in the hub cache only and refused it.
    Offline it reads only that copy: a dataset whose hub cache holds its card does not count (audit61: the
    check passed it, and datasets failed after the model had loaded), nor does a copy cut short; and datasets
    fails on a cut copy beside a whole one, and on several configurations without --dataset_config_name."""
    from loop import hub

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    assert not hub.cached("someuser/TinySent", "dataset", ())
    hub_cache_repo(tmp_path / "hub", "someuser/TinySent", {"README.md": "# card"}, repo_type="dataset")
    assert not hub.cached("someuser/TinySent", "dataset", ())  # its card alone: load_dataset fails offline
    cut = prepared(tmp_path / "datasets", "someuser___tiny_sent", copy="0123abcd.incomplete", info=False)
    assert hub.datasets_cache("someuser/TinySent") == (False, hub.datasets_cache("someuser/TinySent")[1])
    assert f"'{cut}'" in hub.datasets_cache("someuser/TinySent")[1] and "delete" in hub.datasets_cache("someuser/TinySent")[1]
    prepared(tmp_path / "datasets", "someuser___tiny_sent")  # datasets' own folder name: snake case
    found, problem = hub.datasets_cache("someuser/TinySent")
    assert found and "cut short" in problem  # datasets reads every copy's dataset_info.json: the cut one fails it
    cut.rmdir()
    assert hub.cached("someuser/TinySent", "dataset", ()) and hub.datasets_cache("someuser/TinySent") == (True, None)
    assert not hub.cached("someuser/other", "dataset", ())
    assert not hub.cached("someuser/TinySent", "model", ("config.json",))  # a model is not in the datasets cache
    prepared(tmp_path / "datasets", "someuser___tiny_sent", config="other")
    found, problem = hub.datasets_cache("someuser/TinySent")
    assert found and "--dataset_config_name default" in problem and "default, other" in problem
    assert hub.datasets_cache("someuser/TinySent", "other") == (True, None)
    assert hub.datasets_cache("someuser/TinySent", "third") == (False, None)
    # configurations under different hashes: datasets loads the newest copy without asking (audit61 r5a)
    newest = prepared(tmp_path / "datasets", "someuser___tiny_sent", config="third", copy="ffff0000")
    os.utime(newest, (4e9, 4e9))
    assert hub.datasets_cache("someuser/TinySent") == (True, None)
    # a copy made with other arguments (default-<hash>, its dataset_info.json naming 'default') is not a configuration
    # of its own: datasets passes it over (r2)
    other_args = prepared(tmp_path / "datasets", "someuser___tiny_sent", config="default-a1b2c3", copy="ffff0000")
    (other_args / "dataset_info.json").write_text(json.dumps({"config_name": "default"}))
    assert hub.datasets_cache("someuser/TinySent") == (True, None)
    # a configuration cut short at the chosen copy's version and hash: datasets reads it too, and fails (r5b)
    prepared(tmp_path / "datasets", "someuser___tiny_sent", config="fourth", copy="ffff0000", info=False)
    found, problem = hub.datasets_cache("someuser/TinySent", "third")
    assert found and "fourth" in problem and "cut short" in problem


def offline_hub(monkeypatch, tmp_path, endpoint="http://127.0.0.1:9"):
    """No offline variable set, caches in tmp_path, the Hub at `endpoint` (port 9: nothing listens, refused at
    once); the libraries' offline switches put back after the test."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "TRANSFORMERS_CACHE", "HTTPS_PROXY",
                "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("datasets.config.HF_DATASETS_OFFLINE", False)


def test_everything_cached_and_no_hub_reads_offline_at_once(monkeypatch, tmp_path):
    """A node without internet and without HF_HUB_OFFLINE, its cache warmed on a login node: every name was
    cached, so the check returned without probing, and transformers and datasets then retried each lookup 5 times
    (1 + 2 + 4 + 8 + 8 s): a start took 3.5 minutes instead of 26 s (audit61). The probe fails in a second: the
    libraries go offline, and a line says so."""
    import huggingface_hub.constants
    import datasets.config
    from loop import hub
    from loop.config import TrainConfig

    offline_hub(monkeypatch, tmp_path)
    hub_cache_repo(tmp_path / "hub", "someorg/tiny-model", {"config.json": "{}"})
    prepared(tmp_path / "datasets", "imdb", config="plain_text")
    cfg = TrainConfig(model_name_or_path="someorg/tiny-model", output_dir=str(tmp_path / "out"))
    said = hub.check(cfg)
    assert "cannot be reached" in said and "'someorg/tiny-model' and 'imdb' read from the cache" in said
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True and datasets.config.HF_HUB_OFFLINE is True
    assert "HF_HUB_OFFLINE" not in os.environ  # push_problem reads the user's own setting


def test_each_library_s_own_offline_variable_and_a_proxy(monkeypatch, tmp_path):
    """HF_DATASETS_OFFLINE=1 puts datasets offline, not huggingface_hub: a model not cached is fetched (the Hub
    reachable), not refused as 'offline mode is on: HF_HUB_OFFLINE' (audit61). A cluster that reaches the Hub only
    through its HTTPS proxy: the probe connects to the proxy (a direct connection fails while downloads work),
    unless NO_PROXY names the Hub's host."""
    from loop import hub
    from loop.config import TrainConfig
    from loop.errors import UserError

    up = f"http://127.0.0.1:{listening_port()}"
    offline_hub(monkeypatch, tmp_path, endpoint=up)
    cfg = TrainConfig(model_name_or_path="someorg/not-cached", dataset_name=str(tmp_path), output_dir=str(tmp_path / "o"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert hub.check(cfg) is None  # fetched by transformers
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"offline mode is on: HF_HUB_OFFLINE\)"):
        hub.check(cfg)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # no such host: only the proxy can reach it
    with pytest.raises(UserError, match="the Hub cannot be reached"):
        hub.check(cfg)
    monkeypatch.setenv("HTTPS_PROXY", up)
    assert hub.probe_address() == ("127.0.0.1", int(up.rsplit(":", 1)[1]))
    assert hub.check(cfg) is None
    monkeypatch.setenv("NO_PROXY", "hub.invalid")
    assert hub.probe_address() == ("hub.invalid", 443)
    # HF_HUB_OFFLINE holds datasets back too (it downloads through huggingface_hub), whatever HF_DATASETS_OFFLINE says
    monkeypatch.setenv("HF_ENDPOINT", up)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    with pytest.raises(UserError, match=r"--dataset_name 'someorg/data' .* \(offline mode is on: HF_HUB_OFFLINE\)"):
        hub.check(TrainConfig(model_name_or_path=str(tmp_path), dataset_name="someorg/data", output_dir="o"))


def test_a_refusal_names_the_caches_it_looked_in_and_only_the_missing_flags(monkeypatch, tmp_path):
    """The line names the hub cache it searched (and TRANSFORMERS_CACHE, which transformers 5 no longer reads),
    asks only for the copies missing (a cached dataset needs no local files), and points at a dataset's files in
    the hub cache (`hf download --repo-type dataset`), which --dataset_name reads as a folder. A tokenizer repo
    with tokenizer.json alone (no tokenizer_config.json) is cached: transformers loads it offline."""
    from loop import hub
    from loop.config import TrainConfig
    from loop.errors import UserError

    offline_hub(monkeypatch, tmp_path)
    monkeypatch.setenv("TRANSFORMERS_CACHE", str(tmp_path / "old"))
    prepared(tmp_path / "datasets", "imdb", config="plain_text")
    cfg = TrainConfig(model_name_or_path="someorg/absent", output_dir=str(tmp_path / "out"))
    with pytest.raises(UserError) as e:
        hub.check(cfg)
    msg = str(e.value)
    assert f"the hub cache '{tmp_path / 'hub'}'" in msg and "TRANSFORMERS_CACHE is set" in msg, msg
    assert "--model_name_or_path /path/to/model" in msg and "--train_file" not in msg and "\n" not in msg
    snapshot = hub_cache_repo(tmp_path / "hub", "someorg/sets", {"README.md": "#", "plain/train.parquet": "x"},
                              repo_type="dataset")
    with pytest.raises(UserError, match=f"--dataset_name {snapshot} \\(its files, in the hub cache\\)") as e:
        hub.check(TrainConfig(model_name_or_path=str(tmp_path), dataset_name="someorg/sets",
                              output_dir=str(tmp_path / "out")))
    assert "--model_name_or_path" not in str(e.value).split("pass local copies")[1]
    with pytest.raises(UserError) as e:  # a tokenizer alone missing: its own flag
        hub.check(TrainConfig(model_name_or_path=str(tmp_path), tokenizer_name="someorg/tok",
                              dataset_name=str(tmp_path), output_dir="o"))
    assert str(e.value).endswith("pass local copies: --tokenizer_name /path/to/tokenizer."), e.value
    hub_cache_repo(tmp_path / "hub", "someorg/wordtok", {"tokenizer.json": "{}"})
    assert hub.cached("someorg/wordtok", "model", hub.hub_names(TrainConfig(
        model_name_or_path=str(tmp_path), tokenizer_name="someorg/wordtok", dataset_name=str(tmp_path), output_dir="o"))[0][3])


@pytest.mark.slow
def test_verbose_brings_library_output_back(tiny_model, tiny_data, tmp_path):
    args = tiny_args(tiny_model, tiny_data, str(tmp_path / "out"), max_train_samples=32, max_eval_samples=32,
                     num_train_epochs=1)
    quiet = run_cli(args, how="python", fresh=True)  # a process of its own: libraries imported late are quieted too
    loud = run_cli(args + ["--verbose", "--overwrite_output_dir"], how="python")
    # transformers' own progress bar while writing best/ (datasets' bars are cached away on the second run)
    assert "Writing model shards" not in quiet.stderr and "Writing model shards" in loud.stderr
    assert "[loop] done in" in quiet.stdout and "[loop] done in" in loud.stdout


@pytest.mark.slow  # two processes: ~25 s on a quiet machine
def test_two_processes_print_every_message_once(tiny_model, tiny_data, tmp_path):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    base = str(tmp_path / "base_model")  # a head to initialize: the "new head" line must come once too
    AutoModel.from_config(AutoConfig.from_pretrained(tiny_model)).save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(base)
    p = run_cli(tiny_args(base, tiny_data, str(tmp_path / "out"), from_scratch="false", max_train_samples=64,
                          max_eval_samples=32, num_train_epochs=1), nproc=2, how="fork")
    lines = [line for line in p.stdout.splitlines() if line.startswith("[loop]")]
    assert len(lines) == len(set(lines)), lines  # no message twice
    for start in ("[loop] data:", "[loop] new head:", "[loop] best eval_accuracy", "[loop] done in"):
        assert any(line.startswith(start) for line in lines), (start, lines)
    assert "LOAD REPORT" not in p.stdout + p.stderr


def test_padding_multiple_never_passes_the_models_positions(tiny_model, tiny_data, tmp_path):
    """Under mixed precision batches are padded to multiples of 8 (64 under the CUDA-graph compile modes); a model with
    20 positions must still get batches of at most 20, not 24 (an index error in its position table)."""
    from types import SimpleNamespace

    from loop.loaders import BucketPadding, padded_width, padding_multiple
    from transformers import AutoTokenizer

    def multiple(precision, compile=False, mode=None):
        return padding_multiple(SimpleNamespace(torch_compile=compile, torch_compile_mode=mode), precision)

    assert [multiple("no"), multiple("bf16"), multiple("no", True), multiple("bf16", True, "default")] == [1, 8, 8, 8]
    assert multiple("bf16", True, "reduce-overhead") == multiple("no", True, "max-autotune") == 64  # CUDA graphs
    assert multiple("bf16", True, "max-autotune-no-cudagraphs") == 8

    assert [padded_width(n, 8, 20) for n in (1, 8, 9, 17, 20)] == [8, 8, 16, 20, 20]
    assert padded_width(np.array([3, 70]), 64, 100).tolist() == [64, 100]
    tok = AutoTokenizer.from_pretrained(tiny_model)
    collate = BucketPadding(tok, 8, 20)
    batch = collate([{"input_ids": [2] * n, "attention_mask": [1] * n, "labels": 0} for n in (19, 3)])
    assert tuple(batch["input_ids"].shape) == (2, 20) and batch["attention_mask"][1].sum() == 3

    out = tmp_path / "out"
    # the position count comes from --config_overrides: the max-length rule must read it there too
    proc = run_cli(tiny_args(tiny_model, tiny_data, out, max_length=None, num_train_epochs=1,
                             config_overrides="max_position_embeddings=20"),
                   how="python", ACCELERATE_MIXED_PRECISION="bf16")
    assert "max_length 20" in proc.stdout and "mixed precision: bf16" in proc.stdout
    assert 0 <= evals(out)[-1]["eval_accuracy"] <= 1


def test_tensorboard_shows_each_step_once_after_a_crash_and_an_overwrite(tiny_model, tiny_data, tmp_path):
    """The events a crashed run logged after its last checkpoint, and an earlier run's events under
    --overwrite_output_dir, are hidden from TensorBoard (as they are cut from metrics.jsonl)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def shown(out):  # what TensorBoard shows: every events file of the run folder, read in order
        folder = os.path.dirname(glob.glob(os.path.join(out, "**", "events.out.tfevents.*"), recursive=True)[0])
        acc = EventAccumulator(folder)
        acc.Reload()
        return {tag: [s.step for s in acc.Scalars(tag)] for tag in ("loss", "eval_loss")}

    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tiny_data, out, num_train_epochs=1, eval_steps=10, checkpointing_steps=15,
                     report_to="tensorboard")
    crashed = run_cli(args, how="python", script=FAULTS, check=False, LOOP_TEST_CRASH_AT_STEP=25)
    assert crashed.returncode != 0
    run_cli(args + ["--resume_from_checkpoint", "latest"], how="python")
    steps = shown(out)
    assert steps["loss"] == [r["step"] for r in train_logs(out)] == [5, 10, 15, 20, 25, 30, 35, 38]
    assert steps["eval_loss"] == [r["step"] for r in evals(out)] == [10, 20, 30, 38]
    mask = os.umask(0o022)
    os.umask(mask)
    saved = glob.glob(os.path.join(out, "checkpoints", "*", "*.safetensors"))
    assert saved and {oct(os.stat(f).st_mode & 0o777) for f in saved} == {oct(0o666 & ~mask)}  # not 0600

    run_cli(tiny_args(tiny_model, tiny_data, out, num_train_epochs=1, max_train_samples=160, logging_steps=4,
                      report_to="tensorboard", overwrite_output_dir="true"), how="python")
    assert shown(out) == {"loss": [4, 8, 10], "eval_loss": [10]}


def test_a_step_checkpoint_on_an_epochs_last_step_follows_its_evaluation(tiny_model, tiny_data, tmp_path):
    """--checkpointing_steps 10 with 10 steps per epoch: step_10 is saved after epoch 1's evaluation (it
    was saved before it, so a resume evaluated step 10 again and TensorBoard showed it twice)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tiny_data, out, num_train_epochs=2, max_train_samples=160, max_eval_samples=32,
                     checkpointing_steps=10, report_to="tensorboard")
    assert run_cli(args, how="python", script=FAULTS, check=False, LOOP_TEST_CRASH_AT_STEP=15).returncode != 0
    state = ckpt.read_state(os.path.join(out, "checkpoints", "step_10"))["state"]
    assert (state["epoch"], state["batches_done"], state["best_step"]) == (1, 0, 10)  # after the evaluation
    run_cli(args + ["--resume_from_checkpoint", "latest"], how="python")
    folder = os.path.dirname(glob.glob(os.path.join(out, "**", "events.out.tfevents.*"), recursive=True)[0])
    acc = EventAccumulator(folder)
    acc.Reload()
    assert [e.step for e in acc.Scalars("eval_loss")] == [r["step"] for r in evals(out)] == [10, 20]


def test_saved_files_are_readable_as_any_new_file(stepped):
    """best/'s files (and checkpoints', see the crash test) get the mode open() gives a new file (the umask's), not safetensors' private
    0600 temporary: a team sharing the output folder can load the weights."""
    out, _ = stepped
    mask = os.umask(0o022)
    os.umask(mask)
    if mask & 0o044 == 0o044:
        pytest.skip("this umask (%o) hides the files from group and others anyway" % mask)
    files = glob.glob(os.path.join(out, "best", "*"))
    assert any(f.endswith(".safetensors") for f in files), files
    assert {f: oct(os.stat(f).st_mode & 0o777) for f in files} == {f: oct(0o666 & ~mask) for f in files}


def test_hub_dataset_splits_by_name(tmp_path):
    """A dataset folder (or Hub repo) whose evaluation split has its own name (MNLI's validation_matched):
    --eval_split picks it; without it, validation, else test; a split the dataset lacks is one line
    listing those it has; with local files the split flags are refused (they would be ignored)."""
    from loop import UserError, parse_args
    from loop import data as D
    from loop import synthetic

    for name, seed, n in (("tr", 1, 48), ("vm", 2, 16), ("vmm", 3, 12), ("te", 4, 8)):
        synthetic.write_jsonl(synthetic.make_rows(n, seed), tmp_path / f"{name}.jsonl")
    splits = [("train", "tr"), ("validation_matched", "vm"), ("validation_mismatched", "vmm"), ("test", "te")]
    with open(tmp_path / "README.md", "w") as f:  # a dataset card naming its splits' files
        f.write("---\nconfigs:\n- config_name: default\n  data_files:\n"
                + "".join(f"  - split: {s}\n    path: {p}.jsonl\n" for s, p in splits) + "---\n")

    def load(*flags):
        return D.load_raw(parse_args(["--dataset_name", str(tmp_path), "--output_dir", str(tmp_path / "o"), *flags]))

    assert [len(d) for d in load().values()] == [48, 8]  # no 'validation': test
    assert [len(d) for d in load("--eval_split", "validation_mismatched").values()] == [48, 12]
    assert [len(d) for d in load("--train_split", "validation_matched").values()] == [16, 8]
    with pytest.raises(UserError, match="has no 'dev' split \\(it has: train, validation_matched, "
                                        "validation_mismatched, test\\); pass one of those as --eval_split"):
        load("--eval_split", "dev")
    with pytest.raises(UserError, match="--eval_split picks a split of --dataset_name, but --train_file replaces"):
        parse_args(["--train_file", str(tmp_path / "tr.jsonl"), "--eval_split", "test"])


def test_early_stopping_counts_evaluations_since_the_last_improvement_and_resumes_its_count():
    """audit61 mutants: EarlyStopping's count starts again at each improvement (patience 2: better, worse, better,
    worse goes on; a second worse in a row stops), a checkpoint's count is put back (one evaluation short of
    patience: the next worse one stops), and a callback's Trainer-named method is warned about as the loop's is."""
    from types import SimpleNamespace

    from loop.callbacks import EarlyStopping, unknown_hooks

    def stub():
        stops = []
        return SimpleNamespace(cfg=SimpleNamespace(metric="accuracy"), improved=lambda v, p: p is None or v > p,
                               request_stop=stops.append, stops=stops, callbacks=[])

    lp, early = stub(), EarlyStopping(patience=2)
    for accuracy in (0.5, 0.4, 0.6, 0.55):
        early.on_evaluate(lp, {"eval_accuracy": accuracy})
    assert lp.stops == [] and early.state_dict() == {"best": 0.6, "bad_evals": 1}
    early.on_evaluate(lp, {"eval_accuracy": 0.58})
    assert lp.stops == ["early stopping: no improvement of eval_accuracy in 2 evaluations"]

    lp, resumed = stub(), EarlyStopping(patience=2)
    resumed.load_state_dict({"best": 0.6, "bad_evals": 1})
    resumed.on_evaluate(lp, {"eval_accuracy": 0.59})
    assert lp.stops == ["early stopping: no improvement of eval_accuracy in 2 evaluations"]

    class Logger:
        def on_log(self, loop):
            pass

    lp = stub()
    lp.callbacks = [EarlyStopping(patience=1), Logger()]
    assert unknown_hooks(lp).startswith("Logger.on_log is a hook of Trainer or Lightning that the loop does not have")
    lp.callbacks = [EarlyStopping(patience=1)]
    assert unknown_hooks(lp) is None


def test_early_stopping_threshold_counts_only_larger_improvements(tmp_path):
    """--early_stopping_threshold: rises of 0.04 and 0.005 over the best accuracy so far are no improvement when
    0.05 is asked (they are without a threshold), so patience 2 stops there; the best moves with each rise, as
    Trainer's does; given alone, the threshold is one line."""
    import loop
    from loop import TrainConfig, UserError

    def evaluations(*flags, scores=(0.50, 0.54, 0.545, 0.64)):
        lp = loop.Loop(loop.parse_args(["--early_stopping_patience", "2", "--output_dir", str(tmp_path), *flags]))
        early = next(c for c in lp.callbacks if isinstance(c, loop.EarlyStopping))
        for i, acc in enumerate(scores):
            if lp.stop_requested:  # (pending: the next evaluation stops the run)
                return i
            early.on_evaluate(lp, {"eval_accuracy": acc})
        return None

    assert evaluations() is None  # every rise improves
    assert evaluations("--early_stopping_threshold", "0.05") == 3  # 0.54 and 0.545 fall short of 0.50 + 0.05
    # the best moves with every rise (Trainer's rule): 0.8012 beats 0.8006, the best so far, by less than 0.001
    assert evaluations("--early_stopping_threshold", "0.001", scores=(0.8, 0.8006, 0.8012, 0.8018)) == 3
    # a rise of exactly the threshold is no improvement either (Trainer: > threshold); 0.25 steps are exact in binary
    assert evaluations("--early_stopping_threshold", "0.25", scores=(0.25, 0.5, 0.75, 1.0)) == 3
    assert evaluations("--early_stopping_threshold", "0.24", scores=(0.25, 0.5, 0.75, 1.0)) is None
    with pytest.raises(UserError, match="--early_stopping_threshold says how much .* add --early_stopping_patience"):
        TrainConfig(early_stopping_threshold=0.01)


def test_compute_all_scores_two_labels_for_the_positive_class_and_more_by_their_macro_mean():
    """audit61 mutant: compute_all gives f1/precision/recall of two labels as the positive class's (binary), and
    averages over the classes (macro) only beyond two; hand-counted: class 1 has TP 2 of 4 predicted and 3 true,
    class 0 TP 1 of 2 predicted and 3 true."""
    from loop import scores

    modules = {name: scores.Shipped(name) for name in ("f1", "precision", "recall", "accuracy")}
    preds, refs = [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 1]
    assert scores.compute_all(modules, preds, refs, num_labels=2) == pytest.approx(
        {"f1": 4 / 7, "precision": 2 / 4, "recall": 2 / 3, "accuracy": 3 / 6}, rel=1e-12)
    assert scores.compute_all(modules, preds, refs, num_labels=3) == pytest.approx(
        {"f1": (4 / 7 + 2 / 5) / 2, "precision": (2 / 4 + 1 / 2) / 2, "recall": (2 / 3 + 1 / 3) / 2,
         "accuracy": 3 / 6}, rel=1e-12)


def test_averaged_f1_precision_recall_by_name(tiny_model, tiny_data, tmp_path):
    """f1_macro, f1_weighted, precision_micro, ...: the shipped scores with the average in the name, offline,
    equal to the per-class arithmetic done by hand (single- and multi-label), usable as --metric to pick best/."""
    import loop
    from loop import TrainConfig, UserError, scores

    p, r = [0, 1, 2, 2, 1, 0, 2, 1], [0, 2, 2, 2, 1, 1, 0, 1]  # per-class f1: 1/2, 2/3, 2/3 (supports 2, 3, 3)
    got = {n: scores.Shipped(n).compute(predictions=p, references=r)[n] for n in ("f1_macro", "f1_weighted", "recall_micro")}
    assert got == pytest.approx({"f1_macro": (0.5 + 2 / 3 + 2 / 3) / 3, "f1_weighted": (2 * 0.5 + 3 * 2 / 3 + 3 * 2 / 3) / 8,
                                 "recall_micro": 5 / 8})
    P = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])  # per-label f1: 1, 2/3, 0 (supports 2, 1, 1)
    R = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert scores.multi_label(["f1_macro", "f1_weighted", "f1_micro"], P, R) == pytest.approx(
        {"f1_macro": (1 + 2 / 3) / 3, "f1_weighted": (2 + 2 / 3) / 4, "f1_micro": 2 * 3 / (2 * 3 + 2 + 1)})
    with pytest.raises(UserError, match="did you mean 'f1_macro'"):
        TrainConfig(metric="F1_Macro").metric_list()

    out = tmp_path / "out"
    loop.Loop(loop.parse_args(tiny_args(tiny_model, str(tiny_data), str(out), metric="f1_macro",
                                        metrics="accuracy,recall_weighted"))).fit()
    last = evals(out)[-1]
    assert {"eval_f1_macro", "eval_recall_weighted", "eval_accuracy"} <= set(last) and 0.5 < last["eval_f1_macro"] <= 1
    assert last["eval_recall_weighted"] == pytest.approx(last["eval_accuracy"])  # weighted recall is accuracy
    assert json.load(open(out / "best" / "best_metrics.json"))["eval_f1_macro"] == max(e["eval_f1_macro"] for e in evals(out))
