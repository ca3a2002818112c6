"""Data that loads without complaint but would train or score the wrong thing: label ids whose
meaning is their ClassLabel's names, text columns that hold no text, labels a reader cannot tell
apart, rows merged by a stray quote, splits that end up with one class. Each must be mapped right
or named in one line (an error, or a warning when the data may be meant)."""

import glob
import json
import os
import re
import warnings

import pytest

from conftest import evals, read_jsonl, run_cli, synthetic, tiny_args
from test_errors import check_user_error
from loop import Loop, UserError, parse_args
from loop import data as D
from loop import file_checks
from loop.config import TrainConfig
from loop.labels import (_is_int_text, booleans_as_names, check_final_splits, encode_labels, eval_only_labels,
                         label_reading, multi_hot_as_lists, own_number_order)
from loop.splits import CUT, EVAL, TEST, TRAIN

CLASSES = ["NEGATIVE", "POSITIVE"]


def features(names, text="string"):
    import datasets

    return datasets.Features({"text": datasets.Value(text), "label": datasets.ClassLabel(names=names)})


def rows_as_classlabel(rows, names):
    """Rows with string labels as a Dataset whose label is a ClassLabel listing `names` in that order."""
    import datasets

    return datasets.Dataset.from_list([{"text": r["text"], "label": names.index(r["label"])} for r in rows],
                                      features=features(names))


def splits(train, evaluation):
    import datasets

    return datasets.DatasetDict({TRAIN: train, EVAL: evaluation})


def plain(labels, texts=None):
    import datasets

    return datasets.Dataset.from_dict({"text": texts or [f"film {i}" for i in range(len(labels))], "label": labels})


# ---------------------------------------------------------------- ClassLabel ids mean their own names
def test_evaluation_classlabel_in_another_order_is_mapped_by_name():
    """A Hub export (or a parquet written by datasets) whose ClassLabel lists the same names in
    another order: its id 0 is POSITIVE. Taken as ids, every evaluation label was flipped."""
    rows = [{"text": "a", "label": "NEGATIVE"}, {"text": "b", "label": "POSITIVE"}, {"text": "c", "label": "POSITIVE"}]
    raw = splits(rows_as_classlabel(rows, CLASSES), rows_as_classlabel(rows, ["POSITIVE", "NEGATIVE"]))
    assert raw[EVAL]["label"] == [1, 0, 0]  # the file's own ids
    assert encode_labels(TrainConfig(), raw) == CLASSES
    assert raw[TRAIN]["labels"] == raw[EVAL]["labels"] == [0, 1, 1]

    # an evaluation class training does not know is named, not scored as some other id
    other = rows_as_classlabel([{"text": "a", "label": "NEUTRAL"}, {"text": "b", "label": "POSITIVE"}],
                               ["NEUTRAL", "POSITIVE"])
    with pytest.raises(UserError, match="evaluation label column's classes NEUTRAL are not among the training classes"):
        encode_labels(TrainConfig(), splits(rows_as_classlabel(rows, CLASSES), other))


def test_label_names_over_a_classlabel_match_by_name_rename_by_position_or_refuse_a_mix():
    rows = [{"text": "a", "label": "NEGATIVE"}, {"text": "b", "label": "POSITIVE"}]

    # the same names in another order: ids follow --label_names, each row keeps its class
    raw = splits(rows_as_classlabel(rows, CLASSES), rows_as_classlabel(rows, CLASSES))
    assert encode_labels(TrainConfig(label_names="positive,negative"), raw) == ["positive", "negative"]
    assert raw[TRAIN]["labels"] == raw[EVAL]["labels"] == [1, 0]

    # new names (IMDb's neg/pos shown as NEGATIVE/POSITIVE): a rename by position
    raw = splits(rows_as_classlabel(rows, CLASSES), rows_as_classlabel(rows, CLASSES))
    assert encode_labels(TrainConfig(label_names="neg,pos"), raw) == ["neg", "pos"]
    assert raw[TRAIN]["labels"] == [0, 1]

    # a rename that hands one class's name to another class
    raw = splits(rows_as_classlabel(rows, CLASSES), rows_as_classlabel(rows, CLASSES))
    with pytest.raises(UserError, match="giving 'NEGATIVE' to a class other than id 0 'NEGATIVE'"):
        encode_labels(TrainConfig(label_names="bad,NEGATIVE"), raw)


def test_label_names_reordering_a_multi_label_classlabel_keep_each_rows_labels():
    """go_emotions-style List(ClassLabel): --label_names in another order moves the columns by name."""
    import datasets

    f = datasets.Features({"text": datasets.Value("string"), "label": datasets.List(datasets.ClassLabel(names=["a", "b", "c"]))})
    ds = datasets.Dataset.from_list([{"text": "x", "label": [0]}, {"text": "y", "label": [1, 2]}], features=f)
    raw = splits(ds, ds)
    assert encode_labels(TrainConfig(label_names="c,a,b"), raw) == ["c", "a", "b"]
    assert [list(r) for r in raw[TRAIN]["labels"]] == [[0, 1, 0], [1, 0, 1]]  # [a] and [b, c]


def test_multi_label_classlabels_in_another_order_or_names_on_one_side_are_compared_by_name():
    """An evaluation List(ClassLabel) listing the names in another order was read with the training
    ids (48 of 100 rows got the wrong label set); names as text beside a List(ClassLabel) were refused
    as 'mixes names and integer ids'."""
    import datasets

    def ml(rows, names):
        f = datasets.Features({"text": datasets.Value("string"), "label": datasets.List(datasets.ClassLabel(names=names))})
        return datasets.Dataset.from_list([{"text": "t", "label": [names.index(n) for n in r]} for r in rows], features=f)

    rows = [["ACTING"], ["FILM", "POS"], []]
    order, other = ["ACTING", "FILM", "POS"], ["POS", "FILM", "ACTING"]
    want = [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    for evaluation in (ml(rows, other), datasets.Dataset.from_dict({"text": ["t"] * 3, "label": rows})):
        raw = splits(ml(rows, order), evaluation)
        assert encode_labels(TrainConfig(), raw) == order  # the training ClassLabel's order
        assert [list(r) for r in raw[EVAL]["labels"]] == [list(r) for r in raw[TRAIN]["labels"]] == want


def test_multi_label_splits_without_any_label_and_blank_names():
    import datasets

    def lists(rows):
        return datasets.Dataset.from_dict({"text": ["t"] * len(rows), "label": rows})

    raw = splits(lists([[], []]), lists([["A"]]))
    names = encode_labels(TrainConfig(label_names="A,B"), raw)
    with pytest.raises(UserError, match="no training example has any label"):
        check_final_splits(raw, names, "multi")
    raw = splits(lists([["A"], ["B"]]), lists([[], []]))
    names = encode_labels(TrainConfig(), raw)
    with pytest.warns(UserWarning, match="no evaluation example has any label"):
        check_final_splits(raw, names, "multi")
    with pytest.raises(UserError, match="label list in row 1 holds ''"):
        encode_labels(TrainConfig(), splits(lists([["A"], ["B", ""]]), lists([["A"]])))
    # a CSV cannot hold lists: list-looking text would make every combination a class
    with pytest.raises(UserError, match="holds text that looks like lists .* write JSON lines or Parquet"):
        encode_labels(TrainConfig(), splits(plain(['["A", "B"]', "['A']", "[]"]), plain(["[]"])))


def test_classlabel_on_one_side_and_names_on_the_other_are_compared_by_name():
    rows = [{"text": "a", "label": "NEGATIVE"}, {"text": "b", "label": "POSITIVE"}, {"text": "c", "label": "NEGATIVE"}]
    reversed_ = ["POSITIVE", "NEGATIVE"]
    raw = splits(plain([r["label"] for r in rows]), rows_as_classlabel(rows, reversed_))
    assert encode_labels(TrainConfig(), raw) == CLASSES
    assert raw[EVAL]["labels"] == [0, 1, 0]

    raw = splits(rows_as_classlabel(rows, reversed_), plain([r["label"] for r in rows]))
    assert encode_labels(TrainConfig(), raw) == reversed_
    assert raw[EVAL]["labels"] == raw[TRAIN]["labels"] == [1, 0, 1]


def test_ids_named_by_label_names_beside_a_classlabel_are_compared_by_name():
    """Training labels as plain ids named by --label_names (0 = POSITIVE), an evaluation file whose ClassLabel
    names its own ids (0 = NEGATIVE, a Hub export): its ids were taken as they are, every evaluation label
    flipped (a model at 0.95 scored 0.05, best/ kept the worst weights). Names the ids' numbering cannot
    contradict ('0', '1': a ClassLabel made with num_classes) keep the ids; names --label_names lacks are refused."""
    import datasets

    truth = ["POSITIVE", "NEGATIVE", "NEGATIVE"]
    cfg = TrainConfig(label_names="POSITIVE,NEGATIVE")
    raw = splits(plain([0, 1, 1]), rows_as_classlabel([{"text": t, "label": t} for t in truth], CLASSES))
    assert raw[EVAL]["label"] == [1, 0, 0]  # the file's own ids: 0 is NEGATIVE there
    assert encode_labels(cfg, raw) == ["POSITIVE", "NEGATIVE"]
    assert raw[EVAL]["labels"] == raw[TRAIN]["labels"] == [0, 1, 1]

    numbered = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [1, 0]},
                                          features=datasets.Features({"text": datasets.Value("string"),
                                                                      "label": datasets.ClassLabel(num_classes=2)}))
    raw = splits(plain([0, 1, 1]), numbered)
    encode_labels(cfg, raw)
    assert raw[EVAL]["labels"] == [1, 0]

    # other names altogether rename by position, as over a training ClassLabel (IMDb's neg, pos); a mix is refused
    other = rows_as_classlabel([{"text": "a", "label": "neg"}, {"text": "b", "label": "pos"}], ["neg", "pos"])
    raw = splits(plain([0, 1, 1]), other)
    encode_labels(TrainConfig(label_names="NEGATIVE,POSITIVE"), raw)
    assert raw[EVAL]["labels"] == [0, 1]
    mix = rows_as_classlabel([{"text": "a", "label": "neg"}, {"text": "b", "label": "POSITIVE"}], ["neg", "POSITIVE"])
    with pytest.raises(UserError, match="evaluation label column's classes neg are not among the training classes "
                                        "\\(POSITIVE, NEGATIVE\\)"):
        encode_labels(cfg, splits(plain([0, 1, 1]), mix))


def test_plain_training_ids_beside_an_evaluation_classlabel_of_names_are_refused_without_label_names():
    """Training labels as plain ids (0/1, no names), an evaluation file whose ClassLabel names its ids (POSITIVE
    first): its ids were taken as the training ids, silently, and the run scored 0.06 where the model was right on
    0.94 (best/ kept by that). --eval_only refused the same file; training now does too, asking for --label_names
    (with which the names are matched). Numbered names ('0', '1') say nothing: kept as ids."""
    import datasets

    named = rows_as_classlabel([{"text": "a", "label": "NEGATIVE"}, {"text": "b", "label": "POSITIVE"}],
                               ["POSITIVE", "NEGATIVE"])
    with pytest.raises(UserError, match=r"^the evaluation label column names its classes \(POSITIVE, NEGATIVE\), "
                                        r"but the training labels are plain ids, so which id is which class is "
                                        r"unknown; say it with --label_names: the names of ids 0, 1, ... in order\.$"):
        encode_labels(TrainConfig(), splits(plain([0, 1, 1]), named))
    raw = splits(plain([0, 1, 1]), named)
    encode_labels(TrainConfig(label_names="NEGATIVE,POSITIVE"), raw)
    assert raw[EVAL]["labels"] == [0, 1]  # by name: a is NEGATIVE, id 0
    numbered = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [1, 0]},
                                          features=datasets.Features({"text": datasets.Value("string"),
                                                                      "label": datasets.ClassLabel(num_classes=2)}))
    raw = splits(plain([0, 1, 1]), numbered)
    encode_labels(TrainConfig(), raw)
    assert raw[EVAL]["labels"] == [1, 0]


def test_numbers_as_text_in_one_file_and_integers_in_another_compare_by_number():
    """Training labels "1", "10", "2" (a JSONL, sorted as text: ids 0, 1, 2) beside a validation CSV of the same
    labels, which the CSV reader makes integers: refused, 'use the same kind in every file', which a CSV cannot do
    (audit59 b5). Now the integers are read as the numbers the training file writes; the other way round too
    (integer ids in training, numbers as text in validation). Two texts of one number ('1', '01') are not guessed."""
    raw = splits(plain(["1", "10", "2", "1"]), plain([2, 10, 1]))
    assert encode_labels(TrainConfig(), raw) == ["1", "10", "2"]
    assert raw[EVAL]["labels"] == [2, 1, 0]
    raw = splits(plain([0, 1, 2, 1]), plain(["2", "0"]))
    encode_labels(TrainConfig(), raw)
    assert raw[EVAL]["labels"] == [2, 0]
    with pytest.raises(UserError, match="use the same kind in every file"):
        encode_labels(TrainConfig(), splits(plain(["1", "01", "2"]), plain([2, 1])))
    with pytest.raises(UserError, match="use the same kind in every file"):  # the other way round alike
        encode_labels(TrainConfig(), splits(plain([0, 1, 2]), plain(["1", "01"])))


def test_a_text_column_named_labels_is_refused():
    """The label ids go into a column named 'labels' (the models' input): a text column of that name was
    overwritten by them, and the model read its own label (eval_accuracy 1.0 on random labels, silently)."""
    for name in ("text_column", "text_pair_column"):
        with pytest.raises(UserError, match=f"--{name} is 'labels', the column the loop writes the label ids into"):
            TrainConfig(**{name: "labels"})
    assert TrainConfig(label_column="labels").label_column == "labels"  # the labels themselves may be so named
    assert TrainConfig(weight_column="labels").weight_column == "labels"  # weights move to their own column first


@pytest.mark.slow
def test_reordered_classlabels_train_and_serve_the_right_names(tiny_model, tmp_path):
    """End to end: a ClassLabel training parquet, an evaluation parquet listing the classes the other
    way round, and --label_names in a third order. Before, evaluation accuracy was ~0.07 (labels
    flipped) or best/ served every prediction under the opposite name."""
    train, validation = synthetic.make_rows(600, seed=1), synthetic.make_rows(200, seed=2)
    rows_as_classlabel(train, CLASSES).to_parquet(str(tmp_path / "train.parquet"))
    rows_as_classlabel(validation, ["POSITIVE", "NEGATIVE"]).to_parquet(str(tmp_path / "validation.parquet"))
    out = str(tmp_path / "out")
    run_cli(tiny_args(tiny_model, tmp_path, out, train_file=tmp_path / "train.parquet", label_names="POSITIVE,NEGATIVE",
                      validation_file=tmp_path / "validation.parquet", num_train_epochs=3), how="python")
    assert evals(out)[-1]["eval_accuracy"] > 0.85, evals(out)
    config = json.load(open(os.path.join(out, "best", "config.json")))
    assert config["id2label"] == {"0": "POSITIVE", "1": "NEGATIVE"}

    texts = [r["text"] for r in validation[:40]]
    proc = run_cli(["--model", os.path.join(out, "best"), *texts], script="loop/predict.py", how="python")
    got = [json.loads(line)["label"] for line in proc.stdout.splitlines() if line.startswith("{")]
    agree = sum(g == r["label"] for g, r in zip(got, validation[:40]))
    assert len(got) == 40 and agree >= 34, (agree, got)


# ---------------------------------------------------------------- labels that are numbers
TEXTS = {"label_ids": "texts"}  # best_metrics.json of a run that trained on texts (data.label_reading)


def scored_as(labels, model_labels, reading=None, **flags):
    """--eval_only on evaluation rows alone, as data.prepare reads them: each row's label as the name of the model's
    label it is scored against. `reading`: how the model's run read its labels (its best_metrics.json's; None: a
    model that does not say)."""
    cfg = TrainConfig(eval_only=True, model_name_or_path="out/best", **flags)
    raw = {EVAL: plain(labels)}
    names = encode_labels(cfg, raw, source=EVAL, given=eval_only_labels(cfg, raw, model_labels, reading))
    return [names[i] for i in raw[EVAL]["labels"]]


def trained_as(labels, evaluation=None, info=None, **flags):
    """A training run's labels: each training and evaluation row's label as the name of its class (`info`: what
    encode_labels says of them)."""
    raw = {TRAIN: plain(labels), EVAL: plain(evaluation or labels)}
    names = encode_labels(TrainConfig(**flags), raw, info=info)
    return [names[i] for i in raw[TRAIN]["labels"]], [names[i] for i in raw[EVAL]["labels"]]


