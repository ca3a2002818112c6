"""Behaviours of loop/predict.py that a mutation run of it (audit65 m6) found unguarded: each test pins what a user
sees (the lines read from a file and their numbers, the order and fields of the output, which texts reach the model
and how, a refusal), most in-process on small inputs without a model (the pipeline replaced by a stand-in that
scores by a rule), the rest on tiny models whose head gives every text the same known logits (a second or two
each). Each test names in the report of audit65 m6 the mutants it kills."""

import io
import json
import os
import threading
import time
from types import SimpleNamespace

import pytest

from loop import predict
from loop.errors import UserError
from test_predict_checks import folders, outputs  # noqa: F401  (a fixture, and the in-process CLI runner)


# --------------------------------------------------------------------------------------------------- a stand-in
class Pipeline:
    """A text-classification pipeline stand-in: "POS" with score 0.9 for a text holding "good", else "NEG" with
    0.8 (ranked lists of every label with top_k=None), or `rule(text) -> {label: score}`; records each call."""

    def __init__(self, labels=("NEG", "POS"), rule=None):
        self.model = SimpleNamespace(config=SimpleNamespace(id2label=dict(enumerate(labels))))
        self.calls = []
        self.rule = rule or (lambda t: {"POS": 0.9, "NEG": 0.1} if "good" in str(t) else {"NEG": 0.8, "POS": 0.2})

    def __call__(self, inputs, batch_size=None, truncation=None, **kwargs):
        inputs = list(inputs)
        self.calls.append({"inputs": inputs, "batch_size": batch_size, "truncation": truncation, **kwargs})
        for x in inputs:
            ranked = sorted(({"label": k, "score": v} for k, v in self.rule(x).items()), key=lambda r: -r["score"])
            yield ranked if "top_k" in kwargs and kwargs["top_k"] is None else ranked[0]


def lines_of(data):
    return list(predict.read_lines(io.BytesIO(data), "f.txt"))


# --------------------------------------------------------------------------------------------------- reading lines
def test_lines_are_numbered_from_one_and_keep_their_spaces_and_lose_only_their_line_end():
    assert lines_of(b"  a good film \r\nawful\n\nlast") == [(1, "  a good film "), (2, "awful"), (3, ""), (4, "last")]


def test_a_byte_order_mark_is_dropped_at_the_start_only():
    """The mark opens a Notepad file; anywhere else it is a character of that line (zero-width, a blank line)."""
    assert lines_of(b"\xef\xbb\xbfa\n\xef\xbb\xbfb\n") == [(1, "a"), (2, "\ufeffb")]


def test_classic_mac_os_line_ends_are_lines_only_in_a_file_without_a_line_feed():
    assert lines_of(b"one\rtwo\rthree\r") == [(1, "one"), (2, "two"), (3, "three")]
    # a last line ending in '\r' after '\n' lines is that line, not a Mac OS file
    assert lines_of(b"one\ntwo\r") == [(1, "one"), (2, "two")]
    assert lines_of(b"a\rb\n") == [(1, "a\rb")]  # a stray '\r' inside a line


def test_a_line_of_a_format_character_only_is_blank_and_a_word_among_spaces_is_not():
    assert predict.blank_text("\u200b\u200e\ufeff \t") and predict.blank_text("")
    assert not predict.blank_text(" \u200b word ")


# --------------------------------------------------------------------------------------------------- Texts
def failing(items, error):
    yield from items
    raise error


def test_texts_are_taken_n_at_a_time_and_an_error_comes_after_the_texts_before_it():
    t = predict.Texts(iter(range(7)))
    assert [t.take(3), t.take(3), t.take(3), t.take(3)] == [[0, 1, 2], [3, 4, 5], [6], []]
    t = predict.Texts(failing(["a", "b"], ValueError("disk gone")))
    assert t.take(5) == ["a", "b"]  # first the texts read before it
    with pytest.raises(ValueError, match="disk gone"):
        t.take(5)
    assert t.take(5) == []
    # read by a thread (a pipe): what has arrived at each take, then the error, raised by a take that returns none
    t, got = predict.Texts(failing(["a", "b"], ValueError("disk gone")), arriving=True), []
    with pytest.raises(ValueError, match="disk gone"):
        for _ in range(100):
            got += t.take(5)
    assert got == ["a", "b"] and t.take(5) == []


