"""Multi-label classification: each text has a set of labels (a list per row), possibly empty."""

import json
import os
import random

import numpy as np
import pytest

from conftest import evals, run_cli, tiny_args, train_logs
from loop import synthetic
from loop.labels import encode_labels, label_columns_as_lists, multi_hot_as_lists
from loop.splits import EVAL, TRAIN

ASPECTS = {"ACTING": {"actor", "actress", "cast"}, "STORY": {"plot", "story", "script", "ending"}}


def make_rows(n, seed, ids=False):
    """Texts of the synthetic vocabulary; labels: POSITIVE / NEGATIVE when such words occur (both, one or
    neither), ACTING / STORY when words of that aspect occur. As names, or as ids of NAMES."""
    rng = random.Random(seed)
    neutral = [w for w in synthetic.NEUTRAL if not any(w in words for words in ASPECTS.values())]
    rows = []
    for _ in range(n):
        words = rng.sample(neutral, 4)
        labels = []
        for name, pool in (("POSITIVE", synthetic.POSITIVE), ("NEGATIVE", synthetic.NEGATIVE)):
            if rng.random() < 0.5:
                words += rng.sample(pool, 2)
                labels.append(name)
        for name, pool in ASPECTS.items():
            if rng.random() < 0.4:
                words.append(rng.choice(sorted(pool)))
                labels.append(name)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": [NAMES.index(x) for x in labels] if ids else labels})
    return rows


NAMES = ["ACTING", "NEGATIVE", "POSITIVE", "STORY"]  # sorted: the order the loop gives names it sees


@pytest.fixture(scope="module")
def multi_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("multi_data")
    synthetic.write_jsonl(make_rows(800, 1), d / "train.jsonl")
    synthetic.write_jsonl(make_rows(200, 2), d / "validation.jsonl")
    return d


@pytest.fixture(scope="module")
def multi_run(tiny_model, multi_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("multi_run") / "out")
    proc = run_cli(tiny_args(tiny_model, multi_data, out, num_train_epochs=8, per_device_train_batch_size=8,
                             learning_rate=2e-3, logging_steps=50, metric="f1",
                             metrics="accuracy,precision,recall,matthews_correlation"), how="python")
    return out, proc


def test_multi_label_trains_and_scores_every_label(multi_run):
    out, proc = multi_run
    assert "labels ACTING, NEGATIVE, POSITIVE, STORY (multi-label)" in proc.stdout
    ev, logs = evals(out), train_logs(out)
    assert logs[-1]["loss"] < 0.5 * logs[0]["loss"]  # binary cross-entropy falls
    assert ev[-1]["eval_f1"] > 0.9 and ev[-1]["eval_accuracy"] > 0.6  # exact match of all four: chance is 1/16
    assert ev[-1]["eval_samples"] == 200 and ev[-1]["eval_loss"] < 0.3
    assert {"eval_precision", "eval_recall", "eval_matthews_correlation"} <= set(ev[-1])


def test_multi_label_best_is_a_sigmoid_pipeline_model_and_predict_lists_labels(multi_run, multi_data):
    import torch
    from transformers import pipeline

    out, _ = multi_run
    best = os.path.join(out, "best")
    with open(os.path.join(best, "config.json")) as f:
        assert json.load(f)["problem_type"] == "multi_label_classification"
    clf = pipeline("text-classification", model=best, device=-1)
    rows = make_rows(40, 3)
    scored = clf([r["text"] for r in rows], top_k=None)
    assert all(len(s) == 4 for s in scored)
    assert not all(abs(sum(x["score"] for x in s) - 1) < 1e-3 for s in scored)  # sigmoids, not a softmax
    found = [sorted(x["label"] for x in s if x["score"] >= 0.5) for s in scored]
    assert np.mean([f == sorted(r["label"]) for f, r in zip(found, rows)]) > 0.6

    proc = run_cli(["--model", best, rows[0]["text"], rows[1]["text"]], script="loop/predict.py", how="python")
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [x["labels"] for x in lines] == found[:2]
    assert list(lines[0]["scores"]) == NAMES and "label" not in lines[0]
    del torch