def test_integer_ids_beside_names_that_are_numbers_mean_the_name_of_their_number(capsys):
    """A model trained on labels written as numbers in text (stars "1", "2", "3"; "0".."11", which sort as text:
    0, 1, 10, 11, 2, ...) is scored on the same classes written as integers: an id is the label of its own number,
    said in one line. It was refused, with advice to pass 'the model's names in id order' as --label_names, which
    named each id by position, silently: the stars 1 and 2 scored as '2' and '3' (accuracy 0.0 for 1.0), the 12
    classes 0.125. Such --label_names, numbers naming ids other than their own, are refused where every id is
    also one of the numbers (it is unclear which is meant), in training too; ids that are none of the numbers (0
    beside stars 1..3) can only be positions. (The model's run trained on texts, as its best_metrics.json says.)"""
    stars, as_text = ["1", "2", "3"], sorted(str(i) for i in range(12))
    assert scored_as([2, 1, 2], stars, TEXTS) == ["2", "1", "2"]
    assert "data: the evaluation label ids are the model's labels of the same number (id 1 is '1'), not the labels " \
        "at those positions" in capsys.readouterr().out
    assert scored_as(list(range(12)), as_text, TEXTS) == [str(i) for i in range(12)]
    with pytest.raises(UserError, match=r"^--label_names 1, 2, 3 name the ids by position, so the evaluation label 1 "
                                        r"would be named '2', but 1 is also one of those names; list them so that each "
                                        r"number is at its own position, leave --label_names out \(--eval_only then "
                                        r"matches each id to the model's label of that number\), or write"):
        scored_as([2, 1, 2], stars, TEXTS, label_names="1,2,3")
    with pytest.raises(UserError, match="the evaluation label 2 would be named '10'"):
        scored_as(list(range(12)), as_text, TEXTS, label_names=",".join(as_text))
    assert scored_as(list(range(12)), as_text, TEXTS, label_names=",".join(str(i) for i in range(12))) == \
        [str(i) for i in range(12)]
    with pytest.raises(UserError, match=r"the evaluation label id\(s\) 0 match none of the model's labels \(1, 2, 3\), "
                                        r"which are numbers, .* say so with --label_names 1,2,3 \(the name of the "
                                        r"data's id 0, then of id 1, and so on\)"):
        scored_as([0, 1, 2], stars, TEXTS)
    assert scored_as([0, 1, 2], stars, TEXTS, label_names="1,2,3") == stars  # id 0 is no star: only a position
    with pytest.raises(UserError, match=r"label id\(s\) 7 match none of the model's labels .*; fix the data\.$"):
        scored_as([7, 1], stars, TEXTS)
    with pytest.raises(UserError, match="say which name each id means with --label_names: the name of the data's id "
                                        "0, then of id 1, and so on"):
        scored_as([0, 1], ["neg", "pos"], TEXTS)
    # training: where --label_names meets integer ids
    with pytest.raises(UserError, match=r"so the training label 1 would be named '2', but 1 is also one of those "
                                        r"names; .* leave --label_names out, or write"):
        trained_as([1, 2, 1], label_names="1,2,3")
    with pytest.raises(UserError, match="the training label 0 would be named '2'"):
        trained_as([[0], [1, 2]], label_names="2,0,1")  # lists of ids (multi-label)
    assert trained_as([0, 1, 2], label_names="1,2,3") == (stars, stars)
    assert trained_as([1, 0], label_names="0,1") == (["1", "0"], ["1", "0"])


def test_numbers_written_as_text_are_ids_when_label_names_name_none_of_them(capsys):
    """Labels "0"/"1" in a JSON or Parquet string column could not take --label_names NEGATIVE,POSITIVE (refused:
    'training labels 0, 1 are not in --label_names'), though the same numbers as integers could: they are ids now,
    said in one line, in training and with --eval_only. Names that spell the numbers keep them as names."""
    names = "NEGATIVE,POSITIVE"
    assert trained_as(["1", "0", "1"], ["0", "1"], label_names=names) == \
        trained_as([1, 0, 1], [0, 1], label_names=names) == (["POSITIVE", "NEGATIVE", "POSITIVE"], ["NEGATIVE", "POSITIVE"])
    assert "data: label column 'label' holds numbers written as text, none of them a name of --label_names: read " \
        "as ids (the text '0' is id 0, NEGATIVE)" in capsys.readouterr().out
    assert trained_as(["1", "0"], [0, 1], label_names=names)[1] == ["NEGATIVE", "POSITIVE"]  # one file text, one ints
    assert trained_as(["1", "2", "1"], label_names="2,1") == (["1", "2", "1"], ["1", "2", "1"])  # by name
    assert trained_as(["10", "9"]) == (["10", "9"], ["10", "9"])  # no --label_names: names, sorted as text
    with pytest.raises(UserError, match=r"training labels 0 are not in --label_names \(1, X\); add them or fix the "
                                        r"data; numbers written as text are read as ids \(the text '0' is id 0\) only "
                                        r"when --label_names names none of them\."):
        trained_as(["0", "1"], label_names="1,X")
    assert scored_as(["1", "0"], ["NEGATIVE", "POSITIVE"], label_names=names) == ["POSITIVE", "NEGATIVE"]
    with pytest.raises(UserError, match="the evaluation labels are ids \\(0, 1\\) but the model's labels have names"):
        scored_as(["1", "0"], ["NEGATIVE", "POSITIVE"])


def test_a_run_records_how_it_read_its_labels():
    """audit47 F1: best_metrics.json says how the training run read its labels (data.label_reading): texts (names,
    numbers written as text among them), or integer ids with the name of each (--label_names, a ClassLabel's,
    LABEL_i; numbers written as text beside --label_names are ids too), which --eval_only then reads ids by."""
    import types

    def reading(labels, **flags):
        info = {}
        encode_labels(TrainConfig(**flags), {TRAIN: plain(labels), EVAL: plain(labels)}, info=info)
        return label_reading(types.SimpleNamespace(label_ids=info["label_ids"], id_names=info["id_names"]))

    positions = lambda *names: {"label_ids": "positions", "label_names": list(names)}  # noqa: E731
    assert reading(["1", "2", "3"]) == reading(["neg", "pos"]) == reading([["a"], ["b", "c"]]) == TEXTS
    assert reading([0, 1, 2], label_names="1,2,3") == positions("1", "2", "3")
    assert reading(["1", "0"], label_names="NEG,POS") == positions("NEG", "POS")  # numbers as text beside names
    assert reading([1, 0]) == positions("LABEL_0", "LABEL_1")
    assert reading([[0], [1, 2]], label_names="1,2,3") == positions("1", "2", "3")  # lists of ids
    info = {}
    encode_labels(TrainConfig(label_names="NEGATIVE,POSITIVE"), splits(  # a ClassLabel renamed by position
        rows_as_classlabel([{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}], ["neg", "pos"]),
        rows_as_classlabel([{"text": "c", "label": "neg"}], ["neg", "pos"])), info=info)
    assert (info["label_ids"], info["id_names"]) == ("positions", ["NEGATIVE", "POSITIVE"])
    assert label_reading(types.SimpleNamespace(label_ids="texts", regression=True)) is None
    assert label_reading(object()) is None  # a variant's own data object: says nothing


def test_ids_are_read_as_the_models_run_read_its_labels(capsys):
    """audit47 F1: a model trained on ids 0..2 named 1,2,3 (--label_names by position; its run scored 1.0) was
    scored "by number" (id 1 as '1', its row 0) at 0.0 by --eval_only, which took every model with number labels
    for one trained on those texts, and the run's own --label_names was refused, with advice that led to the 0.0.
    Now ids are read as the run read them (its best_metrics.json), said in one line, also with the run's
    --label_names given. A model that does not say (an older loop, one from elsewhere) is read by number only where
    no position fits the ids, and refused naming both readings and the --label_names of each where both fit."""
    import re

    stars = ["1", "2", "3"]
    run = {"label_ids": "positions", "label_names": stars}
    assert scored_as([1, 2, 1], stars, run) == ["2", "3", "2"]
    assert "data: the evaluation label ids are read as the model's training run read its own (id 1 is '2': 1,2,3 " \
        "in id order, from its best_metrics.json)" in capsys.readouterr().out
    assert scored_as([1, 2, 1], stars, run, label_names="1,2,3") == ["2", "3", "2"]  # the run's own flag
    assert scored_as([0, 2], stars, run) == ["1", "3"]  # with id 0 or without: the same reading
    assert scored_as(["2", "1"], stars, run) == ["2", "1"]  # texts that are the labels are names, as in training
    with pytest.raises(UserError, match=r"label ids 3 are outside 0\.\.2, the ids the training run named \(1, 2, 3\)"):
        scored_as([3, 1], stars, run)
    # ids past the names that --label_names gives as numbers: one line, not an IndexError (audit56's fuzzer)
    with pytest.raises(UserError, match=r"evaluation label ids 2 are outside 0\.\.1, the ids of --label_names"):
        scored_as([1, 2], ["1", "2"], label_names="2,1")
    lists = {EVAL: plain([[1], [2, 1]])}  # multi-label lists of ids
    eval_only_labels(TrainConfig(eval_only=True, model_name_or_path="out/best"), lists, stars, run)
    assert lists[EVAL]["label"] == [["2"], ["3", "2"]]
    # a ClassLabel-trained model read its ids by its class names; another order of the same names is the run's
    assert scored_as([0, 1], ["neg", "pos"], {"label_ids": "positions", "label_names": ["pos", "neg"]}) == \
        ["pos", "neg"]
    # no record: both readings fit ids 1 and 2 of labels 1, 2, 3
    both = re.escape("the evaluation label ids (1, 2) can mean the model's labels of the same number (id 1 is '1') or "
                     "its labels at those positions (id 1 is '2'), and 'out/best' does not record how its training "
                     "read its labels (best/best_metrics.json of a loop since 2026-12-04 does); say which with "
                     "--label_names: 3,1,2 reads each id as its number, 1,2,3 as a position.")
    with pytest.raises(UserError, match=f"^{both}$"):
        scored_as([1, 2, 1], stars)
    assert scored_as([1, 2, 1], stars, label_names="1,2,3") == ["2", "3", "2"]  # the refusal's two picks
    assert scored_as([1, 2, 1], stars, label_names="3,1,2") == ["1", "2", "1"]
    assert scored_as([1, 2, 3], stars) == ["1", "2", "3"]  # 3 is no position: by number, as before
    assert scored_as([1, 0], ["0", "1"]) == ["1", "0"]  # each number at its own position: the readings agree
    assert own_number_order(sorted(str(i) for i in range(12))) == [str(i) for i in range(12)]
    assert own_number_order(["5", "1", "2"]) == ["5", "1", "2"] and own_number_order(stars) == ["3", "1", "2"]


def test_two_spellings_of_one_number_read_as_ids_are_refused():
    """audit47 F4: labels "0", "1", "01" beside --label_names A,B,C were ids, "1" and "01" both id 1 (B), with only
    a warning that C is unused; now refused naming both. Without --label_names they are three names, as before."""
    with pytest.raises(UserError, match=r"^label column 'label' holds '01' and '1', both the number 1, and numbers "
                                        r"written as text are read here as ids \(the text '0' is id 0\), so the two "
                                        r"would be one label; write each number one way in the data\.$"):
        trained_as(["0", "1", "01"], label_names="A,B,C")
    with pytest.raises(UserError, match="holds '01' and '1', both the number 1"):  # across the files too
        trained_as(["0", "1"], ["01", "0"], label_names="A,B")
    assert trained_as(["0", "1", "01"])[0] == ["0", "1", "01"]  # names
    with pytest.raises(UserError, match="holds ' 1' and '1', both the number 1"):  # --eval_only reads them so too
        scored_as(["1", " 1", "0"], ["A", "B"])


def test_digits_int_cannot_read_are_names():
    """audit47 F6: "①", "②", "③" (and "²") are digits to str.isdigit() but not to int(): such labels crashed
    every run with a ValueError traceback; numbers written as text are ASCII digits with an optional minus."""
    assert [_is_int_text(v) for v in ("1", " -2 ", "007", "①", "²", "١", "--1", "-", "+1", "1.0", "")] == \
        [True, True, True, False, False, False, False, False, False, False, False]
    assert trained_as(["①", "②", "③", "②"], ["③", "①"]) == (["①", "②", "③", "②"], ["③", "①"])
    with pytest.raises(UserError, match="training labels ①, ② are not in --label_names"):  # names, not ids
        trained_as(["①", "②"], label_names="A,B,C")
    # a label with a comma in it: --label_names split it (audit61); said so, not only listed as missing
    with pytest.raises(UserError, match=r"training labels good, really are not in --label_names \(bad, good, really\); "
                                        r"add them or fix the data; --label_names splits at commas"):
        trained_as(["bad", "good, really"], label_names="bad,good, really")


# ---------------------------------------------------------------- text columns hold text
def test_a_parquet_file_of_string_views_reads_as_text(tmp_path):
    """Arrow's string_view (a Parquet file that keeps that schema) is text: it was refused as "string_view
    values, not text"; text and labels now read as strings and train like any file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"text": "a superb film", "label": "POSITIVE"}, {"text": "dull", "label": "NEGATIVE"}]
    pq.write_table(pa.table({k: pa.array([r[k] for r in rows], pa.string_view()) for k in ("text", "label")}),
                   tmp_path / "views.parquet")
    ds = D.load_file(str(tmp_path / "views.parquet"), "--train_file")
    assert {ds.features[c].dtype for c in ds.column_names} == {"string"}
    raw = splits(ds, ds)
    D.check_columns(TrainConfig(), raw)
    assert encode_labels(TrainConfig(), raw) == CLASSES and raw[TRAIN]["labels"] == [1, 0]


def test_text_columns_of_bytes_are_decoded_and_other_types_refused():
    import datasets
    import pyarrow as pa

    def check(table):
        cfg = TrainConfig()
        raw = datasets.DatasetDict({TRAIN: datasets.Dataset(table)})
        D.check_columns(cfg, raw)
        return raw[TRAIN]

    texts = ["très bon — film", "dull"]
    ds = check(pa.table({"text": pa.array([t.encode() for t in texts], pa.binary()), "label": [0, 1]}))
    assert ds["text"] == texts  # Parquet BINARY without the UTF-8 annotation (Spark, Hive): decoded

    with pytest.raises(UserError, match="holds bytes that are not UTF-8 text"):
        check(pa.table({"text": pa.array([b"tr\xe8s bon", b"x"], pa.binary()), "label": [0, 1]}))
    with pytest.raises(UserError, match=r"training text column 'text' holds lists \(words already split\?\), not "
                                        r"text; join each list into one string"):
        check(pa.table({"text": pa.array([["a", "b"], ["c"]]), "label": [0, 1]}))
    with pytest.raises(UserError, match="holds objects with fields title, body, not text"):
        check(pa.table({"text": pa.array([{"title": "t", "body": "b"}] * 2), "label": [0, 1]}))
    with pytest.raises(UserError, match="'text' holds int64 values, not text; is it the right column"):
        check(pa.table({"text": pa.array([3, 4]), "label": [0, 1]}))
    # an all-null column is text, but none at all: a run on it learned nothing with exit 0 (audit57 c F4); some
    # empty texts are counted as empty inputs. Dictionary-encoded strings are text.
    for empty in (pa.array([None, None], pa.null()), pa.array(["  ", None])):
        with pytest.raises(UserError, match=r"^the training data has no text: its column 'text' is empty or missing "
                                            r"in every row; name the column that holds the texts with --text_column "
                                            r"\(its other columns: 'label'\)\.$"):
            check(pa.table({"text": empty, "label": [0, 1]}))
    with pytest.warns(UserWarning, match="2 training rows have an empty or missing text"):
        check(pa.table({"text": pa.array([None, "", "ok"]), "label": [0, 1, 0]}))
    # invisible characters alone are no text either (audit62 t6b): zero-width space and joiner, BOM, a bidi mark,
    # a no-break and an ideographic space; a combining accent on a letter, or an emoji with its joiner, is text
    with pytest.warns(UserWarning, match=r"4 training rows have an empty or missing text in column 'text' \(first "
                                         r"at row 1\)"):
        check(pa.table({"text": pa.array(["ok", "\u200b", "\u200b\u200d\ufeff", "\u200e \u00a0\u3000", "\t\x1c",
                                          "e\u0301", "\U0001f44d\u200d"]), "label": [0, 1, 0, 1, 0, 1, 0]}))
    assert check(pa.table({"text": pa.array(texts).dictionary_encode(), "label": [0, 1]}))["text"] == texts


# ---------------------------------------------------------------- labels a reader cannot tell apart
@pytest.mark.parametrize("a, b", [
    ("n\u00e9gatif", "ne\u0301gatif"),  # composed and decomposed é (NFC / NFD)
    ("POSITIVE", "POSITIVE\u200b"),  # a zero-width space
    ("POSITIVE", "\ufeffPOSITIVE"),  # a BOM inside a column
    ("pos", "ｐｏｓ"),  # full-width letters
])
def test_labels_differing_only_in_unicode_form_or_invisible_characters_are_refused(a, b):
    raw = splits(plain([a, b, a, "other"]), plain([a]))
    with pytest.raises(UserError, match="differ only in case, surrounding spaces, Unicode form or invisible") as e:
        encode_labels(TrainConfig(), raw)
    assert ascii(b) in str(e.value)  # the invisible difference is visible in the message


def test_a_text_column_given_as_label_column_is_named_in_a_short_line():
    import datasets

    texts = [f"review number {i} is about a film" for i in range(300)]
    titled = datasets.Dataset.from_dict({"text": texts, "title": texts, "label": [0, 1] * 150})
    raw = splits(titled, titled.select(range(5)))
    with pytest.raises(UserError) as e:
        encode_labels(TrainConfig(label_column="title"), raw)
    assert "--label_column 'title' has 300 distinct values in 300 training rows" in str(e.value)
    assert len(str(e.value)) < 300

    # and a long list of unknown labels is cut short
    raw = splits(plain(["a", "b"] * 3), plain(texts[:200]))
    with pytest.raises(UserError, match=r"evaluation labels .* \.\.\. and 190 more were never seen") as e:
        encode_labels(TrainConfig(), raw)
    assert len(str(e.value)) < 600


# ---------------------------------------------------------------- splits with one class, carves that cannot be
def test_one_class_training_is_refused_after_the_carve_too(tiny_model, tiny_data, tmp_path):
    """--validation_split_percentage with --max_train_samples 3: the three rows left are checked."""
    out = str(tmp_path / "o")
    args = tiny_args(tiny_model, tiny_data, out, validation_file="", validation_split_percentage=10,
                     max_train_samples=3, seed=0)
    # find a seed whose three carved training rows share one class, the case the check must catch
    import datasets

    ds = datasets.Dataset.from_list(read_jsonl(os.path.join(tiny_data, "train.jsonl")))
    for seed in range(50):
        cfg = TrainConfig(validation_split_percentage=10, max_train_samples=3, seed=seed)
        raw = datasets.DatasetDict({TRAIN: ds})
        encode_labels(cfg, raw)
        if len(set(D.carve_validation(cfg, raw)[TRAIN]["labels"])) == 1:
            break
    else:
        pytest.skip("no seed under 50 gives a one-class carve")
    args[args.index("--seed") + 1] = str(seed)
    line = check_user_error(run_cli(args, how="python", check=False, timeout=300), "every training example has the label")
    assert not os.path.exists(out), line


def test_carve_advice_follows_which_side_is_too_small():
    import datasets

    def carve(labels, pct):
        ds = datasets.Dataset.from_dict({"x": list(range(len(labels))), "labels": labels})
        ds = ds.cast_column("labels", datasets.ClassLabel(names=["a", "b"]))
        with pytest.raises(UserError) as e:
            D.carve_validation(TrainConfig(validation_split_percentage=pct), datasets.DatasetDict({TRAIN: ds}))
        return str(e.value)

    assert "0 left to train" in carve([0] * 100 + [1] * 100, 99.99) and "use a smaller percentage" in carve(
        [0] * 100 + [1] * 100, 99.99)
    assert "use a larger percentage" in carve([0] * 10 + [1] * 10, 1)
    assert "more examples of 'b' (it has one)" in carve([0] * 10 + [1], 20)


def test_a_pair_needs_room_for_a_token_of_each_text(tiny_model):
    """--max_length 4 with a pair and a BERT tokenizer (3 special tokens) gave '[CLS] cast [SEP] [SEP]':
    the second text dropped whole."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    with pytest.raises(UserError, match="--max_length 4 leaves no room for both texts: .* use at least 5"):
        D.check_max_length(TrainConfig(text_pair_column="other"), tok, 4)
    D.check_max_length(TrainConfig(text_pair_column="other"), tok, 5)
    ids = tok("great film", "dull plot", truncation=True, max_length=5)["input_ids"]
    assert len(ids) == 5 and tok.convert_ids_to_tokens(ids)[3] != "[SEP]"  # a token of the second text
    D.check_max_length(TrainConfig(), tok, 3)  # one text: its special tokens and one token


