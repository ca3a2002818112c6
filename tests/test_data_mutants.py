"""Data rules that a mutation run of loop/data.py (audit65 m7) found unguarded by a quick test: which rows the
seeded subsets and the carved evaluation split hold (and in which order), what prepare() reports (the largest
token id, the texts truncation cut, the evaluation rows behind each example), how texts are tokenized (a missing
text, an empty one, a pair, a long text read from a prefix) and which texts count as blank. In-process, on tiny
datasets and the tiny word-level tokenizer."""

import contextlib
import json
import warnings

import pytest

from loop import data as D
from loop.config import TrainConfig
from loop.errors import UserError
from loop.splits import CUT, EVAL, EXTRA, TEST, TRAIN, WEIGHT

WORDS = ["great", "awful", "film", "plot", "acting", "boring", "wonderful", "dull"]


class NoAccelerator:
    """What prepare() asks of the accelerator: the main process tokenizes first (here the only one)."""

    def main_process_first(self):
        return contextlib.nullcontext()


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return str(path)


def review(i, words=3):
    """A text of `words` vocabulary words (the tiny tokenizer reads each as one token), different per `i`."""
    return " ".join(WORDS[(i + k * 3) % len(WORDS)] for k in range(words))


def labelled(n, label=lambda i: "pos" if i % 2 else "neg", words=lambda i: 3):
    return [{"text": review(i, words(i)), "label": label(i)} for i in range(n)]


