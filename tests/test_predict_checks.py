"""predict.py refuses a model folder whose predictions would be noise, in one `error:` line: a folder
without tokenizer files (transformers 5 loads an empty vocabulary, every text gets the same label) and a
base model whose classification head was never trained (its weights lack the head: random labels).
Also: a UTF-8 byte-order mark at the start of --file is not part of the first text, and --pairs on a
model trained on single texts is refused. In-process, on the tiny model (a second or two each)."""

import json
import os
import shutil

import pytest

from loop import predict
from loop.errors import run_cli


def outputs(capsys, argv):
    """Run predict.py's CLI in-process; returns (exit code, the JSON lines, stderr)."""
    code = 0
    try:
        run_cli(predict.run, argv)
    except SystemExit as e:
        code = e.code
    got = capsys.readouterr()
    return code, [json.loads(line) for line in got.out.splitlines()], got.err


@pytest.fixture(scope="module")
def folders(tiny_model, tmp_path_factory):
    """good: a trained-looking folder (head and tokenizer); notok: the same without tokenizer files;
    base: a plain encoder (no classification head in its weights) with the tokenizer."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    root = tmp_path_factory.mktemp("predict_checks")
    cfg = AutoConfig.from_pretrained(tiny_model, num_labels=2, id2label={0: "NEG", 1: "POS"},
                                     label2id={"NEG": 0, "POS": 1})
    tok = AutoTokenizer.from_pretrained(tiny_model)
    good, notok, base = (str(root / n) for n in ("good", "notok", "base"))
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(good)
    tok.save_pretrained(good)
    with open(os.path.join(good, "best_metrics.json"), "w") as f:  # as loop/train.py writes it: no pair column
        json.dump({"epoch": 1, "step": 10, "eval_accuracy": 0.9}, f)
    shutil.copytree(good, notok)
    for name in os.listdir(notok):
        if name.startswith(("tokenizer", "vocab", "special_tokens", "merges")):
            os.remove(os.path.join(notok, name))
    AutoModel.from_config(cfg).save_pretrained(base)
    tok.save_pretrained(base)
    return {"good": good, "notok": notok, "base": base}


def test_an_intact_folder_predicts(folders, capsys):
    code, rows, err = outputs(capsys, ["--model", folders["good"], "a good film", "a bad film"])
    assert code == 0, err
    assert [r["text"] for r in rows] == ["a good film", "a bad film"] and all(r["label"] in ("NEG", "POS") for r in rows)
    assert "new head" not in err, err


def test_a_folder_without_tokenizer_files_is_refused(folders, capsys):
    """It used to print one label for every text (the empty vocabulary makes every word unknown)."""
    code, rows, err = outputs(capsys, ["--model", folders["notok"], "a good film", "a bad film"])
    assert code == 2 and rows == [], err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "has no tokenizer of its own" in err and folders["notok"] in err, err


def test_a_base_model_without_a_trained_head_is_refused(folders, capsys):
    """pipeline() initialises the missing head at random; it used to print those random labels, exit 0."""
    code, rows, err = outputs(capsys, ["--model", folders["base"], "a good film", "a bad film"])
    assert code == 2 and rows == [], err
    assert err.count("\n") == 1 and err.startswith("error: "), err  # one line: no "new head: ..." before it
    assert "has no trained classification head" in err and "classifier.weight" in err, err


def test_a_byte_order_mark_is_not_part_of_the_first_text(folders, capsys, tmp_path):
    f = tmp_path / "texts.txt"
    f.write_bytes("a good film\r\na bad film\n".encode("utf-8-sig"))
    code, rows, err = outputs(capsys, ["--model", folders["good"], "--file", str(f)])
    assert code == 0, err
    assert [(r["text"], r["line"]) for r in rows] == [("a good film", 1), ("a bad film", 2)]
    _, plain, _ = outputs(capsys, ["--model", folders["good"], "a good film"])
    assert rows[0]["score"] == plain[0]["score"]  # scored as the text itself


def test_pairs_on_a_model_trained_on_single_texts_is_refused(folders, capsys):
    code, rows, err = outputs(capsys, ["--model", folders["good"], "--pairs", "a good film\tfine"])
    assert code == 2 and rows == [], err
    assert "trained on single texts" in err and "drop --pairs" in err, err