def test_multi_label_ids_empty_rows_and_mistakes(tiny_model, tmp_path, monkeypatch):
    """Lists of integer ids with --label_names; an empty list is a text with no label; a mix of lists
    and single labels, an unseen evaluation label and a Hub metric are refused in one line."""
    from loop import Loop, UserError, parse_args

    d = tmp_path / "ids"
    d.mkdir()
    train = make_rows(64, 5, ids=True)
    assert any(r["label"] == [] for r in train)
    synthetic.write_jsonl(train, d / "train.jsonl")
    synthetic.write_jsonl(make_rows(16, 6, ids=True), d / "validation.jsonl")
    args = tiny_args(tiny_model, d, str(tmp_path / "out"), num_train_epochs=1, label_names=",".join(NAMES))
    lp = Loop(parse_args(args))
    lp.fit()
    assert lp.data.multi_label and lp.data.label_names == NAMES
    hot = np.asarray(lp.data.train["labels"])
    assert hot.shape[1] == 4 and set(np.unique(hot)) <= {0.0, 1.0}

    def refused(train_rows, eval_rows, match, **over):
        e = tmp_path / f"bad{len(os.listdir(tmp_path))}"
        e.mkdir()
        synthetic.write_jsonl(train_rows, e / "train.jsonl")
        synthetic.write_jsonl(eval_rows, e / "validation.jsonl")
        with pytest.raises(UserError, match=match):
            Loop(parse_args(tiny_args(tiny_model, e, str(e / "out"), **over))).fit()

    names = make_rows(40, 7)
    single = [{"text": r["text"], "label": (r["label"] or ["STORY"])[0]} for r in make_rows(10, 8)]
    refused(names, single, "the evaluation labels are single names but the others are lists")
    refused(names, [{"text": "a plot", "label": ["GORE"]}], r"evaluation labels \['GORE'\] were never seen in training")
    from loop import scores

    monkeypatch.setattr(scores, "from_hub", lambda names, skip=(): False)  # as if it loaded: refused after the data
    refused(names, names[:8], "--metric/--metrics rouge: multi-label data is scored with accuracy, f1", metrics="rouge")


@pytest.mark.slow  # ~5 s: two runs
def test_multi_hot_rows_train_as_the_lists_of_names(tiny_model, tmp_path):
    """Multi-hot rows ([0, 1, 1, 0], as 0/1, 0.0/1.0 or true/false) were read as lists of ids, every row {0, 1}: a
    4-label task trained as 2 labels ('some absent', 'some present') with a high F1 and no word. Now the positions
    holding 1 are the labels: the same run, step for step, as the lists of names; without --label_names, LABEL_i."""
    rows = {split: make_rows(n, seed) for split, n, seed in (("train", 96, 11), ("validation", 32, 12))}

    def write(name, label):
        d = tmp_path / name
        d.mkdir()
        for split, data in rows.items():
            synthetic.write_jsonl([{"text": r["text"], "label": label(r["label"])} for r in data], d / f"{split}.jsonl")
        return d

    common = dict(num_train_epochs=1, per_device_train_batch_size=8, metric="f1", logging_steps=4)
    runs = {}
    for name, label, over in (("names", lambda x: x, {}),
                              ("ints", lambda x: [int(n in x) for n in NAMES], {"label_names": ",".join(NAMES)}),
                              ("bools", lambda x: [n in x for n in NAMES], {})):
        out = str(tmp_path / f"out_{name}")
        proc = run_cli(tiny_args(tiny_model, write(name, label), out, **common, **over), how="python")
        runs[name] = out
        if name != "names":
            assert "holds multi-hot rows of 4: each row's labels are the positions holding 1" in proc.stdout
    strip = lambda out: [{k: v for k, v in r.items() if k != "time"} for r in train_logs(out) + evals(out)]  # noqa: E731
    assert strip(runs["ints"]) == strip(runs["names"])  # the same labels in the same columns: the same run
    with open(os.path.join(runs["ints"], "best", "config.json")) as f:
        assert list(json.load(f)["id2label"].values()) == NAMES
    with open(os.path.join(runs["bools"], "best", "config.json")) as f:
        config = json.load(f)
    assert list(config["id2label"].values()) == ["LABEL_0", "LABEL_1", "LABEL_2", "LABEL_3"]
    assert config["problem_type"] == "multi_label_classification"
    assert [r["loss"] for r in train_logs(runs["bools"])] == [r["loss"] for r in train_logs(runs["names"])]

    bad = write("short", lambda x: [int(n in x) for n in NAMES])
    proc = run_cli(tiny_args(tiny_model, bad, str(tmp_path / "x"), label_names="A,B,C"), how="python", check=False)
    assert proc.returncode == 2 and "error: the label column 'label' holds multi-hot rows of 4 values, but " \
        "--label_names names 3 labels (A, B, C); give one name per position." in proc.stderr
    # one-hot pairs repeat no value, but as id lists every text had both labels (a random model scored 1.0)
    import datasets

    from loop.config import TrainConfig

    raw = {"train": datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [[1, 0], [0, 1], [1, 0]]})}
    assert multi_hot_as_lists(TrainConfig(), raw) == 2 and list(raw["train"]["label"]) == [[0], [1], [0]]
    raw = {"train": datasets.Dataset.from_dict({"text": ["a", "b"], "label": [[0, 1], [2]]})}  # id lists: kept
    assert multi_hot_as_lists(TrainConfig(), raw) == 0 and list(raw["train"]["label"]) == [[0, 1], [2]]
    raw = {"train": datasets.Dataset.from_dict({"text": ["a", "b"], "label": [[3, 3], [1]]})}  # a label said twice
    assert multi_hot_as_lists(TrainConfig(), raw) == 0
    repeated = write("repeated", lambda x: [int(n in x) for n in NAMES][: 2 + len(x) % 3])  # multi-hot, uneven
    proc = run_cli(tiny_args(tiny_model, repeated, str(tmp_path / "y")), how="python", check=False)
    assert proc.returncode == 2 and "label list in row 0" in proc.stderr and "repeats an id" in proc.stderr