def test_a_pair_column_the_tokenizer_cannot_read_is_refused_on_its_own(tiny_model):
    """The unknown-token check pooled both columns: a pair column all [UNK] hid behind a readable text column."""
    import datasets
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = synthetic.make_rows(40, seed=4)
    ds = datasets.Dataset.from_dict({"text": [r["text"] for r in rows], "other": ["χωρίς λέξεις εδώ"] * 40})
    with pytest.raises(UserError, match="turns 100% of the training text in column 'other' into its unknown token"):
        D.check_unknown_tokens(TrainConfig(text_pair_column="other"), tok, ds)
    D.check_unknown_tokens(TrainConfig(), tok, ds)  # the text column alone is fine
    # one long row of characters the vocabulary lacks among texts it reads: no refusal (the pooled share was 80%)
    texts = [r["text"] for r in rows] + ["χ " * 2000]
    D.check_unknown_tokens(TrainConfig(), tok, datasets.Dataset.from_dict({"text": texts}))


def test_an_evaluation_split_the_tokenizer_cannot_read_is_refused_in_a_training_run(tiny_model, tiny_data, tmp_path):
    """Only the training text was checked: an English tokenizer on a Greek validation file turned every
    evaluation text into [UNK], and the run evaluated at chance, picking best/ by noise, without a word
    (audit62 t3). One long unreadable row among readable ones is still no refusal."""
    import datasets

    from conftest import tiny_args
    from loop import parse_args
    from transformers import AutoTokenizer

    greek = tmp_path / "greek.jsonl"
    synthetic.write_jsonl([{"text": "χωρίς λέξεις εδώ καθόλου", "label": r["label"]}
                           for r in synthetic.make_rows(40, seed=5)], greek)
    cfg = parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / "o"), validation_file=str(greek)))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    raw = D.load_raw(cfg)
    D.check_unknown_tokens(cfg, tok, raw["train"])  # the training text reads
    with pytest.raises(UserError, match=r"^the tokenizer of '.*' reads the training text but turns most of the "
                                        r"evaluation text into '\[UNK\]' or nothing, so it would be scored at chance"):
        D.check_unknown_tokens(cfg, tok, raw["eval"], what="evaluation", reads="training")
    texts = [r["text"] for r in synthetic.make_rows(40, seed=6)] + ["χ " * 2000]
    D.check_unknown_tokens(cfg, tok, datasets.Dataset.from_dict({"text": texts}), what="evaluation", reads="training")
    with pytest.raises(UserError, match="reads the training text but turns most of the evaluation text"):
        from loop import Loop

        Loop(cfg).setup()


def test_the_texts_max_length_cuts_are_counted_exactly(tiny_model, tiny_data, tmp_path, capsys):
    """The start-up log counts, per split, the texts truncation cut (what --max_length hides from the
    model); a text of exactly max_length tokens is not cut. --eval_only records the count too."""
    import datasets
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = [json.loads(x) for x in open(os.path.join(tiny_data, "train.jsonl"))]
    full = [len(tok(r["text"])["input_ids"]) for r in rows]
    limit = sorted(full)[len(full) // 2]  # about half the texts are longer
    exact = sum(n == limit for n in full)
    assert exact, "the test wants texts of exactly max_length tokens"
    ds = datasets.DatasetDict({TRAIN: datasets.Dataset.from_list(rows)})
    cfg = TrainConfig(train_file=os.path.join(tiny_data, "train.jsonl"))
    out = D.tokenize(cfg, ds, tok, limit)[TRAIN]
    assert sum(out[CUT]) == sum(n > limit for n in full) > 0
    pairs = datasets.DatasetDict({TRAIN: datasets.Dataset.from_dict({"text": ["good film"] * 3,
                                                                     "other": ["bad", "bad dull plot", "a"]})})
    cut = D.tokenize(TrainConfig(text_pair_column="other"), pairs, tok, len(tok("good film", "bad")["input_ids"]))
    assert cut[TRAIN][CUT] == [False, True, False]  # the pair's second text cut counts as cut
    from transformers import ByT5Tokenizer  # a slow tokenizer (no record of what it cut): as exact

    bytes_ds = datasets.DatasetDict({TRAIN: datasets.Dataset.from_dict({"text": ["good film", "good films", "ok"]})})
    assert list(D.tokenize(TrainConfig(), bytes_ds, ByT5Tokenizer(), 10)[TRAIN][CUT]) == [False, True, False]

    assert D.truncation_line({TRAIN: (0, 10), EVAL: (0, 5)}, 8) is None
    assert D.truncation_line({TRAIN: (1, 4), EVAL: (0, 5)}, 8) == \
        "data: 1 of 4 training texts (25.0%) was cut at max_length 8 (its end dropped; --truncation_side left keeps " \
        "the end instead)"
    assert D.truncation_line({TRAIN: (1250, 2000), EVAL: (3, 5)}, 8, pair=True) == \
        "data: 1,250 of 2,000 training pairs (62.5%), 3 of 5 evaluation pairs (60.0%) were cut at max_length 8 " \
        "(their end dropped; --truncation_side left keeps the end instead)"
    assert D.truncation_line({TRAIN: (2, 4)}, 8, side="left") == \
        "data: 2 of 4 training texts (50.0%) were cut at max_length 8 (their start dropped: --truncation_side left)"

    out = tmp_path / "scored"
    capsys.readouterr()
    run = Loop(parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / "o"), max_length=limit, max_steps=1)))
    run.fit()
    evaluation = [json.loads(x) for x in open(os.path.join(tiny_data, "validation.jsonl"))]
    cut_eval = sum(len(tok(r["text"])["input_ids"]) > limit for r in evaluation)
    line = next(x for x in capsys.readouterr().out.splitlines() if "cut at max_length" in x)
    assert f"{sum(n > limit for n in full)} of {len(full)} training texts" in line
    assert f"{cut_eval} of {len(evaluation)} evaluation texts" in line
    scored = Loop(parse_args(
        ["--eval_only", "--model_name_or_path", os.path.join(tmp_path, "o", "best"), "--validation_file",
         os.path.join(tiny_data, "validation.jsonl"), "--output_dir", str(out)]))
    scored.validate()
    results = json.load(open(out / "eval_results.json"))
    assert results["data"]["eval_cut_at_max_length"] == cut_eval and results["data"]["max_length"] == limit
    assert results["torch_dtype"] == "float32"


# ---------------------------------------------------------------- files
def test_an_unclosed_csv_quote_that_merged_rows_is_named(tmp_path):
    rows = synthetic.make_rows(40, seed=3)
    lines = ["text,label"] + [f'"{r["text"]}",{r["label"]}' for r in rows]
    lines[11] = f'"{rows[10]["text"]} said ""hi,{rows[10]["label"]}'  # the closing quote is missing
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    cfg = TrainConfig(train_file=str(path), validation_file=str(path))
    with pytest.warns(UserWarning) as caught:
        raw = D.load_raw(cfg)
        D.check_columns(cfg, raw)
    said = [str(w.message) for w in caught]
    assert len(raw[TRAIN]) == 39  # two rows became one: the loss the warning is about
    assert any(f"the text of row 10 spans 2 lines, and one of them ends in ',{rows[10]['label']}'" in m for m in said), said
    assert any("--train_file and --validation_file are the same file" in m for m in said), said

    # a quoted text that spans lines legitimately is not warned about
    good = tmp_path / "good.csv"
    good.write_text('text,label\n"a fine film\nwith, a twist",POSITIVE\n"dull",NEGATIVE\n')
    cfg = TrainConfig(train_file=str(good), validation_file=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = D.load_raw(cfg)
        D.check_columns(cfg, {TRAIN: raw[TRAIN]})


def test_a_tsv_that_quotes_its_fields_is_refused_in_one_line(tmp_path):
    """R's write.table(sep="\t") and csv.QUOTE_NONNUMERIC put every text and label of a .tsv in quote marks, and a
    .tsv is read unquoted (GLUE's: a quote is a character of the text): it trained with '"POSITIVE"' for a label
    and quote marks around every text, or (its header quoted too) was refused for lacking a column 'text', without
    the cause (audit59). A GLUE-style file whose texts hold quotes, one a whole text, still reads as written."""
    rows = synthetic.make_rows(12, seed=5)
    train, other = tmp_path / "train.jsonl", tmp_path / "other.jsonl"
    synthetic.write_jsonl(rows, train)
    synthetic.write_jsonl(rows[::-1], other)

    def tsv(name, header, quote):
        path = tmp_path / name
        path.write_text("\n".join([header] + [f'{quote}{r["text"]}{quote}\t{quote}{r["label"]}{quote}' for r in rows])
                        + "\n")
        return str(path)

    quoted = [(tsv("r.tsv", '"text"\t"label"', '"'), 'its header reads "text", "label"', "every column name"),
              (tsv("q.tsv", "text\tlabel", '"'), f"every label in its column 'label' is in quote marks, e.g. "
                                                 f'"{rows[0]["label"]}"', "every label")]
    for path, seen, part in quoted:
        for flag, files in (("--train_file", dict(train_file=path, validation_file=str(other))),
                            ("--validation_file", dict(train_file=str(train), validation_file=path)),
                            ("--test_file", dict(train_file=str(train), validation_file=str(other), test_file=path))):
            with pytest.raises(UserError) as caught:
                D.load_raw(TrainConfig(**files))
            assert str(caught.value) == (
                f"{flag} {path} quotes its fields ({seen}): a .tsv is read unquoted, as GLUE's are (a quote is a "
                f"character of the text), so the quote marks would be part of {part} and of the texts; save it as "
                f".csv (read with quoting) or without quotes."), str(caught.value)

    # multi-label data in 0/1 columns (--label_column toxic,insult): each of its label columns is checked alike
    multi = tmp_path / "multi.tsv"
    multi.write_text("text\ttoxic\tinsult\n" + "".join(f'{r["text"]}\t"{i % 2}"\t"1"\n' for i, r in enumerate(rows)))
    with pytest.raises(UserError, match=re.escape("quotes its fields (every label in its column 'toxic' is in quote "
                                                  'marks, e.g. "0")')):
        D.load_raw(TrainConfig(train_file=str(multi), validation_file=str(other), label_column="toxic,insult"))

    # GLUE's: a quote is part of the text, even around a whole one; and labels in quotes only in some rows are names
    glue = tmp_path / "glue.tsv"
    texts = ['he said "dull" twice', '"a whole text in quotes"', 'plain', '"odd', 'fine"']
    labels = ["NEGATIVE", "POSITIVE", '"POSITIVE"', "NEGATIVE", "POSITIVE"]
    glue.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = D.load_raw(TrainConfig(train_file=str(glue), validation_file=str(other)))
    assert raw[TRAIN]["text"] == texts and raw[TRAIN]["label"] == labels
    # a header of which one name only is in quote marks is a name (GLUE's files are read as written): no refusal
    noted = tmp_path / "noted.tsv"
    noted.write_text('text\tlabel\t"note"\n' + "".join(f"{t}\t{y}\tx\n" for t, y in zip(texts, labels)))
    raw = D.load_raw(TrainConfig(train_file=str(noted), validation_file=str(other)))
    assert raw[TRAIN].column_names == ["text", "label", '"note"'] and raw[TRAIN]["text"] == texts
    # a label left empty in a quoted file is no label without quotes: still refused; a file without the label
    # column (read before its columns are checked) is no quoted file
    blank = tmp_path / "blank.tsv"
    blank.write_text("text\tlabel\n" + "".join(f'"{r["text"]}"\t"{r["label"]}"\n' for r in rows) + '"one more"\t\n')
    with pytest.raises(UserError, match=re.escape("quotes its fields (every label in its column 'label' is in quote")):
        D.load_raw(TrainConfig(train_file=str(blank), validation_file=str(other)))
    unlabelled = tmp_path / "unlabelled.tsv"
    unlabelled.write_text("text\n" + "".join(f"{t}\n" for t in texts))
    raw = D.load_raw(TrainConfig(train_file=str(train), validation_file=str(other), test_file=str(unlabelled)))
    assert raw["test"]["text"] == texts
    numbered = tmp_path / "numbered.tsv"  # GLUE's SST-2: labels 0/1, read as integers
    numbered.write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(texts)))
    raw = D.load_raw(TrainConfig(train_file=str(numbered), validation_file=str(other)))
    assert raw[TRAIN]["label"] == [i % 2 for i in range(len(texts))]


