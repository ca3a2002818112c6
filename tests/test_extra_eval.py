"""Extra evaluation sets (--extra_eval_files, --extra_eval_splits): scored at every evaluation with the
evaluation split's weights (eval_<name>_* in metrics.jsonl, best_metrics.json and the model card), never
picking best/, without changing training by a bit; with --eval_only scored and written like the
evaluation split.

Scores are checked against an independent scoring of best/ (transformers alone, in this process), so a
mislabelled, duplicated or dropped example of a set shows as a different number."""

import json
import os

import pytest

from conftest import evals, read_jsonl, run_cli, synthetic, tiny_args, train_logs
from test_errors import fails
from test_test_split import best_metrics, dataset_folder, score_best, write_classlabel_parquet

from loop.config import TrainConfig
from loop.config_files import yaml_to_argv
from loop.data import subset_indices
from loop.errors import UserError

OOD_ROWS = synthetic.make_rows(45, seed=7)  # odd sizes: a flipped labelling cannot land on the same accuracy
HARD_ROWS = synthetic.make_rows(130, seed=8)  # more than --max_eval_samples: a seeded subset of 100 is scored
SHARD_ROWS = (synthetic.make_rows(13, seed=9), synthetic.make_rows(18, seed=10))  # one set read from two shards


def extra_keys(record):
    return {k for k in record if k.startswith(("eval_ood_", "eval_hard_", "eval_shards_"))}


@pytest.fixture(scope="module")
def pair(tiny_model, tiny_data, tmp_path_factory):
    """The same run (600 training rows, 2 epochs of 38 steps, evaluated every 10 steps and at epoch ends,
    dropout on, f1 logged too) with and without three extra sets: 'ood', a parquet whose ClassLabel lists
    the classes the other way round (id 0 is POSITIVE); 'hard' (130 rows, cut to 100 by --max_eval_samples);
    'shards', a pattern of two jsonl files. ~7 s a run."""
    root = tmp_path_factory.mktemp("extra_runs")
    ood = write_classlabel_parquet(OOD_ROWS, ["POSITIVE", "NEGATIVE"], root / "ood.parquet")
    synthetic.write_jsonl(HARD_ROWS, root / "hard.jsonl")
    (root / "parts").mkdir()
    for i, rows in enumerate(SHARD_ROWS):
        synthetic.write_jsonl(rows, root / "parts" / f"part-{i}.jsonl")
    common = dict(eval_steps=10, max_eval_samples=100, metrics="accuracy,f1")
    with_extra, without = str(root / "with_extra"), str(root / "without")
    sets = f"{ood},hard={root / 'hard.jsonl'},shards={root / 'parts' / 'part-*.jsonl'}"
    p_with = run_cli(tiny_args(tiny_model, tiny_data, with_extra, extra_eval_files=sets, **common), how="python")
    run_cli(tiny_args(tiny_model, tiny_data, without, **common), how="python")
    return {"with": with_extra, "without": without, "proc_with": p_with, "root": root, "sets": sets,
            "common": common}


def hard_subset():
    """The 100 of HARD_ROWS --max_eval_samples 100 scores (seed 42, in file order)."""
    return [HARD_ROWS[i] for i in subset_indices(len(HARD_ROWS), 100, 42)]