def one_hot_encoded(train, evaluation, **flags):
    """Labels as data.prepare reads them (multi-hot rows first): the names and the splits' 'labels' columns."""
    import datasets

    from loop.config import TrainConfig

    cfg = TrainConfig(**flags)
    raw = {split: datasets.Dataset.from_dict({"text": [f"film {i}" for i in range(len(labels))], "label": labels})
           for split, labels in ((TRAIN, train), (EVAL, evaluation))}
    width = multi_hot_as_lists(cfg, raw, cfg.label_list())
    names = encode_labels(cfg, raw, given=[f"LABEL_{i}" for i in range(width)] if width and not cfg.label_list()
                          else None)
    return names, [list(raw[split]["labels"]) for split in (TRAIN, EVAL)]


def test_one_hot_rows_are_said_to_look_single_label_and_read_as_classes_when_asked(capsys):
    """One-hot rows ([0, 1, 0], Keras' to_categorical) and one-element lists ([2]) hold one class per text. Read as
    multi-hot they trained a multi-label model whose texts often get no label at all ("labels": [] where every
    sigmoid is under 0.5), said nowhere, and --problem_type single_label_classification was refused. Now a line
    says they look single-label, and that flag reads each row as its class."""
    from loop.errors import UserError

    hot = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]]
    names, (train, _) = one_hot_encoded(hot, hot[:2], label_names="zeta,alpha,mid")
    assert names == ["zeta", "alpha", "mid"] and train[0] == [1.0, 0.0, 0.0]  # multi-label, as the data says
    hint = ("data: every training text has exactly one label: this looks like single-label data (one-hot rows, [2]), "
            "trained here as multi-label; to train it as classes (every text gets one), pass --problem_type "
            "single_label_classification")
    assert hint in capsys.readouterr().out
    single = dict(problem_type="single_label_classification")
    assert one_hot_encoded(hot, hot[:2], label_names="zeta,alpha,mid", **single) == \
        (["zeta", "alpha", "mid"], [[0, 1, 2, 1], [0, 1]])
    assert hint not in capsys.readouterr().out
    assert one_hot_encoded(hot, [[0, 0, 1]], **single) == (["LABEL_0", "LABEL_1", "LABEL_2"], [[0, 1, 2, 1], [2]])
    assert one_hot_encoded([[2], [0], [1]], [[1]], **single) == (["LABEL_0", "LABEL_1", "LABEL_2"], [[2, 0, 1], [1]])
    assert one_hot_encoded([["b"], ["a"]], [["a"]], **single) == (["a", "b"], [[1, 0], [0]])
    with pytest.raises(UserError, match=r"--problem_type single_label_classification, but the evaluation label column "
                                        r"'label' holds lists, and row 0 has 0 labels \(none\); use "
                                        r"multi_label_classification for a set of labels per text, or one label per "
                                        r"text\."):
        one_hot_encoded(hot, [[0, 0, 0]], **single)
    one_hot_encoded([[2], [0, 1]], [[1]])  # multi-label data: no hint
    one_hot_encoded([[2], [0]], [[1]], problem_type="multi_label_classification")  # asked for
    assert "exactly one label" not in capsys.readouterr().out