def test_texts_that_arrive_are_taken_as_they_come_without_waiting_for_a_full_group():
    more = threading.Event()

    def arriving():
        yield "first"
        more.wait(20)
        yield "second"

    t = predict.Texts(arriving(), arriving=True)
    timer = threading.Timer(8, more.set)  # (a take that waits for a full group: 8 s, then the second text)
    timer.start()
    start = time.monotonic()
    got = t.take(10)
    took = time.monotonic() - start
    timer.cancel()
    more.set()
    assert got == ["first"] and took < 5, (got, took)
    assert t.take(10) == ["second"] and t.take(10) == []


# --------------------------------------------------------------------------------------------------- scores
def test_scores_come_out_in_the_input_order_after_one_call_per_group_sorted_by_length():
    clf = Pipeline()
    texts = ["a good long film indeed", "bad", "good", "a very bad film", "ok"] * 8  # 40 texts
    got = list(predict.scores(clf, texts, batch_size=4))
    assert [g["label"] for g in got] == ["POS" if "good" in t else "NEG" for t in texts]
    assert len(clf.calls) == 1, len(clf.calls)  # 40 texts: one group of 4 x 16
    call = clf.calls[0]
    assert call["batch_size"] == 4 and call["truncation"] is True and "top_k" not in call
    assert [len(x) for x in call["inputs"]] == sorted(len(x) for x in texts)
    clf = Pipeline()
    list(predict.scores(clf, ["x"] * 65, batch_size=4))
    assert [len(c["inputs"]) for c in clf.calls] == [64, 1]


def test_pairs_are_sorted_by_the_length_of_both_texts():
    clf = Pipeline()
    pairs = [{"text": "a", "text_pair": "a much longer second text"}, {"text": "a", "text_pair": "b"},
             {"text": "a", "text_pair": "a middle one"}]
    got = list(predict.scores(clf, pairs, batch_size=2))
    assert clf.calls[0]["inputs"] == [pairs[1], pairs[2], pairs[0]] and len(got) == 3


def test_all_scores_gives_the_top_label_and_every_score_in_the_models_label_order():
    clf = Pipeline(labels=("zeta", "alpha", "mid"), rule=lambda t: {"zeta": 0.2, "alpha": 0.5, "mid": 0.3})
    (out,) = predict.scores(clf, ["a text"], all_scores=True)
    assert clf.calls[0]["top_k"] is None
    assert out["label"] == "alpha" and out["score"] == 0.5
    assert list(out["scores"].items()) == [("zeta", 0.2), ("alpha", 0.5), ("mid", 0.3)]


def test_multi_label_lists_the_labels_above_one_half_in_the_models_order():
    clf = Pipeline(labels=("zeta", "alpha", "mid", "half"),
                   rule=lambda t: {"zeta": 0.9, "alpha": 0.7, "mid": 0.1, "half": 0.5})
    (out,) = predict.scores(clf, ["a text"], multi_label=True)
    assert out["labels"] == ["zeta", "alpha"]  # not ranked, not sorted by name; exactly 0.5 (a logit of 0) is off
    assert list(out["scores"]) == ["zeta", "alpha", "mid", "half"]


