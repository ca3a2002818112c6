"""audit66 m12: mutants of loop/scores.py, loop/accelerate_launch.py and loop/synthetic.py that the suite let
through. Expected values are counted by hand here (scikit-learn's definitions), not computed by the code under test."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import ROOT

from loop import scores


# ---------------------------------------------------------------- scores: the numbers a run reports
def test_macro_averages_over_the_classes_present_not_every_id_below_the_largest():
    """scikit-learn's macro mean is over the labels in predictions or references: id 1, in neither, is no class
    with a zero score (mutant: values.mean() over ids 0..2 gave 4/9)."""
    p, r = [0, 2, 2], [0, 2, 0]  # class 0: TP 1, predicted 1, true 2; class 2: TP 1, predicted 2, true 1
    got = {n: scores.Shipped(n).compute(predictions=p, references=r)[n]
           for n in ("f1_macro", "precision_macro", "recall_macro", "f1_weighted")}
    assert got == pytest.approx({"f1_macro": 2 / 3, "precision_macro": (1 + 1 / 2) / 2, "recall_macro": (1 / 2 + 1) / 2,
                                 "f1_weighted": (2 * 2 / 3 + 1 * 2 / 3) / 3}, rel=1e-12)


def test_multi_label_micro_pools_every_decision_unlike_the_weighted_mean():
    """Multi-label f1_micro/precision_micro/recall_micro pool every (example, label) decision; f1_weighted weighs
    each label's own f1 by its positives. Chosen so the two differ (the suite's example gave 2/3 both ways, so a
    micro computed as the weighted mean passed)."""
    P = np.array([[1, 1], [1, 0], [0, 0]])
    R = np.array([[1, 0], [1, 1], [0, 1]])  # label 0: TP 2, FP 0, FN 0; label 1: TP 0, FP 1, FN 2
    assert scores.multi_label(["f1_micro", "precision_micro", "recall_micro", "f1", "f1_weighted", "f1_macro"], P, R) \
        == pytest.approx({"f1_micro": 4 / 7, "precision_micro": 2 / 3, "recall_micro": 2 / 4, "f1": 4 / 7,
                          "f1_weighted": (2 * 1 + 2 * 0) / 4, "f1_macro": (1 + 0) / 2}, rel=1e-12)


def test_a_perfect_linear_fit_has_pearson_exactly_one():
    """Rounding can put the correlation a hair past 1 (1.0000000000000002 here): clipped to [-1, 1], as a
    correlation is, so a perfect fit reads 1.0 and no later evaluation 'beats' it by rounding."""
    x = np.array([7.857857007138075, 4.146558493556708, 7.344835717887293, 7.111428779897499])
    got = scores.regression(["pearson", "spearman"], 2 * x + 1, x)
    assert got == {"pearson": 1.0, "spearman": 1.0}
    assert scores.regression(["pearson"], -2 * x + 1, x)["pearson"] >= -1.0


def test_a_prediction_that_is_not_a_number_makes_the_correlations_nan():
    """NaN predictions (a diverged regression head) scored Spearman 1.0 (NaN != NaN: each ranked in index order) and
    Pearson 0.0 (a NaN denominator is not > 0); they are NaN, as scipy's (audit66 m12 F1). A finite fit is as before."""
    nan = float("nan")
    got = scores.regression(["mse", "pearson", "spearman"], [nan] * 4, [1.0, 2.0, 3.0, 4.0])
    assert all(np.isnan(v) for v in got.values()), got
    got = scores.regression(["pearson", "spearman"], [1.0, 2.0, nan, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert all(np.isnan(v) for v in got.values()), got
    assert scores.regression(["spearman"], [1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 3.0, 4.0]) == {"spearman": 1.0}


def test_accuracy_weights_and_count_by_hand():
    """accuracy's sample_weight divides by the weights' sum, and normalize=False is the (weighted) count of hits
    (mutants: the total as the number of examples; normalize ignored)."""
    p, r = [1, 0, 1], [1, 1, 1]
    assert scores.accuracy(p, r, sample_weight=[3.0, 1.0, 0.5]) == pytest.approx(3.5 / 4.5)
    assert scores.accuracy(p, r, normalize=False) == 2.0
    assert scores.accuracy(p, r, normalize=False, sample_weight=[3.0, 1.0, 0.5]) == 3.5


def test_soft_multi_label_references_count_where_they_round_to_one():
    """Multi-label references of 0.4 and 0.6 (label smoothing, soft labels) are 0 and 1: rounded, not truncated
    (decide) nor taken as 'above 0' (report's per-label support)."""
    import torch

    logits = torch.tensor([[2.0, -1.0], [-3.0, 0.5]])
    refs = torch.tensor([[0.6, 0.4], [0.4, 0.6]])
    preds, rounded = scores.decide(logits, refs, multi_label=True)
    assert rounded.tolist() == [[1, 0], [0, 1]] and preds.tolist() == [[1, 0], [0, 1]]
    per = scores.report(logits.numpy(), refs.numpy(), ["a", "b"], multi_label=True)["per_class"]
    assert per == {"a": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
                   "b": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}


def test_the_per_class_report_keeps_six_decimals():
    """--eval_only's per-class values are rounded to 6 decimals (1/3 is 0.333333, not 0.333)."""
    logits = np.eye(2, dtype=np.float32)[[0, 0, 0, 1]]  # predicted 0, 0, 0, 1
    per = scores.report(logits, np.array([0, 1, 1, 1]), ["a", "b"])["per_class"]
    assert per["a"] == {"precision": 0.333333, "recall": 1.0, "f1": 0.5, "support": 1}
    assert per["b"] == {"precision": 1.0, "recall": 0.333333, "f1": 0.5, "support": 3}


def test_a_tie_with_the_best_score_keeps_the_earlier_best():
    """best/ moves only on a strict improvement, in either direction (as the Trainer's np.greater / np.less): an
    evaluation equal to the best keeps the earlier checkpoint (mutant: >= / <= moved best/ to the later one)."""
    import loop

    for metric, higher in (("accuracy", True), ("loss", False)):
        lp = loop.Loop(loop.parse_args(["--metric", metric, "--output_dir", "unused"]))
        assert lp.improved(0.5, 0.5) is False, metric
        assert lp.improved(0.5, None) is True
        assert lp.improved(0.6, 0.5) is higher and lp.improved(0.4, 0.5) is (not higher)


def fake_loop(batches, multi_label=False, regression=False, compute_metrics=None):
    """What scores.gather / score_split read of a Loop: batches of (logits, labels), per-example losses |logit0|."""
    return SimpleNamespace(
        multi_label=multi_label, regression=regression, scored={}, cfg=SimpleNamespace(eval_only=False),
        model=SimpleNamespace(eval=lambda: None, train=lambda: None),
        runlog=SimpleNamespace(progress=lambda it, desc: it),
        evaluation_step=lambda b: b, evaluation_loss=lambda logits, labels: logits[:, 0].abs(),
        accelerator=SimpleNamespace(gather_for_metrics=lambda x: x),
        compute_metrics=compute_metrics or (lambda p, r: {"hits": int((p == r).sum())}))


def test_a_split_scored_short_of_its_rows_is_refused_and_the_loss_is_the_mean_of_every_example():
    """gather refuses a count other than the split's rows, fewer too (an example lost on the way would skew every
    metric unseen); {prefix}_loss is the mean over every example."""
    import torch

    batches = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])),
               (torch.tensor([[4.0, 0.0]]), torch.tensor([0]))]
    with pytest.raises(RuntimeError, match="eval scored 3 examples, expected 4"):
        scores.gather(fake_loop(batches), batches, 4, "eval", keep_logits=False)
    with pytest.raises(RuntimeError, match="eval scored 3 examples, expected 2"):
        scores.gather(fake_loop(batches), batches, 2, "eval", keep_logits=False)
    lp = fake_loop(batches)
    got = scores.score_split(lp, batches, [None] * 3, "eval")
    assert got == {"eval_hits": 2, "eval_loss": pytest.approx((1 + 0 + 4) / 3), "eval_samples": 3}