@pytest.mark.slow  # two training runs
def test_one_hot_rows_with_single_label_train_as_the_class_names(tiny_model, tmp_path):
    """--problem_type single_label_classification over one-hot rows is the run on the class names, step for step,
    and best/ is a single-label model: predict.py gives every text a class."""
    rows = {split: synthetic.make_rows(n, seed) for split, n, seed in (("train", 96, 11), ("validation", 32, 12))}
    classes = ["NEGATIVE", "POSITIVE"]  # the order the names run sorts them in: the same head rows
    runs = {}
    for name, label, over in (("names", lambda x: x, {}),
                              ("hot", lambda x: [int(x == c) for c in classes],
                               {"label_names": ",".join(classes), "problem_type": "single_label_classification"})):
        d = tmp_path / name
        d.mkdir()
        for split, data in rows.items():
            synthetic.write_jsonl([{"text": r["text"], "label": label(r["label"])} for r in data], d / f"{split}.jsonl")
        runs[name] = str(tmp_path / f"out_{name}")
        run_cli(tiny_args(tiny_model, d, runs[name], num_train_epochs=1, per_device_train_batch_size=8,
                          logging_steps=4, **over), how="python")
    strip = lambda out: [{k: v for k, v in r.items() if k != "time"} for r in train_logs(out) + evals(out)]  # noqa: E731
    with open(os.path.join(runs["hot"], "best", "config.json")) as f:
        config = json.load(f)
    assert config["problem_type"] == "single_label_classification"
    assert list(config["id2label"].values()) == classes
    assert strip(runs["hot"]) == strip(runs["names"])
    proc = run_cli(["--model", os.path.join(runs["hot"], "best"), "a plot"], script="loop/predict.py", how="python")
    assert json.loads(proc.stdout.strip().splitlines()[-1])["label"] in classes


def test_multi_label_class_label_lists_keep_their_names_and_ids_are_bounded(tmp_path):
    """A List(ClassLabel) column (go_emotions ships so; Dataset.to_parquet keeps it) names its ids: best/ must
    say 'anger', not LABEL_0. Lists of bare ids with one stray id of 5000 would build a 5001-wide head."""
    import datasets

    from loop import UserError, parse_args
    from loop.splits import TRAIN
    from loop.labels import encode_multi_labels, _label_kind

    features = datasets.Features({"text": datasets.Value("string"),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=["anger", "joy", "love"]))})
    rows = {"text": ["a", "b", "c"], "labels": [[0, 2], [1], []]}
    path = tmp_path / "emotions.parquet"
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    cfg = parse_args(["--output_dir", "x", "--label_column", "labels"])
    raw = {TRAIN: ds}
    names = encode_multi_labels(cfg, raw, {TRAIN: _label_kind(ds, "labels", TRAIN)})
    assert names == ["anger", "joy", "love"] and raw[TRAIN]["labels"] == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]

    stray = {TRAIN: datasets.Dataset.from_dict({"text": ["a", "b"], "label": [[0, 1], [5000]]})}
    with pytest.raises(UserError, match="label ids go up to 5000 but only 3 distinct ids appear"):
        encode_multi_labels(parse_args(["--output_dir", "x"]), stray, {TRAIN: "list"})


def write_rows(d, label, **splits):
    """train.jsonl and validation.jsonl in folder `d` of make_rows' texts, each row's label as `label(names)`
    gives it: {column: value} entries are the row's columns, anything else its "label"."""
    d.mkdir()
    for split, (n, seed) in splits.items():
        rows = []
        for r in make_rows(n, seed):
            value = label(r["label"])
            rows.append({"text": r["text"], **(value if isinstance(value, dict) else {"label": value})})
        synthetic.write_jsonl(rows, d / f"{split}.jsonl")
    return d


def best_record(out):
    with open(os.path.join(out, "best", "best_metrics.json")) as f:
        return json.load(f)