def test_each_set_is_scored_with_best_weights_at_every_evaluation(pair):
    """best_metrics.json holds each set's scores of best/'s weights, equal to an independent scoring
    (the reversed ClassLabel read by name, the subset seeded, the shards read as one set); every
    evaluation record holds every set; the model card lists them."""
    out = pair["with"]
    best = best_metrics(out)
    for name, rows in (("ood", OOD_ROWS), ("hard", hard_subset()), ("shards", SHARD_ROWS[0] + SHARD_ROWS[1])):
        accuracy, loss, f1 = score_best(out, rows)
        assert best[f"eval_{name}_samples"] == len(rows)
        assert best[f"eval_{name}_accuracy"] == accuracy, (name, best, accuracy)
        assert best[f"eval_{name}_loss"] == pytest.approx(loss, rel=1e-4, abs=1e-6)
        assert best[f"eval_{name}_f1"] == pytest.approx(f1, abs=1e-9)
    accuracy, _, _ = score_best(out, OOD_ROWS)
    assert accuracy > 0.7, f"the model learned little ({accuracy}): a label mapping would go unnoticed"
    ev = evals(out)
    assert len(ev) == 9
    for e in ev:  # each record: the three sets, all of their examples
        assert extra_keys(e) == {f"eval_{n}_{m}" for n in ("ood", "hard", "shards")
                                 for m in ("accuracy", "f1", "loss", "samples")}, e
        assert (e["eval_ood_samples"], e["eval_hard_samples"], e["eval_shards_samples"]) == (45, 100, 31)
    last = [e for e in ev if e["step"] == best["step"]][-1]
    assert {k: last[k] for k in extra_keys(last)} == {k: best[k] for k in extra_keys(best)}
    card = open(os.path.join(out, "best", "README.md")).read()
    assert f"| eval_ood | accuracy | {best['eval_ood_accuracy']:.4f} |" in card
    assert "| eval_hard | examples | 100 |" in card and "`eval_shards`: file `part-*.jsonl`" in card
    assert "45 'ood' / 100 'hard' / 31 'shards' examples" in pair["proc_with"].stdout
    # the closing lines: each set's scores of best/'s weights
    assert f"evaluation set 'ood', best/'s weights: eval_ood_accuracy={best['eval_ood_accuracy']:.4f}, eval_ood_f1=" \
        in pair["proc_with"].stdout