def test_a_dot_path_to_a_missing_metric_folder_is_a_script_not_a_hub_id(tmp_path, monkeypatch):
    """'./mine' or '../mine' (one slash) is a path evaluate looks for on disk, never a Hub id user/name: missing, it
    runs nothing, so no --trust_remote_code is asked for (load_metrics says it cannot be loaded)."""
    monkeypatch.chdir(tmp_path)
    for name in ("./mine", "../mine"):
        assert scores.metric_code(name) == ("script", os.path.abspath(name))
    scores.check_metric_code(["./mine"], trust_remote_code=False)  # no UserError
    assert scores.describe_code(["./mine"]) is None


def test_an_unloadable_metric_names_the_option_and_a_close_shipped_name(monkeypatch):
    """A --metrics name evaluate cannot load is said with the option that named it and a did-you-mean (f1_macr ->
    f1_macro); --metric's own name, or a call without `metric`, says --metric."""
    import types

    from loop.errors import UserError

    def load(name, **kw):
        raise FileNotFoundError(f"Couldn't find a module script at {name}")

    monkeypatch.setitem(sys.modules, "evaluate", types.SimpleNamespace(load=load))
    acc = SimpleNamespace(is_main_process=False, main_process_first=lambda: __import__("contextlib").nullcontext())
    with pytest.raises(UserError, match=r"^--metrics 'f1_macr' could not be loaded .*did you mean 'f1_macro'\?"):
        scores.load_metrics(["accuracy", "f1_macr"], acc, metric="accuracy")
    with pytest.raises(UserError, match=r"^--metric 'precison_weighted' could not .*did you mean 'precision_weighted'"):
        scores.load_metrics(["precison_weighted"], acc)