def test_multi_label_picks_by_f1_without_metric_and_a_resume_keeps_its_checkpoints(tiny_model, tmp_path):
    """--metric's default, accuracy, is for multi-label data the exact match of a whole label set: noisy and harsh
    with many labels. Without --metric such data picks best/ by (micro) f1, said at the start, and logs f1 alone;
    --metric accuracy still picks by accuracy. A resume never switches: a checkpoint of an earlier loop (accuracy,
    its default, and nothing recorded about it) goes on with accuracy, one of this default goes on with f1, and
    asking for the other metric on resume is refused as before. --eval_only of a multi-label model scores f1 too."""
    data = write_rows(tmp_path / "data", lambda x: x, train=(96, 11), validation=(32, 12))
    common = dict(num_train_epochs=2, per_device_train_batch_size=8, learning_rate=2e-3, logging_steps=4,
                  checkpointing_steps=12)
    said = "metric: f1 (micro-averaged over every text's decision on each label), the default for multi-label data"
    runs = {}
    for name, over in (("default", {}), ("accuracy", {"metric": "accuracy"})):
        runs[name] = str(tmp_path / name)
        proc = run_cli(tiny_args(tiny_model, data, runs[name], **common, **over), how="python")
        assert (said in proc.stdout) == (name == "default")
    default, accuracy = evals(runs["default"]), evals(runs["accuracy"])
    keys = lambda records: [set(e) - {"step", "epoch"} for e in records]  # noqa: E731
    assert keys(default) == [{"eval_f1", "eval_loss", "eval_samples"}] * 2
    assert keys(accuracy) == [{"eval_accuracy", "eval_loss", "eval_samples"}] * 2
    record = best_record(runs["default"])
    assert "eval_f1" in record and "eval_accuracy" not in record
    assert record["step"] == max(default, key=lambda e: e["eval_f1"])["step"]  # (the first of equals)
    with open(os.path.join(runs["default"], "best", "training_args.json")) as f:
        assert json.load(f)["options"]["metric"] == "f1"
    assert "eval_accuracy" in best_record(runs["accuracy"])

    def resume(name, checkpoint, **over):
        out = str(tmp_path / name)
        proc = run_cli(tiny_args(tiny_model, data, out, **common, resume_from_checkpoint=checkpoint, **over),
                       how="python", check=False)
        return out, proc

    # an earlier loop's checkpoint of this run: the config it records is --metric accuracy's (its default then),
    # and it says nothing of how the metric was chosen
    old = os.path.join(runs["accuracy"], "checkpoints", "step_12")
    path = os.path.join(old, "loop_state.json")
    with open(path) as f:
        state = json.load(f)
    assert state.pop("metric_defaulted") is False and state["config"]["metric"] == "accuracy"
    with open(path, "w") as f:
        json.dump(state, f)
    out, proc = resume("resumed_old", old)
    assert proc.returncode == 0, proc.stderr
    assert "metric: accuracy (exact match of whole label sets), as the resumed checkpoint picked by it" in proc.stdout
    assert evals(out) == accuracy and "eval_accuracy" in best_record(out)  # step for step the run it resumes

    new = os.path.join(runs["default"], "checkpoints", "step_12")
    out, proc = resume("resumed_new", new)
    assert proc.returncode == 0 and said in proc.stdout
    assert evals(out) == default
    _, proc = resume("resumed_other", new, metric="accuracy")
    assert proc.returncode == 2 and "(--metric 'f1' → 'accuracy')" in proc.stderr
    # one that named --metric f1, resumed without it: what this run picks by anyway (was refused, 'f1' → 'accuracy')
    path = os.path.join(new, "loop_state.json")
    with open(path) as f:
        state = json.load(f)
    state["metric_defaulted"] = False
    with open(path, "w") as f:
        json.dump(state, f)
    out, proc = resume("resumed_named", new)
    assert proc.returncode == 0, proc.stderr
    assert evals(out) == default

    scored = str(tmp_path / "scored")
    proc = run_cli(["--eval_only", "--model_name_or_path", os.path.join(runs["default"], "best"), "--validation_file",
                    str(data / "validation.jsonl"), "--output_dir", scored], how="python")
    assert said in proc.stdout
    with open(os.path.join(scored, "eval_results.json")) as f:
        results = json.load(f)
    assert results["eval_f1"] == record["eval_f1"] and results["eval_loss"] == record["eval_loss"]
    assert "eval_accuracy" not in results