def test_the_sets_change_nothing_in_training_and_pick_nothing(pair):
    """Bit for bit: the evaluation split's scores, the training log, best/'s step and weights are those of
    the run without extra sets (dropout on, the sets scored mid-epoch between steps)."""
    import torch
    from safetensors.torch import load_file

    a, b = pair["with"], pair["without"]
    ev_a, ev_b = evals(a), evals(b)
    assert [{k: v for k, v in x.items() if not extra_keys({k: 0})} for x in ev_a] == ev_b
    assert [(r["step"], r["loss"], r["learning_rate"]) for r in train_logs(a)] == \
           [(r["step"], r["loss"], r["learning_rate"]) for r in train_logs(b)]
    wa, wb = (load_file(os.path.join(d, "best", "model.safetensors")) for d in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ba, bb = best_metrics(a), best_metrics(b)
    assert {k: v for k, v in ba.items() if not extra_keys({k: 0})} == bb
    # a set that scores better elsewhere does not move best/: it is the evaluation split's best
    steps = [e["step"] for e in ev_a]
    best_eval = max(ev_a, key=lambda e: e["eval_accuracy"])
    assert ba["step"] == best_eval["step"] and ba["step"] in steps


@pytest.mark.slow  # more than one run
def test_a_set_named_by_metric_picks_best_and_stops_early(pair, tiny_model, tiny_data, tmp_path):
    """--metric eval_hard_loss (Trainer's metric_for_best_model spelling of an eval set's score) with
    --early_stopping_patience 2: best/ is the evaluation with the lowest eval_hard_loss so far (the first of
    equals), the run stops at the first evaluation that makes two without a lower one, all computed from the
    run without the flags, which trains bit-identically up to there; the card names the set that chose."""
    out = str(tmp_path / "by_hard")
    proc = run_cli(tiny_args(tiny_model, tiny_data, out, extra_eval_files=pair["sets"], metric="eval_hard_loss",
                             early_stopping_patience=2, **pair["common"]), how="python")
    reference = evals(pair["with"])
    best, bad, stop = None, 0, None
    for e in reference:  # EarlyStopping's rule and best/'s (threshold 0), on the set's loss
        if best is None or e["eval_hard_loss"] < best["eval_hard_loss"]:
            best, bad = e, 0
        else:
            bad += 1
            if bad == 2:
                stop = e
                break
    assert stop is not None, "the set's loss never stalled twice in a row: the stop is not tested"
    picked_by_eval = max(reference, key=lambda e: e["eval_accuracy"])  # (max: the first of equals)
    assert picked_by_eval["step"] != best["step"], "the evaluation split would pick the same step: not a test"
    ev = evals(out)
    assert ev == [e for e in reference if e["step"] <= stop["step"]]  # same numbers: the training is the same
    record = best_metrics(out)
    assert (record["step"], record["eval_hard_loss"]) == (best["step"], best["eval_hard_loss"])
    assert "no improvement of eval_hard_loss in 2 evaluations" in proc.stdout
    card = open(os.path.join(out, "best", "README.md")).read()
    assert "best evaluation by `loss` on the evaluation set `hard`" in card and "(`eval_hard` chose them)" in card


def test_a_file_with_a_comma_in_its_path_is_said_so(tmp_path):
    """--extra_eval_files splits at commas: 'ood=c,d/v.jsonl' was refused as "ood 'c' has an unsupported extension
    ''" (audit61); the path with its comma is named, with the option's splitting and a way round it."""
    (tmp_path / "c,d").mkdir()
    f = tmp_path / "c,d" / "v.jsonl"
    synthetic.write_jsonl(OOD_ROWS, f)
    with pytest.raises(UserError) as e:
        TrainConfig(extra_eval_files=f"ood={tmp_path}/c,d/v.jsonl")
    assert str(e.value) == (f"--extra_eval_files: '{f}' has a comma in its path, and the option is split at commas, "
                            f"so it would become 2 entries; rename it or link to it under a name without commas, or "
                            f"give a named pattern with '?' for each comma: 'ood={tmp_path}/c?d/v.jsonl'.")
    assert TrainConfig(extra_eval_files=f"ood={tmp_path}/c?d/v.jsonl").extra_evals()[0][0] == "ood"
    with pytest.raises(UserError, match="nope.jsonl' does not exist"):  # no comma to blame: as before
        TrainConfig(extra_eval_files=f"ood={tmp_path}/nope.jsonl,x={f}")


def test_metric_names_a_set(tmp_path):
    """--metric SET_<metric>: the key the run logs (eval_SET_<metric>) in any spelling of the set's name,
    the metric computed and its direction; the longest set name that fits wins; a whole metric name
    (f1_macro) stays the evaluation split's; a misspelt metric is named with its set."""
    f = tmp_path / "x.jsonl"
    synthetic.write_jsonl(OOD_ROWS, f)
    for given in ("ood_f1", "eval_ood_f1", "OOD_f1", "eval_Ood_f1"):
        cfg = TrainConfig(metric=given, extra_eval_files=f"ood={f}")
        assert (cfg.metric, cfg.metric_source(), cfg.metric_list(), cfg.higher_is_better) == \
               ("ood_f1", ("ood", "f1"), ["f1"], True), given
    g = tmp_path / "y.jsonl"
    synthetic.write_jsonl(OOD_ROWS, g)
    cfg = TrainConfig(metric="a_b_mse", extra_eval_files=f"a={f},a_b={g}")
    assert (cfg.metric_source(), cfg.higher_is_better) == (("a_b", "mse"), False)
    assert TrainConfig(metric="f1_macro", extra_eval_files=f"ood={f}").metric_source() == (None, "f1_macro")
    with pytest.raises(UserError, match="--metric 'ood_F1' is not a metric name; did you mean 'ood_f1'"):
        TrainConfig(metric="ood_F1", extra_eval_files=f"ood={f}")
    # sets whose names begin as Trainer's prefix does: eval_hard, eval
    for sets, given, key, source in ((f"eval_hard={f}", "eval_eval_hard_accuracy", "eval_hard_accuracy",
                                      ("eval_hard", "accuracy")),
                                     (f"eval={f}", "eval_eval_accuracy", "eval_accuracy", ("eval", "accuracy"))):
        cfg = TrainConfig(metric=given, extra_eval_files=sets)
        assert (cfg.metric, cfg.metric_source(), cfg.metric_list()) == (key, source, ["accuracy"]), given
        cfg.check_metrics({}, (), "Loop")
    # a variant's own metric that also reads as a set's: refused, not looked up on the Hub as 'gap'
    with pytest.raises(UserError, match="--metric hard_gap names GapLoop's own metric and also reads as the gap of "
                                        "the evaluation set 'hard'; rename the set"):
        TrainConfig(metric="hard_gap", extra_eval_files=f"hard={f}").check_metrics({"hard_gap": True}, (), "GapLoop")
    # a Hub name, not a set's f1 (someone's module: it runs only with --trust_remote_code, test_metric_code.py)
    TrainConfig(metric="someuser/weighted_f1", trust_remote_code=True).check_metrics({}, (), "Loop")
    with pytest.raises(UserError, match="--metric ood_mse scores a regression"):
        TrainConfig(metric="ood_mse", extra_eval_files=f"ood={f}").check_metrics({}, (), "Loop")
    # a variant's own metric may read as SET_<metric>; its own eval_<name>_* scores cannot pick
    TrainConfig(metric="top5_accuracy").check_metrics({"top5_accuracy": True}, (), "TopLoop")
    # Trainer's prefix on a variant's own metric: named as such (was: advice to list it in own_metrics, where it
    # was, or a Hub module 'eval_macrof1' looked up)
    for own in ("macro_f1", "macrof1"):
        with pytest.raises(UserError, match=f"--metric eval_{own} names F1Loop's own metric '{own}' with Trainer's "
                                            f"'eval_' prefix, which the loop's metric names do not have; pass "
                                            f"--metric {own}\\.$"):
            TrainConfig(metric=f"eval_{own}").check_metrics({own: True}, (), "F1Loop")
    with pytest.raises(UserError, match="EMALoop logs eval_raw_\\* itself, and those scores cannot pick best/"):
        TrainConfig(metric="raw_accuracy").check_metrics({}, ("raw",), "EMALoop")


@pytest.mark.parametrize("sets, metric, words", [
    ("ood={ood}", "odd_accuracy", ["--metric odd_accuracy reads as the accuracy of an evaluation set 'odd'",
                                   "(the sets: ood)", "--extra_eval_files odd=FILE"]),
    ("", "ood_f1_macro", ["an evaluation set 'ood'", "(there are none)", "--metric f1_macro"]),
])
def test_a_metric_of_a_set_not_given_is_one_line(tiny_model, tiny_data, tmp_path, sets, metric, words):
    """--metric SET_<metric> where no set is named SET (a typo, a set dropped on resume) is refused at the
    start, not looked up on the Hub as a metric of its own."""
    ood = tmp_path / "ood.jsonl"
    synthetic.write_jsonl(OOD_ROWS, ood)
    out = str(tmp_path / "out")
    extra = {"extra_eval_files": sets.format(ood=ood)} if sets else {}
    fails(tiny_args(tiny_model, tiny_data, out, metric=metric, **extra), out, *words, alone=True)


def test_eval_only_scores_and_writes_each_set(pair, tmp_path):
    """--eval_only of best/ with the same sets: eval_<name>_* equal to the training run's scores of
    best/, per-class reports, and one predictions file per set in its file's row order."""
    root, out = pair["root"], str(tmp_path / "scored")
    best = best_metrics(pair["with"])
    run_cli(["--eval_only", "--model_name_or_path", os.path.join(pair["with"], "best"), "--validation_file",
             best_source(pair), "--extra_eval_files", f"{root / 'ood.parquet'},hard={root / 'hard.jsonl'}",
             "--output_dir", out], how="python")
    results = json.load(open(os.path.join(out, "eval_results.json")))
    for key in ("eval_ood_accuracy", "eval_ood_samples", "eval_hard_samples"):
        assert key in results, results.keys()
    assert results["eval_ood_accuracy"] == best["eval_ood_accuracy"]
    assert results["eval_ood_loss"] == pytest.approx(best["eval_ood_loss"], rel=1e-5)
    # the run's own evaluation file: its --max_eval_samples 100 is taken (trained.check_trained_split), which cuts
    # each set as the run cut it, so the hard set's scores are the run's too
    assert results["eval_hard_samples"] == best["eval_hard_samples"] == 100
    assert results["eval_hard_accuracy"] == best["eval_hard_accuracy"]
    assert sum(map(sum, results["eval_ood_confusion"])) == 45 and set(results["eval_ood_per_class"]) == \
        {"NEGATIVE", "POSITIVE"}
    assert results["data"]["extra_eval"] == {"ood": str(root / "ood.parquet"), "hard": str(root / "hard.jsonl")}
    lines = read_jsonl(os.path.join(out, "eval_ood_predictions.jsonl"))
    assert [r["row"] for r in lines] == list(range(45))
    assert [r["label"] for r in lines] == [r["label"] for r in OOD_ROWS]
    assert sum(r["label"] == r["prediction"] for r in lines) / 45 == results["eval_ood_accuracy"]
    assert len(read_jsonl(os.path.join(out, "eval_hard_predictions.jsonl"))) == 100

    # scoring again without the sets: their predictions files (of the earlier scoring) go
    run_cli(["--eval_only", "--model_name_or_path", os.path.join(pair["with"], "best"), "--validation_file",
             str(best_source(pair)), "--output_dir", out], how="python")
    assert sorted(os.listdir(out)) == ["eval_predictions.jsonl", "eval_results.json"]


def best_source(pair):
    """The evaluation file of the pair's runs (tiny_data's validation.jsonl)."""
    args = pair["proc_with"].args
    return args[args.index("--validation_file") + 1]


# ---------------------------------------------------------------- a Hub dataset (a folder) with extra splits
def test_hub_folder_extra_splits(tiny_model, tmp_path):
    """MNLI's shape: --eval_split validation_matched picks best/, --extra_eval_splits validation_mismatched
    is scored beside it (named by itself), NAME=SPLIT renames one; a split the folder lacks is one line
    listing those it has."""
    rows = {"train": synthetic.make_rows(160, seed=1), "validation_matched": synthetic.make_rows(24, seed=2),
            "validation_mismatched": synthetic.make_rows(17, seed=3), "other": synthetic.make_rows(11, seed=4)}
    data = dataset_folder(tmp_path / "hub", **rows)
    # split names of its own, as a Hub dataset's card declares them (a folder's file names give only the usual three)
    (tmp_path / "hub" / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n" + "".join(
        f"  - split: {split}\n    path: {split}.jsonl\n" for split in rows) + "---\n")
    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tmp_path, out, train_file=None, validation_file=None, dataset_name=data,
                     eval_split="validation_matched", num_train_epochs=1)
    fails(args + ["--extra_eval_splits", "validation_mismatched,nope"], out, "no 'nope' split",
          "validation_mismatched", "--extra_eval_splits")
    synthetic.write_jsonl(OOD_ROWS, tmp_path / "ood.jsonl")  # a local file beside the Hub dataset's splits
    run_cli(args + ["--extra_eval_splits", "validation_mismatched,x=other", "--extra_eval_files",
                    str(tmp_path / "ood.jsonl")], how="python")
    [e] = evals(out)
    assert (e["eval_samples"], e["eval_validation_mismatched_samples"], e["eval_x_samples"]) == (24, 17, 11)
    sets = [k[5:-8] for k in e if k.endswith("_samples") and k != "eval_samples"]
    assert sets == ["ood", "validation_mismatched", "x"]  # the files, then the splits, as given
    best = best_metrics(out)
    accuracy, _, _ = score_best(out, rows["validation_mismatched"])
    assert best["eval_validation_mismatched_accuracy"] == accuracy