# ---------------------------------------------------------------- accelerate_launch: its settings reach train.py
def test_one_process_launch_becomes_the_script_with_accelerates_settings(tmp_path):
    """`python loop/accelerate_launch.py <accelerate launch flags> script args` execs the script in its own process
    (no launcher between: the pid is the one started) with the environment accelerate works out from the flags and
    the config file: mixed precision, CPU, threads (mutants: accelerate's launcher kept; the command run without
    accelerate's environment, or as a child)."""
    script = tmp_path / "show.py"
    script.write_text("import json, os, sys\nprint(json.dumps({'pid': os.getpid(), 'argv': sys.argv[1:], 'env': "
                      "{k: os.environ.get(k) for k in ('ACCELERATE_MIXED_PRECISION', 'ACCELERATE_USE_CPU', "
                      "'OMP_NUM_THREADS')}}))\n")
    config = tmp_path / "accelerate.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nnum_processes: 1\n"
                      "mixed_precision: bf16\nuse_cpu: true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "OMP_NUM_THREADS"))}
    env.update(HF_HOME=str(tmp_path / "hf"), PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "loop", "accelerate_launch.py"), "--config_file",
                             str(config), "--num_cpu_threads_per_process", "3", str(script), "--x", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    got = json.loads(out.strip().splitlines()[-1])
    assert got == {"pid": proc.pid, "argv": ["--x", "1"],
                   "env": {"ACCELERATE_MIXED_PRECISION": "bf16", "ACCELERATE_USE_CPU": "True", "OMP_NUM_THREADS": "3"}}


def test_what_was_printed_before_the_exec_is_not_lost():
    """run_in_place flushes before it execs: a line printed before (accelerate's, or ours) sits in the buffer of a
    piped stdout (unless PYTHONUNBUFFERED), and exec would drop it (mutant: no flush; the exec'd command's line came
    alone)."""
    script = ("import os, sys\nfrom loop import accelerate_launch as a\n"
              "a.prepare_simple_launcher_cmd_env = lambda args: ([sys.executable, '-c', 'print(\\'after\\')'], "
              "dict(os.environ))\nprint('before')\nprint('to stderr', file=sys.stderr, end='')\na.run_in_place(None)\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                       env={**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, "PYTHONPATH": ROOT},
                       cwd=ROOT)
    assert (p.returncode, p.stdout, p.stderr) == (0, "before\nafter\n", "to stderr"), p.stderr


@pytest.mark.parametrize("text, said", [("", "it is empty"), ("0\n", "it holds a number, not a mapping of settings"),
                                        ("false\n", "it holds true or false, not a mapping of settings")])
def test_a_config_that_is_one_number_or_boolean_is_said_as_such(tmp_path, capsys, text, said):
    """accelerate's AttributeError on a config that is no mapping is said as what the file holds: only a file with
    nothing in it is 'empty' (a file holding 0 or false is not)."""
    from loop import accelerate_launch

    path = tmp_path / "accelerate.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as e:
        accelerate_launch.refuse_config(SimpleNamespace(config_file=str(path)),
                                        AttributeError("'NoneType' object has no attribute 'get'"))
    assert e.value.code == 2
    assert capsys.readouterr().err == (f"error: accelerate cannot use the config {path} ({said}); correct it, or write "
                                       f"a new one with `accelerate config`.\n")


