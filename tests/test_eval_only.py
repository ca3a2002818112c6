"""--eval_only: score a trained classifier (a run's best/) once on the evaluation split, and on a held-out
test split when one is given, without training; write output_dir/eval_results.json and the per-example
eval_/test_predictions.jsonl (README: "What lands in output_dir"), and nothing a training run writes.

One tiny run is trained once for the module (its head's labels in a non-sorted order, POSITIVE then
NEGATIVE, so a label mapping that sorts names or follows the file shows as a flipped accuracy), and
its best/ is scored again and again: the scores must be the ones the run recorded in
best/best_metrics.json, exactly (same data flags, one CPU process, same evaluation batch size).
"""

import json
import warnings
import os
import random
import shutil
import types

import pytest

from conftest import hub_cache_repo, run_cli, synthetic, tiny_args
from test_errors import fails, snapshot
from test_test_split import score_best

TEST_ROWS = synthetic.make_rows(45, seed=7)  # odd: a flipped labelling cannot land on the same accuracy
HEAD = "POSITIVE,NEGATIVE"  # the trained head's id order: not sorted, not the order of the first rows
IGNORED = ("--from_scratch", "--config_overrides", "--lora_r", "--resume_from_checkpoint", "--push_to_hub",
           "--ignore_mismatched_sizes")


# ---------------------------------------------------------------- helpers
def read_json(path):
    with open(path) as f:
        return json.load(f)


def results(out):
    return read_json(os.path.join(out, "eval_results.json"))


