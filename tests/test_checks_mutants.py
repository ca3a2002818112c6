"""Tests written by a mutation audit of loop/file_checks.py and loop/resume_checks.py (audit70 m13): each one fails
on a small change of the code that a user would notice (shards with swapped classes read without a word, a .tsv's
columns misread, a resume refused over a path spelled from another folder, a changed data set resumed as the same)
and passes on the code as it is. In-process, on files and datasets the tests write."""

import json
import os

import pytest

from loop import file_checks, resume_checks
from loop.errors import UserError


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


# ---------------------------------------------------------------- resume_checks
def recorded(**old):
    """A checkpoint's loop_state.json record of a run with the default options but `old`, one process."""
    config = resume_checks.jsonable(resume_checks.option_defaults())
    config.update(old)
    return {"config": config, "classes": {"model": "BertForSequenceClassification"}, "num_processes": 1}


def differences(saved, classes=None, num_processes=1, **new):
    cfg = resume_checks.jsonable(resume_checks.option_defaults())
    cfg.update(new)
    return resume_checks.config_differences(saved, cfg, classes or {"model": "BertForSequenceClassification"},
                                            num_processes)


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