def test_a_config_file_that_is_missing_or_a_folder_is_one_line(tmp_path, capsys):
    """`accelerate launch --config_file none.yaml loop/accelerate_launch.py` (launch.sh checks the file; accelerate
    launch does not): accelerate's FileNotFoundError was a traceback, exit 1 (audit66 m12 F2)."""
    from accelerate.commands import launch

    from loop import accelerate_launch

    for where in (tmp_path / "none.yaml", tmp_path):
        args = launch.launch_command_parser().parse_args(["--config_file", str(where), "train.py"])
        with pytest.raises(SystemExit) as e:
            accelerate_launch.read_config(launch._validate_launch_command)(args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith(f"error: accelerate cannot use the config {where} (") and \
            err.endswith("; correct it, or write a new one with `accelerate config`.\n") and err.count("\n") == 1, err


def test_a_launcher_that_cannot_import_what_it_needs_is_one_line(monkeypatch, capsys):
    """Any ImportError out of accelerate's launcher (a broken deepspeed install: "cannot import name", not only a
    missing module) is the one `error:` line, exit 2."""
    from accelerate.commands import launch

    from loop import accelerate_launch

    def broken(args):
        raise ImportError("cannot import name 'comm' from 'deepspeed'")

    monkeypatch.setattr(launch, "simple_launcher", launch.simple_launcher)  # main() replaces them: put back after
    if hasattr(launch, "_validate_launch_command"):
        monkeypatch.setattr(launch, "_validate_launch_command", launch._validate_launch_command)
    monkeypatch.setattr(launch, "launch_command", broken)
    with pytest.raises(SystemExit) as e:
        accelerate_launch.main(["--config_file", "ds.yaml", "train.py"])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("error: accelerate cannot launch with ds.yaml (cannot import name 'comm' from "
                                       "'deepspeed'); install what it names, or choose another config.\n")


def test_run_as_a_script_loops_own_folder_leaves_the_import_path(monkeypatch):
    """`python loop/accelerate_launch.py` puts loop/ first on sys.path, where its modules (config, data, logs...)
    would shadow real packages accelerate imports: run as a script, the folder leaves sys.path, however it is
    spelled there (absolute, or relative to the working directory)."""
    import runpy

    here = os.path.join(ROOT, "loop")
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", [here, "loop", "./loop/"] + sys.path)
    runpy.run_path(os.path.join(here, "accelerate_launch.py"), run_name="as_a_script")  # (not __main__: no launch)
    assert not {here, "loop", "./loop/"} & set(sys.path), sys.path[:4]


# ---------------------------------------------------------------- synthetic: what the docs say it makes
def test_synthetic_run_as_a_script_imports_this_checkouts_package(monkeypatch):
    """`python loop/synthetic.py DIR` (README's table) puts loop/ first on sys.path: run as a script it drops that
    folder and puts the repository root first, so `from loop.errors import ...` is this checkout's package (not an
    installed copy, nor nothing in a bare checkout)."""
    import runpy

    here = os.path.join(ROOT, "loop")
    monkeypatch.setattr(sys, "path", [here] + [p for p in sys.path if os.path.abspath(p or ".") != ROOT])
    runpy.run_path(os.path.join(here, "synthetic.py"), run_name="as_a_script")  # (not __main__: writes nothing)
    assert sys.path[0] == ROOT and here not in sys.path, sys.path[:3]


def test_the_synthetic_command_without_a_folder_writes_configs_smoke(monkeypatch):
    """`python -m loop.synthetic` with no folder writes configs/smoke (its usage line says so), relative to where it
    runs."""
    from loop import synthetic

    made = []
    monkeypatch.setattr(synthetic, "make_all", made.append)
    synthetic.main([])
    synthetic.main(["elsewhere"])
    assert made == ["configs/smoke", "elsewhere"]


def test_the_synthetic_command_regenerates_the_shipped_smoke_folder(tmp_path):
    """README: `python -m loop.synthetic configs/smoke` regenerates configs/smoke/ (2,000 training and 500
    validation reviews, the word-level tokenizer, a 2-layer 64-wide DistilBERT config): the same bytes, whichever
    transformers writes them (config.json held its version: regenerating changed a tracked file, audit66 N8), and
    the data is as described: balanced labels by name, no validation review copied from training."""
    from loop import synthetic

    synthetic.main([str(tmp_path)])
    shipped = os.path.join(ROOT, "configs", "smoke")
    names = ["model/config.json", "model/tokenizer.json", "model/tokenizer_config.json", "train.jsonl",
             "validation.jsonl"]
    assert sorted(os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs) == names
    for name in names:
        with open(tmp_path / name, "rb") as made, open(os.path.join(shipped, name), "rb") as kept:
            assert made.read() == kept.read(), name
    with open(tmp_path / "model" / "config.json") as made:
        made = json.load(made)
    assert (made["n_layers"], made["dim"], made["model_type"]) == (2, 64, "distilbert")
    rows = {split: [json.loads(line) for line in open(tmp_path / f"{split}.jsonl")]
            for split in ("train", "validation")}
    assert (len(rows["train"]), len(rows["validation"])) == (2000, 500)
    for split, n in (("train", 2000), ("validation", 500)):
        positive = sum(r["label"] == "POSITIVE" for r in rows[split])
        assert {r["label"] for r in rows[split]} == {"NEGATIVE", "POSITIVE"} and 0.45 < positive / n < 0.55
    assert rows["validation"] != rows["train"][:500]
    for r in rows["train"]:  # two or three words of the label's polarity, at most one bare word of the other
        words = r["text"].split()
        own, other = (synthetic.POSITIVE, synthetic.NEGATIVE) if r["label"] == "POSITIVE" else \
            (synthetic.NEGATIVE, synthetic.POSITIVE)
        bare = [w for i, w in enumerate(words) if i == 0 or words[i - 1] != "not"]
        assert 2 <= sum(w in own for w in bare) <= 3 and sum(w in other for w in bare) <= 1, r
        assert all(words[i + 1] in other for i, w in enumerate(words) if w == "not"), r