def prepare(tok, max_length=32, model_labels=None, **cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return D.prepare(TrainConfig(**cfg), tok, max_length, NoAccelerator(), model_labels=model_labels)


def numbered(n, labels=None):
    """A Dataset of `n` rows whose column 'id' is the row's number in the file."""
    import datasets

    labels = labels if labels is not None else [i % 2 for i in range(n)]
    return datasets.Dataset.from_dict({"id": list(range(n)), "text": [review(i) for i in range(n)], "labels": labels})


# ---------------------------------------------------------------- the seeded subsets (--max_*_samples)
def test_each_max_samples_flag_cuts_its_own_split_to_a_seeded_subset_in_file_order():
    import datasets

    def cut(seed, **limits):
        raw = datasets.DatasetDict({TRAIN: numbered(100), EVAL: numbered(60), TEST: numbered(40),
                                    EXTRA + "other": numbered(30)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (--max_test_samples without test data: here there is some)
            cfg = TrainConfig(seed=seed, **limits)
        raw = D.limit(cfg, raw)
        return {split: list(ds["id"]) for split, ds in raw.items()}, raw.subset_cut

    ids, was_cut = cut(1, max_train_samples=10, max_eval_samples=5, max_test_samples=3)
    assert [len(ids[s]) for s in (TRAIN, EVAL, TEST, EXTRA + "other")] == [10, 5, 3, 5]
    assert was_cut == {TRAIN, EVAL, TEST, EXTRA + "other"}
    for split, rows in ids.items():
        assert rows == sorted(rows), split  # in file order
    assert ids[TRAIN] != list(range(10))  # drawn, not the first rows (a file sorted by label would give one class)
    assert ids == cut(1, max_train_samples=10, max_eval_samples=5, max_test_samples=3)[0]  # every rank, every resume
    assert cut(2, max_train_samples=10)[0][TRAIN] != ids[TRAIN]  # the seed draws them
    # --data_seed draws the data, whatever --seed
    assert cut(7, max_train_samples=10, data_seed=1)[0][TRAIN] == ids[TRAIN]
    # a limit of at least the split's size takes every row, and is no cut
    ids, was_cut = cut(1, max_train_samples=100, max_eval_samples=1000)
    assert ids[TRAIN] == list(range(100)) and ids[EVAL] == list(range(60)) and was_cut == set()


def test_a_subset_that_drops_an_evaluation_class_says_so(tok, tmp_path):
    """The evaluation labels training never saw are named with the cause when the cut training data held them."""
    train = labelled(40)
    train[0]["label"] = "meh"  # the one training row of 'meh'
    seed = next(s for s in range(50) if 0 not in D.subset_indices(40, 20, s))  # a draw without it
    evaluation = labelled(6)
    evaluation[0]["label"] = "meh"
    with pytest.raises(UserError, match="--max_train_samples 20 took a subset of the training data without them"):
        prepare(tok, train_file=write_jsonl(tmp_path / "train.jsonl", train), max_train_samples=20, seed=seed,
                validation_file=write_jsonl(tmp_path / "validation.jsonl", evaluation))


# ---------------------------------------------------------------- the carved evaluation split
def test_the_carve_is_stratified_and_seeded_by_the_data_seed():
    import datasets

    def carve(**kw):
        ds = numbered(100, [0] * 90 + [1] * 10).cast_column("labels", datasets.ClassLabel(names=["a", "b"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (fewer than a batch of training examples)
            return D.carve_validation(TrainConfig(validation_split_percentage=20, **kw),
                                      datasets.DatasetDict({TRAIN: ds}))

    for seed in range(6):  # 20% of each class: 18 of a, 2 of b, whatever the draw
        raw = carve(seed=seed)
        assert len(raw[EVAL]) == 20 and len(raw[TRAIN]) == 80
        assert sorted(raw[EVAL]["labels"]).count(1) == 2
        assert not set(raw[EVAL]["id"]) & set(raw[TRAIN]["id"])
    assert sorted(carve(seed=1, data_seed=5)[EVAL]["id"]) == sorted(carve(seed=2, data_seed=5)[EVAL]["id"])
    assert sorted(carve(seed=1, data_seed=5)[EVAL]["id"]) != sorted(carve(seed=1, data_seed=6)[EVAL]["id"])


def test_max_samples_count_the_examples_of_the_carved_splits(tok, tmp_path):
    """--validation_split_percentage 20 of 200 rows with --max_train_samples 50 and --max_eval_samples 10: the run
    trains on 50 and evaluates 10 (the subsets are taken after the carve, not before it)."""
    train = write_jsonl(tmp_path / "train.jsonl", labelled(200))
    data = prepare(tok, train_file=train, validation_split_percentage=20, max_train_samples=50, max_eval_samples=10)
    assert (len(data.train), len(data.eval), data.carved) == (50, 10, True)
    assert data.subset_cut == {TRAIN, EVAL}
    data = prepare(tok, train_file=train, validation_split_percentage=20)
    assert (len(data.train), len(data.eval), data.subset_cut) == (160, 40, frozenset())


def test_a_carved_evaluation_split_is_not_weighted(tok, tmp_path):
    rows = [dict(r, w=1.0 + i % 3) for i, r in enumerate(labelled(50))]
    data = prepare(tok, train_file=write_jsonl(tmp_path / "train.jsonl", rows), validation_split_percentage=20,
                   weight_column="w")
    assert WEIGHT in data.train.column_names and WEIGHT not in data.eval.column_names


# ---------------------------------------------------------------- what prepare() reports
def test_the_largest_token_id_and_the_texts_cut_are_counted_over_every_split(tok, tmp_path):
    top = max(tok.convert_tokens_to_ids(w) for w in WORDS)
    top_word = tok.convert_ids_to_tokens(top)
    others = [w for w in WORDS if w != top_word]
    # three training texts longer than max_length 6 (5 words and [CLS] [SEP]); the largest id only in evaluation
    train = [{"text": " ".join(others[:5] if i in (0, 3, 5) else others[:2]), "label": "pos" if i % 2 else "neg"}
             for i in range(8)]
    evaluation = [{"text": f"{top_word} film", "label": "pos"}, {"text": "film", "label": "neg"}]
    data = prepare(tok, max_length=6, train_file=write_jsonl(tmp_path / "train.jsonl", train),
                   validation_file=write_jsonl(tmp_path / "validation.jsonl", evaluation))
    assert data.max_token_id == max(top, tok.cls_token_id, tok.sep_token_id)
    assert data.truncated == {TRAIN: (3, 8), EVAL: (0, 2)}


def test_evaluation_examples_are_longest_first_and_their_rows_follow_them(tok, tmp_path):
    """--eval_only: each scored example's row in the file (eval_predictions.jsonl) is the row it was read from."""
    rows = labelled(9, words=lambda i: 1 + (i * 5) % 7)
    data = prepare(tok, eval_only=True, validation_file=write_jsonl(tmp_path / "validation.jsonl", rows),
                   model_name_or_path="m")
    lengths = [len(ids) for ids in data.eval["input_ids"]]
    assert lengths == sorted(lengths, reverse=True)
    assert sorted(data.eval_rows.tolist()) == list(range(9))
    for ids, row in zip(data.eval["input_ids"], data.eval_rows):
        assert ids == tok(rows[row]["text"])["input_ids"]


# ---------------------------------------------------------------- tokenizing
def bare_tokenizer(**special):
    """A word-level fast tokenizer over WORDS that adds no special token (as a decoder's: GPT-2, Qwen)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<eos>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", **special)


def tokenized(tok, texts, max_length=16, pair=None, **cfg):
    import datasets

    columns = {"text": texts, "labels": [0] * len(texts)}
    if pair is not None:
        columns["other"] = pair
    ds = datasets.Dataset.from_dict(columns)
    out = D.tokenize(TrainConfig(text_pair_column="other" if pair is not None else None, **cfg), {TRAIN: ds}, tok,
                     max_length)
    return out[TRAIN]


def test_a_missing_text_is_tokenized_as_an_empty_one_not_as_the_word_none(tok):
    ds = tokenized(tok, [None, "", "film"])
    assert ds[0]["input_ids"] == ds[1]["input_ids"] == [tok.cls_token_id, tok.sep_token_id]


def test_an_empty_text_a_tokenizer_adds_nothing_to_is_one_attended_end_of_text_token():
    """Zero positions cannot be scored: the empty text gets eos (before bos, unk or pad), attended to."""
    tok = bare_tokenizer(eos_token="<eos>", pad_token="<pad>")
    ds = tokenized(tok, ["", "great film"])
    assert ds[0]["input_ids"] == [tok.eos_token_id] and ds[0]["attention_mask"] == [1] and ds[0]["length"] == 1
    assert ds[1]["input_ids"] == tok("great film")["input_ids"]


def test_a_pair_too_long_is_cut_from_its_longer_text_and_keeps_a_token_of_each(tok):
    ds = tokenized(tok, ["film plot acting boring dull great awful film"], pair=["great"], max_length=8)
    tokens = tok.convert_ids_to_tokens(ds[0]["input_ids"])
    assert len(tokens) == 8 and tokens[-2:] == ["great", "[SEP]"] and ds[0][CUT]


def test_a_long_text_whose_prefix_holds_no_word_is_still_counted_as_cut(tok):
    """A text longer than CHARS_PER_TOKEN x max_length whose prefix is whitespace is tokenized whole: its ids and
    whether truncation cut it are the whole text's."""
    text = " " * (D.CHARS_PER_TOKEN * 8 + 50) + " ".join(["great film"] * 20)
    ds = tokenized(tok, [text, "great film"], max_length=8)
    assert ds[0]["input_ids"] == tok(text, truncation=True, max_length=8)["input_ids"]
    assert ds[CUT] == [True, False]


def test_a_tokenizer_that_puts_nothing_between_a_pairs_texts_is_warned_about(tok):
    with pytest.warns(UserWarning, match="puts nothing between the two texts of a pair"):
        D.check_pair_separator(TrainConfig(text_pair_column="other", model_name_or_path="m"), bare_tokenizer())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        D.check_pair_separator(TrainConfig(text_pair_column="other", model_name_or_path="m"), tok)


# ---------------------------------------------------------------- blank texts
def test_blank_texts_are_those_of_only_spaces_and_invisible_characters_in_either_column():
    import datasets

    ds = datasets.Dataset.from_dict({"a": ["film", "", " \t", "\u200b\ufeff", "great", "fine", None],
                                     "b": ["plot", "plot", "plot", "plot", "", "ok", "x"]})
    assert D.empty_texts(ds, "a") == (4, 1)
    assert D.empty_texts(ds, "a", "b") == (5, 1)  # a pair is blank where either text is
    assert D.empty_texts(ds, "b") == (1, 4)


def test_the_first_blank_row_is_counted_across_slices(monkeypatch):
    import datasets

    monkeypatch.setattr(D, "EMPTY_TEXTS_SLICE", 3)
    ds = datasets.Dataset.from_dict({"a": ["x", "x", "x", "x", "", "x", "x", ""]})
    assert D.empty_texts(ds, "a") == (2, 4)


def test_one_blank_text_is_warned_about_and_a_few_are_not_refused():
    import datasets

    def check(texts):
        raw = datasets.DatasetDict({TRAIN: datasets.Dataset.from_dict({"text": texts, "label": ["a"] * len(texts)})})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            D.check_columns(TrainConfig(), raw)
        return [str(w.message) for w in caught]

    assert any("1 training rows have an empty or missing text in column 'text' (first at row 2)" in m
               for m in check(["film", "plot", "", "great"]))
    assert any("2 training rows have an empty" in m for m in check(["", "", "film"]))
    with pytest.raises(UserError, match="the training data has no text"):
        check(["", " "])


# ---------------------------------------------------------------- example weights
def test_example_weights_may_be_zero_or_booleans_but_not_missing_negative_or_all_zero():
    import datasets

    def weights(values, dtype=None):
        ds = datasets.Dataset.from_dict({"text": ["film"] * len(values), "w": values})
        if dtype:
            ds = ds.cast_column("w", datasets.Value(dtype))
        return list(D.example_weights(ds, "w")[WEIGHT])

    assert weights([0.0, 2.0, 0.5]) == [0.0, 2.0, 0.5]
    assert weights([True, False, True], "bool") == [1.0, 0.0, 1.0]
    with pytest.raises(UserError, match="training row 1 has no weight"):
        weights([1.0, float("nan"), 1.0])
    with pytest.raises(UserError, match="training row 2 has the weight -1"):
        weights([1.0, 1.0, -1.0])
    with pytest.raises(UserError, match="is 0 for every training example"):
        weights([0.0, 0.0])


# ---------------------------------------------------------------- a dataset folder's splits (--dataset_name DIR)
def dataset_folder(path, splits=("train", "validation", "test"), n=4):
    path.mkdir(exist_ok=True)
    for split in splits:
        write_jsonl(path / f"{split}.jsonl", [{"text": f"{split} film", "label": i % 2} for i in range(n)])
    return str(path)


def read_splits(folder, **cfg):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = D.load_raw(TrainConfig(dataset_name=folder, **cfg))
    return ({split: ds[0]["text"].split()[0] for split, ds in raw.items()}, getattr(raw, "eval_split_name", None),
            [str(w.message) for w in caught])


def test_a_dataset_evaluates_on_validation_and_never_on_a_split_it_trains_on_or_holds_out(tmp_path):
    folder = dataset_folder(tmp_path / "ds")
    assert read_splits(folder)[:2] == ({TRAIN: "train", EVAL: "validation"}, "validation")  # validation before test
    assert read_splits(folder, test_split="test")[:2] == ({TRAIN: "train", EVAL: "validation", TEST: "test"},
                                                          "validation")
    # training on validation: evaluated on test (what is left), not on the split it trains on
    assert read_splits(folder, train_split="validation")[:2] == ({TRAIN: "validation", EVAL: "test"}, "test")
    # validation held out as the test split: nothing is evaluated on (the run asks for a carve), never on test
    assert read_splits(folder, test_split="validation")[:2] == ({TRAIN: "train", TEST: "validation"}, None)


def test_a_carve_asked_for_beside_a_validation_split_is_warned_about(tmp_path):
    folder = dataset_folder(tmp_path / "ds")
    said = read_splits(folder, validation_split_percentage=10)[2]
    assert any("has a 'validation' split: it is evaluated on" in m for m in said)
    assert not any("split: it is evaluated on" in m for m in read_splits(folder, validation_split_percentage=10,
                                                                 eval_split="test")[2])


def test_an_extra_evaluation_split_the_dataset_lacks_is_refused(tmp_path):
    folder = dataset_folder(tmp_path / "ds")
    assert read_splits(folder, extra_eval_splits="held=test")[0] == {TRAIN: "train", EVAL: "validation",
                                                                     EXTRA + "held": "test"}
    with pytest.raises(UserError, match="has no 'dev' split"):
        read_splits(folder, extra_eval_splits="held=dev")


# ---------------------------------------------------------------- reading files
def test_csv_words_pandas_would_read_as_missing_are_text_and_a_tsv_quote_is_a_character(tmp_path):
    csv_file = tmp_path / "train.csv"
    csv_file.write_text("text,label\nNone,NA\nfilm,null\nplot,NA\n", encoding="utf-8")
    ds = D.load_file(str(csv_file), "--train_file")
    assert ds["text"] == ["None", "film", "plot"] and ds["label"] == ["NA", "null", "NA"]
    tsv = tmp_path / "train.tsv"
    tsv.write_text('text\tlabel\n"great film\tpos\nfilm" plot\tneg\n', encoding="utf-8")
    ds = D.load_file(str(tsv), "--train_file")
    assert ds["text"] == ['"great film', 'film" plot'] and ds["label"] == ["pos", "neg"]


def test_csv_read_for_prediction_keeps_every_column_as_text(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("text,id\nfilm,1\nplot,2\n", encoding="utf-8")
    assert D.load_file(str(path), "--x")["id"] == [1, 2]
    assert D.load_file(str(path), "--x", csv_as_text=True)["id"] == ["1", "2"]


def test_a_file_whose_name_has_pattern_characters_or_an_upper_case_extension_is_read(tmp_path):
    for name in ("train[1].jsonl", "TRAIN.JSONL"):
        path = write_jsonl(tmp_path / name, [{"text": "film", "label": "a"}, {"text": "plot", "label": "b"}])
        assert D.load_file(path, "--train_file")["text"] == ["film", "plot"]


def test_a_blank_shard_among_others_is_skipped(tmp_path):
    (tmp_path / "part-0.csv").write_text("text,label\nfilm,a\n", encoding="utf-8")
    (tmp_path / "part-1.csv").write_text("", encoding="utf-8")
    (tmp_path / "part-2.csv").write_text("text,label\nplot,b\n", encoding="utf-8")
    assert D.load_file(str(tmp_path / "part-*.csv"), "--train_file")["text"] == ["film", "plot"]


def test_eval_only_decides_the_labels_from_training_data_but_tokenizes_only_what_it_scores(tok, tmp_path):
    data = prepare(tok, eval_only=True, model_name_or_path="m", model_labels=["neg", "pos"],
                   train_file=write_jsonl(tmp_path / "train.jsonl", labelled(10)),
                   validation_file=write_jsonl(tmp_path / "validation.jsonl", labelled(4)))
    assert data.train is None and data.train_lengths is None and len(data.eval) == 4
    assert data.label_names == ["neg", "pos"]


def test_weights_that_are_zero_for_every_row_a_subset_left_are_refused(tok, tmp_path):
    rows = [dict(r, w=1.0 if i == 0 else 0.0) for i, r in enumerate(labelled(20))]
    seed = next(s for s in range(50) if 0 not in D.subset_indices(20, 5, s))
    with pytest.raises(UserError, match="is 0 for every training example left after --max_train_samples"):
        prepare(tok, train_file=write_jsonl(tmp_path / "train.jsonl", rows), max_train_samples=5, seed=seed,
                validation_file=write_jsonl(tmp_path / "validation.jsonl", labelled(4)), weight_column="w")