# --------------------------------------------------------------------------------------------------- result fields
def test_result_fields_round_every_probability_to_six_decimals():
    out = predict.result_fields({"label": "POS", "score": 0.98765432, "scores": {"NEG": 0.01234568, "POS": 0.98765432}})
    assert out == {"label": "POS", "score": 0.987654, "scores": {"NEG": 0.012346, "POS": 0.987654}}
    out = predict.result_fields({"labels": ["a"], "scores": {"a": 0.123456789, "b": 1e-9}})
    assert out == {"labels": ["a"], "scores": {"a": 0.123457, "b": 0.0}}
    assert predict.result_fields({"label": "score", "score": 123.4567891}, regression=True)["score"] == 123.457


# --------------------------------------------------------------------------------------------------- inputs
def test_a_pair_is_split_at_its_one_tab_in_order():
    assert predict.as_input("first text\tsecond text", 3, True) == {"text": "first text", "text_pair": "second text"}
    assert predict.as_input("no\ttab\there", None, False) == "no\ttab\there"
    with pytest.raises(UserError, match=r"line 3 of --file has 2 tabs"):
        predict.as_input("a\tb\tc", 3, True)
    with pytest.raises(UserError, match=r"text 2 of the arguments \('a b'\) has no tab"):
        predict.as_input("a b", None, True, 2)


def write_record(folder, record):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "best_metrics.json"), "w") as f:
        json.dump(record, f)
    return str(folder)


def test_a_header_names_the_recorded_pair_column_in_its_second_field_and_the_text_column_in_its_first(tmp_path):
    both = write_record(tmp_path / "both", {"text_column": "premise", "text_pair_column": "hypothesis"})
    assert predict.is_header("premise\thypothesis", both) and predict.is_header(" premise \t hypothesis ", both)
    assert not predict.is_header("hypothesis\tpremise", both)
    assert not predict.is_header("sentence\thypothesis", both)  # the first field must be the recorded text column
    assert not predict.is_header("premise\tsentence", both)
    pair_only = write_record(tmp_path / "pair_only", {"text_pair_column": "hypothesis"})
    assert predict.is_header("anything\thypothesis", pair_only)
    assert not predict.is_header("premise\thypothesis\textra", pair_only)


def test_trained_on_pairs_tells_a_recorded_none_from_no_record(tmp_path):
    assert predict.trained_on_pairs(write_record(tmp_path / "a", {"text_pair_column": None})) is False
    assert predict.trained_on_pairs(write_record(tmp_path / "b", {"eval_accuracy": 0.5})) is None  # older loop
    assert predict.trained_on_pairs(str(tmp_path / "none")) is None
    assert predict.trained_on_pairs(write_record(tmp_path / "c", {"text_pair_column": "h"})) == "h"


def options(**kw):
    base = dict(file=None, pairs=False, text_column=None, text_pair_column=None, model_name="m")
    return SimpleNamespace(**{**base, **kw})


def test_input_options_are_checked_against_the_model_and_the_file():
    check = predict.check_input_options
    assert check(options(file="x.tsv", pairs=True), "h") is False  # a .tsv with --pairs is lines
    assert check(options(file="x.TSV"), None) is True
    with pytest.raises(UserError, match="was trained on single texts .* drop --pairs"):
        check(options(file="x.txt", pairs=True), False)
    assert check(options(file="x.txt", pairs=True), None) is False  # an older loop's: the user's to say
    with pytest.raises(UserError, match="drop --text_pair_column"):
        check(options(file="x.csv", text_pair_column="h"), False)
    assert check(options(file="x.csv", text_pair_column="h"), None) is True
    with pytest.raises(UserError, match="--text_column names a column of a table --file"):
        check(options(file="x.txt", text_column="t"), None)
    with pytest.raises(UserError, match=r"with --pairs a .tsv --file is read as 'first<TAB>second' lines, which "
                                        r"have no columns to name; drop --pairs .* or drop --text_column\."):
        check(options(file="p.tsv", pairs=True, text_column="a"), None)  # audit65 m6 F1 (said: not a table)