def test_a_copy_of_the_training_file_is_warned_about_as_the_same_file_is(tmp_path, monkeypatch):
    """An evaluation or test file that is a byte-for-byte copy of the training file (cp train.jsonl test.jsonl)
    scores examples the model trained on: warned about as the same path was (audit59). Files are compared by
    size, and only files of the same size by their sha256; one byte apart is no copy."""
    from loop import storage

    hashed = []
    real = storage.sha256_file
    monkeypatch.setattr(storage, "sha256_file", lambda f: hashed.append(os.path.basename(f)) or real(f))
    rows = synthetic.make_rows(30, seed=6)
    train, copy, near, other = (tmp_path / f"{n}.jsonl" for n in ("train", "copy", "near", "other"))
    synthetic.write_jsonl(rows, train)
    copy.write_bytes(train.read_bytes())
    data = train.read_bytes()
    at = data.index(b'"text": "') + 9
    near.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1:])  # the same size, one letter apart
    synthetic.write_jsonl(rows[:10], other)

    with pytest.warns(UserWarning) as caught:
        D.load_raw(TrainConfig(train_file=str(train), validation_file=str(copy), test_file=str(copy)))
    said = [str(w.message) for w in caught]
    assert any(m.startswith(f"--train_file and --validation_file are identical copies ({train} and {copy}): the "
                            f"evaluation scores examples the model trained on") for m in said), said
    assert any(m.startswith(f"--test_file and --train_file are identical copies ({copy} and {train}): its test "
                            f"scores are not held out") for m in said), said
    assert sorted(set(hashed)) == ["copy.jsonl", "train.jsonl"] and len(hashed) == 2, hashed  # each file once

    hashed.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        D.load_raw(TrainConfig(train_file=str(train), validation_file=str(other), test_file=str(near)))
    assert sorted(hashed) == ["near.jsonl"], hashed  # (train.jsonl's digest is kept; other.jsonl's size differs)

    hashed.clear()  # another process than the main one neither hashes nor warns (the main one says it once)
    with monkeypatch.context() as m, warnings.catch_warnings():
        m.setattr(D, "is_main_rank", lambda: False)
        warnings.simplefilter("error")
        D.load_raw(TrainConfig(train_file=str(train), validation_file=str(copy), test_file=str(copy)))
    assert hashed == [], hashed

    shards = tmp_path / "shards"
    shards.mkdir()
    synthetic.write_jsonl(rows[:10], shards / "train-0.jsonl")
    synthetic.write_jsonl(rows[10:], shards / "train-1.jsonl")
    (tmp_path / "val.jsonl").write_bytes((shards / "train-1.jsonl").read_bytes())
    with pytest.warns(UserWarning, match=r"^--train_file and --validation_file hold identical copies \(.*train-1.jsonl "
                                         r"and .*val.jsonl\)"):
        D.load_raw(TrainConfig(train_file=str(shards / "train-*.jsonl"), validation_file=str(tmp_path / "val.jsonl")))
    # shards of no rows (a header-only csv, a 0-row parquet, as Spark writes them) are byte-identical, no copies
    # of data (audit59 r3)
    import pandas as pd

    for kind in ("csv", "parquet"):
        for split in ("tr", "te"):
            folder = tmp_path / f"{kind}_{split}"
            folder.mkdir()
            frame = pd.DataFrame(rows[:5] if split == "tr" else rows[5:9])
            for i, part in enumerate((frame, frame.iloc[:0])):
                part.to_csv(folder / f"p-{i}.csv", index=False) if kind == "csv" else \
                    part.to_parquet(folder / f"p-{i}.parquet", index=False)
        assert D.shared_file(str(tmp_path / f"{kind}_tr" / f"p-*.{kind}"), str(tmp_path / f"{kind}_te" / f"p-*.{kind}")) \
            is None, kind
    for split in ("tr", "te"):  # an empty shard beside others (skipped when read) is no copy of another either
        folder = tmp_path / f"jsonl_{split}"
        folder.mkdir()
        synthetic.write_jsonl(rows[:5] if split == "tr" else rows[5:9], folder / "p-0.jsonl")
        (folder / "p-1.jsonl").write_bytes(b"")
    assert D.shared_file(str(tmp_path / "jsonl_tr" / "p-*.jsonl"), str(tmp_path / "jsonl_te" / "p-*.jsonl")) is None


def test_a_pattern_the_shell_expanded_names_the_quoted_pattern(tmp_path):
    """An unquoted `--train_file d/shards/train-*.jsonl` reaches the loop as several files: the first is the
    option's value and the next was refused as an unrecognized argument, without the cause (audit59)."""
    shards = tmp_path / "shards"
    shards.mkdir()
    files = [str(shards / f"train-{i}.jsonl") for i in range(3)]
    for f in files:
        open(f, "w").close()
    base = ["--model_name_or_path", "m", "--output_dir", str(tmp_path / "out")]
    for flag in ("--train_file", "--test_file"):
        with pytest.raises(UserError) as caught:
            parse_args(base + ["--validation_file", files[0], "--train_file", files[0]] + [flag] + files)
        assert str(caught.value) == (
            f"unrecognized argument '{files[1]}'; {flag} was given 3 files (the shell expands an unquoted pattern); "
            f"quote the pattern (e.g. {flag} '{shards}/train-*.jsonl') so the loop expands it; see --help for the "
            f"options."), str(caught.value)
    # names that share no start, three of them in a folder: an expansion too ('data/*.jsonl', audit59 s2)
    plain_names = [str(shards / f"{c}.jsonl") for c in "abc"]
    for f in plain_names:
        open(f, "w").close()
    with pytest.raises(UserError, match=re.escape(f"quote the pattern (e.g. --train_file '{shards}/*.jsonl')")):
        parse_args(base + ["--train_file"] + plain_names)
    # a stray file after another option, a stray that is no file, or two files no pattern would list so (a
    # forgotten --test_file: 't*.csv' would train on both, audit59 r2): as before
    for name in ("train.csv", "test.csv", "v-1.csv"):
        open(tmp_path / name, "w").close()
    for stray in (["--seed", "3", files[1]], ["--train_file", files[0], "nope.jsonl"],
                  ["--train_file", str(tmp_path / "train.csv"), str(tmp_path / "test.csv")],
                  ["--train_file", files[1], str(tmp_path / "v-1.csv")]):
        with pytest.raises(UserError) as caught:
            parse_args(base + stray)
        assert str(caught.value) == f"unrecognized argument '{stray[-1]}'; see --help for the options.", str(caught.value)