# ---------------------------------------------------------------- mistakes, each one line
@pytest.mark.parametrize("spec, words", [
    ("a b={ood}", ["'a b'", "cannot name an evaluation set", "letters, digits"]),
    ("x={ood},x={ood}", ["two evaluation sets are named 'x'"]),
    ("ood={ood},OOD={ood}", ["two evaluation sets are named 'OOD'"]),  # one predictions file on macOS
    ("a={ood},b={ood}", ["the sets 'a' and 'b' are both file"]),
    ("{parts}", ["is a pattern", "name the set"]),
    ("y={missing}", ["does not exist"]),
    ("z=", ["names no file"]),
])
def test_a_wrong_set_is_one_line(tiny_model, tiny_data, tmp_path, spec, words):
    ood = tmp_path / "ood.jsonl"
    synthetic.write_jsonl(OOD_ROWS, ood)
    spec = spec.format(ood=ood, parts=tmp_path / "p-*.jsonl", missing=tmp_path / "missing.jsonl")
    out = str(tmp_path / "out")
    fails(tiny_args(tiny_model, tiny_data, out, extra_eval_files=spec), out, *words, alone=True)


def test_splits_with_local_files_and_an_unseen_label_are_refused(tiny_model, tiny_data, tmp_path):
    """--extra_eval_splits beside --train_file, and a set with a label training never saw (named by the
    set)."""
    out = str(tmp_path / "out")
    fails(tiny_args(tiny_model, tiny_data, out, extra_eval_splits="validation_mismatched"), out,
          "--extra_eval_splits", "--extra_eval_files", alone=True)
    odd = tmp_path / "odd.jsonl"
    synthetic.write_jsonl(OOD_ROWS[:5] + [{"text": "a plain sentence", "label": "NEUTRAL"}], odd)
    fails(tiny_args(tiny_model, tiny_data, out, extra_eval_files=f"odd={odd}"), out, "'odd' evaluation labels",
          "NEUTRAL", "never seen in training")