def test_argument_texts_are_numbered_from_one_in_refusals():
    with pytest.raises(UserError, match="text 2 of the arguments is empty"):
        predict.check_argument_texts(["ok", " \u200b"])
    with pytest.raises(UserError, match="text 1 of the arguments is not UTF-8"):
        predict.check_argument_texts(["caf\udce9"])


def test_batch_size_is_a_positive_integer_up_to_two_to_the_twentieth():
    assert predict.parse(["--model", "m", "--batch_size", str(2**20), "x"]).batch_size == 2**20
    assert predict.parse(["--model", "m", "x"]).batch_size == 32
    with pytest.raises(UserError, match="up to 1048576"):
        predict.parse(["--model", "m", "--batch_size", str(2**20 + 1), "x"])


def test_every_word_after_a_double_dash_is_a_text():
    args = predict.parse(["--model", "m", "one", "--", "--pairs", "-x"])
    assert args.texts == ["one", "--pairs", "-x"] and args.pairs is False
    assert predict.parse(["--model", "m", "--", "a", "--", "b"]).texts == ["a", "--", "b"]  # a second one is a text


def test_output_is_the_input_file_only_when_it_is_the_same_regular_file(tmp_path, monkeypatch):
    shard = tmp_path / "new-0.csv"
    shard.write_text("text\na\n")
    other = tmp_path / "other.txt"
    other.write_text("")
    with open(shard, "a") as out:
        monkeypatch.setattr("sys.stdout", out)
        assert predict.output_is_file(str(shard)) and predict.output_is_file(str(tmp_path / "new-*.csv"))
        assert not predict.output_is_file(str(other)) and not predict.output_is_file(None)
    with open(os.devnull, "w") as out:  # not a regular file: /dev/null is /dev/null
        monkeypatch.setattr("sys.stdout", out)
        assert not predict.output_is_file(os.devnull)


# --------------------------------------------------------------------------------------------------- the command
def test_argument_texts_come_before_a_files_lines_which_keep_their_numbers(folders, capsys, tmp_path):  # noqa: F811
    f = tmp_path / "texts.txt"
    f.write_text("\n  \na good film\n\nawful\n", encoding="utf-8")
    code, rows, err = outputs(capsys, ["--model", folders["good"], "first", "--file", str(f)])
    assert code == 0, err
    assert [(r["text"], r.get("line")) for r in rows] == [("first", None), ("a good film", 3), ("awful", 5)], rows
    assert "line" not in rows[0]
    assert err.count("skipped 3 blank line(s)") == 1, err


def test_a_header_line_of_a_pair_file_is_skipped_and_only_a_header_is_refused(folders, capsys, tmp_path):  # noqa: F811
    import shutil

    model = str(tmp_path / "pairs")
    shutil.copytree(folders["good"], model)
    write_record(model, {"text_column": "premise", "text_pair_column": "hypothesis"})
    f = tmp_path / "pairs.txt"
    f.write_text("premise\thypothesis\na man sleeps\tsomeone rests\n", encoding="utf-8")
    code, rows, err = outputs(capsys, ["--model", model, "--pairs", "--file", str(f)])
    assert code == 0 and [(r["text"], r["text_pair"], r["line"]) for r in rows] == \
        [("a man sleeps", "someone rests", 2)], (rows, err)
    assert "skipped line 1 ('premise<TAB>hypothesis')" in err, err
    f.write_text("premise\thypothesis\n\n", encoding="utf-8")
    code, rows, err = outputs(capsys, ["--model", model, "--pairs", "--file", str(f)])
    assert (code, rows) == (2, []) and "holds only a header line" in err, err


def test_a_table_with_pairs_and_a_pair_model_without_pairs_are_refused():
    with pytest.raises(UserError, match="a table --file gives the second texts in a column: drop --pairs"):
        predict.check_input_options(options(file="x.csv", pairs=True), "h")
    with pytest.raises(UserError, match="was trained on text pairs .* pass --pairs"):
        predict.check_input_options(options(file="x.txt"), "h")
    with pytest.raises(UserError, match="was trained on text pairs .* pass --pairs"):
        predict.check_input_options(options(), "h")