def test_shards_given_as_a_pattern_train_as_their_concatenation(tiny_model, tiny_data, tmp_path):
    """--train_file 'train-*.parquet': the shards are read in name order as one split, so the run trains
    bit-identically to one on the concatenated file; a blank shard is skipped; brackets in a folder's or
    file's name are literal. Refused in one line: a folder, a pattern matching nothing, a file of another
    format or extension, shards whose columns differ, parquet shards whose class names differ, a broken
    shard (named). Shards shared with the evaluation split are warned about, naming the file."""
    import pandas as pd
    import torch
    from safetensors.torch import load_file

    rows = read_jsonl(tiny_data / "train.jsonl")
    shards = tmp_path / "shards"
    shards.mkdir()
    cuts = [0, 150, 151, 400, len(rows)]  # uneven, one of a single row
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        pd.DataFrame(rows[a:b]).to_parquet(shards / f"train-{3 - i:05d}.parquet")  # names in reverse order of rows
    whole = [r for i in reversed(range(4)) for r in rows[cuts[i]:cuts[i + 1]]]  # name order
    pd.DataFrame(whole).to_parquet(tmp_path / "whole.parquet")

    def best(out, train_file, **over):
        Loop(parse_args(tiny_args(tiny_model, str(tiny_data), str(tmp_path / out), train_file=train_file,
                                  num_train_epochs=1, **over))).fit()
        return load_file(tmp_path / out / "best" / "model.safetensors")

    a, b = best("shards", str(shards / "train-*.parquet")), best("whole", str(tmp_path / "whole.parquet"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    scored = Loop(parse_args(["--eval_only", "--model_name_or_path", str(tmp_path / "shards" / "best"), "--output_dir",
                              str(tmp_path / "scored"), "--validation_file", str(shards / "train-0000[01].parquet")]))
    scored.validate()
    record = json.load(open(tmp_path / "scored" / "eval_results.json"))["data"]
    assert record["validation_file_matched"] == [str(shards / "train-00000.parquet"), str(shards / "train-00001.parquet")]
    os.symlink(shards / "train-00001.parquet", shards / "train-00009.parquet")  # a link: the same rows twice
    with pytest.warns(UserWarning, match=r"reads one file twice \(.*train-00001.parquet and .*train-00009.parquet"):
        D.load_raw(TrainConfig(train_file=str(shards / "train-*.parquet"),
                               validation_file=str(tiny_data / "validation.jsonl")))
    os.remove(shards / "train-00009.parquet")

    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    synthetic.write_jsonl(rows[:300], jsonl / "part-0.jsonl")
    (jsonl / "part-1.jsonl").write_text("\n")
    synthetic.write_jsonl(rows[300:], jsonl / "part-2.jsonl")
    cfg = TrainConfig(train_file=str(jsonl / "part-*.jsonl"), validation_file=str(jsonl / "part-2.jsonl"))
    with pytest.warns(UserWarning, match=r"--train_file and --validation_file share a file \(.*part-2.jsonl\)"):
        raw = D.load_raw(cfg)
    assert raw[TRAIN]["text"] == [r["text"] for r in rows]

    # names datasets would read as patterns again: a folder and a file with brackets in their names
    odd = tmp_path / "run[1]"
    odd.mkdir()
    for i in range(2):
        pd.DataFrame(rows[i * 300:(i + 1) * 300]).to_parquet(odd / f"train-{i}.parquet")
    pd.DataFrame(rows).to_parquet(odd / "all[0].parquet")
    for given in (str(tmp_path / "run[[]1]" / "train-*.parquet"), str(odd / "all[0].parquet")):
        raw = D.load_raw(TrainConfig(train_file=given, validation_file=str(tiny_data / "validation.jsonl")))
        assert raw[TRAIN]["text"] == [r["text"] for r in rows], given

    # parquet shards whose ClassLabel names the classes in another order: datasets would read both with the first's
    import datasets

    classes = tmp_path / "classes"
    classes.mkdir()
    for i, names in enumerate((["NEGATIVE", "POSITIVE"], ["POSITIVE", "NEGATIVE"])):
        part = rows[i * 300:(i + 1) * 300]
        features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
        datasets.Dataset.from_dict({"text": [r["text"] for r in part], "label": [names.index(r["label"]) for r in part]},
                                   features=features).to_parquet(str(classes / f"train-{i}.parquet"))
    with pytest.raises(UserError, match=r"the shards describe column 'label' differently \(.*train-0.parquet: classes "
                                        r"NEGATIVE, POSITIVE; .*train-1.parquet: classes POSITIVE, NEGATIVE\)"):
        D.load_raw(TrainConfig(train_file=str(classes / "train-*.parquet"),
                               validation_file=str(tiny_data / "validation.jsonl")))
    pd.DataFrame({"text": ["fine"], "label": [1]}).to_parquet(classes / "train-.parquet")  # pandas: ids, no names
    with pytest.raises(UserError, match=r"\(.*train-.parquet: ids without names; .*train-0.parquet: classes NEGATIVE"):
        D.load_raw(TrainConfig(train_file=str(classes / "train-*.parquet"),
                               validation_file=str(tiny_data / "validation.jsonl")))

    (shards / "notes.md").write_text("about the shards")
    pd.DataFrame(rows[:5]).rename(columns={"text": "review"}).to_parquet(shards / "train-zz.parquet")
    synthetic.write_jsonl(rows[:5], shards / "train-0.jsonl")
    (jsonl / "part-3.jsonl").write_text('{"text": "fine", "label": "POSITIVE"}\n{oops\n')
    os.mkfifo(jsonl / "piped.jsonl")  # (was: "does not exist", audit57 c F6)
    for pattern, message in [
            (jsonl / "piped.jsonl", r"piped.jsonl' is not a regular file \(a pipe or a device\); write the data to a "
                                    r"file and pass that\.$"),
            (shards, r"is a folder; pass one file, or a quoted pattern of the files of this split, e.g. '.*train-\*.parquet'"),
            (shards / "nope-*.parquet", r"matches no file; check the pattern \(quote it"),
            (shards / "*", r"matches '.*notes.md', which has an unsupported extension '.md'"),
            (shards / "train-*", r"matches files of 2 formats \(.jsonl, .parquet\)"),
            (shards / "train-*.parquet", r"could not be read as one table \(.*train-00000.parquet has the columns "
                                         r"text, label; .*train-zz.parquet has review, label: give every file the same"),
            (jsonl / "part-*.jsonl", r"part-3.jsonl could not be read: invalid JSON at line 2")]:
        with pytest.raises(UserError, match=message):
            D.load_raw(TrainConfig(train_file=str(pattern), validation_file=str(tiny_data / "validation.jsonl")))


# ---------------------------------------------------------------- labels and files as users bring them
def test_blank_negative_and_invisible_labels_are_named_and_booleans_are_two_classes():
    """A blank label became a class of its own (id2label {0: ''}); -1/1 labels were told to fix
    --label_names, which cannot help; a zero-width space made two names print alike; true/false labels
    were refused."""
    with pytest.raises(UserError, match=r"2 training rows have no label in column 'label' \(first at row 1: ' '\); "
                                        r"fill or drop them"):
        encode_labels(TrainConfig(), splits(plain(["POS", " ", "NEG", ""]), plain(["POS"])))
    with pytest.raises(UserError, match=r"training labels \[-1\] are negative, and integer labels are class ids "
                                        r"0..K-1; renumber them from 0 \(-1/1 as 0/1\)"):
        encode_labels(TrainConfig(), splits(plain([-1, 1, 1]), plain([1])))
    with pytest.raises(UserError, match=r"evaluation labels 'POS\\u200b' were never seen in training \(known: NEG, POS\)"):
        encode_labels(TrainConfig(), splits(plain(["POS", "NEG"]), plain(["POS\u200b"])))
    # an evaluation label that is a training one but for its case or spaces says which (audit63 u7)
    with pytest.raises(UserError, match=r"evaluation labels 'NEG ', pos were never seen in training \(known: NEG, "
                                        r"POS\); 'NEG ' differs from the training label 'NEG' only in case, surrounding "
                                        r"spaces, Unicode form or invisible characters: write the labels as the "
                                        r"training data does\.$"):
        encode_labels(TrainConfig(), splits(plain(["POS", "NEG"]), plain(["NEG ", "pos"])))

    cfg = TrainConfig()
    raw = splits(plain([True, False, True]), plain([False, True]))
    for split in list(raw):
        raw[split] = booleans_as_names(cfg, raw[split], split)
    assert encode_labels(cfg, raw) == ["false", "true"]  # ids 0 and 1, as Python counts them
    assert raw[TRAIN]["labels"] == [1, 0, 1] and raw[EVAL]["labels"] == [0, 1]


def test_label_names_the_data_never_holds_are_warned_about(tmp_path):
    with pytest.warns(UserWarning, match=r"--label_names NEUTRAL: no training row has that label, so the model gets "
                                         r"3 classes, 1 of them never trained"):
        names = encode_labels(TrainConfig(label_names="NEG,NEUTRAL,POS"), splits(plain(["POS", "NEG"]), plain(["POS"])))
    assert names == ["NEG", "NEUTRAL", "POS"]
    with pytest.warns(UserWarning, match=r"--label_names NEUTRAL: no training row has that label"):  # ids too
        encode_labels(TrainConfig(label_names="NEG,POS,NEUTRAL"), splits(plain([0, 1]), plain([1])))
    # scoring a trained model (its own labels name the classes) on one class's examples trains nothing: no warning
    import datasets

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode_labels(TrainConfig(eval_only=True, model_name_or_path="out/best"), datasets.DatasetDict({EVAL: plain(["POS"])}), given=["NEG", "POS"],
                      source=EVAL)
    # a ';'-separated csv without commas reads as one column: named as such, not as a missing --text_column
    path = tmp_path / "semi.csv"
    path.write_text("text;label\ngood film;POSITIVE\nbad film;NEGATIVE\n")
    with pytest.raises(UserError, match=r"the training data has one column, 'text;label': the file looks ';'-separated"):
        D.check_columns(TrainConfig(), {TRAIN: D.load_file(str(path), "--train_file")})


def test_a_csv_column_that_turns_to_text_after_ten_thousand_rows_is_read(tmp_path):
    """pandas reads a csv 10,000 rows at a time and datasets types every chunk as the first: an id column
    'x10100' late in the file failed the read with "An error occurred while generating the dataset"."""
    rows = synthetic.make_rows(10_300, seed=5)
    path = tmp_path / "big.csv"
    path.write_text("id,text,label\n" + "".join(f"{f'x{i}' if i >= 10_100 else i},{r['text']},{r['label']}\n"
                                                for i, r in enumerate(rows)))
    ds = D.load_file(str(path), "--train_file")
    assert len(ds) == 10_300 and ds["id"][0] == "0" and ds["id"][-1] == "x10299"
    # a weight column of ones that holds 0.5 further down, and true/false labels with a blank one
    path.write_text("text,w,label\n" + "".join(f"{r['text']},{0.5 if i == 10_200 else 1},"
                                               f"{'' if i == 10_250 else i % 2 == 0}\n" for i, r in enumerate(rows)))
    ds = D.load_file(str(path), "--train_file")
    assert ds["w"][10_200] == 0.5 and ds["w"][0] == 1 and ds["label"][:2] == [True, False]
    cfg = TrainConfig()
    with pytest.raises(UserError, match=r"1 training rows have no label in column 'label' \(first at row 10250\)"):
        encode_labels(cfg, splits(booleans_as_names(cfg, ds, TRAIN), plain(["true"])))
    # a label column that does: its check names the row instead
    path.write_text("text,label\n" + "".join(f"{r['text']},{'unknown' if i == 10_200 else i % 2}\n"
                                             for i, r in enumerate(rows)))
    raw = splits(D.load_file(str(path), "--train_file"), plain([0, 1]))
    with pytest.raises(UserError, match=r"training label column 'label' mixes numbers \('0'\) and names \('unknown' "
                                        r"in row 10200\)"):
        encode_labels(TrainConfig(), raw)


@pytest.mark.parametrize("content, words", [
    ("text;label\ngood film;POSITIVE\nbad, sad film;NEGATIVE\n",
     "its header is one field, 'text;label': the file looks ';'-separated; save it with ',' between fields"),
    ('text,label\ngood film,POSITIVE\n"bad film,NEGATIVE\nfine film,POSITIVE\nmeh,NEGATIVE\n',
     "a quote opened on line 3 is never closed (the text runs on to line 5); close or remove it"),
    ('text,label\ngood film,POSITIVE\n"a long review\nsecond line",great,POSITIVE\nmeh,NEGATIVE\n',
     "the row on lines 3-4 has 3 fields but the header has 2; quote texts that contain ','"),  # a closed quote
], ids=["semicolons", "unclosed-quote", "closed-quote-extra-field"])
def test_a_csv_that_cannot_be_read_says_why(tmp_path, content, words):
    path = tmp_path / "train.csv"
    path.write_text(content)
    with pytest.raises(UserError) as e:
        D.load_file(str(path), "--train_file")
    assert words in str(e.value)


def first_row(counted, fix):  # a first row with a field too many: maybe R's row names, on every row
    return (f"{counted}: if its first field is a row name the header does not name (R's write.table), write the file "
            f"without them (R's row.names = FALSE, pandas' index=False); else {fix}")


@pytest.mark.parametrize("name, content, words", [
    ("test.csv", "text,id\ngreat acting, weak plot,101\nbad film,102\nok film,103\n",
     first_row("line 2 has 3 fields but the header has 2", "quote texts that contain ','")),
    ("test.tsv", "text\tid\ngreat acting\tweak plot\t101\nbad film\t102\n",
     first_row("line 2 has 3 fields but the header has 2",
               "a text holds a tab (a .tsv cannot hold one): replace it with a space")),
    ("train.tsv", "label\ttext\nPOSITIVE\tgood film\nPOSITIVE\tgreat acting.\nweak plot\nNEGATIVE\tbad film\n",
     "line 4 has 1 field but the header has 2: a line break cut a text (a .tsv has no quoting: replace line breaks "
     "in the texts with spaces), or the row lacks a field (add it)"),
    ("train.csv", "label,text\r\nPOSITIVE,good film\r\nPOSITIVE,great acting.\rweak plot\r\nNEGATIVE,bad film\r\n",
     "line 4 has 1 field but the header has 2: a line break outside quotes cut a text (quote the texts; pandas' "
     "to_csv leaves a lone \\r unquoted: pass quoting=csv.QUOTE_ALL), or the row lacks a field (add it)"),
    # R's write.table (row.names = TRUE, its default): pandas reads it, but so it reads an id column the header
    # names and a comma in every text, shifted (texts cut, exit 0): both refused, each fix named
    ("train.csv", '"text","label"\n"1","great acting.","pos"\n"7","a","neg"\n',
     first_row("line 2 has 3 fields but the header has 2", "quote texts that contain ','")),
    ("train.csv", "id,text,label\n1,great acting, loved it,pos\n2,dull plot, slow pacing,neg\n",
     first_row("line 2 has 4 fields but the header has 3", "quote texts that contain ','")),
    ("train.tsv", "id\ttext\tlabel\n1\tgreat acting\tloved it\tpos\n2\tdull\tslow\tneg\n",
     first_row("line 2 has 4 fields but the header has 3",
               "a text holds a tab (a .tsv cannot hold one): replace it with a space")),
    ("train.tsv", "text\tlabel\ngood film\tpos\t\nbad film\tneg\t\n",  # a tab at the end of every row
     first_row("line 2 has 3 fields but the header has 2, the last one empty",
               "remove the '\t' at the end of its rows")),
    ("train.csv", "text,label,notes\ngood,pos,x\nbad,neg,y,\n",  # a later row: no row names
     "line 3 has 4 fields but the header has 3, the last one empty: remove the ',' at the end of its rows"),
    ("train.csv", "text,label\ngood film,pos\nbad, sad film,neg\n",  # not the first row: no row names
     "line 3 has 3 fields but the header has 2; quote texts that contain ','"),
    # an empty name ending the header: its rows may not leave the field out (a text cut by a line break did)
    ("train.csv", "label,text,\npos,great acting\nneg,dull,\n",
     "line 2 has 2 fields but the header has 3, whose last name is empty: remove the ',' at the header's end"),
    ("train.csv", "label,text,\npos,great acting,\nneg,dull\nplot, slow pacing,\n",  # its later row: cut
     "line 3 has 2 fields but the header has 3: a line break outside quotes cut a text (quote the texts; pandas' "
     "to_csv leaves a lone \\r unquoted: pass quoting=csv.QUOTE_ALL), or the row lacks a field (add it)"),
    ("train.csv", 'text,label,notes\ngood,pos,x\n"bad\nfilm",neg\n',  # a quoted line break: only a missing field
     "the row on lines 3-4 has 2 fields but the header has 3: the row lacks a field (add it)"),
], ids=["csv-first-row-extra-field", "tsv-first-row-extra-field", "tsv-line-break", "csv-unquoted-lone-cr",
        "r-row-names", "id-column-and-a-comma-in-every-text", "tsv-id-column-and-a-tab-in-every-text",
        "a-separator-ending-every-row", "a-separator-ending-a-later-row", "a-later-row",
        "header-ending-in-an-empty-name", "a-cut-row-under-a-header-ending-in-an-empty-name",
        "a-quoted-row-short-of-a-field"])
def test_a_csv_row_with_more_or_fewer_fields_than_the_header_is_refused_before_pandas_reads_it(tmp_path, name,
                                                                                             content, words):
    """pandas read these without a word (fuzz audit70 F1, F2): a first data row with one field too many made the
    first column an index (every column shifted: `loop.predict` scored the ids as the texts, exit 0); a line break
    in a .tsv text (or a lone \\r, which pandas' to_csv leaves unquoted) made the text's tail a row of its own,
    padded with empty fields, whose label column held 'weak plot': a third class in best/. Each is one line."""
    path = tmp_path / name
    path.write_bytes(content.encode())
    with pytest.raises(UserError, match=f"^--train_file {re.escape(str(path))} could not be read: "
                                        f"{re.escape(words)}\\.$"):
        D.load_file(str(path), "--train_file")


@pytest.mark.parametrize("name, content", [
    ("train.csv", 'text,label\n"great acting.\nweak plot",pos\n\n"a, b",neg\n'),
    ("train.csv", 'text,label\ngreat acting.,pos\n  \t \na,neg\n \n'),  # lines of spaces and tabs: blank to pandas
    ("train.csv", '\ufeff"review, raw",label\r\ngreat acting.,pos\r\na,neg\r\n'),  # Excel's BOM, a quoted name
], ids=["quoted-line-break", "whitespace-lines", "bom-quoted-header"])
def test_a_csv_whose_rows_match_its_header_still_loads(tmp_path, name, content):
    """The row check reads as pandas does (audit70 rev F2, F3: lines of spaces, a BOM before a quoted name were
    refused by the first version of it, where they trained as they should)."""
    path = tmp_path / name
    path.write_text(content)
    ds = D.load_file(str(path), "--train_file")
    assert ds.column_names == ["review, raw" if "review" in content else "text", "label"]
    texts = ds[ds.column_names[0]]
    assert (texts[0], texts[-1], ds["label"]) == ("great acting.\nweak plot" if "weak" in content else
                                                           "great acting.", "a, b" if "a, b" in content else "a",
                                                           ["pos", "neg"])


def test_a_csv_shard_whose_rows_do_not_match_its_header_is_named_among_the_files_matched(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "a.csv").write_text("text,label\ngood,1\n")
    (shards / "b.csv").write_text("text,label\nbad,0,extra\n")  # the shard is named among the files matched
    with pytest.raises(UserError, match=f"^--train_file '{re.escape(str(shards))}/\\*.csv': "
                                        f"{re.escape(str(shards / 'b.csv'))} could not be read: line 2 has 3 fields"):
        D.load_file(str(shards / "*.csv"), "--train_file")


def test_a_dataset_folder_whose_split_mixes_csv_and_tsv_files_is_refused(tmp_path):
    """A --dataset_name folder's train.csv and train.tsv were read as one table at commas (the first file's rules):
    the .tsv's header became a third column and its rows lost their labels (audit70 rev F5)."""
    fold = tmp_path / "fold"
    fold.mkdir()
    (fold / "train.csv").write_text("text,label\ngood film,pos\nbad film,neg\n")
    (fold / "train.tsv").write_text("text\tlabel\ngood, film\tpos\nbad\tneg\n")
    (fold / "test.csv").write_text("text,label\nfine,pos\n")
    with pytest.raises(UserError, match=r"^--dataset_name .*fold \(split 'train'\): train\.csv, train\.tsv are files "
                                        r"of 2 formats \(\.csv, \.tsv\), which would be read as one table by the first "
                                        r"one's rules; keep one format \(convert or move the others\)\.$"):
        D._load_folder(TrainConfig(dataset_name=str(fold), output_dir=str(tmp_path / "out")))


def test_a_dataset_folders_data_files_read_as_no_split_are_named(tmp_path):
    """datasets matches a folder's extensions in lower case: a train_2.TSV beside train.tsv was dropped without a
    word, half the training data (audit70 rev2 F7); the Hub's own records are no data."""
    fold = tmp_path / "fold"
    (fold / "data").mkdir(parents=True)
    (fold / "train.tsv").write_text("text\tlabel\ngood\tpos\n")
    (fold / "train_2.TSV").write_text("text\tlabel\nbad\tneg\n")
    (fold / "test.tsv").write_text("text\tlabel\nfine\tpos\n")
    (fold / "dataset_infos.json").write_text("{}")
    (fold / "README.md").write_text("# a card\n")
    with pytest.warns(UserWarning) as said:
        ds = D._load_folder(TrainConfig(dataset_name=str(fold), output_dir=str(tmp_path / "out")))
    assert len(ds["train"]) == 1
    lines = [str(w.message) for w in said if "no split" in str(w.message)]
    assert lines == [f"dataset folder '{fold}': train_2.TSV is read as no split (datasets finds a split by its name "
                     f"in file names, and extensions in lower case only); if it holds examples, rename it so, or "
                     f"pass each split's files with --train_file / --validation_file."]
    (fold / "train_2.TSV").rename(fold / "train_2.tsv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(D._load_folder(TrainConfig(dataset_name=str(fold), output_dir=str(tmp_path / "out")))["train"]) == 2


LONG = "a long review " * 10_000  # 140 KB: more than the csv module's default field limit (128 KiB)


@pytest.mark.parametrize("content, words", [
    (f'text,label\n"{LONG}",POSITIVE\ngood film,POSITIVE\nbad, sad film,NEGATIVE\n',
     "line 4 has 3 fields but the header has 2; quote texts that contain ','"),
    (f'text,label\n"{LONG}",POSITIVE\n"bad film,NEGATIVE\nfine film,POSITIVE\nmeh,NEGATIVE\n',
     "a quote opened on line 3 is never closed (the text runs on to line 5); close or remove it"),
], ids=["bad-row", "unclosed-quote"])
def test_a_csv_with_a_text_over_128_kib_still_names_its_bad_row(tmp_path, content, words):
    """A long document in a csv (pandas reads it) made the diagnosis of a bad row a traceback: `_csv.Error: field
    larger than field limit (131072)`. The limit is raised for the diagnosis only."""
    import csv

    path = tmp_path / "train.csv"
    path.write_text(content)
    limit = csv.field_size_limit()
    assert file_checks.diagnose_file(str(path), "csv") == words
    assert csv.field_size_limit() == limit  # process-wide: put back


def _diagnosis_memory(path, builder):
    import tracemalloc

    tracemalloc.start()
    try:
        return file_checks.diagnose_file(str(path), builder), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", ["train.jsonl", "train.json", "train.csv", "train.tsv"])
def test_diagnosing_a_big_file_streams_it(name, tmp_path, monkeypatch):
    """A bad last line of a 2 MB file is named while Python holds a few chunks of it at most: the diagnosis read
    the whole file as bytes, text and lines (a 314 MB JSON-lines file took 1.1 GB, a multi-GB one was killed)."""
    monkeypatch.setattr(file_checks, "DIAGNOSE_CHUNK", 2**14)
    rows = [{"text": f"film {i} was a fine and moving story", "label": "POSITIVE"} for i in range(40_000)]
    path = tmp_path / name
    with open(path, "w") as f:
        if name == "train.jsonl":
            f.writelines(json.dumps(r) + "\n" for r in rows)
            f.write('{"text": "broken", "label": \n')
            bad = f"invalid JSON at line {len(rows) + 1} (Expecting value); fix or remove that line"
        elif name == "train.json":
            f.write("[\n" + "".join(json.dumps(r) + ",\n" for r in rows) + '{"text": "broken", "label": }\n]\n')
            bad = f"invalid JSON at line {len(rows) + 2} (Expecting value); fix that line"
        else:
            sep = "," if name == "train.csv" else "\t"
            f.write(f"text{sep}label\n" + "".join(f"{r['text']}{sep}{r['label']}\n" for r in rows) + f"a{sep}b{sep}c\n")
            bad = f"line {len(rows) + 2} has 3 fields but the header has 2"
    size = os.path.getsize(path)
    assert size > 1_500_000
    problem, peak = _diagnosis_memory(path, "csv" if name.endswith("sv") else "json")
    assert problem.startswith(bad), problem
    assert peak < size / 8, (peak, size)


ARRAYS = [
    [{"text": "a", "label": "x"}] * 3,
    [{"text": "caf\u00e9 \u2028 " + "w" * 30, "label": [1, 2.5e3, True, None, -1e-3]}, {"t": {"n": [[], {}]}}],
    '[{"a": "x"},\n {"a": 12345}  ,\n\n{"a": "y"} ]',
    '[{"a": "x"},\n {"a": "y"} {"a": "z"}]',  # a comma missing
    '[{"a": "x"},\n {"a": "y"},\n]',  # a trailing comma
    '[{"a": "x"},\n {"a": "an unterminated string},\n {"a": "y"}]',
    '[{"a": "x"},\n {"a": "y\\q"}]',  # a bad escape
    '[{"a": "x"},\n {"a": tru}]',
    '[{"a": "x"},\n {"a": "y"}]\n  extra',
    '[{"a": "x"},\n {"a": "y"}',  # never closed
    '[{"a": "x"},\n 12345678,\n {"a": "y"}]',  # an element that is no row
    '[{"a": "x"},\n ["a", "b"]]',
    '[ \n ]',
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 2**20])
def test_a_json_array_is_diagnosed_element_by_element_as_a_whole_read_would(size, tmp_path, monkeypatch):
    """Read in chunks of any size (an element, a number, a string or an escape cut at a chunk's end), a JSON array
    gets the diagnosis that reading it whole gives: the same JSON error on the same line, or its first non-row."""
    monkeypatch.setattr(file_checks, "DIAGNOSE_CHUNK", size)
    for doc in ARRAYS:
        text = " \n" + (doc if isinstance(doc, str) else json.dumps(doc, indent=1, ensure_ascii=False))
        try:
            rows = json.loads(text)
            bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
            whole = None if bad is None else (f"element {bad} of its array is {str(rows[bad])[:40]!r}, not a row "
                                              f"object; every element must be {{...}}")
        except json.JSONDecodeError as e:
            whole = f"invalid JSON at line {e.lineno} ({e.msg}); fix that line"
        path = tmp_path / "train.json"
        path.write_text(text, encoding="utf-8")
        assert file_checks.diagnose_file(str(path), "json") == whole, doc


@pytest.mark.parametrize("line, why", [
    ('{"text": "a good film", "label": "neg", "label": "pos"}', "line 2 gives the key 'label' twice; keep one"),
    ('{"text": "bad \\ud800 film", "label": "neg"}', "line 2's 'text' holds half of a character pair (an escape "
                                                    "'\\ud800' .. '\\udfff' alone), which has no UTF-8 form")])
def test_json_lines_python_reads_but_arrow_refuses_are_named(line, why, tmp_path):
    """A key given twice, a lone surrogate escape: valid to Python's json (so the diagnosis found no line), refused by
    datasets ('An error occurred while generating the dataset'): the line and the fix (audit57 c F5)."""
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "fine", "label": "pos"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(f"--train_file {path} could not be read: {why}")):
        D.load_file(str(path), "--train_file")


def test_json_lines_end_at_newlines_only(tmp_path):
    """A text holding a line separator (U+2028, U+0085: valid in a JSON string) is one line, as datasets reads it:
    the diagnosis split lines at those too, and named the wrong line (an 'Unterminated string' that is none)."""
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "one\u2028two", "label": "a"}\n{"text": "three\x85four", "label": "b"}\n{"text": }\n',
                    encoding="utf-8", newline="")
    assert file_checks.diagnose_file(str(path), "json") == "invalid JSON at line 3 (Expecting value); fix or remove that line"


@pytest.mark.parametrize("labels, what", [([[["POSITIVE"]], [["NEGATIVE", "POSITIVE"]]], "lists of lists"),
                                          ([[{"name": "POSITIVE"}], [{"name": "NEGATIVE"}]], "lists of objects")])
def test_a_label_column_of_nested_lists_is_refused_in_one_line(labels, what, tmp_path):
    """Lists of lists (a parquet written from nested Python lists) failed as `TypeError: unhashable type: 'list'`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"text": ["good film", "bad film"], "label": pa.array(labels)}), path)
    ds = D.load_file(str(path), "--train_file")
    with pytest.raises(UserError, match=rf"the training label column 'label' holds {what}; a label is a name or an "
                                        rf"integer id, or for multi-label data a flat list of them"):
        multi_hot_as_lists(TrainConfig(), {TRAIN: ds, EVAL: plain([0, 1])})


def test_a_parquet_file_too_deeply_nested_for_the_reader_is_named_as_parquet(tmp_path):
    """pyarrow refuses a schema deeper than 100 levels: that was 'it is not a Parquet file (...)'; it is one, and
    the message names the column to drop or flatten."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    deep = pa.array([1, 2])
    for _ in range(60):
        deep = pa.ListArray.from_arrays(pa.array([0, 1, 2], pa.int32()), deep)
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"text": ["good", "bad"], "label": ["POSITIVE", "NEGATIVE"], "extra": deep}), path)
    with pytest.raises(UserError) as e:
        D.load_file(str(path), "--train_file")
    assert "not a Parquet file" not in str(e.value)
    assert ("could not be read: it is a Parquet file, but its column 'extra' is nested 60 levels deep (lists of lists "
            "...), more than the Parquet reader accepts; drop or flatten that column before saving the file."
            ) in str(e.value)