def test_a_variant_with_its_own_compute_metrics_keeps_accuracy_as_its_default(tiny_model, tmp_path, capsys):
    """A variant's compute_metrics may give no f1: switched to it by default, such a run stopped after its first
    epoch ("--metric f1: the evaluation gave no eval_f1", a flag never given). Its default stays accuracy."""
    from loop import Loop, parse_args

    class Jaccard(Loop):
        own_metrics = {"jaccard": True}

        def compute_metrics(self, predictions, references, logits=None):
            p, r = predictions.numpy().astype(bool), references.numpy().astype(bool)
            union = (p | r).sum(1)
            return {"accuracy": float((p == r).all(1).mean()),
                    "jaccard": float(np.where(union, (p & r).sum(1) / np.maximum(union, 1), 1).mean())}

    data = write_rows(tmp_path / "data", lambda x: x, train=(32, 11), validation=(16, 12))
    out = str(tmp_path / "out")
    Jaccard(parse_args(tiny_args(tiny_model, data, out, num_train_epochs=2, per_device_train_batch_size=8,
                                 metrics="accuracy,jaccard"))).fit()
    assert "metric: f1" not in capsys.readouterr().out
    assert [set(e) - {"step", "epoch"} for e in evals(out)] == [{"eval_accuracy", "eval_jaccard", "eval_loss",
                                                                 "eval_samples"}] * 2
    assert "eval_accuracy" in best_record(out)


def test_the_multi_label_default_metric_leaves_single_labels_and_given_metrics_alone():
    """The config's part: single-label data never calls score_as_multi_label and keeps accuracy; a --metric given
    (accuracy too) stays; a resume takes its checkpoint's metric only where both left --metric out."""
    from loop import parse_args

    cfg = parse_args(["--output_dir", "x"])
    assert (cfg.metric, cfg.metric_defaulted, cfg.metric_list()) == ("accuracy", True, ["accuracy"])
    cfg.keep_checkpoint_metric("f1", defaulted=False)  # a single-label checkpoint of --metric f1: compared, refused
    assert cfg.metric == "accuracy"
    assert cfg.score_as_multi_label().startswith("metric: f1") and cfg.metric_list() == ["f1"]
    cfg = parse_args(["--output_dir", "x", "--metrics", "accuracy,recall"])
    cfg.score_as_multi_label()
    assert cfg.metric_list() == ["f1", "accuracy", "recall"]
    given = parse_args(["--output_dir", "x", "--metric", "accuracy"])
    given.keep_checkpoint_metric("f1", defaulted=True)
    assert given.score_as_multi_label() is None and given.metric == "accuracy" and not given.metric_defaulted
    named = parse_args(["--output_dir", "x"])  # a multi-label checkpoint of --metric f1: this run's metric anyway
    named.keep_checkpoint_metric("f1", defaulted=False, multi_label=True)
    assert named.metric == "f1"
    resumed = parse_args(["--output_dir", "x"])
    resumed.keep_checkpoint_metric("f1", defaulted=True)
    assert resumed.metric == "f1" and resumed.score_as_multi_label(resumed=True).startswith("metric: f1")
    assert parse_args(["--output_dir", "x", "--problem_type", "regression"]).metric == "mse"