def test_the_output_is_named_only_when_it_is_a_regular_file(tmp_path, monkeypatch):
    with open(os.devnull, "w") as out:
        monkeypatch.setattr("sys.stdout", out)
        assert predict.output_name() == ""
    with open(tmp_path / "out.jsonl", "w") as out:
        monkeypatch.setattr("sys.stdout", out)
        assert predict.output_name() == f" '{tmp_path / 'out.jsonl'}'"


def test_standard_input_read_from_the_output_file_is_refused(tmp_path, monkeypatch):
    f = tmp_path / "x.txt"
    f.write_text("a good film\n")
    with open(f) as inp, open(f, "a") as out, open(tmp_path / "other", "w") as other:
        monkeypatch.setattr("sys.stdin", inp)
        monkeypatch.setattr("sys.stdout", out)
        assert predict.output_is_file("-")
        monkeypatch.setattr("sys.stdout", other)
        assert not predict.output_is_file("-")


def test_revision_with_a_model_folder_is_refused(folders):  # noqa: F811
    args = SimpleNamespace(model=folders["good"], revision="main", trust_remote_code=False, all_scores=False)
    with pytest.raises(UserError, match="--revision picks a version of a model on the Hub.*drop --revision"):
        predict.check_model_option(args)


def test_folders_that_are_no_model_are_refused_naming_what_they_are(folders, tmp_path):  # noqa: F811
    import shutil

    def refused(path, match):
        with pytest.raises(UserError, match=match):
            predict.check_folder(str(path))

    state = tmp_path / "state"
    shutil.copytree(folders["good"], state)
    (state / "loop_state.json").write_text("{}")
    refused(state, "is a training checkpoint")
    adapter = tmp_path / "best" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    refused(adapter, f"holds a LoRA adapter, not a model; pass the folder above it, {tmp_path / 'best'}")
    noweights = tmp_path / "noweights"
    shutil.copytree(folders["good"], noweights, ignore=shutil.ignore_patterns("*.safetensors"))
    refused(noweights, r"has no weights \(no .safetensors or .bin file\)")
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    refused(run, f"is a run folder .* pass --model {run / 'best'}")
    predict.check_folder(folders["good"])


def test_only_weights_outside_the_base_model_are_a_missing_head():
    model = SimpleNamespace(base_model_prefix="distilbert")
    predict.check_head("m", model, ["distilbert.embeddings.word_embeddings.weight"])
    with pytest.raises(UserError, match=r"no trained classification head \(not in its weights: classifier.bias, "
                                        r"classifier.weight\)"):
        predict.check_head("m", model, ["distilbert.x", "classifier.weight", "classifier.bias"])


def test_a_tokenizer_limit_one_above_the_models_positions_is_capped(tmp_path, capsys):
    tok = SimpleNamespace(model_max_length=129, init_kwargs={})
    predict.cut_within_positions(str(tmp_path), tok, SimpleNamespace(max_position_embeddings=128,
                                                                    model_type="distilbert"))
    assert tok.model_max_length == 128 and "are cut at 128 tokens" in capsys.readouterr().err
    tok = SimpleNamespace(model_max_length=128, init_kwargs={})
    predict.cut_within_positions(str(tmp_path), tok, SimpleNamespace(max_position_embeddings=128,
                                                                    model_type="distilbert"))
    assert tok.model_max_length == 128 and capsys.readouterr().err == ""