def test_a_csv_integer_beyond_64_bits_is_text_and_named_in_a_label(tmp_path):
    """pandas keeps an integer beyond 64 bits as a Python int, which Arrow cannot hold (the read failed with
    datasets' 'An error occurred while generating the dataset'): an unused id column of them reads as text, and
    a label column's check names the row."""
    from loop.config import TrainConfig

    path = tmp_path / "train.csv"
    path.write_text("id,text,label\n1,good film,1\n123456789012345678901234,bad film,0\n3,fine film,99999999999999999999\n")
    ds = D.load_file(str(path), "--train_file")
    assert ds["id"] == ["1", "123456789012345678901234", "3"] and ds["text"][2] == "fine film"
    raw = {"train": ds, "eval": ds}
    with pytest.raises(UserError, match=r"training label column 'label' holds 99999999999999999999 in row 2, an "
                                        r"integer too large for 64 bits"):
        encode_labels(TrainConfig(), raw)


def test_a_json_text_column_with_a_number_in_one_row_names_the_row(tmp_path):
    """datasets reads a JSON column of mixed values as Json: the message said 'holds Json values', not which row."""
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a fine film", "label": 0}\n{"text": 42, "label": 1}\n')
    ds = D.load_file(str(path), "--train_file")
    with pytest.raises(UserError, match=r"training text column 'text' mixes text and other values \(row 1: 42\); "
                                        r"write every text as a JSON string"):
        D.text_as_strings(ds, "text", "training")


def test_true_false_labels_train_a_classifier_of_false_and_true(tiny_model, tmp_path):
    rows = synthetic.make_rows(120, seed=1)
    for name, part in (("train.jsonl", rows[:96]), ("validation.jsonl", rows[96:])):
        synthetic.write_jsonl([{"text": r["text"], "label": r["label"] == "POSITIVE"} for r in part], tmp_path / name)
    out = str(tmp_path / "out")
    run_cli(tiny_args(tiny_model, tmp_path, out, num_train_epochs=1), how="python")
    with open(os.path.join(out, "best", "config.json")) as f:
        assert json.load(f)["id2label"] == {"0": "false", "1": "true"}


def test_a_regression_models_data_refusal_names_the_model_not_a_flag():
    """--eval_only of a regression model on classification data blamed --problem_type, which the user did not
    pass (the model's config makes it a regression); the line names the model, the flag only when given."""
    rows = plain(["NEGATIVE", "POSITIVE"])
    cfg = TrainConfig(problem_type="regression", model_name_or_path="reg/best")
    cfg.given_options = frozenset()  # as parse_args records a run that did not pass it
    with pytest.raises(UserError, match=r"^model 'reg/best' is a regression model \(its config.json\): it needs a "
                                        r"number per text, but the training label in row 0 is 'NEGATIVE'; fix the "
                                        r"data, or score it on the data it was trained for"):
        encode_labels(cfg, splits(rows, rows))
    cfg.given_options = frozenset({"problem_type"})
    with pytest.raises(UserError, match=r"^--problem_type regression: it needs a number per text, .* or leave "
                                        r"--problem_type out to classify"):
        encode_labels(cfg, splits(rows, rows))


@pytest.mark.parametrize("ext", ["jsonl", "parquet", "csv"])
def test_a_file_rewritten_with_the_same_mtime_is_read_again(ext, tmp_path):
    """datasets keys its cached copy of a local file on the path and mtime alone: a file rewritten and given its
    old mtime back (cp -p, rsync -a, touch -r) was read from the old copy, and trained on, without a word."""
    import pandas as pd

    f = tmp_path / f"train.{ext}"

    def write(labels):
        frame = pd.DataFrame({"text": ["a good film", "a bad film"], "label": labels})
        {"jsonl": lambda: frame.to_json(f, orient="records", lines=True), "parquet": lambda: frame.to_parquet(f),
         "csv": lambda: frame.to_csv(f, index=False)}[ext]()

    write(["pos", "neg"])
    before = os.stat(f)
    assert D.load_file(str(f), "--train_file")["label"] == ["pos", "neg"]
    write(["neg", "pos"])  # the same size, every label swapped
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(f)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert D.load_file(str(f), "--train_file")["label"] == ["neg", "pos"]


@pytest.mark.slow  # 6-11 s on 2 cores: the quick loop stays under ~5 min
def test_a_local_dataset_folder_is_read_split_by_split(tiny_model, tmp_path):
    """--dataset_name FOLDER went to load_dataset whole: classes named in other orders in two files flipped every
    evaluation label (0.065 where --train_file/--validation_file scored 0.935); train_dev.jsonl was trained on and
    evaluated on; validation_matched/validation_mismatched were merged into one 'validation'; a save_to_disk
    folder's 'dev' was renamed and 'unsupervised' dropped."""
    import datasets

    rows, held = synthetic.make_rows(120, seed=1), synthetic.make_rows(40, seed=2)

    def run(name, **over):
        out = str(tmp_path / f"out_{name}_{len(over)}")
        flags = {"num_train_epochs": 1, "train_file": None, "validation_file": None, **over}
        if name:
            flags["dataset_name"] = str(tmp_path / name)
        args = tiny_args(tiny_model, tmp_path, out, **flags)
        return run_cli(args, how="python", check=False), out

    # classes in other orders (parquet ClassLabel): as the files would be read one by one
    (tmp_path / "cl").mkdir()
    features = {n: datasets.ClassLabel(names=n.split(",")) for n in ("NEGATIVE,POSITIVE", "POSITIVE,NEGATIVE")}
    datasets.Dataset.from_list(rows).cast_column("label", features["NEGATIVE,POSITIVE"]).to_parquet(
        str(tmp_path / "cl" / "train.parquet"))
    datasets.Dataset.from_list(held).cast_column("label", features["POSITIVE,NEGATIVE"]).to_parquet(
        str(tmp_path / "cl" / "validation.parquet"))
    folder, out = run("cl")
    files, out_files = run(None, train_file=str(tmp_path / "cl" / "train.parquet"),
                           validation_file=str(tmp_path / "cl" / "validation.parquet"))
    assert folder.returncode == files.returncode == 0, folder.stderr[-2000:] + files.stderr[-2000:]
    strip = lambda d: [{k: v for k, v in e.items() if k != "time"} for e in evals(d)]  # noqa: E731
    assert strip(out) == strip(out_files) and evals(out)[-1]["eval_samples"] == 40

    # a file whose name two splits claim: refused
    (tmp_path / "dup").mkdir()
    for name, part in (("train", rows), ("validation", held), ("train_dev", held[:8])):
        synthetic.write_jsonl(part, tmp_path / "dup" / f"{name}.jsonl")
    proc, _ = run("dup")
    assert proc.returncode == 2 and "file train_dev.jsonl is read as split 'train' and as 'validation'" in proc.stderr

    # a split of two names: two splits, named; evaluating needs one of them
    (tmp_path / "mnli").mkdir()
    for name, part in (("train", rows), ("validation_matched", held[:24]), ("validation_mismatched", held[24:])):
        synthetic.write_jsonl(part, tmp_path / "mnli" / f"{name}.jsonl")
    proc, _ = run("mnli")
    assert proc.returncode == 2 and "(it has: train, validation_matched, validation_mismatched); name one with " \
        "--eval_split" in proc.stderr, proc.stderr[-2000:]
    proc, out = run("mnli", eval_split="validation_mismatched")
    assert proc.returncode == 0 and evals(out)[-1]["eval_samples"] == 16, proc.stderr[-2000:]

    # a training split's shards and extra files, numbered files, gzipped files: one split each, as datasets reads them
    import gzip

    layouts = {"shards": {"data/train-00000-of-00002-ab12.parquet": rows[:60],
                          "data/train-00001-of-00002-ab12.parquet": rows[60:],
                          "data/validation-00000-of-00001-cd34.parquet": held},
               "extra": {"train.jsonl": rows[:60], "train_extra.jsonl": rows[60:], "validation.jsonl": held},
               "numbered": {"train_0.jsonl": rows[:60], "train_1.jsonl": rows[60:], "validation.jsonl": held},
               "gzipped": {"train.jsonl.gz": rows, "validation.jsonl.gz": held}}
    for layout, files in layouts.items():
        for name, part in files.items():
            path = tmp_path / layout / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if name.endswith(".parquet"):
                datasets.Dataset.from_list(part).to_parquet(str(path))
            else:
                with (gzip.open if name.endswith(".gz") else open)(path, "wt") as f:
                    f.writelines(json.dumps(r) + "\n" for r in part)
        proc, out = run(layout)
        assert proc.returncode == 0 and "120 training ('train') / 40 evaluation ('validation') rows loaded" \
            in proc.stdout, (layout, proc.stdout[-1500:], proc.stderr[-1500:])

    # save_to_disk: the splits as saved ('dev' evaluated, 'unsupervised' kept aside)
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "dev": datasets.Dataset.from_list(held[:30]),
                          "unsupervised": datasets.Dataset.from_list(rows[:5])}).save_to_disk(str(tmp_path / "saved"))
    proc, out = run("saved")
    assert proc.returncode == 0 and evals(out)[-1]["eval_samples"] == 30, proc.stderr[-2000:]
    assert "120 training ('train') / 30 evaluation ('dev') rows loaded" in proc.stdout  # which split does what


def test_a_datasets_cache_under_a_file_is_named(tmp_path, monkeypatch):
    """HF_HOME naming a file: '--train_file ... could not be read: [Errno 20] Not a directory' blamed the data file
    (audit57 c F6); the cache is named, with the variable to set."""
    import datasets

    (tmp_path / "afile").write_text("not a folder")
    cache = tmp_path / "afile" / "datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    f = tmp_path / "train.jsonl"
    f.write_text('{"text": "a good film", "label": "pos"}\n')
    with pytest.raises(UserError, match=re.escape(f"the datasets cache '{cache}' cannot be written (Not a directory); "
                                                  f"set HF_DATASETS_CACHE (or HF_HOME)")):
        D.load_file(str(f), "--train_file")


def test_a_datasets_cache_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    """A read-only HF_HOME (a shared, pre-filled store) read as '--train_file could not be read', and a CSV was read
    again in memory, so the error named the next file. One line naming the cache now."""
    import errno

    import datasets

    cache = tmp_path / "ro_cache"
    cache.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(cache / "csv"))

    monkeypatch.setattr(datasets, "load_dataset", read_only)
    f = tmp_path / "train.csv"
    f.write_text("text,label\na good film,pos\na bad film,neg\n")
    with pytest.raises(UserError, match=f"the datasets cache '{cache}' cannot be written \\(Read-only file system\\); "
                                        "set HF_DATASETS_CACHE"):
        D.load_file(str(f), "--train_file")

    g = tmp_path / "train.jsonl"
    g.write_text('{"text": "a good film", "label": "pos"}\n')

    def unreadable(*args, **kwargs):  # the data file itself, not the cache: the file's own diagnosis
        raise OSError(errno.EACCES, "Permission denied", str(g))

    monkeypatch.setattr(datasets, "load_dataset", unreadable)
    with pytest.raises(UserError, match="--train_file .*train.jsonl could not be read") as e:
        D.load_file(str(g), "--train_file")
    assert "datasets cache" not in str(e.value)


def test_a_read_only_shared_cache_of_a_hub_dataset_says_to_take_its_copy_along(tmp_path, monkeypatch):
    """datasets takes a lock in its cache even to read a Hub dataset prepared there (offline): a read-only shared
    cache failed as 'could not load dataset ... from the Hugging Face Hub', and the usual fix (another
    HF_DATASETS_CACHE) loses the copy (audit61). One line naming the cache, and the folder to copy."""
    import errno

    import datasets

    cache = tmp_path / "shared"
    copy = cache / "imdb" / "plain_text" / "0.0.0" / "abcd"
    copy.mkdir(parents=True)
    (copy / "dataset_info.json").write_text("{}")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(cache / "_tmp_imdb.lock"))

    monkeypatch.setattr(datasets, "load_dataset", read_only)
    cfg = TrainConfig(model_name_or_path=str(tmp_path), train_file=None, dataset_name="imdb",
                      output_dir=str(tmp_path / "o"))
    with pytest.raises(UserError) as e:
        D._load_hub(cfg)
    assert str(e.value) == (f"the datasets cache '{cache}' cannot be written (Read-only file system); set "
                            f"HF_DATASETS_CACHE (or HF_HOME) to a writable folder with free space, and copy "
                            f"'{cache / 'imdb'}' into it (where load_dataset reads it offline).")


def _no_space():
    """The ENOSPC a full disk gives arrow's writer through fsspec: raised while datasets handles the first one
    (its writer's close fails too), no file name."""
    import errno

    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("kind", ["datasets' own check", "mid-write", "arrow's words", "read-only HF_HOME"])
def test_a_full_or_uncreatable_datasets_cache_reading_a_file_is_named(kind, tmp_path, monkeypatch):
    """audit39 #1: a full cache read as '--train_file ... could not be read: Not enough disk space' (datasets'
    errno-less pre-check, when the disk is full), or '... An error occurred while generating the dataset' (a
    disk that fills while the file is copied in: DatasetGenerationError raised from the ENOSPC), and an HF_HOME
    on a read-only disk, whose folder could not be created, as '[Errno 30] Read-only file system: <HF_HOME>'.
    Each blamed the data file; the line names the cache, the cause and the fix now."""
    import errno

    import datasets
    from datasets.exceptions import DatasetGenerationError

    home = tmp_path / "ro" / "hf"
    cache = home / "datasets"  # (not there: a read-only disk)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))

    def fail(*args, **kwargs):
        if kind == "datasets' own check":
            raise OSError("Not enough disk space. Needed: Unknown size (download: Unknown size, generated: Unknown "
                          "size, post-processed: Unknown size)")
        if kind == "mid-write":
            try:
                _no_space()
            except OSError as e:
                raise DatasetGenerationError("An error occurred while generating the dataset") from e
        if kind == "arrow's words":
            raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
        raise OSError(errno.EROFS, "Read-only file system", str(home))

    monkeypatch.setattr(datasets, "load_dataset", fail)
    f = tmp_path / "train.jsonl"
    f.write_text('{"text": "a good film", "label": "pos"}\n')
    with pytest.raises(UserError) as e:
        D.load_file(str(f), "--train_file")
    if kind == "read-only HF_HOME":
        assert str(e.value) == (f"the datasets cache '{cache}' cannot be written (Read-only file system, creating "
                                f"'{home}'); set HF_DATASETS_CACHE (or HF_HOME) to a writable folder with free space.")
    else:
        assert str(e.value) == (f"the datasets cache '{cache}' cannot be written (No space left on device); free "
                                f"space there, or set HF_DATASETS_CACHE (or HF_HOME) to a folder with room.")


def test_a_datasets_cache_that_fills_while_tokenizing_is_one_line(tiny_model, tmp_path, monkeypatch):
    """audit39 #1: the cache filling during tokenize's map (its largest write: the tokenized copy) ended in two
    chained tracebacks. One line now, naming the folder the map writes into: the datasets cache for a file, or a
    save_to_disk folder's own (datasets writes a map's result beside the dataset's files); a failure that is
    not the disk keeps its traceback."""
    import datasets
    from transformers import AutoTokenizer

    cache = tmp_path / "cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    f = tmp_path / "train.jsonl"
    f.write_text('{"text": "a good film", "label": 1}\n{"text": "a bad film", "label": 0}\n')
    from_file = datasets.DatasetDict({TRAIN: D.load_file(str(f), "--train_file")})
    datasets.Dataset.from_dict({"text": ["a good film"], "label": [1]}).save_to_disk(str(tmp_path / "saved"))
    from_disk = datasets.DatasetDict({TRAIN: datasets.load_from_disk(str(tmp_path / "saved"))})
    tok = AutoTokenizer.from_pretrained(tiny_model)
    real_map = datasets.Dataset.map
    failure = [_no_space]

    def full(self, *args, **kwargs):
        failure[0]()

    monkeypatch.setattr(datasets.Dataset, "map", full)
    with pytest.raises(UserError) as e:
        D.tokenize(TrainConfig(), from_file, tok, 16)
    assert str(e.value) == (f"the datasets cache '{cache}' cannot be written (No space left on device); free space "
                            f"there, or set HF_DATASETS_CACHE (or HF_HOME) to a folder with room.")
    with pytest.raises(UserError) as e:
        D.tokenize(TrainConfig(), from_disk, tok, 16)
    assert str(e.value) == (f"the saved dataset's folder '{tmp_path / 'saved'}', where datasets writes its tokenized "
                            f"copy, cannot be written (No space left on device); free space there, or save the "
                            f"dataset to a writable folder with room.")

    def bug():
        raise OSError("a bug in a tokenizer")

    failure[0] = bug
    with pytest.raises(OSError, match="a bug in a tokenizer"):
        D.tokenize(TrainConfig(), from_file, tok, 16)
    monkeypatch.setattr(datasets.Dataset, "map", real_map)
    assert len(D.tokenize(TrainConfig(), from_file, tok, 16)[TRAIN]) == 2  # space again: it tokenizes