def test_label_columns_of_0_1_train_as_the_lists_of_names(tiny_model, tmp_path):
    """Jigsaw's toxic comments give a 0/1 column per label (toxic, obscene, insult, ...); --label_column toxic,obscene
    failed with "not in the training data". A comma list of columns is now multi-label data, a label per column
    named after it: the same run, step for step, as the lists of names; best/ records the columns, which a bare
    --eval_only reads again, and predict.py lists the labels as for any multi-label model."""
    splits = dict(train=(96, 11), validation=(32, 12))
    names = write_rows(tmp_path / "names", lambda x: x, **splits)
    columns = write_rows(tmp_path / "columns", lambda x: {n: int(n in x) for n in NAMES}, **splits)
    common = dict(num_train_epochs=2, per_device_train_batch_size=8, learning_rate=2e-3, logging_steps=4)
    runs = {"names": str(tmp_path / "out_names"), "columns": str(tmp_path / "out_columns")}
    run_cli(tiny_args(tiny_model, names, runs["names"], **common), how="python")
    proc = run_cli(tiny_args(tiny_model, columns, runs["columns"], label_column=",".join(NAMES), **common),
                   how="python")
    assert "labels ACTING, NEGATIVE, POSITIVE, STORY (multi-label)" in proc.stdout
    logs = train_logs(runs["columns"])
    assert logs[-1]["loss"] < logs[0]["loss"]
    strip = lambda out: [{k: v for k, v in r.items() if k != "time"} for r in train_logs(out) + evals(out)]  # noqa: E731
    assert strip(runs["columns"]) == strip(runs["names"])
    best = os.path.join(runs["columns"], "best")
    with open(os.path.join(best, "config.json")) as f:
        config = json.load(f)
    assert config["problem_type"] == "multi_label_classification" and list(config["id2label"].values()) == NAMES
    record = best_record(runs["columns"])
    assert record["label_column"] == "ACTING,NEGATIVE,POSITIVE,STORY"

    scored = str(tmp_path / "scored")
    proc = run_cli(["--eval_only", "--model_name_or_path", best, "--validation_file",
                    str(columns / "validation.jsonl"), "--output_dir", scored], how="python")
    assert "--label_column ACTING,NEGATIVE,POSITIVE,STORY (from its best_metrics.json" in proc.stdout
    with open(os.path.join(scored, "eval_results.json")) as f:
        results = json.load(f)
    assert results["eval_f1"] == record["eval_f1"] and results["eval_loss"] == record["eval_loss"]
    assert results["data"]["label_column"] == record["label_column"]
    with open(os.path.join(scored, "eval_predictions.jsonl")) as f:
        first = json.loads(f.readline())
    assert first["row"] == 0 and first["labels"] == sorted(make_rows(32, 12)[0]["label"])
    # some of the model's columns: the others would count as absent everywhere (f1 0.56 -> 0.34, silently)
    proc = run_cli(["--eval_only", "--model_name_or_path", best, "--validation_file", str(columns / "validation.jsonl"),
                    "--label_column", "ACTING,STORY", "--output_dir", str(tmp_path / "part")], how="python", check=False)
    assert proc.returncode == 2 and "--label_column 'ACTING,STORY' names 2 of the model's 4 labels; NEGATIVE, " \
        "POSITIVE would count as absent from every text" in proc.stderr and "(--label_column " \
        "ACTING,NEGATIVE,POSITIVE,STORY)" in proc.stderr

    proc = run_cli(["--model", best, "a plot"], script="loop/predict.py", how="python")
    assert list(json.loads(proc.stdout.strip().splitlines()[-1])["scores"]) == NAMES

    bad = write_rows(tmp_path / "bad", lambda x: {n: int(n in x) + (n == "STORY" and "POSITIVE" in x) for n in NAMES},
                     **splits)
    proc = run_cli(tiny_args(tiny_model, bad, str(tmp_path / "x"), label_column=",".join(NAMES)), how="python",
                   check=False)
    assert proc.returncode == 2 and "column 'STORY' holds 2; each label column says whether its label applies" \
        in proc.stderr


def label_columns_encoded(columns, train, evaluation=None, **flags):
    """What data.prepare makes of label columns: the label names and the splits' multi-hot 'labels' rows."""
    import datasets

    from loop.config import TrainConfig

    cfg = TrainConfig(label_column=columns, **flags)
    raw = {split: datasets.Dataset.from_dict({"text": [f"film {i}" for i in range(len(rows))],
                                              **{k: [r[k] for r in rows] for k in rows[0]}})
           for split, rows in ((TRAIN, train), (EVAL, evaluation or train))}
    label_columns_as_lists(cfg, raw)
    names = encode_labels(cfg, raw, given=cfg.label_columns())
    return names, [list(raw[split]["labels"]) for split in (TRAIN, EVAL)]