# --------------------------------------------------------------------------------------------------- fixed heads
@pytest.fixture(scope="module")
def fixed(tiny_model, tmp_path_factory):
    """Models whose head gives the same logits for every text (weights 0, the bias set): single (NEG 0.25, POS
    0.75), multi (a 0.880797, b 0.119203, c exactly 0.5), regression (12.345679), and pair (single, recorded as
    trained with --text_column premise --text_pair_column hypothesis)."""
    import math
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from loop.models import record_max_length

    root = tmp_path_factory.mktemp("fixed_heads")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    record_max_length(tok, 64)
    made = {}
    for name, labels, bias, kind in (("single", ["NEG", "POS"], [0.0, math.log(3)], None),
                                     ("multi", ["a", "b", "c"], [2.0, -2.0, 0.0], "multi_label_classification"),
                                     ("regression", ["score"], [12.3456789], "regression")):
        cfg = AutoConfig.from_pretrained(tiny_model, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                         label2id={n: i for i, n in enumerate(labels)}, problem_type=kind)
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(cfg)
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(bias))
        path = str(root / name)
        model.save_pretrained(path)
        tok.save_pretrained(path)
        made[name] = write_record(path, {"text_pair_column": None})
    made["pair"] = str(root / "pair")
    shutil.copytree(made["single"], made["pair"])
    write_record(made["pair"], {"text_column": "premise", "text_pair_column": "hypothesis"})
    return made