# ---------------------------------------------------------------- scale: columns are read through Arrow
@pytest.mark.parametrize("kind", ["names", "ids", "multi", "regression", "weights as text"])
def test_the_data_checks_read_whole_columns_not_row_by_row(kind, tiny_model, tmp_path, monkeypatch):
    """datasets 5's `ds[col]` is a lazy Column that formats one row per step: the label checks made ~6
    such passes per split, on every rank, at every start and resume (163 s per million rows before the
    first step; through Arrow 0.1 s a pass). Any iteration of a Column during setup fails here."""
    import datasets.arrow_dataset

    def row_by_row(self):
        raise AssertionError("a Column was iterated row by row; read it with data.column or data.column_values")

    rows = synthetic.make_rows(120, seed=3)

    def label(r, i):
        positive = r["label"] == "POSITIVE"
        return {"ids": int(positive), "multi": [r["label"]] + (["EXTRA"] if i % 3 == 0 else []),
                "regression": str(float(positive) + 0.1 * (i % 3))}.get(kind, r["label"])

    for name, part in (("train", rows[:90]), ("validation", rows[90:])):
        with open(tmp_path / f"{name}.jsonl", "w") as f:
            for i, r in enumerate(part):
                f.write(json.dumps({"text": r["text"], "label": label(r, i), "w": str(1 + i % 2)}) + "\n")
    over = {"regression": {"problem_type": "regression"}, "weights as text": {"weight_column": "w"}}.get(kind, {})
    monkeypatch.setattr(datasets.arrow_dataset.Column, "__iter__", row_by_row)
    loop = Loop(parse_args(tiny_args(tiny_model, tmp_path, str(tmp_path / "out"), max_steps=1, **over)))
    loop.setup()
    assert len(loop.data.train) == 90 and len(loop.data.eval) == 30
    if kind == "multi":
        assert list(loop.data.label_names) == ["EXTRA", "NEGATIVE", "POSITIVE"]
    elif kind != "regression":
        assert len(loop.data.label_names) == 2


@pytest.mark.parametrize("labels", [["POS", "NEG", "POS"], [1, 0, 1], [["POS"], ["NEG", "POS"], []]])
def test_encoding_labels_writes_no_copy_of_the_data(labels, tmp_path):
    """Encoding the labels mapped the whole table (texts included) into the datasets cache and cast it to
    ClassLabel in a second full copy: two thirds of a 2.2 GB cache for 20k long reviews. Single labels now
    add their ids in memory; multi-hot rows are written once, already as float32."""
    import glob

    for name in ("train", "validation"):
        with open(tmp_path / f"{name}.jsonl", "w") as f:
            for i, label in enumerate(labels):
                f.write(json.dumps({"text": f"a long review number {i} " * 50, "label": label}) + "\n")
    raw = {TRAIN: D.load_file(str(tmp_path / "train.jsonl"), "--train_file"),
           EVAL: D.load_file(str(tmp_path / "validation.jsonl"), "--validation_file")}
    folders = {os.path.dirname(f["filename"]) for ds in raw.values() for f in ds.cache_files}
    before = {p for folder in folders for p in glob.glob(os.path.join(folder, "*.arrow"))}
    import datasets

    raw = datasets.DatasetDict(raw)
    names = encode_labels(TrainConfig(), raw)
    written = {p for folder in folders for p in glob.glob(os.path.join(folder, "*.arrow"))} - before
    assert names == ["NEG", "POS"] or names == ["LABEL_0", "LABEL_1"], names
    if isinstance(labels[0], list):
        assert len(written) == 2, written  # one file per split
        assert raw[TRAIN].features["labels"] == datasets.Sequence(datasets.Value("float32"), length=2)
        assert raw[TRAIN]["labels"][:] == [[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    else:
        assert written == set(), written
        assert raw[TRAIN].features["labels"] == datasets.ClassLabel(names=names)
        assert raw[TRAIN]["labels"][:] == [1, 0, 1] and raw[EVAL]["labels"][:] == [1, 0, 1]


# ---------------------------------------------------------------- long texts: tokenized from a prefix
def _bpe_tokenizer(kind, corpus):
    """A tiny byte-level BPE (GPT-2's kind) or a Llama-style BPE (no pre-tokenizer: spaces become '▁' and
    merges run over the whole text), trained on `corpus`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if kind == "byte-level":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        return PreTrainedTokenizerFast(tokenizer_object=tok)
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>")


@pytest.mark.parametrize("kind", ["word-level", "byte-level", "llama-style"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_long_texts_are_tokenized_from_a_prefix_with_the_same_ids(kind, side, tiny_model):
    """A 5,000-word text was tokenized whole only to keep its first max_length tokens (an hour for 200k such
    texts on 2 cores). Now a prefix of CHARS_PER_TOKEN x max_length characters is, and kept only when the
    window ends well before the cut: the ids, masks and whether the text was cut are the whole text's."""
    from transformers import AutoTokenizer

    rows = synthetic.make_rows(400, seed=5)
    corpus = [r["text"] for r in rows]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model) if kind == "word-level" else \
        _bpe_tokenizer(kind.split("-")[0] if kind == "byte-level" else "llama", corpus)
    tokenizer.truncation_side = side
    max_length = 16
    limit = D.CHARS_PER_TOKEN * max_length
    long = [" ".join(corpus[i:i + 40]) for i in range(0, 400, 40)]  # ~2,400 characters each
    odd = ["good" * 200, "  " * 400 + "good film " * 3, "good film " * 3 + "\n" * 600, "bad " * 60,
           "great " * 100 + "x" * 300, "x" * 300 + " great" * 100, "", "fine"]
    texts = long + odd + corpus[:5]
    seen = []

    class Recording:  # the tokenizer, recording the longest text it was given
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def __call__(self, batch, **kwargs):
            seen.append(max(len(t) for t in batch))
            return tokenizer(batch, **kwargs)

    got = D.encode_truncated(Recording(), texts, max_length)
    want = tokenizer(texts, truncation=True, max_length=max_length)
    assert got["input_ids"] == want["input_ids"] and got["attention_mask"] == want["attention_mask"]
    assert [bool(e.overflowing) for e in got.encodings] == [bool(e.overflowing) for e in want.encodings]
    assert seen[0] == limit  # the first call: every long text as its prefix (suffix)
    assert all(n <= max(len(t) for t in odd) for n in seen[1:])  # only texts without a safe cut again, whole


def _whitespace_heavy_texts(rng, n, words):
    """Texts of words between runs of spaces and newlines, tabs, no-break and control 'spaces' (U+0085, which
    BERT's normalizer deletes, joining the words around it)."""
    gaps = [" ", "  ", "\n", "\t", "\u00a0", "\x85", "\x1c", " " * 7, "\n" * 5, " " * 33]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(20, 120)):
            parts.append(rng.choice(words) if rng.random() < 0.9 else "New York")
            r = rng.random()
            parts.append(rng.choice(gaps) if r < 0.5 else " " * rng.randint(1, 80) if r < 0.75 else "\n" * rng.randint(1, 30))
        out.append("".join(parts))
    return out


@pytest.mark.parametrize("kind", ["bert", "bert + 'New York'", "byte-level", "llama-style"])
def test_a_prefix_is_cut_only_at_a_space_between_two_words(kind):
    """Whitespace is no safe cut for every tokenizer (audit31: 1-40 texts of 200 differed per tokenizer): BERT
    deletes U+0085 and joins 'aba\\x85ndoned' into one word, a byte-level or Llama-style BPE splits a run of spaces
    by its length, an added token may hold a space. Only a single ASCII space between two words is a cut now."""
    import random

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(7)
    words = synthetic.POSITIVE + synthetic.NEGATIVE + synthetic.NEUTRAL
    corpus = _whitespace_heavy_texts(rng, 200, words)
    if kind.startswith("bert"):
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]", "[CLS]", "[SEP]"]))
        tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
        if "New York" in kind:
            tokenizer.add_tokens(["New York"])
    else:
        tokenizer = _bpe_tokenizer(kind.split("-")[0] if kind == "byte-level" else "llama", corpus)
    texts = _whitespace_heavy_texts(rng, 150, words) + ["one two three four five" + " " * 60 + "aba\x85ndoned the film " * 20]
    for side in ("right", "left"):
        tokenizer.truncation_side = side
        for max_length in (4, 8, 16):
            got = D.encode_truncated(tokenizer, texts, max_length)
            want = tokenizer(texts, truncation=True, max_length=max_length)
            differ = [i for i in range(len(texts)) if got["input_ids"][i] != want["input_ids"][i]]
            assert not differ, (side, max_length, [texts[i][:80] for i in differ[:3]])
            assert [bool(e.overflowing) for e in got.encodings] == [bool(e.overflowing) for e in want.encodings]


def test_blank_texts_are_counted_a_slice_at_a_time(monkeypatch):
    """empty_texts trims whitespace to find blank texts: over the whole column at once that copied every text
    (+1.45 GB for 20k long reviews); a slice at a time it counts the same, and finds the first across slices."""
    import datasets

    texts = ["a film", " ", None, "good", "\u3000\n", "fine"] * 5 + ["", "last"]
    ds = datasets.Dataset.from_dict({"text": texts})
    whole = D.empty_texts(ds, "text")
    assert whole == (16, 1)
    monkeypatch.setattr(D, "EMPTY_TEXTS_SLICE", 4)
    assert D.empty_texts(ds, "text") == whole
    assert D.empty_texts(ds.select(range(2, 32)), "text") == (15, 0)  # through an indices mapping
    assert D.empty_texts(datasets.Dataset.from_dict({"text": ["x"] * 7 + ["  "]}), "text") == (1, 7)


def test_eval_only_lists_in_one_split_beside_ids_in_the_other_is_one_line():
    """--eval_only with a multi-label test split (lists) beside an evaluation split of single ids: refused in one
    line that names the kinds; it raised a TypeError while it noted whether the data held names (audit56's fuzzer)."""
    raw = {EVAL: plain([0, 1]), TEST: plain([[0], [1, 0]])}
    with pytest.raises(UserError, match="the evaluation labels are single ids but the others are lists"):
        encode_labels(TrainConfig(eval_only=True, model_name_or_path="out/best"), raw, source=EVAL, info={},
                      given=["NEG", "POS"])


def test_eval_only_classes_beyond_a_runs_record_are_one_line():
    """--eval_only of data whose ClassLabel is the one the model's run recorded (best_metrics.json class_names), but
    with more classes than the run named (an edited record): refused in one line, not a KeyError (audit56)."""
    import datasets

    feats = datasets.Features({"text": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["neg", "mid", "pos"])})
    raw = {EVAL: datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 2]}, features=feats)}
    reading = {"label_ids": "positions", "label_names": ["NEGATIVE", "POSITIVE"], "class_names": ["neg", "mid", "pos"]}
    with pytest.raises(UserError, match=r"the evaluation label column's classes \(neg, mid, pos\) are not the "
                                        r"model's labels \(NEGATIVE, POSITIVE\)"):
        eval_only_labels(TrainConfig(eval_only=True, model_name_or_path="out/best"), raw, ["NEGATIVE", "POSITIVE"],
                         reading)


def test_a_bad_byte_past_the_first_chunk_is_named_by_its_line(tmp_path, monkeypatch):
    """_utf8_problem counts the lines of the chunks it read before (a file over 1 MiB: DIAGNOSE_CHUNK)."""
    from loop import file_checks

    monkeypatch.setattr(file_checks, "DIAGNOSE_CHUNK", 16)
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"text,label\n" + b"a fine film,POSITIVE\n" * 5 + b"caf\xe9 noir,NEGATIVE\n")
    assert file_checks.diagnose_file(str(path), "csv") == \
        "it is not UTF-8 text (bad byte at line 7); re-save it as UTF-8"


def test_a_blank_line_of_json_lines_is_not_the_invalid_one(tmp_path):
    """blank lines of a JSON-lines file are skipped (datasets skips them); the broken line is named."""
    from loop import file_checks

    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a", "label": "POSITIVE"}\n\n{"text": "b", "label": "NEGATIVE"}\n{"text": \n')
    assert file_checks.diagnose_file(str(path), "json").startswith("invalid JSON at line 4 ")


def test_a_file_whose_first_64_kib_are_blank_is_not_blank(tmp_path):
    """is_blank reads 64 KiB: a file with rows after that much whitespace is not skipped as empty."""
    from loop.file_checks import is_blank

    path = tmp_path / "late.jsonl"
    path.write_text("\n" * 70_000 + '{"text": "good", "label": "POSITIVE"}\n')
    assert not is_blank(str(path))
    (tmp_path / "blank.jsonl").write_text("\n \t\n")
    assert is_blank(str(tmp_path / "blank.jsonl"))


def test_a_tsv_column_named_by_a_lone_quote_mark_is_not_a_quoted_header(tmp_path):
    """A header name that is one quote mark is not a name in quote marks: the quoted-tsv refusal is for headers
    whose every name is wrapped in them (audit60 round-2 mutants fc1, fc10)."""
    import csv

    path = tmp_path / "one.tsv"
    path.write_text('"\nsome text\n')
    assert file_checks.check_csv_header(str(path), "--train_file", "\t", csv.QUOTE_NONE) is None
    path.write_text('"text"\n"some text"\n')
    with pytest.raises(UserError, match="quotes its fields"):
        file_checks.check_csv_header(str(path), "--train_file", "\t", csv.QUOTE_NONE)


@pytest.mark.parametrize("name, content, words", [
    ("train.csv", "text,label\n\n", "it has a header but no rows; add at least one example"),
    ("train.tsv", "text\tlabel\n", "it has a header but no rows; add at least one example"),
    ("train.tsv", "text\tlabel\ngood\tpos\nbad\tneg\textra\n",
     "line 3 has 3 fields but the header has 2; a text holds a tab (a .tsv cannot hold one): replace it with a space"),
    ("train.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": null}\n{"text": "c", "label": "pos"}\n',
     "column 'label' mixes types (number at line 1, str at line 3); use one type per column"),
    ("train.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0.5}\n{"text": "c", "label": true}\n',
     "column 'label' mixes types (number at line 1, bool at line 3); use one type per column"),
    ("train.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n',
     "line 2 is not a JSON object; write one {...} object per line"),
    ("train.json", '[{"text": "a", "label": 1}, {"text": "b", "label": 0}]  ]',
     "invalid JSON at line 1 (Extra data); fix that line"),
    ("train.json", '[{"text": "a", "label": 1} {"text": "b", "label": 0}]',
     "invalid JSON at line 1 (Expecting ',' delimiter); fix that line"),
], ids=["csv-header-only", "tsv-header-only", "tsv-extra-field", "jsonl-mixed-types", "jsonl-bool-after-numbers",
        "jsonl-array-row", "json-extra-data", "json-missing-comma"])
def test_a_file_that_failed_to_load_is_diagnosed_by_its_problem(tmp_path, name, content, words):
    """What the one-line refusal of a data file that failed to load says (mutation audit62 m): a csv or tsv with
    a header but no rows, a JSON-lines column whose type changes (nulls aside; an int and a float are both
    numbers, a bool is not), a line that is no object, a JSON array with something after it or a missing comma."""
    path = tmp_path / name
    path.write_text(content)
    builder = {"csv": "csv", "tsv": "csv"}.get(name.rsplit(".", 1)[1], "json")
    assert file_checks.diagnose_file(str(path), builder) == words