def test_a_name_whose_keys_read_as_the_evaluation_splits_is_refused(tmp_path):
    """A set named 'f1' beside --metrics f1_macro: eval_f1_accuracy would be the set's and eval_f1_macro the
    evaluation split's, under one prefix; a set named 'matthews' the same beside matthews_correlation."""
    f = tmp_path / "x.jsonl"
    synthetic.write_jsonl(OOD_ROWS, f)
    with pytest.raises(UserError, match="'f1' would log keys beginning eval_f1_, as the evaluation split's "
                                        "eval_f1_macro does"):
        TrainConfig(metrics="accuracy,f1_macro", extra_eval_files=f"f1={f}")
    with pytest.raises(UserError, match="eval_matthews_correlation"):
        TrainConfig(metric="matthews_correlation", extra_eval_files=f"matthews={f}")
    with pytest.raises(UserError, match="eval_per_class"):  # --eval_only's per-label report of the evaluation split
        TrainConfig(extra_eval_files=f"per={f}")
    TrainConfig(metrics="accuracy,f1", extra_eval_files=f"f1={f}")  # eval_f1 and eval_f1_*: no key both ways


def test_a_sets_scores_line_leaves_out_only_the_longer_names():
    """eval_ood_* lines leave out eval_ood_hard_* (another set's), and eval_ood_hard_* lines keep theirs."""
    from loop.logs import scores_line

    record = {"eval_accuracy": 0.5, "eval_samples": 9, "eval_ood_accuracy": 0.25, "eval_ood_samples": 4,
              "eval_ood_hard_accuracy": 0.75, "eval_ood_hard_samples": 3}
    sets = ("eval_ood", "eval_ood_hard")
    assert scores_line(record, "eval", skip=sets) == "eval_accuracy=0.5000 (9 examples)"
    assert scores_line(record, "eval_ood", skip=sets) == "eval_ood_accuracy=0.2500 (4 examples)"
    assert scores_line(record, "eval_ood_hard", skip=sets) == "eval_ood_hard_accuracy=0.7500 (3 examples)"
    # a tiny error keeps its digits (a regression's eval_mse=3.2e-07 printed 0.0000)
    assert scores_line({"eval_mse": 3.2e-7, "eval_loss": 0.0, "eval_samples": 2}, "eval") == \
        "eval_mse=3.2e-07, eval_loss=0.0000 (2 examples)"