def predictions(out, prefix="eval"):
    with open(os.path.join(out, f"{prefix}_predictions.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def assert_only_outputs(out, test=False):
    """output_dir holds eval_results.json and the predictions (README, "What lands in output_dir"), and
    nothing a training run writes (metrics.jsonl, best/, checkpoints/, a lock)."""
    expected = {"eval_results.json", "eval_predictions.jsonl"} | ({"test_predictions.jsonl"} if test else set())
    assert set(os.listdir(out)) == expected, sorted(os.listdir(out))


def predict_best(best, rows, max_length=64):
    """best/'s (predicted class name, its probability) per row, by transformers alone."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(best)
    model = AutoModelForSequenceClassification.from_pretrained(best, dtype=torch.float32).eval()
    enc = tok([r["text"] for r in rows], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = model(**enc).logits.float().softmax(-1)
    p, ids = probs.max(-1)
    return [(model.config.id2label[i], q) for i, q in zip(ids.tolist(), p.tolist())]


def check_predictions(lines, rows, best, accuracy):
    """One line per row of the file, in file order: its own label, best/'s prediction and probability."""
    assert [x["row"] for x in lines] == list(range(len(rows))), [x["row"] for x in lines][:20]
    assert [x["label"] for x in lines] == [r["label"] for r in rows]
    expected = predict_best(best, rows)
    assert [x["prediction"] for x in lines] == [name for name, _ in expected]
    assert [x["score"] for x in lines] == pytest.approx([q for _, q in expected], abs=1e-4)
    assert sum(x["label"] == x["prediction"] for x in lines) / len(lines) == accuracy


def scored(d):
    """The eval_* and test_* entries of a metrics dict."""
    return {k: v for k, v in d.items() if k.startswith(("eval_", "test_"))}


def assert_same_scores(got, best, keys=("eval_accuracy", "eval_f1", "eval_samples"), loss=("eval_loss",)):
    for k in keys:
        assert k in got, (k, got)
        assert got[k] == best[k], (k, got[k], best[k])
    for k in loss:
        assert got[k] == pytest.approx(best[k], abs=1e-5), (k, got[k], best[k])


def warning_lines(stderr, *words):
    """stderr lines that mention any of `words`."""
    return [line for line in stderr.splitlines() if any(w in line for w in words)]


def write_rows(path, rows):
    synthetic.write_jsonl(rows, path)
    return str(path)


def eval_flags(run, out, **over):
    """The training run's own flags (--from_scratch, learning rate, epochs... included), with best/ as the
    model, `out` as --output_dir, and --eval_only."""
    args = dict(test_file=run.test_file, label_names=HEAD, metrics="accuracy,f1")
    args.update(over)
    return tiny_args(run.best, run.data, out, **args) + ["--eval_only"]


def alone_flags(run, out, validation_file, *extra, test_file=None):
    """--eval_only on an evaluation file alone (no --train_file): the model's labels name the classes."""
    flags = ["--model_name_or_path", run.best, "--validation_file", str(validation_file), "--max_length", "64",
             "--metrics", "accuracy,f1", "--output_dir", str(out), "--eval_only"]
    if test_file:
        flags += ["--test_file", str(test_file)]
    return flags + [str(x) for x in extra]


def validate_in_process(flags, loop_cls=None):
    from loop import Loop, parse_args

    return (loop_cls or Loop)(parse_args(flags)).validate()


# ---------------------------------------------------------------- the run whose best/ is scored
@pytest.fixture(scope="module")
def run(tiny_model, tiny_data, tmp_path_factory):
    """2 epochs on 600 rows (200 evaluated), --label_names POSITIVE,NEGATIVE, accuracy and f1 logged,
    a 45-row --test_file. ~6 s."""
    root = tmp_path_factory.mktemp("eval_only_run")
    test_file = write_rows(root / "heldout.jsonl", TEST_ROWS)
    out = str(root / "out")
    args = tiny_args(tiny_model, tiny_data, out, test_file=test_file, label_names=HEAD, metrics="accuracy,f1")
    run_cli(args, how="python")
    best = os.path.join(out, "best")
    metrics = read_json(os.path.join(best, "best_metrics.json"))
    assert read_json(os.path.join(best, "config.json"))["id2label"] == {"0": "POSITIVE", "1": "NEGATIVE"}
    assert metrics["eval_accuracy"] > 0.75, metrics  # learned: a flipped labelling would show
    assert metrics["test_samples"] == len(TEST_ROWS) and metrics["eval_samples"] == 200, metrics
    return types.SimpleNamespace(out=out, best=best, data=tiny_data, model=tiny_model, test_file=test_file,
                                 metrics=metrics, validation=os.path.join(tiny_data, "validation.jsonl"))


# ---------------------------------------------------------------- exactness, output, console
def test_scores_best_exactly_as_the_run_recorded(run, tmp_path):
    """The training run's flags plus --eval_only and best/: eval_* and test_* are best_metrics.json's;
    eval_results.json is the only file in output_dir; the metrics are printed; --from_scratch (in the
    training flags) is named once as ignored, the other training options are not mentioned."""
    out = str(tmp_path / "scored")
    proc = run_cli(eval_flags(run, out), how="python")
    got = results(out)
    assert_same_scores(got, run.metrics, keys=("eval_accuracy", "eval_f1", "eval_samples", "test_accuracy",
                                               "test_f1", "test_samples"), loss=("eval_loss", "test_loss"))
    assert got["model"] == run.best, got
    assert_only_outputs(out, test=True)  # no metrics.jsonl, best/, checkpoints/
    check_predictions(predictions(out), synthetic.make_rows(200, seed=2), run.best, got["eval_accuracy"])
    check_predictions(predictions(out, "test"), TEST_ROWS, run.best, got["test_accuracy"])
    for prefix, rows in (("eval", synthetic.make_rows(200, seed=2)), ("test", TEST_ROWS)):
        # the confusion matrix counts the prediction lines; per class: support, recall, precision from it
        lines, cm = predictions(out, prefix), got[f"{prefix}_confusion"]
        ids = {"POSITIVE": 0, "NEGATIVE": 1}
        counted = [[sum(x["label"] == t and x["prediction"] == p for x in lines) for p in ids] for t in ids]
        assert cm == counted, (cm, counted)
        assert (cm[0][0] + cm[1][1]) / len(rows) == got[f"{prefix}_accuracy"]
        pos = got[f"{prefix}_per_class"]["POSITIVE"]
        assert pos["support"] == sum(r["label"] == "POSITIVE" for r in rows)
        assert pos["recall"] == pytest.approx(cm[0][0] / sum(cm[0]), abs=1e-6)
        assert pos["precision"] == pytest.approx(cm[0][0] / (cm[0][0] + cm[1][0]), abs=1e-6)
        assert pos["f1"] == pytest.approx(2 * cm[0][0] / (2 * cm[0][0] + cm[0][1] + cm[1][0]), abs=1e-6)
    assert any("eval_accuracy=" in line for line in proc.stdout.splitlines()), proc.stdout[-3000:]
    per_class = [line.split()[1] for line in proc.stdout.splitlines() if " precision " in line and " support " in line]
    assert per_class == ["POSITIVE", "NEGATIVE"] * 2, proc.stdout[-3000:]  # a line per class, evaluation then test
    assert "test_accuracy=" in proc.stdout, proc.stdout[-3000:]
    mentioned = warning_lines(proc.stderr, "--from_scratch")
    assert len(mentioned) == 1, proc.stderr[-3000:]
    assert "--eval_only" in mentioned[0] or "ignored" in mentioned[0], mentioned
    for not_given in IGNORED[1:]:
        assert not_given not in proc.stderr, (not_given, proc.stderr[-3000:])
    for silent in ("--learning_rate", "--num_train_epochs", "--per_device_train_batch_size", "--logging_steps"):
        assert silent not in proc.stderr, (silent, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr


def test_an_output_dir_holding_the_run_stays_byte_identical(run, tmp_path):
    """--output_dir the finished run's own folder (no --overwrite_output_dir) and best/ inside it: allowed,
    and every file there (metrics.jsonl, best/...) byte-identical afterwards; eval_results.json added."""
    out = str(tmp_path / "finished")
    shutil.copytree(run.out, out)
    before = snapshot(out)
    assert "metrics.jsonl" in before and os.path.join("best", "model.safetensors") in before
    assert "eval_results.json" not in before
    flags = tiny_args(os.path.join(out, "best"), run.data, out, test_file=run.test_file, label_names=HEAD,
                      metrics="accuracy,f1", from_scratch=None) + ["--eval_only"]
    run_cli(flags, how="python")
    after = snapshot(out)
    added = {"eval_results.json", "eval_predictions.jsonl", "test_predictions.jsonl"}
    assert added <= set(after), sorted(after)
    assert not added & set(before)
    for name in added:
        del after[name]
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert not changed, sorted(changed)
    got = results(out)
    assert_same_scores(got, run.metrics, keys=("eval_accuracy", "eval_samples", "test_accuracy"), loss=())
    assert got["model"] == os.path.join(out, "best")


# ---------------------------------------------------------------- labels without training data
def test_validation_and_test_files_alone_use_the_models_labels(run, tmp_path):
    """No --train_file: the head's names (POSITIVE=0, NEGATIVE=1) name the classes; Loop.validate()
    returns best_metrics.json's scores, and eval_results.json holds the same entries and the model."""
    out = str(tmp_path / "alone")
    metrics = validate_in_process(alone_flags(run, out, run.validation, test_file=run.test_file))
    assert set(scored(metrics)) >= {"eval_accuracy", "eval_f1", "eval_loss", "eval_samples",
                                    "test_accuracy", "test_f1", "test_loss", "test_samples"}, metrics
    assert_same_scores(metrics, run.metrics, keys=("eval_accuracy", "eval_f1", "eval_samples", "test_accuracy",
                                                   "test_f1", "test_samples"), loss=("eval_loss", "test_loss"))
    written = results(out)
    assert {k: written.get(k) for k in scored(metrics)} == scored(metrics), (written, metrics)  # at least these
    assert written["model"] == run.best
    assert_only_outputs(out, test=True)
    assert [x["label"] for x in predictions(out)] == [r["label"] for r in synthetic.make_rows(200, seed=2)]


@pytest.mark.parametrize("first", ["positive", "negative"])
def test_label_case_and_order_in_the_file_do_not_matter(run, tmp_path, first):
    """The validation rows with lower-case labels, one class's rows first: the same rows score the same
    accuracy (names matched to the model's ignoring case; not sorted, not in order of appearance)."""
    rows = [dict(r, label=r["label"].lower()) for r in synthetic.make_rows(200, seed=2)]
    rows = [r for r in rows if r["label"] == first] + [r for r in rows if r["label"] != first]
    path = write_rows(tmp_path / "lower.jsonl", rows)
    metrics = validate_in_process(alone_flags(run, tmp_path / "out", path))
    assert metrics["eval_samples"] == 200
    assert metrics["eval_accuracy"] == run.metrics["eval_accuracy"], (metrics, run.metrics)
    assert metrics["eval_f1"] == run.metrics["eval_f1"], (metrics, run.metrics)  # f1 of id 1: NEGATIVE
    lines = predictions(tmp_path / "out")  # in the file's order, each row's own label
    assert [x["row"] for x in lines] == list(range(200))
    assert [x["label"].lower() for x in lines] == [r["label"] for r in rows]
    assert sum(x["label"] == x["prediction"] for x in lines) / 200 == metrics["eval_accuracy"]
    assert metrics["eval_loss"] == pytest.approx(run.metrics["eval_loss"], abs=1e-4)


def test_other_label_names_are_refused_unless_label_names_says_which_is_which(run, tmp_path):
    """The data's classes must be the model's labels (any case and order), never matched by position:
    labels written as other names are refused (rename them in the data), and so are a ClassLabel with
    other class names (neg/pos: the Hub's IMDb) and bare ids beside a model with named labels, until
    --label_names gives the model's name for each class or id in order; then the scores are best/'s."""
    import datasets

    rows = synthetic.make_rows(200, seed=2)
    renamed = write_rows(tmp_path / "renamed.jsonl", [dict(r, label={"POSITIVE": "yes", "NEGATIVE": "no"}[r["label"]])
                                                      for r in rows])
    for extra in ((), ("--label_names", "yes,no")):
        out = str(tmp_path / f"refused{len(extra)}")
        fails(alone_flags(run, out, renamed, *extra), out, "yes", "POSITIVE", "NEGATIVE")
    neg_pos = str(tmp_path / "classlabel.parquet")  # ClassLabel(neg, pos), the head's order is POSITIVE, NEGATIVE
    ds = datasets.Dataset.from_dict({"text": [r["text"] for r in rows],
                                     "label": [int(r["label"] == "POSITIVE") for r in rows]})
    ds.cast_column("label", datasets.ClassLabel(names=["neg", "pos"])).to_parquet(neg_pos)
    ids = write_rows(tmp_path / "ids.jsonl", [dict(r, label=int(r["label"] == "POSITIVE")) for r in rows])
    for path, says in ((neg_pos, "neg"), (ids, "ids")):
        out = str(tmp_path / f"refused_{says}")
        fails(alone_flags(run, out, path), out, says, "POSITIVE", "NEGATIVE", "--label_names")
        metrics = validate_in_process(alone_flags(run, tmp_path / f"mapped_{says}", path,
                                                  "--label_names", "NEGATIVE,POSITIVE"))  # 0/neg first
        assert metrics["eval_accuracy"] == run.metrics["eval_accuracy"], (says, metrics, run.metrics)


def test_an_evaluation_label_the_model_does_not_know_is_refused(run, tmp_path):
    rows = synthetic.make_rows(30, seed=4) + [{"text": "the film was fine", "label": "NEUTRAL"}]
    path = write_rows(tmp_path / "odd.jsonl", rows)
    out = str(tmp_path / "out")
    fails(alone_flags(run, out, path), out, "NEUTRAL", "POSITIVE", "NEGATIVE")
    assert not os.path.exists(out)


def test_an_evaluation_file_of_one_class_is_warned_about_and_scored(run, tmp_path):
    rows = [r for r in synthetic.make_rows(80, seed=5) if r["label"] == "POSITIVE"]
    path = write_rows(tmp_path / "positive.jsonl", rows)
    out = str(tmp_path / "out")
    proc = run_cli(alone_flags(run, out, path), how="python")
    assert [line for line in proc.stderr.splitlines() if "warning" in line.lower()], proc.stderr[-3000:]
    got = results(out)
    accuracy, loss, _ = score_best(run.out, rows)  # transformers alone, labels by name
    assert got["eval_samples"] == len(rows)
    assert got["eval_accuracy"] == accuracy, (got, accuracy)
    assert got["eval_loss"] == pytest.approx(loss, rel=1e-4, abs=1e-6)
    check_predictions(predictions(out), rows, run.best, accuracy)


# ---------------------------------------------------------------- models that would score at random
@pytest.fixture(scope="module")
def untrained(run, tmp_path_factory):
    """Folders whose classification head is not (all) trained: a config alone; a base DistilBertModel
    with weights; best/ without its weights file; best/ with the classifier layer cut out of its weights."""
    import torch  # noqa: F401
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, DistilBertModel

    root = tmp_path_factory.mktemp("untrained")
    folders = {"config-only": run.model}  # conftest's tiny model: config.json and a tokenizer, no weights
    base = str(root / "base")
    DistilBertModel(AutoConfig.from_pretrained(run.model)).save_pretrained(base)
    for name in os.listdir(run.model):
        if name.startswith(("tokenizer", "special_tokens", "vocab")):
            shutil.copy(os.path.join(run.model, name), base)
    folders["base-model"] = base
    no_weights = str(root / "no_weights")
    shutil.copytree(run.best, no_weights)
    os.remove(os.path.join(no_weights, "model.safetensors"))
    folders["classifier-config-without-weights"] = no_weights
    headless = str(root / "headless")
    shutil.copytree(run.best, headless)
    weights = load_file(os.path.join(headless, "model.safetensors"))
    cut = [k for k in weights if k.startswith("classifier.")]
    assert cut, list(weights)
    save_file({k: v for k, v in weights.items() if k not in cut}, os.path.join(headless, "model.safetensors"),
              metadata={"format": "pt"})
    folders["trained-body-without-classifier"] = headless
    return folders


@pytest.mark.parametrize("kind", ["config-only", "base-model", "classifier-config-without-weights",
                                  "trained-body-without-classifier"])
def test_a_model_without_trained_head_weights_is_refused(run, untrained, tmp_path, kind):
    out = str(tmp_path / "out")
    flags = tiny_args(untrained[kind], run.data, out, label_names=HEAD, from_scratch=None) + ["--eval_only"]
    fails(flags, out, "--eval_only", "trained")
    assert not os.path.exists(out)


# ---------------------------------------------------------------- a training YAML plus --eval_only
def test_training_only_options_are_named_once_and_ignored(run, tmp_path):
    """A training run's YAML (from_scratch: true, config_overrides, class weights, lr, epochs...) with
    eval_only: true, and --lora_r, --resume_from_checkpoint latest, --push_to_hub, --ignore_mismatched_sizes on the command line:
    one warning line naming the six, nothing about the rest, and best/'s own scores (so nothing was
    re-initialised, cut down by the overrides or wrapped)."""
    out = str(tmp_path / "out")
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model_name_or_path: {run.model}\nfrom_scratch: true\n"
        f"train_file: {os.path.join(run.data, 'train.jsonl')}\nvalidation_file: {run.validation}\n"
        f"test_file: {run.test_file}\nlabel_names: [POSITIVE, NEGATIVE]\nmetrics: [accuracy, f1]\nmax_length: 64\n"
        "per_device_train_batch_size: 16\nlearning_rate: 1.0e-3\nwarmup_ratio: 0.1\nnum_train_epochs: 3\n"
        "class_weights: balanced\nlogging_steps: 20\neval_only: true\nconfig_overrides: n_layers=1\n"
        f"output_dir: {out}\n")
    proc = run_cli(["--config", config, "--model_name_or_path", run.best, "--lora_r", "4",
                    "--resume_from_checkpoint", "latest", "--push_to_hub", "--hub_model_id", "someone/tiny",
                    "--ignore_mismatched_sizes"],
                   how="python")
    lines = warning_lines(proc.stderr, *IGNORED)
    assert len(lines) == 1, proc.stderr[-3000:]
    for flag in IGNORED:
        assert flag in lines[0], (flag, lines[0])
    for silent in ("--class_weights", "--learning_rate", "--warmup_ratio", "--num_train_epochs"):
        assert silent not in proc.stderr, (silent, proc.stderr[-3000:])
    got = results(out)
    assert_same_scores(got, run.metrics, keys=("eval_accuracy", "eval_f1", "eval_samples", "test_accuracy"))
    assert_only_outputs(out, test=True)


# ---------------------------------------------------------------- the entry points
def test_main_and_fit_run_validate_once(run, tmp_path):
    """loop.main(argv) runs Loop.validate() for --eval_only; Loop.fit() with eval_only delegates to it
    (and returns its metrics); the training split only decides the labels (not tokenized)."""
    import loop
    from loop import Loop, parse_args

    calls = []

    class Counting(Loop):
        def validate(self):
            calls.append(self)
            return super().validate()

    out = str(tmp_path / "main")
    loop.main(eval_flags(run, out, from_scratch=None), loop_cls=Counting)
    assert len(calls) == 1
    assert_same_scores(results(out), run.metrics)
    assert_only_outputs(out, test=True)

    out = str(tmp_path / "fit")
    lp = Counting(parse_args(eval_flags(run, out, from_scratch=None)))
    returned = lp.fit()
    assert calls[1:] == [lp], calls
    assert_same_scores(returned, run.metrics, keys=("eval_accuracy", "eval_f1", "eval_samples", "test_accuracy"))
    written = results(out)
    assert {k: written.get(k) for k in scored(returned)} == scored(returned), (written, returned)
    assert_only_outputs(out, test=True)
    assert getattr(lp.data, "train", None) is None, "the training split was tokenized for nothing"


# ---------------------------------------------------------------- a carved evaluation split, a regression
def test_a_carved_evaluation_split_is_the_runs(tiny_model, tmp_path):
    """Training data alone with --validation_split_percentage and --seed: eval-only carves the same rows
    (same count, the run's exact accuracy)."""
    data = tmp_path / "data"
    data.mkdir()
    write_rows(data / "train.jsonl", synthetic.make_rows(300, seed=1))
    out = str(tmp_path / "run")
    common = dict(validation_file=None, validation_split_percentage=15, seed=3, num_train_epochs=2)
    run_cli(tiny_args(tiny_model, data, out, **common), how="python")
    best = read_json(os.path.join(out, "best", "best_metrics.json"))
    assert best["eval_samples"] == 45, best
    scored_out = str(tmp_path / "scored")
    run_cli(tiny_args(os.path.join(out, "best"), data, scored_out, **common) + ["--eval_only"], how="python")
    got = results(scored_out)
    assert_same_scores(got, best, keys=("eval_accuracy", "eval_samples"))
    train = synthetic.make_rows(300, seed=1)
    lines = predictions(scored_out)  # a carved example's row is its row in the training file
    assert len(lines) == 45 and len({x["row"] for x in lines}) == 45
    assert all(x["label"] == train[x["row"]]["label"] for x in lines)
    assert sum(x["label"] == x["prediction"] for x in lines) / 45 == got["eval_accuracy"]


@pytest.fixture(scope="module")
def carved(tiny_model, tmp_path_factory):
    """A run that carved its evaluation split: 300 rows whose label is in column 'sentiment', 15% carved with
    --seed 3 and cut to --max_eval_samples 40, 1 epoch. ~5 s."""
    root = tmp_path_factory.mktemp("carved_run")
    data = root / "data"
    data.mkdir()
    write_rows(data / "train.jsonl", [{"text": r["text"], "sentiment": r["label"]}
                                      for r in synthetic.make_rows(300, seed=1)])
    out = str(root / "run")
    flags = dict(validation_file=None, validation_split_percentage=15, seed=3, max_eval_samples=40,
                 label_column="sentiment", num_train_epochs=1)
    run_cli(tiny_args(tiny_model, data, out, **flags), how="python")
    best = os.path.join(out, "best")
    return types.SimpleNamespace(best=best, data=data, train=str(data / "train.jsonl"), flags=flags,
                                 metrics=read_json(os.path.join(best, "best_metrics.json")))


def test_eval_only_carves_the_runs_split_without_its_seed(carved, tmp_path):
    """audit43 F1: --eval_only on a carved run's best/ without the run's --seed carved another split (seed 42),
    mostly rows the model trained on, and scored it without a word. Now best_metrics.json records the split, and
    the training file alone (no --seed, percentage, --max_eval_samples or --label_column) scores the run's own rows:
    the same rows as the run's flags repeated, and best_metrics.json's scores; one line says what was taken."""
    split = carved.metrics["split"]
    assert (split["seed"], split["validation_split_percentage"], split["max_eval_samples"]) == (3, 15, 40), split
    assert split["eval_examples"] == 40 and carved.metrics["label_column"] == "sentiment", carved.metrics
    repeated = str(tmp_path / "repeated")  # the run's flags: the run's rows (test_a_carved_evaluation_split_is_the_runs)
    run_cli(["--eval_only", "--model_name_or_path", carved.best, "--train_file", carved.train, "--output_dir", repeated,
             "--validation_split_percentage", "15", "--seed", "3", "--max_eval_samples", "40",
             "--label_column", "sentiment"], how="python")
    bare = str(tmp_path / "bare")
    proc = run_cli(["--eval_only", "--model_name_or_path", carved.best, "--train_file", carved.train,
                    "--output_dir", bare], how="python")
    assert ("evaluation rows drawn as the run drew them: --validation_split_percentage 15 --max_eval_samples 40 "
            "--seed 3 (from its best_metrics.json") in proc.stdout, proc.stdout
    assert "--label_column sentiment" in proc.stdout and "warning" not in proc.stdout + proc.stderr
    assert_same_scores(results(bare), carved.metrics, keys=("eval_accuracy", "eval_samples"))
    assert results(bare)["data"]["seed"] == 3
    assert [x["row"] for x in predictions(bare)] == [x["row"] for x in predictions(repeated)]
    assert predictions(bare) == predictions(repeated)


def test_another_seed_or_percentage_than_the_carved_runs_is_refused(carved, tmp_path):
    """A seed or percentage given that carves another split than the run's is refused in one line naming both
    values and the fix; the same seed given, or another --max_eval_samples (a subset of the run's held-out rows),
    is not. Another seed on evaluation data of its own draws a subset of other rows: allowed."""
    from loop.trained import check_trained_split
    from loop.config import parse_args
    from loop.errors import UserError

    out = str(tmp_path / "o")
    fails(["--eval_only", "--model_name_or_path", carved.best, "--train_file", carved.train, "--output_dir", out,
           "--seed", "42"], out, "seed 3", "--seed 42", "mostly of rows it trained on", "--data_seed 3")

    def cfg(*flags):
        return parse_args(["--eval_only", "--model_name_or_path", carved.best, "--output_dir", out, *flags])

    for flags, says in ((("--data_seed", "7"), "--data_seed 7"),
                        (("--validation_split_percentage", "20"), "--validation_split_percentage 20"),
                        (("--seed", "3", "--data_seed", "4"), "--data_seed 4")):
        with pytest.raises(UserError, match=says):
            check_trained_split(cfg("--train_file", carved.train, *flags))
    given = cfg("--train_file", carved.train, "--seed", "3", "--max_eval_samples", "10")
    assert check_trained_split(given) == ("evaluation rows drawn as the run drew them: --validation_split_percentage "
                                          "15 (from its best_metrics.json; pass it to draw others)")
    assert (given.validation_split_percentage, given.max_eval_samples, given.seed) == (15, 10, 3)
    elsewhere = cfg("--validation_file", carved.train, "--seed", "9", "--max_eval_samples", "10")
    assert check_trained_split(elsewhere) is None and elsewhere.validation_split_percentage is None
    elsewhere = cfg("--validation_file", carved.train, "--test_file", carved.train, "--max_test_samples", "10")
    assert "--seed 3" in check_trained_split(elsewhere) and elsewhere.data_seed_or_seed == 3  # the run's subset


@pytest.mark.slow  # a run and two scorings: ~10-25 s
def test_eval_only_of_the_runs_own_validation_file_scores_its_subset(tiny_model, tiny_data, tmp_path):
    """A run scored --max_eval_samples 40 of its --validation_file. --eval_only of its best/ with that file scored
    all of it, and its scores differed from best_metrics.json without a word (audit59 d2): now the same bytes (the
    sha256 training_args.json records) take the run's subset, said in one line, and score what it recorded; another
    file of the same name is scored whole."""
    out = str(tmp_path / "run")
    run_cli(tiny_args(tiny_model, tiny_data, out, max_train_samples=96, max_eval_samples=40, num_train_epochs=1,
                      seed=5), how="python")
    best = os.path.join(out, "best")
    recorded = read_json(os.path.join(best, "best_metrics.json"))
    validation = os.path.join(tiny_data, "validation.jsonl")

    def score(path, name, *flags):
        proc = run_cli(["--eval_only", "--model_name_or_path", best, "--validation_file", path,
                        "--output_dir", str(tmp_path / name), *flags], how="python")
        return proc.stdout, results(str(tmp_path / name))

    said, same = score(validation, "same")
    assert "evaluation rows drawn as the run drew them: --max_eval_samples 40 --seed 5" in said, said
    assert_same_scores(same, recorded, keys=("eval_accuracy", "eval_samples"))
    edited = tmp_path / "other" / "validation.jsonl"
    edited.parent.mkdir()
    edited.write_text(open(validation).read() + "\n")  # one blank line more: the same rows, other bytes
    said, whole = score(str(edited), "other")
    assert "drawn as the run drew them" not in said and whole["eval_samples"] > 40
    said, given = score(validation, "given", "--max_eval_samples", "20")  # a subset asked for wins over the run's
    assert "--max_eval_samples 40" not in said and given["eval_samples"] == 20, said


def test_a_best_without_its_split_record_scores_as_before(tmp_path):
    """A best/ of a loop before the split record: nothing is taken from it; carving without a seed given says
    that the run's --seed is needed to score its own split."""
    from loop.trained import check_trained_split
    from loop.config import parse_args

    older = tmp_path / "older"
    older.mkdir()
    (older / "best_metrics.json").write_text(json.dumps({"eval_accuracy": 0.9, "text_pair_column": None}))
    write_rows(tmp_path / "train.jsonl", synthetic.make_rows(20, seed=1))

    def cfg(*flags):
        return parse_args(["--eval_only", "--model_name_or_path", str(older), "--output_dir", str(tmp_path / "o"),
                           "--train_file", str(tmp_path / "train.jsonl"), *flags])

    said = check_trained_split(cfg("--validation_split_percentage", "10"))
    assert "does not record the seed" in said and "--seed" in said, said
    given = cfg("--validation_split_percentage", "10", "--seed", "5")
    assert check_trained_split(given) is None and (given.seed, given.data_seed) == (5, None)
    assert check_trained_split(cfg()) is None


def test_the_label_column_is_recorded_and_read_by_a_bare_eval_only(tmp_path):
    """audit45 F3: best_metrics.json records --label_column beside the text columns, and --eval_only takes it
    unless given (a bare run stopped: "--label_column 'label' is not in the evaluation data")."""
    from loop.trained import check_trained_columns
    from loop.config import parse_args

    best = tmp_path / "best"
    best.mkdir()
    (best / "best_metrics.json").write_text(json.dumps({"text_column": "a", "text_pair_column": "b",
                                                        "label_column": "score"}))

    def cfg(*flags):
        return parse_args(["--eval_only", "--model_name_or_path", str(best), "--output_dir", str(tmp_path / "o"),
                           *flags])

    given = cfg()
    assert check_trained_columns(given) == ("columns as the model was trained: --text_column a --text_pair_column b "
                                            "--label_column score (from its best_metrics.json; pass them to read "
                                            "others)")
    assert (given.text_column, given.text_pair_column, given.label_column) == ("a", "b", "score")
    given = cfg("--label_column", "label")  # given, even as the default's name: read as given
    assert "--label_column" not in check_trained_columns(given) and given.label_column == "label"


def test_best_holds_training_args_that_reproduce_the_run(carved, tiny_model):
    """audit43 F5: best/training_args.json holds the resolved options, processes, mixed precision, versions and
    each data file's sha256; checksums.json covers it, the model card points to it, and best/ still loads.
    audit47 F3: best/ is what --push_to_hub publishes, and its copy held the working folder and every path in full
    (user, project and client names): it names a local path by its last part, as the model card does, and has no
    cwd; the whole record, for reproducing the run here, is output_dir/training_args.json. --dataset_name is null
    where local files replaced it (it said imdb, the default, for a run that read a local file alone)."""
    import hashlib

    import transformers

    import loop
    from transformers import pipeline

    args = read_json(os.path.join(carved.best, "training_args.json"))
    options = args["options"]
    assert (options["seed"], options["validation_split_percentage"], options["label_column"]) == (3, 15, "sentiment")
    assert options["train_file"] == "train.jsonl" and "logging_steps" not in options  # (finished_options)
    assert (options["model_name_or_path"], options["output_dir"], options["dataset_name"]) == (
        os.path.basename(tiny_model), "run", None), options
    assert "cwd" not in args and os.path.dirname(carved.train) not in json.dumps(args)
    assert (args["num_processes"], args["mixed_precision"], args["variant"]) == (1, "no", "Loop")
    versions = args["versions"]
    assert versions["loop"] == loop.__version__ and versions["transformers"] == transformers.__version__
    assert {"python", "torch", "accelerate", "datasets"} <= set(versions), versions
    with open(carved.train, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    hashed = {"bytes": os.path.getsize(carved.train), "sha256": digest}
    assert args["data_files"] == {"train_file": {"train.jsonl": hashed}}
    full = read_json(os.path.join(os.path.dirname(carved.best), "training_args.json"))  # not pushed
    assert os.path.isabs(full["cwd"]) and full["options"]["model_name_or_path"] == tiny_model
    assert full["options"]["train_file"] == carved.train and full["options"]["dataset_name"] is None
    assert full["data_files"] == {"train_file": {carved.train: hashed}}
    assert {k: v for k, v in full.items() if k not in ("options", "cwd", "data_files")} == \
        {k: v for k, v in args.items() if k not in ("options", "data_files")}
    assert "training_args.json" in read_json(os.path.join(carved.best, "checksums.json"))
    with open(os.path.join(carved.best, "README.md")) as f:
        assert "`training_args.json`" in f.read()
    assert pipeline("text-classification", model=carved.best)("a fine film")[0]["label"] in ("NEGATIVE", "POSITIVE")


def test_published_training_args_name_local_paths_by_their_last_part(tmp_path):
    """audit47 F3: what best/training_args.json publishes of the whole record: a Hub id as it is, a local path (a
    pattern of shards, an --extra_eval_files set) by its last part, each data file by its path below the folder its
    option's files share (shards in subfolders stay apart), an unreadable file's error without its path, no cwd."""
    from loop.checkpoint import published_args

    root = tmp_path / "home" / "alice" / "client-x"
    for part in ("shards/a/part-0.jsonl", "shards/b/part-0.jsonl", "dev.jsonl", "ood.jsonl", "model/config.json"):
        (root / part).parent.mkdir(parents=True, exist_ok=True)
        (root / part).write_text("{}")
    shard = {"bytes": 2, "sha256": "0" * 64}
    full = {"options": {"model_name_or_path": str(root / "model"), "tokenizer_name": "bert-base-uncased",
                        "dataset_name": None, "train_file": str(root / "shards/*/part-0.jsonl"),
                        "validation_file": str(root / "dev.jsonl"), "test_file": None,
                        "extra_eval_files": f"ood={root / 'ood.jsonl'},{root / 'dev.jsonl'}",
                        "output_dir": str(root / "runs/r1"), "seed": 3},
            "num_processes": 2, "versions": {"loop": "0"}, "cwd": str(root),
            "data_files": {"train_file": {str(root / "shards/a/part-0.jsonl"): shard,
                                          str(root / "shards/b/part-0.jsonl"): shard},
                           "validation_file": {str(root / "dev.jsonl"): shard},
                           "test_file": {"error": f"[Errno 2] No such file or directory: '{root}/gone.jsonl'"}}}
    published = published_args(full)
    assert published == {
        "options": {"model_name_or_path": "model", "tokenizer_name": "bert-base-uncased", "dataset_name": None,
                    "train_file": "part-0.jsonl", "validation_file": "dev.jsonl", "test_file": None,
                    "extra_eval_files": "ood=ood.jsonl,dev.jsonl", "output_dir": "r1", "seed": 3},
        "num_processes": 2, "versions": {"loop": "0"},
        "data_files": {"train_file": {"a/part-0.jsonl": shard, "b/part-0.jsonl": shard},
                       "validation_file": {"dev.jsonl": shard},
                       "test_file": {"error": "not readable when best/ was written"}}}
    assert "alice" not in json.dumps(published) and list(published) == ["options", "num_processes", "versions",
                                                                        "data_files"]


def test_a_dataset_folder_with_a_test_split_and_a_subset(tiny_model, tmp_path):
    """A dataset (--dataset_name, a folder) with train/validation/test, --test_split test and
    --max_eval_samples: eval-only scores the same subset and the same test split as the run."""
    from test_test_split import dataset_folder

    data = dataset_folder(tmp_path / "hub", train=synthetic.make_rows(200, seed=1),
                          validation=synthetic.make_rows(40, seed=2), test=synthetic.make_rows(17, seed=3))
    out = str(tmp_path / "run")
    common = dict(train_file=None, validation_file=None, dataset_name=data, test_split="test", max_eval_samples=25,
                  num_train_epochs=2)
    run_cli(tiny_args(tiny_model, tmp_path, out, **common), how="python")
    best = read_json(os.path.join(out, "best", "best_metrics.json"))
    assert best["eval_samples"] == 25 and best["test_samples"] == 17, best
    scored_out = str(tmp_path / "scored")
    run_cli(tiny_args(os.path.join(out, "best"), tmp_path, scored_out, **common) + ["--eval_only"], how="python")
    assert_same_scores(results(scored_out), best, keys=("eval_accuracy", "eval_samples", "test_accuracy",
                                                        "test_samples"), loss=("eval_loss", "test_loss"))


def test_a_regression_runs_best(tiny_model, tmp_path):
    """--problem_type regression, the run's label flags: eval_mse (the default metric) and eval_loss are
    best_metrics.json's."""
    from test_regression import make_rows

    data = tmp_path / "data"
    data.mkdir()
    write_rows(data / "train.jsonl", make_rows(240, 1))
    write_rows(data / "validation.jsonl", make_rows(61, 2))
    out = str(tmp_path / "run")
    common = dict(label_column="score", problem_type="regression", metrics="mse,r2", num_train_epochs=2)
    run_cli(tiny_args(tiny_model, data, out, **common), how="python")
    best = read_json(os.path.join(out, "best", "best_metrics.json"))
    assert best["eval_samples"] == 61 and "eval_mse" in best, best
    scored_out = str(tmp_path / "scored")
    # without --problem_type: the model's config says regression, so it is scored as one (mse by default)
    common.update(problem_type=None)
    proc = run_cli(tiny_args(os.path.join(out, "best"), data, scored_out, **common) + ["--eval_only"], how="python")
    got = results(scored_out)
    assert got["eval_samples"] == 61
    assert got["eval_mse"] == pytest.approx(best["eval_mse"], rel=1e-6, abs=1e-9), (got, best)
    assert got["eval_r2"] == pytest.approx(best["eval_r2"], abs=1e-6), (got, best)
    assert got["eval_loss"] == pytest.approx(best["eval_loss"], abs=1e-5), (got, best)
    assert "eval_mse=" in proc.stdout
    assert_only_outputs(scored_out)
    lines = predictions(scored_out)
    targets = [r["score"] for r in make_rows(61, 2)]
    assert [x["row"] for x in lines] == list(range(61))
    assert [x["label"] for x in lines] == pytest.approx(targets, abs=1e-6)
    mse = sum((x["prediction"] - x["label"]) ** 2 for x in lines) / 61
    assert mse == pytest.approx(got["eval_mse"], rel=1e-4)
    assert "eval_per_class" not in got and "eval_confusion" not in got
    # the other way round: a classifier is not scored as a regression (its first logit read as the number)
    fails(tiny_args(os.path.join(out, "best"), data, str(tmp_path / "x"), label_column="score",
                    problem_type="single_label_classification") + ["--eval_only"], str(tmp_path / "x"),
          "fractional", "--problem_type regression")


def test_data_read_as_another_problem_than_the_models_is_refused(run, tmp_path):
    """A single-label model on lists of labels (sigmoid over softmax-trained logits), or with --problem_type
    regression (its first logit as the number): one line naming what it was trained for and the fix. Lists of one
    label each are its classes (audit47 F5), as --problem_type single_label_classification read them in training."""
    rows = synthetic.make_rows(40, seed=6)
    lists = write_rows(tmp_path / "lists.jsonl", [dict(r, label=["NEGATIVE", "POSITIVE"] if i == 3 else [r["label"]])
                                                  for i, r in enumerate(rows)])
    out = str(tmp_path / "lists")
    fails(alone_flags(run, out, lists), out, "single-label classification", "multi-label", "one label per text")
    ones = write_rows(tmp_path / "ones.jsonl", [dict(r, label=[r["label"]]) for r in rows])
    plain_rows = write_rows(tmp_path / "plain.jsonl", rows)
    assert validate_in_process(alone_flags(run, tmp_path / "ones", ones)) == \
        validate_in_process(alone_flags(run, tmp_path / "plain", plain_rows))
    numbers = write_rows(tmp_path / "numbers.jsonl", [dict(r, label=float(r["label"] == "POSITIVE")) for r in rows])
    out = str(tmp_path / "numbers")
    fails(alone_flags(run, out, numbers, "--problem_type", "regression"), out, "single-label classification",
          "drop --problem_type regression")


def test_a_run_folder_as_the_model_names_its_best_folder(run, tmp_path):
    """--model_name_or_path OUT (the training run's folder, the likeliest slip) was 'Unrecognized model ... set
    HF_HUB_OFFLINE=1'; it now names OUT/best, as predict.py does."""
    folder = os.path.dirname(run.best)
    flags = alone_flags(run, tmp_path / "out", run.validation)
    flags[flags.index(run.best)] = folder
    fails(flags, str(tmp_path / "out"), "--model_name_or_path", "is a run folder", f"--model_name_or_path {run.best}")


def test_an_unwritable_output_dir_is_refused_before_the_work(run, tmp_path):
    """--output_dir is probed first (a training run's lock does it): one line before any data is read."""
    from test_errors import check_user_error

    out = "/proc/loop-eval-only-test/out"  # /proc takes no new folders, even for root
    proc = run_cli(alone_flags(run, out, run.validation), how="python", check=False)
    check_user_error(proc, "cannot write into --output_dir", out)
    assert "rows loaded" not in proc.stdout + proc.stderr, proc.stdout[-2000:]


@pytest.mark.slow  # ~6 s: three scorings
def test_files_of_an_earlier_scoring_do_not_outlive_it(run, tmp_path):
    """A second --eval_only without a test split removes the first one's test_predictions.jsonl; a new
    training run over the folder removes eval_results.json and the predictions (over a finished run with
    --overwrite_output_dir, and over a folder of scoring files alone without it)."""
    out = str(tmp_path / "run")
    shutil.copytree(run.out, out)
    run_cli(alone_flags(run, out, run.validation, test_file=run.test_file), how="python")
    assert {"eval_results.json", "eval_predictions.jsonl", "test_predictions.jsonl"} <= set(os.listdir(out))
    run_cli(alone_flags(run, out, run.validation), how="python")
    assert "test_predictions.jsonl" not in os.listdir(out) and "test_accuracy" not in results(out)
    run_cli(tiny_args(run.model, run.data, out, label_names=HEAD, num_train_epochs=1) + ["--overwrite_output_dir"],
            how="python")
    left = set(os.listdir(out))
    assert "best" in left and not left & {"eval_results.json", "eval_predictions.jsonl", "test_predictions.jsonl"}, left
    # a folder that holds only a scoring's files: no run to refuse, but the files go all the same
    alone = str(tmp_path / "scored_only")
    run_cli(alone_flags(run, alone, run.validation, test_file=run.test_file), how="python")
    run_cli(tiny_args(run.model, run.data, alone, label_names=HEAD, num_train_epochs=1), how="python")
    assert set(os.listdir(alone)) == {"best", "metrics.jsonl", ".loop-finished.json", "training_args.json"}, \
        sorted(os.listdir(alone))


def test_config_checks_of_eval_only(tmp_path):
    """--eval_only without --model_name_or_path (the default is a base model), and a Hub split named beside
    a local --validation_file (it would be dropped without a word): one line each."""
    from loop.config import parse_args
    from loop.errors import UserError

    with pytest.raises(UserError, match="--eval_only scores a trained classifier.*--model_name_or_path"):
        parse_args(["--eval_only", "--output_dir", str(tmp_path)])
    valid = tmp_path / "v.jsonl"
    write_rows(valid, synthetic.make_rows(5, seed=1))
    for flag in ("--test_split", "--eval_split"):
        with pytest.raises(UserError, match=f"{flag} picks a split of --dataset_name, but --validation_file"):
            parse_args(["--eval_only", "--model_name_or_path", str(tmp_path), "--validation_file", str(valid),
                        flag, "test", "--output_dir", str(tmp_path)])


def test_a_pair_models_columns_are_checked(tmp_path):
    """A sentence-pair run's best/ records its columns (best_metrics.json): single texts, swapped columns
    and a pair given to a single-text model are refused before any work."""
    from loop.trained import check_trained_columns
    from loop.config import parse_args
    from loop.errors import UserError

    pair = tmp_path / "pair"
    pair.mkdir()
    (pair / "best_metrics.json").write_text(json.dumps({"text_column": "premise", "text_pair_column": "hypothesis"}))
    single = tmp_path / "single"
    single.mkdir()
    (single / "best_metrics.json").write_text(json.dumps({"eval_accuracy": 0.9, "text_pair_column": None}))
    older = tmp_path / "older"  # loop before 2026-11-30 named the pair column only for a pair model
    older.mkdir()
    (older / "best_metrics.json").write_text(json.dumps({"eval_accuracy": 0.9}))

    def cfg(model, *columns):
        return parse_args(["--eval_only", "--model_name_or_path", str(model), "--output_dir", str(tmp_path / "o"),
                           *columns])

    assert check_trained_columns(cfg(pair, "--text_column", "premise", "--text_pair_column", "hypothesis")) is None
    assert check_trained_columns(cfg(single)) is None
    given = cfg(older, "--text_column", "premise", "--text_pair_column", "hypothesis")  # its pairs: not refused
    assert check_trained_columns(given) is None and given.text_pair_column == "hypothesis"
    given = cfg(pair)  # no column option: the recorded ones, said in one line
    said = check_trained_columns(given)
    assert (given.text_column, given.text_pair_column) == ("premise", "hypothesis")
    assert "--text_column premise --text_pair_column hypothesis" in said and "best_metrics.json" in said
    review = tmp_path / "review"
    review.mkdir()
    (review / "best_metrics.json").write_text(json.dumps({"text_column": "review"}))
    given = cfg(review)
    assert "--text_column review" in check_trained_columns(given) and given.text_column == "review"
    given = cfg(review, "--text_column", "body")  # a column given is read as given
    assert check_trained_columns(given) is None and given.text_column == "body"
    given = cfg(review, "--text_column", "text")  # even the default's name, given, is read as given
    assert check_trained_columns(given) is None and given.text_column == "text"
    given = cfg(pair, "--text_pair_column", "hypothesis")  # each column not given is the recorded one
    assert check_trained_columns(given) == ("columns as the model was trained: --text_column premise (from its "
                                            "best_metrics.json; pass it to read others)")
    assert (given.text_column, given.text_pair_column) == ("premise", "hypothesis")
    given = cfg(pair, "--text_column", "first")
    assert "--text_pair_column hypothesis" in check_trained_columns(given)
    assert (given.text_column, given.text_pair_column) == ("first", "hypothesis")
    for model, columns, says in ((pair, ("--text_column", "hypothesis"), "trained on text pairs"),
                                 (pair, ("--text_column", "hypothesis", "--text_pair_column", "premise"),
                                  "the other way round"),
                                 (single, ("--text_pair_column", "b"), "trained on single texts")):
        with pytest.raises(UserError, match=says):
            check_trained_columns(cfg(model, *columns))


def test_a_hub_id_of_a_loop_run_s_best_is_read_with_its_records(tmp_path, monkeypatch):
    """--push_to_hub uploads best/ with best_metrics.json and training_args.json; --eval_only on that Hub id (from
    the cache on an offline node) read neither: a pair model was scored on single texts without a word (audit61:
    eval_accuracy 0.815 where its folder is refused). The records come from the cache's snapshot now, and a
    model whose cache knows them absent is scored as the options say."""
    from loop.config import parse_args
    from loop.errors import UserError
    from loop.trained import check_trained_columns, model_file, run_args

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    snapshot = hub_cache_repo(tmp_path / "hub", "me/pair-model", {
        "config.json": "{}", "best_metrics.json": json.dumps({"text_column": "premise", "text_pair_column": "hypothesis"}),
        "training_args.json": json.dumps({"options": {"torch_dtype": "bfloat16"}})})

    def cfg(model, *columns):
        return parse_args(["--eval_only", "--model_name_or_path", model, "--output_dir", str(tmp_path / "o"), *columns])

    with pytest.raises(UserError, match="'me/pair-model' was trained on text pairs"):
        check_trained_columns(cfg("me/pair-model", "--text_column", "hypothesis"))
    given = cfg("me/pair-model")
    assert "--text_pair_column hypothesis" in check_trained_columns(given)
    assert run_args(given)["options"]["torch_dtype"] == "bfloat16"
    assert model_file(given, "best_metrics.json") == str(snapshot / "best_metrics.json")
    hub_cache_repo(tmp_path / "hub", "someorg/classifier", {"config.json": "{}"})  # a model from elsewhere
    assert model_file(cfg("someorg/classifier"), "best_metrics.json") is None  # offline: nothing fetched
    assert check_trained_columns(cfg("someorg/classifier", "--text_column", "hypothesis")) is None


# ---------------------------------------------------------------- two processes
@pytest.mark.slow  # two gloo processes: ~30 s here
def test_two_processes_score_every_example_once(run, tmp_path):
    """37 evaluation and 45 test rows over 2 ranks, batches of 8 (uneven last batches): each example
    scored once, the one-process scores, one eval_results.json, the ignored-option warning once."""
    rows = synthetic.make_rows(37, seed=11)
    path = write_rows(tmp_path / "val37.jsonl", rows)
    one = str(tmp_path / "one")
    p1 = run_cli(alone_flags(run, one, path, "--per_device_eval_batch_size", "8", test_file=run.test_file),
                 how="python")
    two = str(tmp_path / "two")
    proc = run_cli(alone_flags(run, two, path, "--per_device_eval_batch_size", "8", "--from_scratch",
                               test_file=run.test_file), nproc=2, how="fork", timeout=300)
    r1, r2 = results(one), results(two)
    assert r2["eval_samples"] == 37 and r2["test_samples"] == len(TEST_ROWS), r2
    assert r2["eval_accuracy"] == r1["eval_accuracy"] and r2["test_accuracy"] == r1["test_accuracy"], (r1, r2)
    assert r2["eval_f1"] == r1["eval_f1"], (r1, r2)
    assert r2["eval_loss"] == pytest.approx(r1["eval_loss"], abs=1e-5)
    assert r2["test_loss"] == pytest.approx(r1["test_loss"], abs=1e-5)
    accuracy, _, _ = score_best(run.out, rows)  # and they are best/'s scores on exactly these rows
    assert r1["eval_accuracy"] == accuracy
    assert r1["test_accuracy"] == run.metrics["test_accuracy"]
    assert_only_outputs(two, test=True)
    for prefix in ("eval", "test"):  # one line per example, each row once, the one-process predictions
        single, double = predictions(one, prefix), predictions(two, prefix)
        assert [x["row"] for x in double] == list(range(37 if prefix == "eval" else len(TEST_ROWS)))
        assert [(x["row"], x["label"], x["prediction"]) for x in double] == \
               [(x["row"], x["label"], x["prediction"]) for x in single]
    assert len(warning_lines(proc.stderr, "--from_scratch")) == 1, proc.stderr[-4000:]
    printed = [sum("eval_accuracy=" in line for line in p.stdout.splitlines()) for p in (p1, proc)]
    assert printed[0] >= 1 and printed[1] == printed[0], (printed, proc.stdout[-3000:])  # the main process prints


@pytest.mark.slow  # more than one run
def test_many_labels_name_the_file_of_their_report_and_write_the_confusion_cells(tiny_model, tmp_path):
    """--eval_only of a 120-label model prints no line per label but one naming the file, which holds all 120;
    beyond 100 labels the confusion matrix is written as its non-zero cells, [true id, predicted id, count], which
    count the prediction lines and sum to the examples (the whole matrix is K^2 numbers: 900 MB at 10k labels)."""
    rows = [{"text": r["text"], "label": f"c{i % 120:03d}"} for i, r in enumerate(synthetic.make_rows(360, seed=3))]
    synthetic.write_jsonl(rows, tmp_path / "train.jsonl")
    synthetic.write_jsonl(rows, tmp_path / "validation.jsonl")
    out = str(tmp_path / "out")
    run_cli(tiny_args(tiny_model, str(tmp_path), out, max_steps=1), how="python")
    scored_out = str(tmp_path / "scored")
    proc = run_cli(["--eval_only", "--model_name_or_path", os.path.join(out, "best"), "--validation_file",
                    str(tmp_path / "validation.jsonl"), "--output_dir", scored_out], how="python")
    assert "precision, recall, f1 and support of each of the 120 labels: eval_per_class in eval_results.json" \
        in proc.stdout
    assert "  c000  precision" not in proc.stdout
    got = results(scored_out)
    names = got["data"]["label_names"]
    assert len(got["eval_per_class"]) == len(names) == 120 and "eval_confusion" not in got, sorted(got)
    cells = got["eval_confusion_cells"]
    assert sum(count for _, _, count in cells) == got["eval_samples"] == 360
    assert cells == sorted(cells) and all(count > 0 for _, _, count in cells)
    pairs = {}
    for line in predictions(scored_out):
        key = (names.index(line["label"]), names.index(line["prediction"]))
        pairs[key] = pairs.get(key, 0) + 1
    assert {(t, p): count for t, p, count in cells} == pairs
    assert sum(count for t, p, count in cells if t == p) / 360 == got["eval_accuracy"]
    for i, name in enumerate(names):  # per class: support from the cells
        assert got["eval_per_class"][name]["support"] == sum(count for t, _, count in cells if t == i)


def test_the_per_class_report_counts_exactly():
    """scores.report: the confusion matrix (rows true, columns predicted, every label even one never seen; beyond
    100 labels its non-zero cells) and per-class precision/recall/f1/support worked out by hand; multi-label: per
    label decisions."""
    import numpy as np

    from loop import scores

    refs = np.array([0, 0, 0, 1, 1, 2])
    logits = np.eye(4)[[0, 0, 1, 1, 2, 2]]  # predictions 0 0 1 1 2 2; label 3 never true or predicted
    got = scores.report(logits, refs, ["a", "b", "c", "d"])
    assert got["confusion"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert got["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3, abs=1e-6),
                                     "f1": pytest.approx(0.8), "support": 3}
    assert got["per_class"]["b"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert got["per_class"]["c"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3, abs=1e-6),
                                     "support": 1}
    assert got["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # beyond 100 labels, the non-zero cells alone: [true, predicted, count], by true then predicted id
    refs = np.array([150, 0, 0, 7, 0, 150])
    many = scores.report(np.eye(151, dtype=np.float32)[[3, 0, 0, 7, 3, 2]], refs, [f"l{i}" for i in range(151)])
    assert "confusion" not in many and many["confusion_cells"] == [[0, 0, 2], [0, 3, 1], [7, 7, 1], [150, 2, 1],
                                                                   [150, 3, 1]], many.get("confusion_cells")
    assert many["per_class"]["l0"] == {"precision": 1.0, "recall": pytest.approx(2 / 3, abs=1e-6),
                                       "f1": pytest.approx(0.8), "support": 3}
    assert many["per_class"]["l3"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    multi = scores.report(np.array([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]), np.array([[1, 0], [0, 1], [0, 1]]),
                          ["x", "y"], multi_label=True)
    assert "confusion" not in multi
    assert multi["per_class"]["x"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3, abs=1e-6),
                                       "support": 1}
    assert multi["per_class"]["y"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}


def test_a_lora_adapter_folder_is_named_as_such(tmp_path):
    """best/adapter/ (a LoRA run's adapter alone) given as the model: the line says to pass best/ itself."""
    from loop import models
    from loop.config import parse_args
    from loop.errors import UserError

    adapter = tmp_path / "best" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    cfg = parse_args(["--eval_only", "--model_name_or_path", str(adapter), "--output_dir", str(tmp_path / "o")])
    with pytest.raises(UserError, match="holds a LoRA adapter, not a model; pass the folder above it"):
        models.load_config(cfg)
    from loop import predict

    with pytest.raises(UserError, match=rf"^--model '{adapter}' holds a LoRA adapter, not a model; pass the folder "
                                        rf"above it, {tmp_path / 'best'} \(a run's best/"):  # (audit64 p8: "no config.json")
        predict.check_folder(str(adapter))


def test_a_variants_hooks_run_once_without_training_state(run, tmp_path):
    """on_evaluate runs once under --eval_only with the metrics; eval_epoch() is None there (no training),
    and a variant's own val_loop is what validate() runs."""
    from loop import Loop

    seen = []

    class Variant(Loop):
        def val_loop(self):
            metrics = super().val_loop()
            metrics["eval_extra"] = 1.0
            return metrics

        def on_evaluate(self, metrics):
            seen.append((self.eval_epoch(), metrics["eval_accuracy"], metrics["eval_extra"]))

    metrics = validate_in_process(alone_flags(run, tmp_path / "out", run.validation), loop_cls=Variant)
    assert seen == [(None, run.metrics["eval_accuracy"], 1.0)] and metrics["eval_extra"] == 1.0, seen


SLOW_SCORING = '''
import signal, sys, time
import loop

# Ctrl-C as a terminal's foreground process takes it: a test worker may hand its children SIGINT ignored or blocked
# (seen in the full suite: the run then slept through it), which no terminal user's run inherits
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

class SlowScoring(loop.Loop):
    def evaluation_step(self, batch):
        print("scoring has begun", flush=True)
        time.sleep(120)
        return super().evaluation_step(batch)

loop.main(loop_cls=SlowScoring)
'''


@pytest.mark.slow  # ~8 s: a process of its own
def test_ctrl_c_while_scoring_is_one_line_and_exit_130(run, tmp_path):
    """Ctrl-C during --eval_only (fit()'s stop handlers are not installed there: nothing to save) ends
    with one line saying nothing was saved, exit 130, no traceback and no partial files."""
    import signal
    import subprocess
    import sys

    from conftest import ROOT, env

    script = tmp_path / "slow.py"
    script.write_text(SLOW_SCORING)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(script), *alone_flags(run, out, run.validation)], cwd=ROOT,
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # the scoring is under way (or the run ended without reaching it)
            if "scoring has begun" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted (Ctrl-C)") and "nothing was saved" in last, last
    assert not any(os.path.exists(out / name) for name in ("eval_results.json", "eval_predictions.jsonl")), \
        os.listdir(out) if out.exists() else None


def test_a_best_of_an_older_loop_without_its_max_length_is_warned_about(tiny_model, tmp_path):
    """--eval_only on a best/ whose tokenizer records no --max_length (loop before 2026-11-30) scored at the
    tokenizer's limit, not where training cut, silently (audit30: 0.79 instead of the recorded 0.76)."""
    import shutil

    from transformers import AutoConfig, AutoTokenizer

    from loop import models
    from loop.config import parse_args

    older = tmp_path / "older"
    shutil.copytree(tiny_model, older)
    (older / "best_metrics.json").write_text(json.dumps({"eval_accuracy": 0.76, "step": 10}))
    cfg = parse_args(["--eval_only", "--model_name_or_path", str(older), "--output_dir", str(tmp_path / "o")])
    tokenizer, config = AutoTokenizer.from_pretrained(older), AutoConfig.from_pretrained(older)
    with pytest.warns(UserWarning, match=r"did not record the --max_length it trained with, so texts are cut at "
                                         r"128 tokens, not where training cut them; pass that --max_length"):
        assert models.max_length(cfg, config, tokenizer) == 128
    models.record_max_length(tokenizer, 10)  # as runs of today record it: scored at 10, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert models.max_length(cfg, config, tokenizer) == 10


# ---------------------------------------------------------------- labels that are numbers
@pytest.mark.slow  # a training run and three scorings
def test_integer_labels_mean_a_numbered_models_label_of_their_own_number(tiny_model, tmp_path):
    """A model trained on labels written as numbers in text ("0".."11", a JSON or Parquet string column) names its
    classes so, sorted as text: 0, 1, 10, 11, 2, ... Scored on the same classes written as integers, each id is
    the label of its own number (said in one line): the run's own scores. --label_names with those names in id
    order, what the old message asked for, named the ids by position (id 2 as '10': 0.125 where 1.0 was right,
    silently); it is refused now, and the same numbers in their own order score as the bare run."""
    rows = [{"text": r["text"], "label": str(i % 12)} for i, r in enumerate(synthetic.make_rows(48, seed=3))]
    synthetic.write_jsonl(rows, tmp_path / "train.jsonl")
    synthetic.write_jsonl(rows, tmp_path / "validation.jsonl")
    out = str(tmp_path / "out")
    run_cli(tiny_args(tiny_model, str(tmp_path), out, max_steps=1), how="python")
    best = os.path.join(out, "best")
    names = list(read_json(os.path.join(best, "config.json"))["id2label"].values())
    assert names == sorted(str(i) for i in range(12)), names  # as text: '10' is id 2
    ints = write_rows(tmp_path / "ints.jsonl", [dict(r, label=int(r["label"])) for r in rows])

    def flags(name, *extra):
        return ["--eval_only", "--model_name_or_path", best, "--validation_file", ints, "--max_length", "64",
                "--output_dir", str(tmp_path / name), *extra]

    proc = run_cli(flags("bare"), how="python")
    assert "data: the evaluation label ids are the model's labels of the same number (id 10 is '10')" in proc.stdout
    got, recorded = results(str(tmp_path / "bare")), read_json(os.path.join(best, "best_metrics.json"))
    assert_same_scores(got, recorded, keys=("eval_accuracy", "eval_samples"))
    lines = predictions(str(tmp_path / "bare"))
    assert [x["label"] for x in lines] == [r["label"] for r in rows]  # 10 is '10', not names[10] ('8')
    check_predictions(lines, rows, best, got["eval_accuracy"])
    fails(flags("positional", "--label_names", ",".join(names)), str(tmp_path / "positional"),
          "--label_names 0, 1, 10, 11, 2", "name the ids by position", "label 2 would be named '10'",
          "leave --label_names out")
    metrics = validate_in_process(flags("in_order", "--label_names", ",".join(str(i) for i in range(12))))
    assert_same_scores(metrics, recorded, keys=("eval_accuracy", "eval_samples"))


@pytest.mark.slow  # a training run and four scorings
def test_ids_named_by_label_names_are_read_as_the_run_read_them(tiny_model, tmp_path):
    """audit47 F1: a run on ids 0 and 1 named by --label_names 1,2 (by position: id 1 is '2') records so in
    best_metrics.json, and --eval_only reads ids as the run did: on the rows of id 1 it scores the run's own
    accuracy, bare or with the run's --label_names 1,2. It read every model with number labels as trained on those
    texts: id 1 as '1' (the other row), silently, and refused the run's own --label_names. A best/ without the
    record (an older loop) is refused naming both readings, and the --label_names that picks each."""
    rows = [dict(r, label=int(r["label"] == "POSITIVE")) for r in synthetic.make_rows(200, seed=3)]
    synthetic.write_jsonl(rows, tmp_path / "train.jsonl")
    ones = [r for r in rows[:80] if r["label"] == 1]
    synthetic.write_jsonl(ones, tmp_path / "validation.jsonl")
    out = str(tmp_path / "out")
    run_cli(tiny_args(tiny_model, str(tmp_path), out, label_names="1,2", num_train_epochs=1), how="python")
    best = os.path.join(out, "best")
    recorded = read_json(os.path.join(best, "best_metrics.json"))

    def flags(model, name, *extra):
        return ["--eval_only", "--model_name_or_path", model, "--validation_file", str(tmp_path / "validation.jsonl"),
                "--max_length", "64", "--output_dir", str(tmp_path / name), *extra]

    proc = run_cli(flags(best, "bare"), how="python")
    assert {x["label"] for x in predictions(str(tmp_path / "bare"))} == {"2"}  # id 1 is '2', as in training
    assert_same_scores(results(str(tmp_path / "bare")), recorded, keys=("eval_accuracy", "eval_samples"))
    assert "data: the evaluation label ids are read as the model's training run read its own (id 1 is '2': 1,2 in " \
        "id order, from its best_metrics.json)" in proc.stdout
    assert (recorded["label_ids"], recorded["label_names"]) == ("positions", ["1", "2"])
    metrics = validate_in_process(flags(best, "given", "--label_names", "1,2"))  # the run's own flag
    assert_same_scores(metrics, recorded, keys=("eval_accuracy", "eval_samples"))
    older = str(tmp_path / "older")  # the same best/ as a loop before the record wrote it
    shutil.copytree(best, older)
    record = {k: v for k, v in recorded.items() if k not in ("label_ids", "label_names")}
    with open(os.path.join(older, "best_metrics.json"), "w") as f:
        json.dump(record, f)
    fails(flags(older, "refused"), str(tmp_path / "refused"), "the evaluation label ids (1) can mean the model's "
          "labels of the same number (id 1 is '1') or its labels at those positions (id 1 is '2')",
          "say which with --label_names: 2,1 reads each id as its number, 1,2 as a position.")
    metrics = validate_in_process(flags(older, "picked", "--label_names", "1,2"))
    assert_same_scores(metrics, recorded, keys=("eval_accuracy", "eval_samples"))


@pytest.mark.slow  # a training run (~15 s) and three scorings
def test_data_of_the_runs_class_label_is_read_as_the_run_read_it(tiny_model, tmp_path):
    """audit50 F1: the default job trains on IMDb's ClassLabel (neg, pos) named NEGATIVE,POSITIVE by --label_names;
    --eval_only of its best/ on the same test split was refused ("the classes (neg, pos) are not the model's
    labels") although best_metrics.json says how the run read them. It records the ClassLabel's own names now, and
    data of that ClassLabel scores as the run did, bare, with one line; a ClassLabel of other names or another
    order, or a best/ without the record, is refused as before."""
    import datasets

    def classlabel_file(name, rows, classes=("neg", "pos")):
        ds = datasets.Dataset.from_dict({"text": [r["text"] for r in rows],
                                         "label": [classes.index("pos" if r["label"] == "POSITIVE" else "neg")
                                                   for r in rows]})
        path = str(tmp_path / f"{name}.parquet")
        ds.cast_column("label", datasets.ClassLabel(names=list(classes))).to_parquet(path)
        return path

    data = tmp_path / "data"
    data.mkdir()
    train = classlabel_file("data/train", synthetic.make_rows(600, seed=1))
    test = classlabel_file("data/test", synthetic.make_rows(80, seed=2))
    out = str(tmp_path / "run")
    run_cli(tiny_args(tiny_model, str(data), out, train_file=train, validation_file=test,
                      label_names="NEGATIVE,POSITIVE", num_train_epochs=3), how="python")
    best = os.path.join(out, "best")
    recorded = read_json(os.path.join(best, "best_metrics.json"))
    assert (recorded["label_names"], recorded["class_names"]) == (["NEGATIVE", "POSITIVE"], ["neg", "pos"])
    assert recorded["eval_accuracy"] > 0.7, recorded  # (a model that learned: a swapped reading would score low)

    def flags(model, name, validation):
        return ["--eval_only", "--model_name_or_path", model, "--validation_file", validation, "--max_length", "64",
                "--output_dir", str(tmp_path / name)]

    proc = run_cli(flags(best, "bare", test), how="python")
    assert_same_scores(results(str(tmp_path / "bare")), recorded, keys=("eval_accuracy", "eval_samples"))
    assert "data: the evaluation label classes are read as the model's training run read them (neg is 'NEGATIVE', " \
        "pos is 'POSITIVE', from its best_metrics.json)" in proc.stdout
    # with its training data too (docs audit73 D1: "the data's labels (neg, pos) are not the model's"), the README's
    # "with its training data ... the labels are read as that run read them"
    proc = run_cli(flags(best, "with_train", test) + ["--train_file", train], how="python")
    assert_same_scores(results(str(tmp_path / "with_train")), recorded, keys=("eval_accuracy", "eval_samples"))
    assert "data: the training label classes are read as the model's training run read them (neg is 'NEGATIVE', " \
        "pos is 'POSITIVE', from its best_metrics.json)" in proc.stdout
    swapped = classlabel_file("swapped", synthetic.make_rows(80, seed=2), classes=("pos", "neg"))
    fails(flags(best, "swapped", swapped), str(tmp_path / "swapped"), "classes (pos, neg) are not the model's labels")
    fails(flags(best, "swapped_train", test) + ["--train_file", swapped], str(tmp_path / "swapped_train"),
          "the data's labels (pos, neg) are not the model's")
    older = str(tmp_path / "older")  # the same best/ as a loop before the record wrote it
    shutil.copytree(best, older)
    with open(os.path.join(older, "best_metrics.json"), "w") as f:
        json.dump({k: v for k, v in recorded.items() if k != "class_names"}, f)
    fails(flags(older, "refused", test), str(tmp_path / "refused"), "classes (neg, pos) are not the model's labels")


@pytest.mark.slow  # a training run (~10 s) and two scorings
def test_a_multi_label_class_label_list_with_its_training_data_is_read_as_the_run_read_it(tiny_model, tmp_path):
    """Review rev F3 (audit73): lists of a ClassLabel (a, b, c) trained as X, Y, Z by --label_names scored bare with
    the evaluation file alone, but with the training file too they were refused ("the data's labels (a, b, c) are
    not the model's (X, Y, Z)"): the list's ClassLabel is read as the run read it there too."""
    import datasets

    def multi_file(name, rows):
        rng = random.Random(len(rows))
        lists = [[0 if r["label"] == "POSITIVE" else 1] + ([2] if rng.random() < 0.3 else []) for r in rows]
        features = datasets.Features({"text": datasets.Value("string"),
                                      "label": datasets.Sequence(datasets.ClassLabel(names=["a", "b", "c"]))})
        path = str(tmp_path / f"{name}.parquet")
        datasets.Dataset.from_dict({"text": [r["text"] for r in rows], "label": lists}, features=features) \
            .to_parquet(path)
        return path

    train = multi_file("train", synthetic.make_rows(300, seed=1))
    test = multi_file("test", synthetic.make_rows(60, seed=2))
    out = str(tmp_path / "run")
    run_cli(tiny_args(tiny_model, str(tmp_path), out, train_file=train, validation_file=test, label_names="X,Y,Z",
                      num_train_epochs=2), how="python")
    recorded = read_json(os.path.join(out, "best", "best_metrics.json"))
    flags = ["--eval_only", "--model_name_or_path", os.path.join(out, "best"), "--validation_file", test,
             "--max_length", "64"]
    run_cli(flags + ["--output_dir", str(tmp_path / "alone")], how="python")
    run_cli(flags + ["--train_file", train, "--output_dir", str(tmp_path / "with_train")], how="python")
    for name in ("alone", "with_train"):
        assert_same_scores(results(str(tmp_path / name)), recorded, keys=("eval_f1", "eval_samples"))


@pytest.mark.slow  # two training runs and three scorings
def test_the_data_a_single_label_run_took_with_a_flag_is_scored_or_named(tiny_model, tmp_path):
    """audit47 F5: one-hot rows trained as classes (--problem_type single_label_classification) were refused by a
    bare --eval_only ("read as multi-label ...; give one label per text"): the model's config says single-label, so
    they are read as its classes now, said in one line, and score the run's own accuracy. Labels "0", "1" trained
    with --label_names NEGATIVE,POSITIVE (ids), scored with the training file and no --label_names, were refused
    with "rename them in the data": the refusal names --label_names now; the evaluation file alone is read as the
    run read it (F1)."""
    rows = synthetic.make_rows(200, seed=3)
    hot = [{"text": r["text"], "label": [int(r["label"] == "NEGATIVE"), int(r["label"] == "POSITIVE")]} for r in rows]
    synthetic.write_jsonl(hot[:150], tmp_path / "train.jsonl")
    synthetic.write_jsonl(hot[150:], tmp_path / "validation.jsonl")
    out = str(tmp_path / "onehot")
    run_cli(tiny_args(tiny_model, str(tmp_path), out, problem_type="single_label_classification", num_train_epochs=1),
            how="python")
    recorded = read_json(os.path.join(out, "best", "best_metrics.json"))
    scored = str(tmp_path / "onehot_scored")
    proc = run_cli(["--eval_only", "--model_name_or_path", os.path.join(out, "best"), "--validation_file",
                    str(tmp_path / "validation.jsonl"), "--max_length", "64", "--output_dir", scored], how="python")
    assert "each is read as its class (the model is single-label)" in proc.stdout, proc.stdout[-2000:]
    assert_same_scores(results(scored), recorded, keys=("eval_accuracy", "eval_samples"))

    texts = tmp_path / "texts"
    texts.mkdir()
    synthetic.write_jsonl([dict(r, label=str(int(r["label"] == "POSITIVE"))) for r in rows[:150]],
                          texts / "train.jsonl")
    synthetic.write_jsonl([dict(r, label=str(int(r["label"] == "POSITIVE"))) for r in rows[150:]],
                          texts / "validation.jsonl")
    out = str(tmp_path / "numbers")
    run_cli(tiny_args(tiny_model, str(texts), out, label_names="NEGATIVE,POSITIVE", num_train_epochs=1), how="python")
    recorded = read_json(os.path.join(out, "best", "best_metrics.json"))
    flags = tiny_args(os.path.join(out, "best"), str(texts), str(tmp_path / "numbers_scored"), num_train_epochs=1)
    fails(flags + ["--eval_only"], str(tmp_path / "numbers_scored"), "the data's labels (0, 1) are not the model's",
          "they are numbers written as text, which --label_names reads as ids: pass the run's --label_names")
    metrics = validate_in_process(flags + ["--eval_only", "--label_names", "NEGATIVE,POSITIVE"])
    assert_same_scores(metrics, recorded, keys=("eval_accuracy", "eval_samples"))
    metrics = validate_in_process(["--eval_only", "--model_name_or_path", os.path.join(out, "best"),
                                   "--validation_file", str(texts / "validation.jsonl"), "--max_length", "64",
                                   "--output_dir", str(tmp_path / "numbers_alone")])
    assert_same_scores(metrics, recorded, keys=("eval_accuracy", "eval_samples"))

    # one-hot rows trained on that head (NEGATIVE, POSITIVE) with --label_names POSITIVE,NEGATIVE (reordered): the
    # positions are the names the run gave them, not the model's id order (audit49: 0.08 where the run scored 0.92)
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for name, part in (("train", hot[:150]), ("validation", hot[150:])):
        synthetic.write_jsonl([dict(r, label=r["label"][::-1]) for r in part], swapped / f"{name}.jsonl")
    reordered = str(tmp_path / "reordered")
    run_cli(tiny_args(os.path.join(out, "best"), str(swapped), reordered, from_scratch="false", num_train_epochs=4, learning_rate=3e-3,
                      label_names="POSITIVE,NEGATIVE", problem_type="single_label_classification"), how="python")
    recorded = read_json(os.path.join(reordered, "best", "best_metrics.json"))
    assert recorded["eval_accuracy"] > 0.7
    metrics = validate_in_process(["--eval_only", "--model_name_or_path", os.path.join(reordered, "best"),
                                   "--validation_file", str(swapped / "validation.jsonl"), "--max_length", "64",
                                   "--output_dir", str(tmp_path / "reordered_scored")])
    assert_same_scores(metrics, recorded, keys=("eval_accuracy", "eval_samples"))


def test_a_training_run_is_kept_out_of_the_folder_while_eval_only_scores(run, tmp_path):
    """--eval_only holds its --output_dir's lock while it scores: a training run started meanwhile (with
    --overwrite_output_dir) is refused, as it would be by another training run; its new best/ beside the scores of
    the model it replaced was left unsaid (audit58 c3). The lock goes when the scoring ends."""
    import loop

    out = str(tmp_path / "shared")
    shutil.copytree(run.out, out)
    scoring = loop.Loop(loop.parse_args(tiny_args(os.path.join(out, "best"), run.data, out, from_scratch=None,
                                                  label_names=HEAD) + ["--eval_only"]))
    scoring.setup_evaluation()
    train = tiny_args(run.model, run.data, out, num_train_epochs=1, max_train_samples=32, max_eval_samples=16,
                      overwrite_output_dir="true")
    p = run_cli(train, how="python", check=False)
    assert p.returncode == 2 and f"--output_dir '{out}' is in use by process {os.getpid()}" in p.stderr, p.stderr[-2000:]
    scoring.val_loop()
    scoring.finish()
    assert not os.path.exists(os.path.join(out, ".loop.lock"))
    assert run_cli(train, how="python", check=False).returncode == 0


@pytest.mark.slow
def test_eval_only_two_processes_score_each_extra_set_example_once(tiny_model, tiny_data, tmp_path):
    """--eval_only on 2 processes shards --extra_eval_files too: 37 rows scored 37 times, not 74."""
    out = str(tmp_path / "out")
    run_cli(tiny_args(tiny_model, tiny_data, out, num_train_epochs=1, max_train_samples=64), how="python")
    rows = synthetic.make_rows(37, seed=11)
    f = tmp_path / "odd.jsonl"
    synthetic.write_jsonl(rows, f)
    scored = str(tmp_path / "scored")
    common = ["--eval_only", "--model_name_or_path", os.path.join(out, "best"), "--validation_file",
              str(tiny_data / "validation.jsonl"), "--extra_eval_files", f"odd={f}",
              "--per_device_eval_batch_size", "8"]
    run_cli(common + ["--output_dir", scored], nproc=2, how="fork", timeout=300)
    two = json.load(open(os.path.join(scored, "eval_results.json")))
    run_cli(common + ["--output_dir", scored + "1"], how="python")
    one = json.load(open(os.path.join(scored + "1", "eval_results.json")))
    assert two["eval_samples"] == 200 and two["eval_odd_samples"] == 37, two
    assert two["eval_odd_accuracy"] == one["eval_odd_accuracy"]


def test_eval_only_drops_the_training_only_weight_column(tmp_path):
    """--eval_only ignores --weight_column (training only: the scored data need not have it; with a carved
    split the training file is read, and without the column the mutant refused the scoring)."""
    from loop import parse_args

    (tmp_path / "v.jsonl").write_text('{"text": "good", "label": "POSITIVE"}\n')
    cfg = parse_args(["--eval_only", "--model_name_or_path", str(tmp_path), "--validation_file", str(tmp_path / "v.jsonl"),
                      "--weight_column", "w", "--output_dir", str(tmp_path / "o")])
    assert cfg.weight_column is None


def test_training_args_hash_each_shard_of_a_pattern_by_its_own_bytes(tmp_path):
    """training_args.json's data_files: a pattern of shards records each shard's own size and sha256 (what
    --eval_only's same_files_as_run compares a file with), not one shard's for all (audit60 mutant)."""
    import hashlib
    from types import SimpleNamespace

    from loop.checkpoint import Checkpointer

    for i, text in enumerate(("a", "b c")):
        (tmp_path / f"train-{i}.jsonl").write_text(f'{{"text": "{text}", "label": {i}}}\n')
    cfg = SimpleNamespace(train_file=str(tmp_path / "train-*.jsonl"), validation_file=None, test_file=None,
                          extra_evals=lambda check_keys=True: [])
    hashes = Checkpointer.data_file_hashes(SimpleNamespace(cfg=cfg))["train_file"]
    want = {str(p): {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
            for p in sorted(tmp_path.glob("train-*.jsonl"))}
    assert hashes == want and len(want) == 2


def test_validate_of_a_loop_configured_to_train_is_one_line(tiny_model, tiny_data, tmp_path):
    """Loop(cfg).validate() with a training config scored, then died writing its predictions (AttributeError:
    'NoneType' object has no attribute 'ndim': the logits are kept for --eval_only only); refused now, before any
    work, naming --eval_only (audit63 k3)."""
    from loop import Loop, UserError, parse_args

    out = tmp_path / "train-config"
    with pytest.raises(UserError, match=r"validate\(\) scores a trained model as --eval_only does, and this Loop was "
                                        r"configured to train; configure it with --eval_only \(eval_only=True\), or "
                                        r"call fit\(\)"):
        Loop(parse_args(tiny_args(tiny_model, tiny_data, str(out)))).validate()
    assert not out.exists()


def test_eval_only_names_each_lora_option_it_ignores(tmp_path):
    """audit64 p8: `--eval_only --lora_r 8 --lora_alpha 4` warned that --lora_r was ignored and dropped --lora_alpha
    without a word."""
    from loop.config import parse_args

    with pytest.warns(UserWarning, match=r"trains nothing: --lora_r, --lora_alpha, --lora_target_modules are "
                                         r"ignored\.$"):
        cfg = parse_args(["--eval_only", "--model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path / "o"),
                          "--lora_r", "8", "--lora_alpha", "4", "--lora_target_modules", "q_proj"])
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules) == (None, None, None)
    # (review r2 F4: without --lora_r they were refused, advising to add --lora_r, which --eval_only ignores; a
    # --lora_dropout went unnamed)
    for dropout in ("0.3", "0"):  # (review r3 R4: 0 is a value given too)
        with pytest.warns(UserWarning, match=r"trains nothing: --lora_alpha, --lora_dropout are ignored\.$"):
            parse_args(["--eval_only", "--model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path / "o"),
                        "--lora_alpha", "4", "--lora_dropout", dropout])


def test_eval_only_names_report_to_which_it_ignores(tmp_path):
    """audit65 e2: --eval_only with --report_to tensorboard started no tracker and logged nothing, without a word;
    the scores go to eval_results.json (and a training run's YAML with its trackers still works)."""
    from loop.config import parse_args

    argv = ["--eval_only", "--model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path / "o")]
    with pytest.warns(UserWarning, match=r"trains nothing: --report_to is ignored\.$"):
        cfg = parse_args(argv + ["--report_to", "tensorboard"])
    assert cfg.report_to == "none"
    # (a tracker not installed here: a training YAML's, which it ignores; review r N1)
    from accelerate.tracking import get_available_trackers
    if "comet_ml" not in {str(getattr(t, "value", t)) for t in get_available_trackers()}:
        with pytest.warns(UserWarning, match=r"--report_to is ignored\.$"):
            assert parse_args(argv + ["--report_to", "comet_ml"]).report_to == "none"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none said for the default
        assert parse_args(argv + ["--report_to", "none"]).report_to == "none"