def test_a_parquet_file_of_no_rows_is_diagnosed_and_holds_no_rows(tmp_path):
    """A 0-row Parquet file (as Spark and pandas write them) is named as having no rows, and holds_rows tells it,
    a header-only csv and a blank JSON-lines file from a file with rows (mutation audit62 m)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty, full = tmp_path / "empty.parquet", tmp_path / "full.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())}), empty)
    pq.write_table(pa.table({"text": ["a"], "label": [1]}), full)
    assert file_checks.diagnose_file(str(empty), "parquet") == "it has no rows; add at least one example"
    assert file_checks.diagnose_file(str(full), "parquet") is None
    assert not file_checks.holds_rows(str(empty)) and file_checks.holds_rows(str(full))
    (tmp_path / "header.csv").write_text("text,label\n\n")
    (tmp_path / "rows.csv").write_text("text,label\ngood,1\n")
    assert not file_checks.holds_rows(str(tmp_path / "header.csv"))
    assert file_checks.holds_rows(str(tmp_path / "rows.csv"))
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    (tmp_path / "rows.jsonl").write_text('{"text": "good", "label": 1}\n')
    assert not file_checks.holds_rows(str(tmp_path / "blank.jsonl"))
    assert file_checks.holds_rows(str(tmp_path / "rows.jsonl"))


def test_json_shapes_of_columns_and_of_rows(tmp_path):
    """check_json_shape refuses pandas' object of columns however it is laid out (indent=2 spreads it over lines),
    and passes rows whose values are lists: a one-row .json with a list of labels, and a one-line .jsonl whose
    every value is a list (mutation audit62 m)."""
    columns = {"text": {"0": "a good film", "1": "a bad one"}, "label": {"0": "pos", "1": "neg"}}
    path = tmp_path / "train.json"
    for text in (json.dumps(columns), json.dumps(columns, indent=2)):
        path.write_text(text)
        with pytest.raises(UserError, match=r"is one JSON object of columns \('text', 'label'\), not rows"):
            file_checks.check_json_shape(str(path), "--train_file")
    path.write_text(json.dumps({"text": "a good film", "labels": ["pos", "funny"]}))
    assert file_checks.check_json_shape(str(path), "--train_file") is None
    lines = tmp_path / "train.jsonl"
    lines.write_text(json.dumps({"text": ["a", "good", "film"], "labels": ["pos", "funny"]}) + "\n")
    assert file_checks.check_json_shape(str(lines), "--train_file") is None
    path.write_text(lines.read_text())  # the same as .json: pandas' to_json() of lists is columns
    with pytest.raises(UserError, match="is one JSON object of columns"):
        file_checks.check_json_shape(str(path), "--train_file")



def test_shards_with_columns_in_another_order_agree_and_named_classes_then_ids_do_not(tmp_path):
    """Shards of one split: the same columns in another order are the same columns; a shard of class ids without
    names after one whose ClassLabel names them would be read with the first one's names, and is refused naming
    both; text labels after it are read by name (mutation audit62 m)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.csv").write_text("text,label\ngood,pos\n")
    (tmp_path / "b.csv").write_text("label,text\nneg,bad\n")
    (tmp_path / "c.csv").write_text("review,label\nneg,bad\n")
    assert file_checks.shard_columns([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")], "csv") is None
    assert file_checks.shard_columns([str(tmp_path / "a.csv"), str(tmp_path / "c.csv")], "csv").endswith(
        "c.csv has review, label: give every file the same columns")
    named, ids, texts = (str(tmp_path / f"train-{i}.parquet") for i in range(3))
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    datasets.Dataset.from_dict({"text": ["good"], "label": [1]}, features=features).to_parquet(named)
    pq.write_table(pa.table({"text": ["bad"], "label": [0]}), ids)
    pq.write_table(pa.table({"text": ["bad"], "label": ["neg"]}), texts)
    file_checks.check_shard_features([named, texts], "--train_file", "train-*.parquet")
    with pytest.raises(UserError, match=r"the shards describe column 'label' differently \(.*train-0.parquet: "
                                        r"classes neg, pos; .*train-1.parquet: ids without names\)"):
        file_checks.check_shard_features([named, ids, texts], "--train_file", "train-*.parquet")


def test_a_data_file_rewritten_in_place_gets_a_new_digest(tmp_path):
    """storage.file_digest keeps each file's sha256 while it is unchanged; a file rewritten in place (the same
    inode: a notebook that writes its data again and trains again in one process) is hashed again, or the copy
    check and training_args.json's record would hold the old bytes' hash (audit60 round-2 mutant st1)."""
    from loop.storage import file_digest, sha256_file

    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 0}\n')
    before = file_digest(str(path))
    with open(path, "r+", encoding="utf-8") as f:  # in place: the inode stays
        f.write('{"text": "b", "label": 1}\n{"text": "c", "label": 0}\n')
    assert file_digest(str(path)) == sha256_file(str(path)) != before


def test_a_json_line_nested_past_what_a_reader_follows_is_one_line(tmp_path):
    """{"text": [[[...200,000 deep...]]]} as the first line: a RecursionError traceback from the shape check (audit62
    s6); now one line naming the file."""
    from loop import file_checks

    path = tmp_path / "deep.jsonl"
    deep = "[" * 200_000 + "]" * 200_000
    path.write_text('{"text": ' + deep + ', "label": "POSITIVE"}\n{"text": "a", "label": "x"}\n')
    with pytest.raises(UserError, match=r"^--train_file .*deep\.jsonl nests its first line deeper than a JSON reader "
                                        r"can follow"):
        file_checks.check_json_shape(str(path), "--train_file")


def test_a_json_row_nested_deeper_than_the_reader_anywhere_in_the_file_is_one_line(tmp_path, tiny_model, tiny_data):
    """A row 200,000 brackets deep after the first line, or spread over lines, reached pyarrow's JSON reader, which
    ended the process with a segmentation fault and not a word (exit 139; audit62 v3, w1). Counted across the
    blocks the file is read in; brackets inside strings (a text's unclosed '[', escaped quotes) do not count, so a
    one-line array of such texts passes (w2)."""
    from loop import file_checks

    rows = [json.dumps({"text": 'a [spoiler \\" {' + "[" * 60, "label": "POSITIVE"}) for _ in range(200)]
    deep = '{"text": "x", "z": ' + "[" * 600 + "]" * 600 + "}"
    spread = '{"text": "x", "z":\n' + "[\n" * 600 + "]\n" * 600 + "}"
    for name, row, line in (("deep.jsonl", deep, 4), ("spread.jsonl", spread, 504)):
        path = tmp_path / name
        path.write_text("\n".join(rows[:3] + [row] + rows[3:]) + "\n")
        for block in (7, 1000, 1 << 22):
            with pytest.raises(UserError, match=rf"^--train_file .*{name} nests its rows more than 500 brackets "
                                                rf"deep \(at line {line}\)"):
                file_checks.check_json_depth(str(path), "--train_file", chunk_bytes=block)
    fine = tmp_path / "fine.json"
    fine.write_text("[" + ", ".join(rows * 30) + "]")  # one line, 6,000 unclosed brackets in its texts
    file_checks.check_json_depth(str(fine), "--train_file", chunk_bytes=100)
    proc = run_cli(tiny_args(tiny_model, tiny_data, str(tmp_path / "o"), train_file=str(tmp_path / "deep.jsonl")),
                   how="python", check=False)
    assert proc.returncode == 2 and "nests its rows more than 500 brackets deep" in proc.stderr, proc.stderr[-2000:]


def test_a_parquet_value_larger_than_memory_is_said_as_that(tmp_path, monkeypatch):
    """audit62 s8: a Parquet file whose value decompresses to more than the process can hold (20 KB on disk, three
    600 MB texts: measured under a 3 GB cap) was refused as "could not be read: An error occurred while generating
    the dataset", datasets' wrapper hiding pyarrow's ArrowMemoryError. Here pyarrow's own error (a buffer no machine
    holds), raised under datasets' wrapper as its reader raises it: the bomb itself takes 5 GB to write."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.exceptions import DatasetGenerationError

    def bomb(builder, files, kwargs):
        try:
            pa.allocate_buffer(2**62)
        except MemoryError as e:
            raise DatasetGenerationError("An error occurred while generating the dataset") from e

    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"text": ["a" * 100] * 3, "label": [0, 1, 0]}), path)
    monkeypatch.setattr(D, "_read", bomb)
    with pytest.raises(UserError, match=rf"^--train_file {re.escape(str(path))} could not be read: reading it ran out "
                                        rf"of memory \(malloc of size 4611686018427387904 failed\): a value in it is "
                                        rf"larger, read or decompressed, than this machine can hold; check the file\.$"):
        D.load_file(str(path), "--train_file")


@pytest.mark.parametrize("split, said, advice", [
    (EVAL, "evaluation", ("--validation_file, --max_eval_samples and --validation_split_percentage",
                          "--validation_file and --max_eval_samples", "--validation_file.")),
    (TEST, "test", ("the test data, --max_test_samples.", "the test data and --max_test_samples",
                    "the test data.")),
    ("eval_ood", "'ood' evaluation", ("the 'ood' evaluation set, --max_eval_samples.",
                                      "the 'ood' evaluation set and --max_eval_samples",
                                      "the 'ood' evaluation set.")),
], ids=["eval", "test", "extra"])
def test_a_held_out_split_that_says_little_is_named_with_the_flags_that_feed_and_cut_it(split, said, advice):
    """(mutation audit m2: splits.SPLIT_FLAGS' values and its extra-set template were never read by a test) A held-out
    split of one class, of one regression target, or of multi-label rows without a label is warned about, naming
    the split and what feeds and cuts it: --validation_file / the test data / the extra set by its name, and
    --max_eval_samples or --max_test_samples; a split key that is no split is a KeyError, not an 'None' set."""
    import datasets

    from loop.splits import SPLIT_FLAGS, SPLIT_WORDS

    def warned(labels, kind, names):
        raw = datasets.DatasetDict({TRAIN: datasets.Dataset.from_dict({"text": ["a", "b"], "labels": labels[0]}),
                                    split: datasets.Dataset.from_dict({"text": ["c", "d"], "labels": labels[1]})})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_final_splits(raw, names, kind)
        (message,) = [str(w.message) for w in caught]
        return message

    single = warned(([0, 1], [1, 1]), "single", CLASSES)
    assert single.startswith(f"every {said} example has the label 'POSITIVE': accuracy on it says little; "
                             f"check {advice[0]}"), single
    target = warned(([0.5, 1.5], [2.0, 2.0]), "regression", ["score"])
    assert target.startswith(f"every {said} example has the target 2: r2,") and \
        target.endswith(f"check {advice[1]}."), target
    empty = warned(([[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]), "multi", CLASSES)
    assert empty.startswith(f"no {said} example has any label") and empty.endswith(f"check {advice[2]}"), empty
    for table in (SPLIT_WORDS, SPLIT_FLAGS):
        with pytest.raises(KeyError):
            table["validation"]  # (not a split key: 'eval' is)


def test_a_damaged_datasets_cache_is_read_again_or_named_not_blamed_on_the_data_file(tiny_model, tmp_path,
                                                                                     monkeypatch):
    """The datasets cache's copy of the data files cut short (a full disk, a killed run) or removed (a tmp cleaner):
    the next run said "--train_file ... could not be read: Expected to read 336 metadata bytes", sending the user to a
    file that is fine; a map's cached result damaged ended in a traceback from inside datasets (helper env F2). The
    copy is read again from the files; a damaged map result is named as the cache's, with the fix."""
    import glob

    import datasets

    from conftest import write_data

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    data = write_data(tmp_path / "data", 64, 32)

    def run(name):
        return Loop(parse_args(tiny_args(tiny_model, data, str(tmp_path / name), num_train_epochs=1))).fit()

    run("a")
    copies = glob.glob(str(tmp_path / "cache" / "json" / "*" / "*" / "*" / "json-data.arrow"))
    assert len(copies) == 2  # the training file's and the validation file's
    with open(copies[0], "r+b") as f:  # cut at half (at any byte: rev3 F1, not only in its schema)
        f.truncate(os.path.getsize(copies[0]) // 2)
    os.remove(copies[1])
    assert run("b")["eval_accuracy"] is not None  # both read again
    maps = glob.glob(str(tmp_path / "cache" / "json" / "*" / "*" / "*" / "cache-*.arrow"))
    assert maps
    for path in maps:
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(UserError) as refused:
        run("c")
    assert re.fullmatch(r"a cached file of these data is damaged or gone \(.+\); delete the folders of these data in "
                        rf"the datasets cache \('{re.escape(str(tmp_path / 'cache'))}'\) and run again\.",
                        str(refused.value)), str(refused.value)


def test_a_damaged_map_result_in_a_saved_dataset_folder_names_that_folder(tiny_model, tmp_path):
    """A save_to_disk folder given as --dataset_name keeps its maps' results beside its own files: a damaged one was
    blamed on the datasets cache, whose deletion did not help (rev3 F2)."""
    import glob

    import datasets

    rows = synthetic.make_rows(64, seed=1)
    folder = str(tmp_path / "saved")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:48]),
                          "validation": datasets.Dataset.from_list(rows[48:])}).save_to_disk(folder)
    def args(out):
        return tiny_args(tiny_model, str(tmp_path), str(tmp_path / out), num_train_epochs=1, train_file=None,
                         validation_file=None, dataset_name=folder)

    Loop(parse_args(args("a"))).fit()
    results = glob.glob(os.path.join(folder, "*", "cache-*.arrow"))
    assert results
    for path in results:
        open(path, "w").close()
    with pytest.raises(UserError) as refused:
        Loop(parse_args(args("b"))).fit()
    assert re.fullmatch(r"a cached file of these data is damaged or gone \(.+\); delete the cache-\*\.arrow files in "
                        rf"'{re.escape(folder)}' \(the results of maps, beside its own files\) and run again\.",
                        str(refused.value)), str(refused.value)


def test_a_prepared_copy_that_fails_for_any_reason_is_read_again_and_a_full_disk_then_is_the_caches(
        tiny_model, tmp_path, monkeypatch):
    """An earlier run's prepared copy of exactly these files that fails to load, in words pyarrow may choose, is
    read again from the files once (rev5 F1: the check for that copy never found it, so only known wordings were
    retried); when the disk is full at that re-read, the cache is named, not the user's file (rev5 F3)."""
    import errno

    import datasets

    from conftest import write_data

    cache = str(tmp_path / "cache")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    (tmp_path / "data").mkdir()
    data = write_data(tmp_path / "data", 64, 32)

    def run(name):
        return Loop(parse_args(tiny_args(tiny_model, data, str(tmp_path / name), num_train_epochs=1))).fit()

    run("a")
    real, calls, held = datasets.load_dataset, [], []

    def flaky(*args, **kwargs):
        calls.append(kwargs.get("download_mode"))
        if kwargs.get("download_mode") is None:
            raise OSError("an error in words no check knows")
        # the rebuild, under a lock another run of a sweep (another lock object) cannot take meanwhile (m22 M40)
        from filelock import FileLock, Timeout

        locks = glob.glob(os.path.join(cache, "**", f"{kwargs['name']}.loop_rebuild.lock"), recursive=True)
        assert len(locks) == 1, locks
        try:
            with FileLock(locks[0], timeout=0):
                held.append("free")
        except Timeout:
            held.append("held")
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", flaky)
    assert run("b")["eval_accuracy"] is not None
    # (the training and the validation file: once more as it is, under the rebuild lock, then rebuilt)
    assert calls == [None, None, "force_redownload"] * 2 and held == ["held", "held"], (calls, held)

    # another run of a sweep rebuilt the copy meanwhile: read as it is, not rebuilt again (a rebuild replaces the
    # folder, with what that run tokenizes into it: helper conc F1)
    failed = []

    def rebuilt_meanwhile(*args, **kwargs):
        calls.append(kwargs.get("download_mode"))
        if kwargs["data_files"]["data"][0] not in failed:
            failed.append(kwargs["data_files"]["data"][0])
            raise OSError("an error in words no check knows")
        return real(*args, **kwargs)

    calls.clear()
    monkeypatch.setattr(datasets, "load_dataset", rebuilt_meanwhile)
    assert run("b2")["eval_accuracy"] is not None
    assert calls == [None, None] * 2

    # the rebuild's removal of the folder fails on a file another run renamed or removed meanwhile: that run's copy is
    # read (review rev4 F1: 2 of 10 sweeps of 6 runs lost one, "could not be read: No such file or directory")
    def rebuild_raced(*args, **kwargs):
        calls.append(kwargs.get("download_mode"))
        if len(calls) in (1, 2, 5, 6):
            raise OSError("an error in words no check knows")
        if len(calls) in (3, 7):
            raise FileNotFoundError(2, "No such file or directory", os.path.join(cache, "json", "x"))
        return real(*args, **kwargs)

    calls.clear()
    monkeypatch.setattr(datasets, "load_dataset", rebuild_raced)
    assert run("b3")["eval_accuracy"] is not None
    assert calls == [None, None, "force_redownload", None] * 2, calls

    def full(*args, **kwargs):
        if kwargs.get("download_mode") is None:
            raise OSError("an error in words no check knows")
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(cache, "json", "x.arrow"))

    monkeypatch.setattr(datasets, "load_dataset", full)
    with pytest.raises(UserError, match=rf"^the datasets cache '{re.escape(cache)}' cannot be written \(No space left"):
        run("c")


def test_a_run_waiting_for_anothers_rebuild_says_so_and_a_file_system_without_locks_rebuilds_unlocked(
        tmp_path, monkeypatch, capsys):
    """Review rev2 (audit73): a run waiting for another's rebuild of a prepared copy waited silently, so a holder
    stopped with Ctrl-Z held the sweep without a word (F4); where locks fail (some NFS: ENOLCK) the user's file was
    said to be unreadable, where the copy had been rebuilt unlocked before (F2)."""
    import errno
    import threading
    import time

    from filelock import FileLock

    monkeypatch.setattr(D, "REBUILD_QUIET_S", 0.1)
    path = str(tmp_path / "cache" / "json" / "loop-0123.loop_rebuild.lock")
    os.makedirs(os.path.dirname(path))
    holding = threading.Event()

    def another_run():  # (a thread of its own: filelock refuses a second lock object of one thread as a deadlock)
        with FileLock(path):
            holding.set()
            time.sleep(1.0)

    holder = threading.Thread(target=another_run)
    holder.start()
    holding.wait(10)
    started = time.monotonic()
    lock = D.rebuild_lock(path)
    assert lock is not None and lock.is_locked and time.monotonic() - started >= 0.9
    lock.release()
    holder.join()
    assert capsys.readouterr().out == ("[loop] data: waiting for another run, which is rebuilding the datasets "
                                       f"cache's copy of these data files (lock: {path}; a second Ctrl-C stops "
                                       f"this run)\n")

    def no_locks(self, *args, **kwargs):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(FileLock, "acquire", no_locks)
    assert D.rebuild_lock(path) is None