def test_yaml_list_and_mapping(tmp_path):
    """extra_eval_files in a --config YAML: a list of NAME=FILE, or a mapping name: file."""
    for text in ("extra_eval_files: [a=x.jsonl, b=y.jsonl]\n", "extra_eval_files: {a: x.jsonl, b: y.jsonl}\n"):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        assert yaml_to_argv(str(path)) == ["--extra_eval_files", "a=x.jsonl,b=y.jsonl"]


# ---------------------------------------------------------------- resume, two processes
@pytest.mark.slow  # seven starts: ~35 s
def test_resume_may_add_or_drop_a_set_but_not_change_one(tiny_model, tiny_data, tmp_path):
    """A set kept under its name must hold the same examples, in any order (its scores are logged under
    that name): other rows or one edited word are refused, also after a resume that dropped the set; a
    set added on resume is scored from then on."""
    a, b, edited, reordered = (tmp_path / f"{n}.jsonl" for n in ("a", "b", "edited", "reordered"))
    synthetic.write_jsonl(OOD_ROWS, a)
    synthetic.write_jsonl(HARD_ROWS[:20], b)
    synthetic.write_jsonl(OOD_ROWS[:-1] + [dict(OOD_ROWS[-1], text=OOD_ROWS[-1]["text"] + " film")], edited)
    synthetic.write_jsonl(OOD_ROWS[::-1], reordered)
    out = str(tmp_path / "out")
    common = dict(num_train_epochs=2, max_train_samples=160, checkpointing_steps="epoch")
    run_cli(tiny_args(tiny_model, tiny_data, out, extra_eval_files=f"x={a}", **common), how="python")
    step = {n: dict(resume_from_checkpoint=os.path.join(out, "checkpoints", f"step_{n}"), **common) for n in (10, 20)}
    fails(tiny_args(tiny_model, tiny_data, out, extra_eval_files=f"x={b}", **step[10]), out,
          "evaluation set 'x'", "45 examples then, 20 now", "another name")
    fails(tiny_args(tiny_model, tiny_data, out, extra_eval_files=f"x={edited}", **step[10]), out,
          "evaluation set 'x'", "other texts or labels")
    run_cli(tiny_args(tiny_model, tiny_data, out, extra_eval_files=f"y={b}", **step[10]), how="python")  # x dropped
    ev = evals(out)
    assert "eval_x_samples" in ev[0] and "eval_y_samples" not in ev[0]
    assert ev[-1]["eval_y_samples"] == 20 and "eval_x_samples" not in ev[-1]
    # step_20, written without x, still knows x: it cannot come back holding other examples
    fails(tiny_args(tiny_model, tiny_data, out, extra_eval_files=f"x={b}", **step[20]), out,
          "evaluation set 'x'", "45 examples then, 20 now")
    run_cli(tiny_args(tiny_model, tiny_data, out, extra_eval_files=f"x={reordered}", **step[20]), how="python")


