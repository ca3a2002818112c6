"""Tests written by a mutation audit of loop/file_checks.py and loop/resume_checks.py (audit70 m13): each one fails
on a small change of the code that a user would notice (shards with swapped classes read without a word, a .tsv's
columns misread, a resume refused over a path spelled from another folder, a changed data set resumed as the same)
and passes on the code as it is. In-process, on files and datasets the tests write."""

import json

import pytest

from loop import file_checks, resume_checks
from loop.errors import UserError
from test_resume_edges import differences, recorded


# ---------------------------------------------------------------- file_checks
def _parquet_with_features(path, labels, features):
    """A parquet file of texts and multi-label rows whose datasets metadata (b'huggingface') is `features`, as a
    datasets release before 3.0 wrote a list feature: a Python list [ClassLabel], no {'_type': 'Sequence'}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"text": ["t"] * len(labels), "labels": labels})
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), path)
    return str(path)


def test_multi_label_shards_whose_list_of_classlabel_names_the_classes_in_another_order_are_refused(tmp_path):
    """A multi-label ClassLabel inside a list (older datasets wrote it as [ClassLabel]): shards listing the classes
    in another order would be read with the first one's names, every label of the second swapped; refused naming
    both (mutant: the classes of a list feature not looked for, so both sides read as 'no classes')."""
    def feats(names):
        return {"text": {"dtype": "string", "_type": "Value"}, "labels": [{"names": names, "_type": "ClassLabel"}]}

    a = _parquet_with_features(tmp_path / "train-0.parquet", [[0], [1]], feats(["funny", "sad"]))
    b = _parquet_with_features(tmp_path / "train-1.parquet", [[0], [1]], feats(["sad", "funny"]))
    same = _parquet_with_features(tmp_path / "train-2.parquet", [[1]], feats(["funny", "sad"]))
    file_checks.check_shard_features([a, same], "--train_file", "train-*.parquet")  # the same classes: fine
    with pytest.raises(UserError, match=r"the shards describe column 'labels' differently \(.*train-0.parquet: classes "
                                        r"funny, sad; .*train-1.parquet: classes sad, funny\)"):
        file_checks.check_shard_features([a, b], "--train_file", "train-*.parquet")


def test_tsv_shards_are_compared_by_their_tab_separated_columns(tmp_path):
    """shard_columns reads a .tsv's header at its tabs: the same columns in another order agree, other columns are
    named one by one (mutant: a .tsv's header read at commas, one column 'text<TAB>label', so the same columns
    disagree and the message shows tabs)."""
    (tmp_path / "a.tsv").write_text("text\tlabel\ngood, really\tpos\n")
    (tmp_path / "b.tsv").write_text("label\ttext\nneg\tbad\n")
    (tmp_path / "c.tsv").write_text("review\tlabel\nbad\tneg\n")
    a, b, c = (str(tmp_path / f"{n}.tsv") for n in "abc")
    assert file_checks.shard_columns([a, b], "csv") is None
    assert file_checks.shard_columns([a, c], "csv") == (f"{a} has the columns text, label; {c} has review, label: "
                                                         f"give every file the same columns")


def test_a_json_lines_shard_that_starts_with_a_blank_line_is_not_said_to_have_other_columns(tmp_path):
    """shard_columns reads a JSON-lines shard's columns from its first line: a first line that is no object (a blank
    one) says nothing, so shards with the same columns are not blamed on columns (mutant: such a shard taken as one
    of no columns, 'a.jsonl has the columns ; b.jsonl has text, label')."""
    row = json.dumps({"text": "good", "label": "pos"}) + "\n"
    (tmp_path / "a.jsonl").write_text("\n" + row)
    (tmp_path / "b.jsonl").write_text(row)
    (tmp_path / "c.jsonl").write_text(json.dumps({"review": "bad", "label": "neg"}) + "\n")
    a, b, c = (str(tmp_path / f"{n}.jsonl") for n in "abc")
    assert file_checks.shard_columns([a, b], "json") is None
    assert file_checks.shard_columns([b, a], "json") is None
    assert file_checks.shard_columns([b, c], "json").endswith(
        f"{c} has review, label: give every file the same columns")


def test_a_csv_header_with_several_unnamed_columns_is_no_column_named_twice(tmp_path):
    """Empty header names (a spreadsheet's trailing empty columns, 'text,label,,') are no name given twice: pandas
    names them 'Unnamed: 2' and so on, and the file loads (mutant: the empty name counted, the file refused as naming
    '' twice)."""
    import csv

    path = tmp_path / "train.csv"
    path.write_text("text,label,,\ngood,pos,,\n")
    assert file_checks.check_csv_header(str(path), "--train_file", ",", csv.QUOTE_MINIMAL) is None
    path.write_text("text,label,,text\ngood,pos,,again\n")
    with pytest.raises(UserError, match=r"names the column 'text' twice in its header"):
        file_checks.check_csv_header(str(path), "--train_file", ",", csv.QUOTE_MINIMAL)


def test_a_tsv_whose_labels_are_quoted_but_for_its_empty_ones_is_refused(tmp_path):
    """A .tsv (read unquoted) whose every label is in quote marks but for empty ones (a row without a label) was
    written with quoting: refused, an empty label is no unquoted one; one plain label passes (mutant: empty labels
    kept, so '' fails the all-quoted test and the file trains on the class '"pos"')."""
    import datasets

    path = str(tmp_path / "train.tsv")
    quoted = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": ['"pos"', "", '"neg"']})
    with pytest.raises(UserError, match=r"every label in its column 'label' is in quote marks, e\.g\. \"pos\""):
        file_checks.check_tsv_quoted_labels(quoted, "--train_file", path, ["label"])
    plain = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": ['"pos"', "", "neg"]})
    assert file_checks.check_tsv_quoted_labels(plain, "--train_file", path, ["label"]) is None


def test_a_pretty_printed_json_array_of_arrays_is_refused(tmp_path):
    """json.dump(rows, f, indent=2) of rows as arrays puts a newline between the brackets: still an array of arrays,
    refused with the fix (mutant: only '[[' written together recognised; datasets then reads one column 'text')."""
    path = tmp_path / "train.json"
    path.write_text(json.dumps([["a good film", "pos"], ["a bad film", "neg"]], indent=2))
    with pytest.raises(UserError, match=r"is a JSON array of arrays, not of row objects"):
        file_checks.check_json_shape(str(path), "--train_file")


def test_a_json_object_of_columns_ending_in_a_newline_is_refused(tmp_path):
    """pandas' object of columns on one line with a newline after it (an editor's, `echo`'s) is still one object of
    columns, not JSON lines: refused (mutant: anything after the first line, a newline too, taken for more rows)."""
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"text": {"0": "a good film", "1": "a bad one"}, "label": {"0": "pos", "1": "neg"}})
                    + "\n\n")
    with pytest.raises(UserError, match=r"is one JSON object of columns \('text', 'label'\), not rows"):
        file_checks.check_json_shape(str(path), "--train_file")


def test_a_header_only_tsv_holds_no_rows(tmp_path):
    """A .tsv of a header alone (or a header and blank lines) holds no rows, as a header-only .csv: two such files
    are byte-identical and no copy of each other's data (mutant: a .tsv's header counted as a row)."""
    (tmp_path / "header.tsv").write_text("text\tlabel\n\n")
    (tmp_path / "rows.tsv").write_text("text\tlabel\ngood\tpos\n")
    assert not file_checks.holds_rows(str(tmp_path / "header.tsv"))
    assert file_checks.holds_rows(str(tmp_path / "rows.tsv"))


@pytest.mark.parametrize("content, said", [
    # a header of two fields, one holding a ';': no European export, the row is short of a quote
    ("text;raw,score\na,1\nb, c,2\n", "line 3 has 3 fields but the header has 2; quote texts that contain ','"),
    # a text over two lines in closed quotes (then a stray character, which a strict read refuses) and a field too
    # many: the field is named, no quote is left open
    ('text,label\n"line one\nline two" x,pos,extra\n', "the row on lines 2-3 has 3 fields but the header has 2: "
                                                     "if its first field is a row name the header does not name "
                                                     "(R's write.table), write the file without them (R's "
                                                     "row.names = FALSE, pandas' index=False); else quote texts that "
                                                     "contain ','"),
    ('text,label\n"line one\nline two,pos\nb,neg\n', "a quote opened on line 2 is never closed (the text runs on to "
                                                      "line 4); close or remove it"),
    ("text;label\na;pos\nb, c;neg\n", "its header is one field, 'text;label': the file looks ';'-separated; save "
                                      "it with ',' between fields"),
], ids=["semicolon-in-one-field", "closed-multiline-quote", "unclosed-quote", "semicolon-separated"])
def test_a_csv_rows_width_is_blamed_on_its_real_cause(content, said, tmp_path):
    """diagnose_file's line for a csv row with the wrong number of fields: another separator only for a header of
    one field, an unclosed quote only when the file ends inside one (mutants: a header of several fields holding a
    ';' taken for a European export; any error of a strict read taken for an unclosed quote)."""
    path = tmp_path / "train.csv"
    path.write_text(content)
    assert file_checks.diagnose_file(str(path), "csv") == said


@pytest.mark.parametrize("line", ['"just a text"', "42", "null"])
def test_a_json_line_that_is_a_bare_value_is_named_not_a_traceback(line, tmp_path):
    """A JSON-lines row that is a string, a number or null (no object, no array) is named in the one-line refusal
    (mutant: only arrays named, a bare value reaching row.items(): an AttributeError traceback)."""
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": "pos"}\n' + line + "\n")
    assert file_checks.diagnose_file(str(path), "json") == "line 2 is not a JSON object; write one {...} object per line"


# ---------------------------------------------------------------- resume_checks
def test_a_shard_pattern_spelled_from_another_folder_is_the_same_files(tmp_path, monkeypatch):
    """--train_file 'data/train-*.csv' in the checkpoint's run, 'train-*.csv' from inside data/ now: the same shards,
    a rename, not a changed option; a pattern matching other files is a change (mutant: a glob pattern is no local
    path, so the requeued job with `cd data` is refused)."""
    (tmp_path / "data").mkdir()
    for name in ("train-0.csv", "train-1.csv", "other-0.csv"):
        (tmp_path / "data" / name).write_text("text,label\na,0\n")
    monkeypatch.chdir(tmp_path / "data")
    saved = dict(recorded(train_file="data/train-*.csv"), cwd=str(tmp_path))
    assert differences(saved, train_file="train-*.csv") == ([], ["--train_file"])
    assert differences(saved, train_file="other-*.csv") == (["--train_file 'data/train-*.csv' → 'other-*.csv'"], [])


def _split(rows, labels, weights=None):
    import datasets

    d = {"input_ids": rows, "labels": labels}
    if weights is not None:
        from loop.splits import WEIGHT

        d[WEIGHT] = weights
    return datasets.Dataset.from_dict(d)


def _data(**change):
    """A prepared Data's fields data_signature reads: training, evaluation, test and an extra set of token ids and
    class ids, the training lengths and weights; `change` replaces any of them."""
    from types import SimpleNamespace

    train = change.pop("train", [[5, 6, 7], [8, 9], [5, 9, 9, 6]])
    parts = dict(train=_split(train, change.pop("train_labels", [0, 1, 0]), change.pop("weights", [1.0, 2.0, 1.0])),
                 eval=_split(change.pop("eval", [[5, 6], [7, 8, 9], [6]]), change.pop("eval_labels", [0, 1, 1])),
                 test=_split(change.pop("test", [[9, 5], [6, 6]]), change.pop("test_labels", [1, 0])),
                 extra_eval={"ood": _split(change.pop("ood", [[7], [8, 5]]), change.pop("ood_labels", [1, 0]))},
                 label_names=["neg", "pos"], train_lengths=[len(r) for r in train])
    assert not change, change
    return SimpleNamespace(**parts)


@pytest.mark.parametrize("change, said", [
    (dict(train=[[5, 6, 7], [8, 8], [5, 9, 9, 6]]),  # one token of the second row: the same lengths
     "the training texts' tokens (other texts, tokenizer or --truncation_side) changed"),
    (dict(train=[[5, 6, 7], [8, 9, 9], [5, 9, 6]]), "training texts (token lengths) changed"),
    (dict(weights=[1.0, 1.0, 1.0]), "the training examples' weights (--weight_column) changed"),
    (dict(eval_labels=[0, 1, 0]), "the evaluation examples (texts or labels) changed"),  # relabelled, same texts
    (dict(eval=[[5, 6], [7, 8, 8], [6]]), "the evaluation examples (texts or labels) changed"),
    (dict(test=[[9, 5], [6, 5]]), "the test examples (texts or labels) changed"),
    (dict(test_labels=[1, 1]), "the test examples (texts or labels) changed"),
    (dict(ood_labels=[1, 1]), "evaluation set 'ood': other texts or labels"),
], ids=["train-token", "train-lengths", "weights", "eval-labels", "eval-text", "test-text", "test-labels",
        "extra-labels"])
def test_a_resume_on_changed_data_names_what_changed(change, said):
    """data_signature then data_differences, as a resume compares the checkpoint's data with this run's: each change
    of the prepared data is named, a shuffled evaluation set (the same examples) is none (mutants: a hash of the
    tokens, lengths, weights or scored examples dropped from the signature, the tokens hashed a row per block, the
    labels left out of an example's hash)."""
    from types import SimpleNamespace

    tok = SimpleNamespace(truncation_side="right")
    saved = json.loads(json.dumps(resume_checks.data_signature(_data(), tok)))  # as loop_state.json reads back
    assert resume_checks.data_differences(saved, resume_checks.data_signature(_data(), tok)) == []
    assert said in resume_checks.data_differences(saved, resume_checks.data_signature(_data(**change), tok))


def test_a_resume_on_shuffled_evaluation_data_or_another_truncation_side_is_said_right():
    """A shuffled evaluation file is the same examples (scores do not depend on the order): no difference; the
    tokenizer's other truncation side is named with both sides (mutants: the examples hashed in order, the side left
    out of the signature)."""
    from types import SimpleNamespace

    right, left = SimpleNamespace(truncation_side="right"), SimpleNamespace(truncation_side="left")
    saved = json.loads(json.dumps(resume_checks.data_signature(_data(), right)))
    shuffled = _data(eval=[[6], [5, 6], [7, 8, 9]], eval_labels=[1, 0, 1], ood=[[8, 5], [7]], ood_labels=[0, 1])
    assert resume_checks.data_differences(saved, resume_checks.data_signature(shuffled, right)) == []
    assert resume_checks.data_differences(saved, resume_checks.data_signature(_data(), left)) == \
        ["--truncation_side (as the tokenizer cut): right then, left now"]


def test_trust_remote_code_changed_on_resume_is_refused_unless_the_checkpoint_says_the_model_has_no_code():
    """--trust_remote_code only runs a metric's code for a model without code of its own (no auto_map): a change is
    refused unless the checkpoint's model config says so; a checkpoint that recorded no model config may have had
    code (mutant: a missing record read as a model without code, the change let through)."""
    assert differences(recorded(), trust_remote_code=True) == (["--trust_remote_code False → True"], [])
    assert differences(dict(recorded(), model_config={"model_type": "bert"}), trust_remote_code=True) == ([], [])


def test_truncation_side_spelled_otherwise_resumes_where_the_checkpoint_recorded_the_side_cut():
    """--truncation_side left out or given as the side the tokenizer cut anyway: the checkpoint records the side cut
    (data signature), which the data check compares, so the option is not compared; a checkpoint without that
    record compares the option (mutant: the option always compared, a resume refused over a flag that changes
    nothing)."""
    saved = dict(recorded(truncation_side="right"), data={"truncation_side": "right"})
    assert differences(saved) == ([], [])
    assert differences(recorded(truncation_side="right")) == (["--truncation_side 'right' → not given"], [])


def test_a_checkpoint_from_before_the_example_hashes_compares_the_scored_labels_in_order():
    """A checkpoint written before the scored splits' examples were hashed as sets has their labels' hashes in order
    only: the same data resumes, other test or evaluation labels are named (mutant: the test labels' hash no longer
    computed, so every such checkpoint with a test split is refused)."""
    from types import SimpleNamespace

    tok = SimpleNamespace(truncation_side="right")
    saved = json.loads(json.dumps(resume_checks.data_signature(_data(), tok)))
    del saved["eval_examples_sha1"], saved["test_examples_sha1"]
    assert resume_checks.data_differences(saved, resume_checks.data_signature(_data(), tok)) == []
    assert resume_checks.data_differences(saved, resume_checks.data_signature(_data(test_labels=[0, 0]), tok)) == \
        ["the test examples' labels changed"]
    assert resume_checks.data_differences(saved, resume_checks.data_signature(_data(eval_labels=[1, 1, 1]), tok)) == \
        ["the evaluation examples' labels changed"]


def test_another_tokenizer_is_said_once_not_as_every_scored_set_changed():
    """Other tokens everywhere (another tokenizer, same --truncation_side): the training tokens' line alone, not a line
    per scored set whose token hashes moved with them (mutant: only a changed truncation side counted as
    retokenizing); four phrases at the most in the processes' line."""
    now = {"train_examples": 100, "eval_examples": 20, "labels": ["neg", "pos"], "train_lengths_sha1": "l",
           "train_tokens_sha1": "t", "truncation_side": "right", "train_labels_sha1": "a", "eval_labels_sha1": "e",
           "test_examples": 5, "test_labels_sha1": "s", "eval_examples_sha1": "x", "test_examples_sha1": "z",
           "extra_eval": {"ood": [10, "o"]}}
    saved = dict(now, train_tokens_sha1="u", eval_examples_sha1="y", test_examples_sha1="w",
                 extra_eval={"ood": [10, "p"]})
    assert resume_checks.data_differences(saved, now) == \
        ["the training texts' tokens (other texts, tokenizer or --truncation_side) changed"]
    keys = ["train_lengths_sha1", "train_tokens_sha1", "train_labels_sha1", "eval_examples_sha1", "test_examples_sha1"]
    said = resume_checks.what_differs(now, {k: "other" for k in now}, keys, 1)
    assert said.count(" differ") == 4 and "test examples" not in said, said


def test_option_values_compare_as_the_checkpoint_record_reads_them_back():
    """A value this run holds as a tuple (a variant's option) is the list loop_state.json reads back: no difference
    (mutant: compared as held, a tuple is never a list, so every resume of such a run is refused)."""
    saved = recorded(label_names=["neg", "pos"])
    cfg = resume_checks.jsonable(resume_checks.option_defaults())
    cfg["label_names"] = ("neg", "pos")
    assert resume_checks.config_differences(saved, cfg, {"model": "BertForSequenceClassification"}, 1) == ([], [])


def test_warmup_dropped_on_resume_is_refused():
    """--warmup_steps 0 and left out are one setting, but a checkpoint trained with warmup resumed without it would
    follow another schedule: refused (mutant: any run without warmup now passes, whatever the checkpoint had)."""
    diff, renamed = differences(recorded(warmup_steps=5))
    assert len(diff) == 1 and diff[0].startswith("--warmup_steps 5 → ") and renamed == [], diff
    assert differences(recorded(warmup_steps=5), warmup_steps=0)[0] == ["--warmup_steps 5 → 0"]