def write_csv(path, header, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def test_a_table_scores_argument_texts_first_then_each_row_from_row_0(fixed, capsys, tmp_path):
    """A first text that is a number is no number column when a later one is text; --all_scores reaches a table's
    lines too."""
    f = write_csv(tmp_path / "t.csv", ["id", "text"], [[1, "42"], [2, ""], [3, "a good film"]])
    code, rows, err = outputs(capsys, ["--model", fixed["single"], "--file", f, "--all_scores", "first"])
    assert code == 0, err
    scores = {"NEG": 0.25, "POS": 0.75}
    assert rows == [{"text": "first", "label": "POS", "score": 0.75, "scores": scores},
                    {"row": 0, "text": "42", "label": "POS", "score": 0.75, "scores": scores},
                    {"row": 2, "text": "a good film", "label": "POS", "score": 0.75, "scores": scores}], rows
    code, rows, err = outputs(capsys, ["--model", fixed["single"], "--file", f, " "])
    assert (code, rows) == (2, []) and "text 1 of the arguments is empty" in err, err


def test_a_pair_models_table_refuses_argument_texts(fixed, capsys, tmp_path):
    f = write_csv(tmp_path / "p.csv", ["premise", "hypothesis"], [["a man sleeps", "someone rests"]])
    code, rows, err = outputs(capsys, ["--model", fixed["pair"], "--file", f])
    assert code == 0 and rows == [{"row": 0, "text": "a man sleeps", "text_pair": "someone rests", "label": "POS",
                                   "score": 0.75}], (rows, err)
    code, rows, err = outputs(capsys, ["--model", fixed["pair"], "--file", f, "one more"])
    assert (code, rows) == (2, []) and "texts given as arguments are single texts" in err, err


def test_a_multi_label_model_lists_labels_above_one_half_from_text_and_table(fixed, capsys, tmp_path):
    want = {"labels": ["a"], "scores": {"a": 0.880797, "b": 0.119203, "c": 0.5}}
    code, rows, err = outputs(capsys, ["--model", fixed["multi"], "a film"])
    assert code == 0 and rows == [{"text": "a film", **want}], (rows, err)
    f = write_csv(tmp_path / "m.csv", ["text"], [["a film"]])
    code, rows, err = outputs(capsys, ["--model", fixed["multi"], "--file", f])
    assert code == 0 and rows == [{"row": 0, "text": "a film", **want}], (rows, err)
    assert predict.predict(fixed["multi"], ["a film"]) == [
        {"labels": ["a"], "scores": {"a": pytest.approx(0.880797), "b": pytest.approx(0.119203), "c": 0.5}}]


def test_a_regression_models_number_from_text_and_table_and_all_scores_refused(fixed, capsys, tmp_path):
    code, rows, err = outputs(capsys, ["--model", fixed["regression"], "a film"])
    assert code == 0 and rows == [{"text": "a film", "label": "score", "score": 12.3457}], (rows, err)
    f = write_csv(tmp_path / "r.csv", ["text"], [["a film"]])
    code, rows, err = outputs(capsys, ["--model", fixed["regression"], "--file", f])
    assert code == 0 and rows == [{"row": 0, "text": "a film", "label": "score", "score": 12.3457}], (rows, err)
    code, rows, err = outputs(capsys, ["--model", fixed["regression"], "--all_scores", "a film"])
    assert (code, rows) == (2, []) and "is a regression model" in err, err


def test_nothing_to_classify_is_refused_and_a_bad_argument_pair_before_the_model_loads(fixed, capsys, monkeypatch):
    def no_load(args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(predict, "load_for", no_load)
    code, rows, err = outputs(capsys, ["--model", fixed["single"]])
    assert (code, rows) == (2, []) and "no texts given" in err, err
    code, rows, err = outputs(capsys, ["--model", fixed["pair"], "--pairs", "a\tb", "no tab"])
    assert (code, rows) == (2, []), (rows, err)
    assert err == "error: --pairs: text 2 of the arguments ('no tab') has no tab; give each input as 'first " \
                  "text<TAB>second text' (a tab character: in bash $'first text\\tsecond text').\n", err


def test_each_output_line_is_flushed_as_it_is_written(monkeypatch):
    class Out:
        def __init__(self):
            self.events = []

        def write(self, s):
            self.events.append(("write", s))

        def flush(self):
            self.events.append(("flush",))

    out = Out()
    monkeypatch.setattr("sys.stdout", out)
    predict.write_line({"text": "a", "label": "POS"})
    assert out.events[-1] == ("flush",) and "".join(e[1] for e in out.events if e[0] == "write") == \
        '{"text": "a", "label": "POS"}\n'


def test_a_config_pad_id_just_past_the_tokenizer_is_no_pad_token_and_training_padding_is_taken(tiny_model, capsys):
    """A tokenizer without a pad token beside a config whose pad id is len(tokenizer) (no token of it): padded as
    training pads (unk here, the tokenizer having no eos or bos), the config's id made the tokenizer's; taking the
    id's "token" left the tokenizer without a pad token, and the pipeline could not batch."""
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.pad_token = None
    cfg = AutoConfig.from_pretrained(tiny_model)
    cfg.pad_token_id = len(tok)
    predict.pad_as_training_did(tok, cfg)
    assert (tok.pad_token, tok.pad_token_id, cfg.pad_token_id) == ("[UNK]", 1, 1)
    assert "the tokenizer has no pad token; padding with its unk token '[UNK]'" in capsys.readouterr().err


def test_pairs_on_a_labelled_tsv_with_the_models_columns_says_to_leave_out_pairs(fixed, capsys, tmp_path):
    """`--pairs --file nli_dev.tsv` (premise<TAB>hypothesis<TAB>label): "keep only the two texts, e.g. with cut
    -f2,3" was the advice (the wrong columns here), while without --pairs the file is read as a table by the model's
    columns (a fresh user's F5)."""
    f = tmp_path / "nli_dev.tsv"
    f.write_text("premise\thypothesis\tlabel\na man sleeps\tsomeone rests\t0\n")
    code, rows, err = outputs(capsys, ["--model", fixed["pair"], "--pairs", "--file", str(f)])
    assert (code, rows) == (2, []), (rows, err)
    assert err == (f"error: --file '{f}' is a table whose header names the model's columns ('premise', "
                   f"'hypothesis'); leave out --pairs: a .tsv is then read as a table, each row's pair from those "
                   f"columns.\n"), err
    code, rows, err = outputs(capsys, ["--model", fixed["pair"], "--file", str(f)])
    assert code == 0 and rows == [{"row": 0, "text": "a man sleeps", "text_pair": "someone rests", "label": "POS",
                                   "score": 0.75}], (rows, err)
