"""predict.py reads table files: `--file reviews.parquet` (and .csv, .tsv, .json, .jsonl, in any case) is read as a
table, as training reads it, and one column is classified: --text_column, by default the column best_metrics.json
records, else "text"; a pair model reads its recorded pair column with no flag. Each scored row is one JSON line
{"row", "text", ["text_pair",] "label", "score"}, "row" its 0-based position in the file; rows with a blank or
missing text are skipped (counted on stderr). Any other extension is still one text per line ("line").
Mistakes (a missing column, a column that is not text, pair flags on a single-text model, --pairs with a table,
column flags without a table, nothing but blank texts) are one `error:` line, exit 2.

Every label and score is compared with transformers' own pipeline("text-classification") on the same text, and
every "row" with the rows the file was written from (and the file read back with pandas). Two tiny models are
trained once for the module (~5 s each); each prediction runs in-process (a second or so)."""

import csv
import json
import os

import pytest

from conftest import run_cli as run_script
from conftest import tiny_args
from loop import predict, synthetic
from test_predict_checks import outputs

# --------------------------------------------------------------------------------------------------- helpers


def refused(capsys, argv, *words):
    """predict.py refuses `argv` in one `error:` line (exit 2, nothing on stdout) naming every one of `words`."""
    code, rows, err = outputs(capsys, argv)
    assert code == 2 and rows == [], (code, rows, err)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def write_table(path, rows):
    """Write `rows` (dicts, None = missing) to `path` in the format its extension names (any case)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ext = os.path.splitext(str(path))[1].lower()
    columns = list(rows[0])
    if ext == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)  # QUOTE_MINIMAL: a text with a comma or a quote is quoted, None is an empty field
            w.writerow(columns)
            w.writerows([["" if r[c] is None else r[c] for c in columns] for r in rows])
    elif ext == ".tsv":  # as GLUE writes them: no quoting at all, a quote is a character of the text
        lines = ["\t".join(columns)] + ["\t".join("" if r[c] is None else str(r[c]) for c in columns) for r in rows]
        for line in lines:
            assert line.count("\t") == len(columns) - 1, line
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    elif ext == ".json":
        with open(path, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    elif ext == ".jsonl":
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    elif ext == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        raise ValueError(path)
    return str(path)


def read_back(path):
    """The file as pandas reads it (a csv's only missing value is an empty field; a tsv has no quoting)."""
    import pandas as pd

    ext = os.path.splitext(path)[1].lower()
    if ext in (".csv", ".tsv"):
        return pd.read_csv(path, sep="," if ext == ".csv" else "\t", keep_default_na=False, na_values=[""],
                           quoting=csv.QUOTE_MINIMAL if ext == ".csv" else csv.QUOTE_NONE)
    if ext in (".json", ".jsonl"):
        return pd.read_json(path, lines=ext == ".jsonl", orient="records", dtype=False)
    return pd.read_parquet(path)


def blank(v):
    return v is None or not str(v).strip()


def check_scores(lines, clf, pairs=False):
    """Each line's label and score are what transformers' pipeline gives for its text (or pair) alone."""
    items = [{"text": x["text"], "text_pair": x["text_pair"]} if pairs else x["text"] for x in lines]
    expected = clf(items, batch_size=1, truncation=True)
    assert len(expected) == len(lines)
    for x, e in zip(lines, expected):
        e = e[0] if isinstance(e, list) else e
        assert x["label"] == e["label"], (x, e)
        assert x["score"] == pytest.approx(float(e["score"]), abs=1e-5), (x, e)


# --------------------------------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def single(tiny_model, tiny_data, tmp_path_factory):
    """best/ of a tiny run on the synthetic sentiment task (text column "text", no pair column), and its
    transformers pipeline."""
    from transformers import pipeline

    out = str(tmp_path_factory.mktemp("predict_tables_single") / "out")
    run_script(tiny_args(tiny_model, tiny_data, out), how="python")
    best = os.path.join(out, "best")
    with open(os.path.join(best, "best_metrics.json")) as f:
        assert not json.load(f).get("text_pair_column")
    return best, pipeline("text-classification", model=best, device=-1)


@pytest.fixture(scope="module")
def pair(tiny_model, tmp_path_factory):
    """best/ of a tiny run with --text_column premise --text_pair_column hypothesis (the label is the
    hypothesis' sentiment), and its pipeline."""
    from transformers import pipeline

    from conftest import write_pair_data

    d = write_pair_data(tmp_path_factory.mktemp("predict_tables_pair"))
    out = str(d / "out")
    run_script(tiny_args(tiny_model, d, out, text_column="premise", text_pair_column="hypothesis"), how="python")
    best = os.path.join(out, "best")
    with open(os.path.join(best, "best_metrics.json")) as f:
        record = json.load(f)
    assert (record["text_column"], record["text_pair_column"]) == ("premise", "hypothesis"), record
    return best, pipeline("text-classification", model=best, device=-1)


# --------------------------------------------------------------------------------------------------- formats
ROWS = [  # id and label before the text: the text column is found by name, not position
    {"id": 10, "label": "POSITIVE", "text": "a superb and lovely film"},
    {"id": 11, "label": "NEGATIVE", "text": 'she said "dull, boring" twice'},  # a comma and quotes
    {"id": 12, "label": "NEGATIVE", "text": None},  # missing: an empty field in csv/tsv, null in json/parquet
    {"id": 13, "label": "POSITIVE", "text": "NA"},  # a text, not a missing value
    {"id": 14, "label": "NEGATIVE", "text": "   "},  # blank
    {"id": 15, "label": "POSITIVE", "text": 'the "plot was brilliant and charming'},  # an unclosed quote
    {"id": 16, "label": "NEGATIVE", "text": "awful tedious plot"},
    {"id": 17, "label": "POSITIVE", "text": "None"},  # a text too
]


@pytest.mark.parametrize("name", ["reviews.csv", "reviews.tsv", "reviews.json", "reviews.jsonl", "reviews.parquet",
                                  "REVIEWS.CSV", "Reviews.Tsv", "reviews.JSONL", "reviews.PARQUET"])
def test_each_format_scores_its_text_column_like_the_pipeline(single, capsys, tmp_path, name):
    """Every non-blank text, in file order (across batches of 3), its "row" the file's own; "NA", "None" and a
    quote are text; the missing and the blank text are skipped, counted on stderr; labels and scores are the
    pipeline's."""
    best, clf = single
    f = write_table(tmp_path / name, ROWS)
    code, lines, err = outputs(capsys, ["--model", best, "--file", f, "--batch_size", "3"])
    assert code == 0, err
    kept = [i for i, r in enumerate(ROWS) if not blank(r["text"])]
    assert [x["row"] for x in lines] == kept == [0, 1, 3, 5, 6, 7]
    assert [x["text"] for x in lines] == [ROWS[i]["text"] for i in kept]
    assert all(list(x) == ["row", "text", "label", "score"] for x in lines), lines[0]  # no "line"
    back = read_back(f)
    assert len(back) == len(ROWS) and all(back["text"].iloc[x["row"]] == x["text"] for x in lines)
    assert 'skipped 2 row(s) with an empty text in \'text\' (first at row 2); each output\'s "row" is its row in the ' \
           'file' in err, err
    check_scores(lines, clf)


def test_text_column_picks_the_column_and_its_blanks(single, capsys, tmp_path):
    """--text_column review classifies that column (its own blank rows skipped); without it, "text"."""
    best, clf = single
    rows = [{"text": "the film was", "review": "superb lovely film"},
            {"text": "the plot", "review": ""},
            {"text": "", "review": "awful dull plot"},
            {"text": "a story", "review": "brilliant"}]
    f = write_table(tmp_path / "two.csv", rows)
    code, lines, err = outputs(capsys, ["--model", best, "--file", f, "--text_column", "review"])
    assert code == 0, err
    assert [(x["row"], x["text"]) for x in lines] == [(0, "superb lovely film"), (2, "awful dull plot"), (3, "brilliant")]
    assert "skipped 1 row(s)" in err, err
    check_scores(lines, clf)
    code, lines, err = outputs(capsys, ["--model", best, "--file", f])
    assert code == 0, err
    assert [(x["row"], x["text"]) for x in lines] == [(0, "the film was"), (1, "the plot"), (3, "a story")]
    check_scores(lines, clf)


def test_arguments_come_first_without_a_row(single, capsys, tmp_path):
    best, clf = single
    f = write_table(tmp_path / "r.jsonl", [{"text": "dull boring plot"}, {"text": "lovely superb film"}])
    code, lines, err = outputs(capsys, ["--model", best, "a great film", "bad awful acting", "--file", f])
    assert code == 0, err
    assert [x["text"] for x in lines] == ["a great film", "bad awful acting", "dull boring plot", "lovely superb film"]
    assert ["row" in x for x in lines] == [False, False, True, True] and [x["row"] for x in lines[2:]] == [0, 1]
    assert not any("line" in x for x in lines)
    check_scores(lines, clf)


def test_a_text_file_is_still_read_line_by_line(single, capsys, tmp_path):
    """.txt (or no extension): one text per line, "line" 1-based, a comma or a tab is part of the text, and a
    first line "text" is a text like any other."""
    best, clf = single
    for name in ("reviews.txt", "reviews"):
        f = tmp_path / name
        f.write_text("text\nsuperb, lovely film\n\nawful\tdull plot\n", encoding="utf-8")
        code, lines, err = outputs(capsys, ["--model", best, "--file", str(f)])
        assert code == 0, err
        assert [(x["text"], x["line"]) for x in lines] == [("text", 1), ("superb, lovely film", 2),
                                                            ("awful\tdull plot", 4)], name
        assert not any("row" in x for x in lines)
        assert "skipped 1 blank line(s)" in err, err
        check_scores(lines, clf)


def test_through_the_script(single, tmp_path):
    """python loop/predict.py --file x.parquet: stdout is the JSON lines only; a refusal is one line, no
    traceback."""
    import pandas as pd

    best, clf = single
    f = write_table(tmp_path / "r.parquet", [{"text": "lovely superb film"}, {"text": None}, {"text": "dull plot"}])
    proc = run_script(["--model", best, "--file", f], script="loop/predict.py", how="python", check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [x["row"] for x in lines] == [0, 2]
    assert [pd.read_parquet(f).iloc[x["row"]]["text"] for x in lines] == [x["text"] for x in lines]
    check_scores(lines, clf)
    proc = run_script(["--model", best, "--file", f, "--text_column", "review"], script="loop/predict.py",
                      how="python", check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "'review'" in proc.stderr and "'text'" in proc.stderr, proc.stderr


def test_lines_are_printed_as_batches_are_scored(single, capsys, tmp_path, monkeypatch):
    """A failure late in a long table keeps the lines of the batches scored before it."""
    from conftest import pipeline_failing_after

    best, _ = single
    rows = [{"text": f"film number {i} was {'very ' * i}{'good' if i % 2 else 'bad'}"} for i in range(7)]  # growing
    f = write_table(tmp_path / "seven.csv", rows)
    with pipeline_failing_after(monkeypatch, 2):
        with pytest.raises(RuntimeError, match="simulated"):
            predict.run(["--model", best, "--batch_size", "2", "--file", f])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    code, lines, err = outputs(capsys, ["--model", best, "--batch_size", "2", "--file", f])
    assert code == 0 and len(lines) == 7, err
    assert printed == lines[:4] and [x["row"] for x in printed] == [0, 1, 2, 3]


# --------------------------------------------------------------------------------------------------- pairs
def test_a_pair_model_reads_its_recorded_columns(pair, capsys, tmp_path):
    """No flags: "premise" and "hypothesis" (best_metrics.json), not the file's "text"; a row missing either
    half is skipped; "text_pair" comes after "text"."""
    best, clf = pair
    rows = [{"id": 0, "text": "decoy words", "premise": "the film", "hypothesis": "superb brilliant lovely"},
            {"id": 1, "text": "decoy words", "premise": "the plot", "hypothesis": None},
            {"id": 2, "text": "decoy words", "premise": "  ", "hypothesis": "awful"},
            {"id": 3, "text": "decoy words", "premise": "the plot", "hypothesis": "awful dull boring"},
            {"id": 4, "text": "decoy words", "premise": "a scene", "hypothesis": 'a "clumsy, weak'}]
    for name in ("pairs.jsonl", "pairs.tsv"):
        f = write_table(tmp_path / name, rows)
        code, lines, err = outputs(capsys, ["--model", best, "--file", f, "--batch_size", "2"])
        assert code == 0, err
        assert [(x["row"], x["text"], x["text_pair"]) for x in lines] == [
            (i, rows[i]["premise"], rows[i]["hypothesis"]) for i in (0, 3, 4)], name
        assert all(list(x) == ["row", "text", "text_pair", "label", "score"] for x in lines), lines[0]
        # (audit64 t4: "with an empty text", where one was the second text)
        assert "skipped 2 row(s) with an empty text in 'premise' or 'hypothesis' (first at row 1)" in err, err
        check_scores(lines, clf, pairs=True)


def test_a_pair_model_takes_other_column_names_by_flag(pair, capsys, tmp_path):
    best, clf = pair
    rows = [{"s1": "the film", "s2": "superb brilliant lovely"}, {"s1": "the plot", "s2": "awful dull boring"}]
    f = write_table(tmp_path / "pairs.parquet", rows)
    code, lines, err = outputs(capsys, ["--model", best, "--file", f, "--text_column", "s1", "--text_pair_column", "s2"])
    assert code == 0, err
    assert [(x["row"], x["text"], x["text_pair"]) for x in lines] == [(0, "the film", "superb brilliant lovely"),
                                                                      (1, "the plot", "awful dull boring")]
    check_scores(lines, clf, pairs=True)


def test_pair_refusals(pair, capsys, tmp_path):
    best, _ = pair
    f = write_table(tmp_path / "nopair.csv", [{"premise": "the film", "other": "superb"}])
    refused(capsys, ["--model", best, "--file", f], "'hypothesis'", "'premise'", "'other'", "--text_pair_column")
    f = write_table(tmp_path / "pairs.csv", [{"premise": "the film", "hypothesis": "superb"}])
    refused(capsys, ["--model", best, "--pairs", "--file", f], "--pairs", "--text_pair_column")
    # every pair has a blank half
    f = write_table(tmp_path / "halves.jsonl", [{"premise": "the film", "hypothesis": ""},
                                                {"premise": None, "hypothesis": "superb"}])
    refused(capsys, ["--model", best, "--file", f], "'hypothesis'")


def test_a_pair_model_with_pairs_and_a_tsv_file_still_reads_tab_separated_lines(pair, capsys, tmp_path):
    """`--pairs --file pairs.tsv` (README's example from before tables): 'first<TAB>second' lines, numbered by
    "line", the header naming the model's columns skipped, not a table."""
    best, clf = pair
    f = tmp_path / "pairs.tsv"
    f.write_text("premise\thypothesis\nthe film\tsuperb brilliant lovely\n\nthe plot\tawful dull boring\n")
    code, lines, err = outputs(capsys, ["--model", best, "--pairs", "--file", str(f)])
    assert code == 0, err
    assert [(x["line"], x["text"], x["text_pair"]) for x in lines] == [(2, "the film", "superb brilliant lovely"),
                                                                       (4, "the plot", "awful dull boring")]
    assert not any("row" in x for x in lines)
    check_scores(lines, clf, pairs=True)


def test_a_pair_model_refuses_single_texts_beside_its_table(pair, capsys, tmp_path):
    best, _ = pair
    f = write_table(tmp_path / "pairs.jsonl", [{"premise": "the film", "hypothesis": "superb"}])
    refused(capsys, ["--model", best, "the film", "--file", f], "--pairs")


# --------------------------------------------------------------------------------------------------- refusals
def test_a_table_file_that_does_not_exist_is_one_error_line(single, capsys, tmp_path):
    """As a missing text file: `could not be read`, exit 2, not a FileNotFoundError traceback."""
    best, _ = single
    missing = str(tmp_path / "nowhere.csv")
    refused(capsys, ["--model", best, "--file", missing], missing)


def test_a_column_the_file_lacks_is_refused_listing_its_columns(single, capsys, tmp_path):
    best, _ = single
    f = write_table(tmp_path / "r.csv", [{"id": 1, "review": "superb film"}])
    refused(capsys, ["--model", best, "--file", f], "no column 'text'", "'id'", "'review'", "--text_column")
    f = write_table(tmp_path / "r.parquet", [{"id": 1, "text": "superb film"}])
    refused(capsys, ["--model", best, "--file", f, "--text_column", "body"], "no column 'body'", "'id'", "'text'",
            "--text_column")


def test_a_column_that_is_not_text_is_refused(single, capsys, tmp_path):
    best, _ = single
    f = write_table(tmp_path / "r.parquet", [{"id": 1, "text": "superb film", "words": ["superb", "film"]}])
    refused(capsys, ["--model", best, "--file", f, "--text_column", "id"], "'id'", "int64", "not text")
    refused(capsys, ["--model", best, "--file", f, "--text_column", "words"], "'words'", "lists", "join each list")
    f = write_table(tmp_path / "r.csv", [{"id": 1, "text": "3.5"}, {"id": 2, "text": "4"}])  # a csv of numbers
    refused(capsys, ["--model", best, "--file", f], "column 'text' holds only numbers (first '3.5'), not text")


def test_pair_flags_on_a_single_text_model_and_pairs_with_a_table_are_refused(single, capsys, tmp_path):
    best, _ = single
    f = write_table(tmp_path / "r.csv", [{"text": "the film", "other": "superb"}])
    refused(capsys, ["--model", best, "--file", f, "--text_pair_column", "other"], "single texts",
            "--text_pair_column")
    err = refused(capsys, ["--model", best, "--pairs", "--file", f], "--pairs")
    assert "drop --pairs" in err, err


def test_column_flags_without_a_table_are_refused(single, capsys, tmp_path):
    best, _ = single
    txt = tmp_path / "r.txt"
    txt.write_text("superb film\n")
    for flag in ("--text_column", "--text_pair_column"):
        refused(capsys, ["--model", best, flag, "review", "superb film"], flag)
        refused(capsys, ["--model", best, flag, "review", "--file", str(txt)], flag)


@pytest.mark.parametrize("name,rows", [
    ("blank.csv", [{"id": 1, "text": "  "}, {"id": 2, "text": "\t"}]),
    ("empty.csv", [{"id": 1, "text": None}, {"id": 2, "text": None}]),  # every field empty: pandas reads floats
    ("null.jsonl", [{"id": 1, "text": None}, {"id": 2, "text": None}]),  # a column of nulls only
    ("blank.parquet", [{"id": 1, "text": ""}, {"id": 2, "text": None}]),
])
def test_a_file_whose_every_text_is_blank_is_refused(single, capsys, tmp_path, name, rows):
    """Named as empty texts (not as a column of numbers or nulls, which is what an all-empty column reads as)."""
    best, _ = single
    err = refused(capsys, ["--model", best, "--file", write_table(tmp_path / name, rows)], "'text'")
    assert "not text" not in err and "values" not in err, err
    assert "empty" in err or "blank" in err, err


# --------------------------------------------------------------------------------------------------- other heads
@pytest.fixture(scope="module")
def heads(tiny_model, tmp_path_factory):
    """A multi-label (3 labels) and a regression model folder, untrained but complete (head and tokenizer),
    as loop/train.py writes best/."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    root = tmp_path_factory.mktemp("predict_tables_heads")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    made = {}
    for name, kwargs in (("multi", {"num_labels": 3, "id2label": {0: "ACTING", 1: "PLOT", 2: "MUSIC"},
                                    "label2id": {"ACTING": 0, "PLOT": 1, "MUSIC": 2},
                                    "problem_type": "multi_label_classification"}),
                         ("reg", {"num_labels": 1, "id2label": {0: "score"}, "label2id": {"score": 0},
                                  "problem_type": "regression"})):
        folder = str(root / name)
        AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(tiny_model, **kwargs)).save_pretrained(folder)
        tok.save_pretrained(folder)
        with open(os.path.join(folder, "best_metrics.json"), "w") as f:
            json.dump({"epoch": 1, "step": 10}, f)
        made[name] = folder
    return made


def test_multi_label_and_regression_output_forms(heads, capsys, tmp_path):
    from transformers import pipeline

    texts = ["superb film with lovely music", "dull plot", "the actor was clumsy and the music bland"]
    f = write_table(tmp_path / "r.json", [{"text": texts[0]}, {"text": ""}, {"text": texts[1]}, {"text": texts[2]}])
    code, lines, err = outputs(capsys, ["--model", heads["multi"], "--file", f])
    assert code == 0, err
    assert [x["row"] for x in lines] == [0, 2, 3]
    assert all(list(x) == ["row", "text", "labels", "scores"] for x in lines), lines[0]
    clf = pipeline("text-classification", model=heads["multi"], device=-1)
    for x, e in zip(lines, clf(texts, top_k=None)):
        by = {r["label"]: r["score"] for r in e}
        assert list(x["scores"]) == ["ACTING", "PLOT", "MUSIC"]
        assert x["scores"] == pytest.approx(by, abs=1e-5)
        assert x["labels"] == [n for n in ("ACTING", "PLOT", "MUSIC") if by[n] > 0.5]
    code, lines, err = outputs(capsys, ["--model", heads["reg"], "--file", f])
    assert code == 0, err
    assert [x["row"] for x in lines] == [0, 2, 3]
    assert all(list(x) == ["row", "text", "label", "score"] for x in lines), lines[0]
    clf = pipeline("text-classification", model=heads["reg"], device=-1)
    for x, e in zip(lines, clf(texts)):
        assert x["label"] == "score" and x["score"] == pytest.approx(e["score"], abs=1e-5)
    code, by_args, err = outputs(capsys, ["--model", heads["reg"], *texts])  # as for line input
    assert code == 0 and [x["score"] for x in by_args] == [x["score"] for x in lines], err


def test_a_model_trained_on_another_text_column_reads_that_column(tiny_model, tmp_path, capsys):
    """A single-text run with --text_column review records the column in best_metrics.json (only a column
    other than the default is recorded), so its own kind of table needs no flag; a run on "text" records none."""
    rows = synthetic.make_rows(300, seed=1)
    d = tmp_path / "data"
    d.mkdir()
    for name, part in (("train.jsonl", rows[:240]), ("validation.jsonl", rows[240:])):
        synthetic.write_jsonl([{"review": r["text"], "label": r["label"]} for r in part], d / name)
    out = str(tmp_path / "out")
    run_script(tiny_args(tiny_model, d, out, text_column="review", num_train_epochs=1), how="python")
    best = os.path.join(out, "best")
    with open(os.path.join(best, "best_metrics.json")) as f:
        record = json.load(f)
    assert record["text_column"] == "review" and record["text_pair_column"] is None, record
    table = write_table(tmp_path / "new.parquet", [{"review": "a superb film"}, {"review": "dull and boring"}])
    code, lines, err = outputs(capsys, ["--model", best, "--file", table])
    assert code == 0, err
    assert [(x["row"], x["text"]) for x in lines] == [(0, "a superb film"), (1, "dull and boring")]
    from transformers import pipeline

    check_scores(lines, pipeline("text-classification", model=best, device=-1))


def test_a_csv_is_read_as_text_whatever_its_other_columns_hold(single, capsys, tmp_path):
    """A column predict.py does not read, numbers for 10,000 rows and text after them (an id like x10001), used
    to fail the whole read (the csv reader types columns by their first rows); every column is text now."""
    import csv as csv_module

    best, _ = single
    f = tmp_path / "mixed.csv"
    with open(f, "w", newline="") as out:
        w = csv_module.writer(out)
        w.writerow(["id", "note", "text"])
        for i in range(10_050):
            w.writerow([i if i < 10_001 else f"x{i}", "" if i < 10_000 else "late note", "a superb film" if i % 2 else
                        "dull and boring"])
    code, lines, err = outputs(capsys, ["--model", best, "--file", str(f), "--batch_size", "256"])
    assert code == 0 and len(lines) == 10_050, err[-2000:]
    assert {x["label"] for x in lines[0::2]} == {lines[0]["label"]} and lines[0]["label"] != lines[1]["label"]


def test_a_folder_and_one_column_for_both_texts_are_refused(pair, capsys, tmp_path):
    best, _ = pair
    (tmp_path / "dir.csv").mkdir()
    refused(capsys, ["--model", best, "--file", str(tmp_path / "dir.csv")], "is a folder, not a file")
    f = write_table(tmp_path / "p.csv", [{"premise": "a man", "hypothesis": "superb"}])
    refused(capsys, ["--model", best, "--file", f, "--text_column", "hypothesis", "--text_pair_column", "hypothesis"],
            "both 'hypothesis'", "paired with itself")


def test_a_pattern_of_shards_is_read_as_one_table(single, capsys, tmp_path):
    """--file 'part-*.jsonl': the shards in name order, "row" counted across them (blank rows skipped and
    said so); scores as the pipeline's. A pattern without a table's extension is one line naming the fix."""
    best, clf = single
    write_table(tmp_path / "part-1.jsonl", [{"text": "awful dull plot"}, {"text": ""}])
    write_table(tmp_path / "part-0.jsonl", [{"text": "a superb film"}, {"text": "lovely"}])
    code, lines, err = outputs(capsys, ["--model", best, "--file", str(tmp_path / "part-*.jsonl")])
    assert code == 0, err
    assert [(x["row"], x["text"]) for x in lines] == [(0, "a superb film"), (1, "lovely"), (2, "awful dull plot")]
    assert "(counted across the files in name order)" in err, err
    check_scores(lines, clf)
    code, lines, err = outputs(capsys, ["--model", best, "--file", str(tmp_path / "part-*")])
    assert code == 2 and "is a pattern; a pattern reads table shards: end it in their extension" in err, err


def test_a_table_is_read_a_slice_at_a_time(tmp_path):
    """audit64 t3: a table --file was held whole in Python, twice at the peak (a 200k-row IMDb parquet: 1.69 GB before
    its first line, ~11 GB for 2M rows); its rows are now converted a slice at a time as they are scored. 20,000
    texts of ~1 KB (20 MB of text): reading them all holds at most a few slices in Python's memory."""
    import tracemalloc
    from types import SimpleNamespace

    texts = [f"review {i} " + "a long and winding plot " * 40 for i in range(20000)]
    f = write_table(tmp_path / "big.parquet", [{"text": t} for t in texts])
    args = SimpleNamespace(file=f, text_column=None, text_pair_column=None)
    tracemalloc.start()
    try:
        rows, pair = predict.load_table(args, str(tmp_path))
        n = sum(1 for text, row in rows if text == texts[row])  # taken one at a time, as the scoring takes them
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == len(texts) and pair is None
    assert peak < 12_000_000, peak  # the whole column: > 20 MB


def test_output_redirected_to_the_input_file_is_refused(single, tmp_path, monkeypatch):
    """audit64 t6: `loop-predict --file x.jsonl > x.jsonl` said the file was empty (the shell had emptied it before
    the command started); `>>` appended to what was being read, and with `--file - < x >> x` (review r2 F1) read
    its own output back until the disk was full. Each is one line, before the model loads; so is the output
    appended to a shard of a --file pattern (F2). Another file, /dev/null or a pipe is an output like any."""
    import subprocess
    import sys

    from conftest import ROOT, env

    best, _ = single
    path = tmp_path / "reviews.jsonl"
    write_table(path, ROWS)
    with open(path, "w") as out:  # what `>` hands the command as its standard output
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "loop", "predict.py"), "--model", best,
                               "--file", str(path)], stdout=out, stderr=subprocess.PIPE, text=True, env=env(),
                              timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: the output goes to --file '{path}' itself") and \
        "write the output to another file" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr

    lines, shard, other = tmp_path / "reviews.txt", tmp_path / "part-1.parquet", tmp_path / "other.txt"
    lines.write_text("a lovely film\n")
    write_table(shard, ROWS)
    other.write_text("")

    def output_to(target, file, stdin=None):
        with open(target, "a") as out, open(stdin or os.devnull) as source:  # `>> target`, `< stdin`
            monkeypatch.setattr(sys, "stdout", out)
            monkeypatch.setattr(sys, "stdin", source)
            try:
                return predict.output_is_file(file)
            finally:
                monkeypatch.undo()
    assert output_to(lines, str(lines))
    literal, near = tmp_path / "r[1].txt", tmp_path / "r1.txt"  # a name read as it is, not as a pattern (review r3 R1)
    literal.write_text("a lovely film\n")
    near.write_text("")
    assert output_to(literal, str(literal)) and not output_to(near, str(literal))
    assert output_to(lines, "-", stdin=lines)
    assert output_to(shard, str(tmp_path / "part-*.parquet"))
    assert not output_to(other, str(lines)) and not output_to(other, "-", stdin=lines)
    assert not output_to(os.devnull, str(lines)) and not output_to(other, str(tmp_path / "none-*.parquet"))
    read, write = os.pipe()
    with os.fdopen(write, "w") as pipe:
        monkeypatch.setattr(sys, "stdout", pipe)
        assert not predict.output_is_file(str(lines))
        monkeypatch.undo()
    os.close(read)


def test_the_skipped_rows_are_said_before_any_row_is_scored(single, capsys, tmp_path, monkeypatch):
    """Review r2 F3: with rows read as they are scored, the skipped-rows line came at the end, and a run cut short
    (`| head -1`, Ctrl-C) never said it. They are counted in Arrow before the model loads."""
    best, _ = single
    f = write_table(tmp_path / "reviews.parquet", ROWS)

    def no_model(args):
        raise predict.UserError("the model did not load")
    monkeypatch.setattr(predict, "load_for", no_model)
    code, lines, err = outputs(capsys, ["--model", best, "--file", f])
    assert code == 2 and lines == []
    assert "skipped 2 row(s) with an empty text in 'text' (first at row 2)" in err.splitlines()[0], err


def test_the_skipped_rows_counted_are_the_rows_skipped(tmp_path):
    """Review r3 R2: rows were counted blank by Arrow's rule and skipped by Python's, whose Unicode (14.0 in Python
    3.11) does not hold U+13439-U+1343F as invisible format characters (15.0): "skipped 6" where 5 were. One rule
    does both now."""
    from types import SimpleNamespace

    texts = ["a film", "\U00013439", "", None, "  \u200b", "the plot", "\U0001343f x"]
    f = write_table(tmp_path / "t.jsonl", [{"text": t} for t in texts])
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rows, _ = predict.load_table(SimpleNamespace(file=f, text_column=None, text_pair_column=None), str(tmp_path))
        kept = [row for _, row in rows]
    skipped = int(err.getvalue().split("skipped ")[1].split(" ")[0])
    assert kept[0] == 0 and kept[-2:] == [5, 6] and skipped == len(texts) - len(kept), (kept, err.getvalue())