def test_label_columns_keep_their_order_and_refuse_what_is_not_0_1():
    """The labels are the columns in the order given (not sorted), each 0/1, 0.0/1.0 or false/true; a missing
    column, another value (a 2, a text, a missing one) and --label_names beside them are refused in one sentence
    naming the column and the row; the option is spelled one way (a resume compares it) and a YAML list works."""
    from loop import UserError, parse_args

    rows = [{"zeta": 1, "alpha": 0.0, "mid": False}, {"zeta": 0, "alpha": 1.0, "mid": True}]
    assert label_columns_encoded("zeta,alpha,mid", rows) == \
        (["zeta", "alpha", "mid"], [[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]] * 2)
    assert label_columns_encoded("mid,zeta", rows)[0] == ["mid", "zeta"]
    cases = [({"zeta": 2}, "--label_column 'zeta,alpha,mid': training row 1 of column 'zeta' holds 2; each label "
                           "column says whether its label applies to the text, as the number 0 or 1 (or false/true)."),
             ({"zeta": None}, "training row 1 of column 'zeta' holds no value; each label"),
             ({"alpha": 0.5}, "training row 1 of column 'alpha' holds 0.5; each label")]
    for change, message in cases:
        with pytest.raises(UserError) as e:
            label_columns_encoded("zeta,alpha,mid", [rows[0], {**rows[1], **change}])
        assert message in str(e.value)
    with pytest.raises(UserError, match="training row 0 of column 'alpha' holds the text '0'; each label"):
        label_columns_encoded("zeta,alpha,mid", [{**r, "alpha": str(int(r["alpha"]))} for r in rows])
    with pytest.raises(UserError, match=r"^--label_column 'zeta,beta,gamma': beta, gamma are not in the evaluation "
                                        r"data; its columns are: 'text', 'zeta'\.$"):
        label_columns_encoded("zeta,beta,gamma", [{"zeta": 1, "beta": 0, "gamma": 1}], [{"zeta": 1}])
    with pytest.raises(UserError, match="--label_names names the labels, but --label_column 'zeta,mid' names several "
                                        "columns"):
        label_columns_encoded("zeta,mid", rows, label_names="a,b")
    assert parse_args(["--output_dir", "x", "--label_column", "toxic, obscene"]).label_column == "toxic,obscene"
    for bad, match in (("toxic,,insult", "must be one column, or for multi-label data several distinct"),
                       ("toxic,toxic", "must be one column"),
                       ("text,toxic", "--text_column 'text' is also one of the columns of --label_column")):
        with pytest.raises(UserError, match=match):
            parse_args(["--output_dir", "x", "--label_column", bad])
    assert parse_args(["--output_dir", "x"]).label_columns() is None


def test_label_columns_from_a_yaml_list(tmp_path):
    from loop import parse_args

    path = tmp_path / "c.yaml"
    path.write_text("output_dir: x\nlabel_column: [toxic, obscene]\n")
    assert parse_args(["--config", str(path)]).label_column == "toxic,obscene"


def test_a_label_applies_only_where_its_logit_is_above_zero():
    """audit61 mutant: a multi-label prediction turns a label on where its sigmoid passes 0.5 (its logit above 0),
    as --eval_only's report() and loop-predict decide: a logit of exactly 0 is off; references round to 0/1."""
    import torch

    from loop import scores

    logits = torch.tensor([[0.0, 2.5, -1.0], [1e-6, -1e-6, 0.0]])
    predictions, references = scores.decide(logits, torch.tensor([[0.2, 0.9, 1.0], [1.0, 0.0, 0.4]]), multi_label=True)
    assert predictions.tolist() == [[0, 1, 0], [1, 0, 0]] and references.tolist() == [[0, 1, 1], [1, 0, 0]]
    report = scores.report(logits.numpy(), references.numpy(), ["a", "b", "c"], multi_label=True)["per_class"]
    assert [report[n]["support"] for n in "abc"] == [1, 1, 1]
    assert [report[n]["recall"] for n in "abc"] == [1.0, 1.0, 0.0]


def test_multi_label_scores_closed_form():
    from loop.scores import multi_label

    p = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 1, 1]])
    r = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0], [1, 1, 1]])
    tp, fp, fn = 5, 1, 1  # pooled over the 12 example-label decisions
    got = multi_label(["accuracy", "f1", "precision", "recall", "matthews_correlation"], p, r)
    tn = 12 - tp - fp - fn
    mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert got == pytest.approx({"accuracy": 0.5, "f1": 2 * tp / (2 * tp + fp + fn), "precision": tp / (tp + fp),
                                 "recall": tp / (tp + fn), "matthews_correlation": mcc})


@pytest.mark.slow
def test_multi_label_with_two_processes(tiny_model, multi_data, tmp_path):
    """DDP: the trial pass takes real multi-hot rows (no problem_type fixed to single-label); every
    evaluation example is scored once."""
    out = str(tmp_path / "out")
    proc = run_cli(tiny_args(tiny_model, multi_data, out, num_train_epochs=12, per_device_train_batch_size=8,
                             learning_rate=2e-3, max_eval_samples=101, metric="f1"), nproc=2, how="fork")
    assert "find_unused_parameters on" not in proc.stdout + proc.stderr  # the trial pass went through
    ev = evals(out)
    assert [e["eval_samples"] for e in ev] == [101] * 12 and ev[-1]["eval_loss"] < 0.7 * ev[0]["eval_loss"]
    # 0.89 here (0.8 at epoch 5); always predicting every label scores about 0.62 (each is on ~45% of the texts).
    # (Batches of 4 x 8 epochs scored 0.78, then 0.68 once each process drew its own dropout: too close to call.)
    assert max(e["eval_f1"] for e in ev) > 0.8