@pytest.mark.slow  # three starts: ~15 s
def test_resume_refuses_an_edited_evaluation_file(tiny_model, tiny_data, tmp_path):
    """The evaluation split itself, edited in place (one word, the labels as they were): its scores before
    and after would mix in metrics.jsonl and pick best/ on two sets. The same rows shuffled resume (a score
    does not depend on the order)."""
    data = tmp_path / "data"
    data.mkdir()
    rows = read_jsonl(os.path.join(tiny_data, "validation.jsonl"))
    synthetic.write_jsonl(read_jsonl(os.path.join(tiny_data, "train.jsonl")), data / "train.jsonl")
    synthetic.write_jsonl(rows, data / "validation.jsonl")
    out = str(tmp_path / "out")
    common = dict(num_train_epochs=2, max_train_samples=160, checkpointing_steps="epoch")
    run_cli(tiny_args(tiny_model, data, out, **common), how="python")
    resume = tiny_args(tiny_model, data, out, resume_from_checkpoint=os.path.join(out, "checkpoints", "step_10"),
                       **common)
    synthetic.write_jsonl(rows[::-1], data / "validation.jsonl")
    run_cli(resume, how="python")
    synthetic.write_jsonl([dict(rows[0], text=rows[0]["text"] + " film")] + rows[1:], data / "validation.jsonl")
    fails(resume, out, "the evaluation examples (texts or labels) changed")
    synthetic.write_jsonl(rows[:-1], data / "validation.jsonl")  # one row fewer: said once, as a count
    line = fails(resume, out, "evaluation examples: 200 then, 199 now")
    assert line.count(" then, ") == 1 and "changed" not in line, line


@pytest.mark.slow  # two processes: ~30 s here
def test_two_processes_score_every_example_of_a_set_once(tiny_model, tiny_data, tmp_path):
    """37 rows over 2 ranks (19 + 18, the last batch padded by one): each scored once, the scores best/'s."""
    rows = synthetic.make_rows(37, seed=11)
    f = tmp_path / "odd.jsonl"
    synthetic.write_jsonl(rows, f)
    out = str(tmp_path / "out")
    run_cli(tiny_args(tiny_model, tiny_data, out, extra_eval_files=f"odd={f}", num_train_epochs=1,
                      max_train_samples=128, per_device_eval_batch_size=8),  # (--max_eval_samples would cut it)
            nproc=2, how="fork", timeout=300)
    best = best_metrics(out)
    assert best["eval_odd_samples"] == 37
    accuracy, loss, _ = score_best(out, rows)
    assert best["eval_odd_accuracy"] == accuracy
    assert best["eval_odd_loss"] == pytest.approx(loss, rel=1e-4, abs=1e-6)
    records = read_jsonl(os.path.join(out, "metrics.jsonl"))
    assert len(records) == len(train_logs(out)) + len(evals(out))
