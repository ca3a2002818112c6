"""Regression (--problem_type regression): a number per text, one output trained with mean squared error."""

import json
import os
import random
import warnings

import numpy as np
import pytest

from conftest import evals, run_cli, tiny_args, train_logs
from loop import synthetic
from loop.labels import check_final_splits, check_label_kind, encode_labels


def make_rows(n, seed):
    """Texts of the synthetic vocabulary with k positive and m negative words (0-3 each); the target is
    (k - m) / 2 plus a little noise: a fractional number the model must count its way to."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k, m = rng.randint(0, 3), rng.randint(0, 3)
        words = rng.sample(synthetic.NEUTRAL, 4) + rng.sample(synthetic.POSITIVE, k) + rng.sample(synthetic.NEGATIVE, m)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "score": round((k - m) / 2 + rng.uniform(-0.1, 0.1), 3)})
    return rows


@pytest.fixture(scope="module")
def reg_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("reg_data")
    synthetic.write_jsonl(make_rows(800, 1), d / "train.jsonl")
    synthetic.write_jsonl(make_rows(200, 2), d / "validation.jsonl")
    return d


@pytest.fixture(scope="module")
def reg_run(tiny_model, reg_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("reg_run") / "out")
    proc = run_cli(tiny_args(tiny_model, reg_data, out, num_train_epochs=4, logging_steps=25, label_column="score",
                             problem_type="regression", metrics="rmse,mae,r2,pearson,spearman"), how="python")
    return out, proc


def test_regression_trains_and_best_is_the_lowest_mse(reg_run, reg_data):
    out, proc = reg_run
    assert "regression target 'score' (training mean" in proc.stdout
    ev, logs = evals(out), train_logs(out)
    assert logs[-1]["loss"] < 0.3 * logs[0]["loss"]  # mean squared error falls
    last = ev[-1]
    targets = np.array([r["score"] for r in make_rows(200, 2)])
    assert last["eval_samples"] == 200
    assert last["eval_mse"] < 0.25 * targets.var()  # predicting the mean scores r2 = 0
    assert last["eval_r2"] > 0.75 and last["eval_pearson"] > 0.9 and last["eval_spearman"] > 0.85
    assert last["eval_rmse"] == pytest.approx(last["eval_mse"] ** 0.5)
    assert last["eval_r2"] == pytest.approx(1 - last["eval_mse"] / targets.var(), abs=1e-4)
    assert last["eval_loss"] == pytest.approx(last["eval_mse"], rel=1e-5)  # eval_loss is the objective, MSE
    with open(os.path.join(out, "best", "best_metrics.json")) as f:
        best = json.load(f)
    assert best["eval_mse"] == min(e["eval_mse"] for e in ev)  # --metric defaults to mse, lower is better


def test_regression_best_is_a_pipeline_model_that_returns_the_number(reg_run):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    out, _ = reg_run
    best = os.path.join(out, "best")
    with open(os.path.join(best, "config.json")) as f:
        config = json.load(f)
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "score"}
    texts = ["superb great lovely film", "the film was", "dull boring awful plot"]
    scored = pipeline("text-classification", model=best, device=-1)(texts)
    model, tok = AutoModelForSequenceClassification.from_pretrained(best), AutoTokenizer.from_pretrained(best)
    with torch.no_grad():
        raw = model(**tok(texts, padding=True, return_tensors="pt")).logits[:, 0]
    assert [s["label"] for s in scored] == ["score"] * 3
    assert [s["score"] for s in scored] == pytest.approx(raw.tolist(), abs=1e-5)  # the output itself, no sigmoid
    assert raw[0] > 0.8 and raw[2] < -0.8 and abs(raw[1]) < 0.4  # +1.5, 0, -1.5 in the data's terms

    proc = run_cli(["--model", best] + texts, script="loop/predict.py", how="python")
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [x["score"] for x in lines] == pytest.approx(raw.tolist(), abs=1e-5)


def test_regression_scores_against_hand_computed_values():
    from loop import scores

    p, r = np.array([1.0, 2.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0, 3.0])
    out = scores.regression(list(scores.REGRESSION_METRICS), p, r)
    assert out["mse"] == pytest.approx((0.25 + 0 + 1 + 1) / 4)
    assert out["rmse"] == pytest.approx(out["mse"] ** 0.5)
    assert out["mae"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert out["r2"] == pytest.approx(1 - 2.25 / np.sum((r - r.mean()) ** 2))
    assert out["pearson"] == pytest.approx(np.corrcoef(p, r)[0, 1])
    # ranks with ties: p -> 1, 2.5, 2.5, 4; r -> 1, 2, 3.5, 3.5
    assert scores.ranks(p).tolist() == [1, 2.5, 2.5, 4] and scores.ranks(r).tolist() == [1, 2, 3.5, 3.5]
    assert out["spearman"] == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3.5, 3.5])[0, 1])
    flat = scores.regression(["pearson", "spearman", "r2"], np.ones(4), r)  # a model that predicts one value
    assert flat["pearson"] == 0.0 and flat["spearman"] == 0.0 and flat["r2"] < 0
    with pytest.raises(ValueError, match="no regression form"):
        scores.regression(["accuracy"], p, r)


def test_r2_of_constant_targets_is_zero_and_a_shape_mismatch_is_refused():
    """audit61 mutants: r2 is 0 when the targets are all equal (the total sum of squares is 0: undefined), as the
    docstring and README say, whatever the predictions; predictions and targets of other lengths are refused."""
    from loop import scores

    for predictions in ([3.0, 3.0, 3.0], [1.0, 2.0, 5.0]):
        assert scores.regression(["r2", "mse"], predictions, [3.0, 3.0, 3.0])["r2"] == 0.0
    with pytest.raises(ValueError, match="^3 predictions but 2 references$"):
        scores.regression(["mse"], [1.0, 2.0, 3.0], [1.0, 2.0])


def test_regression_mistakes_are_one_line_each(tmp_path):
    """Fractional labels without --problem_type regression name the flag; non-numbers, classes,
    infinities, constant targets, two names, regression metrics on classes and the reverse are refused."""
    import datasets

    from loop import UserError, parse_args
    from loop import data as D

    def encode(train, evaluation, **flags):
        argv = ["--output_dir", str(tmp_path / "o")]
        for k, v in flags.items():
            argv += [f"--{k}", v]
        raw = {"train": datasets.Dataset.from_dict(train), "eval": datasets.Dataset.from_dict(evaluation)}
        return encode_labels(parse_args(argv), raw), raw

    frac = {"text": ["a", "b", "c"], "label": [0.5, 1.25, 3.0]}
    with pytest.raises(UserError, match="fractional numbers.*pass --problem_type regression"):
        encode(frac, frac)
    names, raw = encode(frac, {"text": ["d"], "label": ["2.5"]}, problem_type="regression", label_names="stars")
    assert names == ["stars"] and raw["eval"]["labels"] == [2.5] and raw["train"].features["labels"].dtype == "float32"
    with pytest.raises(UserError, match="needs a number per text, but the evaluation label in row 0 is 'good'"):
        encode(frac, {"text": ["d"], "label": ["good"]}, problem_type="regression")
    with pytest.raises(UserError, match="label in row 1 is inf"):
        encode({"text": ["a", "b"], "label": [1.0, float("inf")]}, frac, problem_type="regression")
    names, raw = encode({"text": ["a", "b"], "label": [2.0, 2.0]}, frac, problem_type="regression")
    with pytest.raises(UserError, match="every training example has the target 2"):  # on the final splits
        check_final_splits(raw, names, "regression")
    with pytest.raises(UserError, match="evaluation label in row 0 is 'nan'; regression targets must be finite"):
        encode(frac, {"text": ["d"], "label": ["nan"]}, problem_type="regression")
    with pytest.raises(UserError, match="is '1_000'"):  # Python's digit grouping is not a number in a data file
        encode(frac, {"text": ["d"], "label": ["1_000"]}, problem_type="regression")
    with pytest.raises(UserError, match="training targets reach 1e\\+20, too large for a squared error in float32"):
        encode({"text": ["a", "b"], "label": [1e20, 2.0]}, frac, problem_type="regression")
    with warnings.catch_warnings():  # numpy's "overflow encountered in cast" came before the line (audit63 u9)
        warnings.simplefilter("error")
        with pytest.raises(UserError, match=r"training label in row 0 \(1e\+300\) is not a finite float32 number"):
            encode({"text": ["a", "b"], "label": [1e300, 2.0]}, frac, problem_type="regression")
    with pytest.warns(UserWarning, match="training targets reach 5e\\+04: .* standardizing"):
        encode({"text": ["a", "b"], "label": [5e4, 2.0]}, frac, problem_type="regression")
    names, raw = encode(frac, {"text": ["d", "e"], "label": [1.0, 1.0]}, problem_type="regression")
    with pytest.warns(UserWarning, match="every evaluation example has the target 1: r2, pearson and spearman are 0"):
        check_final_splits(raw, names, "regression")
    classes = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}).cast_column(
        "label", datasets.ClassLabel(names=["neg", "pos"]))
    with pytest.raises(UserError, match="holds classes \\(neg, pos\\); regression needs a number"):
        encode_labels(parse_args(["--output_dir", str(tmp_path / "o"), "--problem_type", "regression"]),
                      {"train": classes, "eval": classes})
    with pytest.raises(UserError, match="a regression predicts one number; give it one name"):
        parse_args(["--problem_type", "regression", "--label_names", "low,high"])
    with pytest.raises(UserError, match="--problem_type 'regresion' is unknown"):
        parse_args(["--problem_type", "regresion"])
    with pytest.raises(UserError, match="multi_label_classification needs a list of labels per text"):
        encode({"text": ["a", "b"], "label": ["x", "y"]}, {"text": ["a"], "label": ["x"]},
               problem_type="multi_label_classification")
    with pytest.raises(UserError, match="single_label_classification, but the training label column 'label' holds "
                                        "lists, and row 1 has 2 labels \\(y, x\\)"):
        encode({"text": ["a", "b"], "label": [["x"], ["y", "x"]]}, {"text": ["a"], "label": [["x"]]},
               problem_type="single_label_classification")

    # the metric's default and direction follow the problem type; metrics of the other kind are refused
    cfg = parse_args(["--problem_type", "regression"])
    assert cfg.metric == "mse" and cfg.higher_is_better is False
    assert parse_args([]).metric == "accuracy" and parse_args(["--metric", "pearson"]).higher_is_better
    base = ["evaluation_loss", "compute_metrics"]
    _, raw = encode(frac, frac, problem_type="regression")
    reg = D.Data(train=raw["train"], eval=raw["eval"], label_names=["label"], train_lengths=None, regression=True)
    with pytest.raises(UserError, match="--metric/--metrics accuracy: a regression is scored with mse, rmse"):
        check_label_kind(reg, ["accuracy"], {}, base)
    check_label_kind(reg, ["pearson", "mse"], {}, base)
    _, raw = encode({"text": ["a", "b"], "label": [0, 1]}, {"text": ["a", "b"], "label": [1, 0]})
    cls = D.Data(train=raw["train"], eval=raw["eval"], label_names=["LABEL_0", "LABEL_1"], train_lengths=None)
    with pytest.raises(UserError, match="pearson: that is a regression metric, and these labels are classes"):
        check_label_kind(cls, ["accuracy", "pearson"], {}, base)
    check_label_kind(cls, ["pearson"], {"pearson": True}, base)  # a variant's own pearson is its business
    # in training, before any work (was: looked up on the Hub, "could not be loaded ... mse/mse.py")
    with pytest.raises(UserError, match="--metric mse scores a regression .* but this run classifies"):
        parse_args(["--metric", "mse"]).check_metrics({}, (), "Loop")
    with pytest.raises(UserError, match="--metrics pearson scores a regression"):
        parse_args(["--metrics", "accuracy,pearson"]).check_metrics({}, (), "Loop")
    parse_args(["--metric", "pearson"]).check_metrics({"pearson": True}, (), "Loop")  # a variant's own
    parse_args(["--metric", "rmse", "--eval_only", "--model_name_or_path", str(tmp_path)]).check_metrics(
        {}, (), "Loop")  # the model says, later
    parse_args(["--metric", "rmse", "--problem_type", "regression"]).check_metrics({}, (), "Loop")


def test_eval_only_of_a_regression_model_refuses_an_accuracy_asked_for(reg_run, reg_data, tmp_path):
    """--eval_only --metric accuracy on a regression model was scored by mse without a word; the default metric
    (not given) still turns into mse."""
    out, _ = reg_run
    flags = ["--eval_only", "--model_name_or_path", os.path.join(out, "best"), "--validation_file",
             str(reg_data / "validation.jsonl"), "--label_column", "score", "--output_dir", str(tmp_path / "scored")]
    proc = run_cli(flags + ["--metric", "accuracy"], how="python", check=False)
    assert proc.returncode == 2 and "--metric accuracy: model" in proc.stderr and "is a regression model" \
        in proc.stderr and "leave --metric out (mse)" in proc.stderr, proc.stderr[-2000:]
    run_cli(flags, how="python")
    with open(tmp_path / "scored" / "eval_results.json") as f:
        assert "eval_mse" in json.load(f)


@pytest.mark.parametrize("metric, higher", [
    ("accuracy", True), ("f1", True), ("f1_macro", True), ("matthews_correlation", True), ("loss", False),
    ("mse", False), ("rmse", False), ("mae", False), ("r2", True), ("pearson", True), ("spearman", True)])
def test_best_direction_of_every_known_metric(metric, higher, tmp_path):
    """best/ and early stopping keep the lowest error (loss, mse, rmse, mae) and the highest score: the directions
    written out here, not read from the table (audit32: rmse dropped from it kept the worst model, silently)."""
    import loop

    reg = metric in ("mse", "rmse", "mae", "r2", "pearson", "spearman")
    argv = ["--metric", metric, "--output_dir", str(tmp_path)] + (["--problem_type", "regression"] if reg else [])
    lp = loop.Loop(loop.parse_args(argv))
    assert lp.improved(0.6, 0.5) is higher and lp.improved(0.4, 0.5) is (not higher)
