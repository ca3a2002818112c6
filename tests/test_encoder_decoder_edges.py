"""Encoder-decoders (BART, T5) read a text's last eos token: how the special tokens written in a text are read,
in training (models.split_special_tokens, data.check_literal_eos) and in loop-predict (predict.split_as_training_did),
for a plain tokenizer, one with markers added to it (entity markers '<e1>', '</e1>') and a classifier saved
elsewhere (audit67 e3, e4)."""

import json
import os

import pytest

from conftest import evals
from test_models import WORDS, build_model_dir

from loop import Loop, UserError, parse_args, synthetic
from loop.splits import EVAL, TRAIN

MARKERS = ["<e1>", "</e1>"]


@pytest.fixture(scope="module")
def bart(tmp_path_factory):
    return build_model_dir(str(tmp_path_factory.mktemp("models")), "bart")


def marked_tokenizer(base, path):
    """The base model's tokenizer with MARKERS added as special tokens, saved to `path`."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    tok.add_special_tokens({"additional_special_tokens": MARKERS})
    tok.save_pretrained(path)
    return str(path)


def classifier_elsewhere(base, tokenizer_dir, path):
    """A BART classifier saved as Trainer or the Hub save one: a config, weights with a head, the tokenizer as it
    was (no split_special_tokens of ours in its tokenizer_config.json)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    assert "split_special_tokens" not in json.load(open(os.path.join(path, "tokenizer_config.json")))
    return str(path)


def ids(tok, text):
    return tok.convert_ids_to_tokens(tok(text)["input_ids"])


def test_added_markers_stay_whole_and_a_models_own_special_tokens_do_not_count(bart, tmp_path):
    """Splitting every special token written in a text (so a literal '</s>' stays text) also split markers added to
    the tokenizer: '<e1>' became '<unk>' pieces, its new embedding row never read, silently. With markers the
    tokenizer keeps special tokens whole (saved with best/); a plain BART still splits, and so does a tokenizer whose
    extra special tokens are in its own vocabulary (T5's sentinels <extra_id_N>)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers import models as tm
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from loop import models

    marked = marked_tokenizer(bart, tmp_path / "marked")
    cfg = parse_args(["--model_name_or_path", bart, "--tokenizer_name", marked])
    tok = models.load_tokenizer(cfg, models.load_config(cfg))
    assert ids(tok, "good <e1> film </e1>") == ["good", "<e1>", "film", "</e1>", "</s>"]
    assert models.added_markers(tok) == MARKERS
    assert tok.split_special_tokens is False and tok.init_kwargs["split_special_tokens"] is False
    tok.save_pretrained(tmp_path / "best")
    assert ids(AutoTokenizer.from_pretrained(tmp_path / "best"), "good <e1> film") == ["good", "<e1>", "film", "</s>"]

    plain = models.load_tokenizer(parse_args(["--model_name_or_path", bart]), models.load_config(cfg))
    assert plain.split_special_tokens is True and ids(plain, "good </s> film").count("</s>") == 1

    special = ["<pad>", "</s>", "<unk>", "<s>", "<mask>"]  # a T5-style vocabulary that holds its sentinel
    vocab = {w: i for i, w in enumerate(special + WORDS + ["<extra_id_0>"])}
    backend = Tokenizer(tm.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer, backend.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B:1 </s>:1",
                                                           special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="</s>",
                            bos_token="<s>", mask_token="<mask>",
                            additional_special_tokens=["<extra_id_0>"]).save_pretrained(tmp_path / "sentinel")
    cfg = parse_args(["--model_name_or_path", bart, "--tokenizer_name", str(tmp_path / "sentinel")])
    tok = models.load_tokenizer(cfg, models.load_config(cfg))
    assert tok.added_tokens_decoder[vocab["<extra_id_0>"]].special  # special, but the model's own
    assert models.added_markers(tok) == [] and tok.split_special_tokens is True


def write_rows(folder, extra=None, row=3):
    rows = synthetic.make_rows(40, seed=1)
    for r in rows[::4]:
        r["text"] = f"<e1> {r['text']} </e1>"
    if extra:
        rows[row]["text"] += extra
    os.makedirs(folder, exist_ok=True)
    synthetic.write_jsonl(rows, os.path.join(folder, "train.jsonl"))
    synthetic.write_jsonl(rows[:8] if not extra else synthetic.make_rows(8, seed=2),
                          os.path.join(folder, "validation.jsonl"))
    return rows


def run_args(bart, marked, data, out):
    return ["--model_name_or_path", bart, "--tokenizer_name", marked, "--train_file", os.path.join(data, "train.jsonl"),
            "--validation_file", os.path.join(data, "validation.jsonl"), "--output_dir", out, "--max_length", "32",
            "--per_device_train_batch_size", "8", "--num_train_epochs", "1", "--learning_rate", "1e-3"]


def test_markers_train_whole_and_a_literal_eos_beside_them_is_refused_before_training(bart, tmp_path):
    """With markers kept whole a text's literal '</s>' is a second eos, which BART's head fails on mid-training
    ('All examples must have the same number of <eos> tokens'): refused before any tokenizing in one line naming
    the split, the row and the fix. Without it the run trains on the markers, and best/ (loop-predict too) keeps
    them whole, refusing a literal '</s>' in one line where the pipeline failed the batch."""
    from loop import predict

    marked = marked_tokenizer(bart, tmp_path / "marked")
    write_rows(tmp_path / "bad", extra=" <s>struck</s> out", row=5)
    with pytest.raises(UserError) as e:
        Loop(parse_args(run_args(bart, marked, str(tmp_path / "bad"), str(tmp_path / "bad_out")))).fit()
    assert str(e.value) == (
        "the training text in column 'text' at row 5 holds the literal '</s>', which this encoder-decoder would read "
        "as a second end-of-text token and fail on: its tokenizer keeps the special tokens added to it (<e1>, </e1>) "
        "whole instead of splitting special tokens written in the text; remove '</s>' from that text, or drop the "
        "added special tokens.")
    assert not os.path.exists(tmp_path / "bad_out" / "best")

    rows = write_rows(tmp_path / "good")
    out = str(tmp_path / "out")
    lp = Loop(parse_args(run_args(bart, marked, str(tmp_path / "good"), out)))
    lp.fit()
    assert evals(out)[-1]["eval_samples"] == 8
    marker_ids = lp.tokenizer.convert_tokens_to_ids(MARKERS)
    assert all(i in lp.data.train["input_ids"][0] for i in marker_ids)  # row 0 is marked, read whole
    best = os.path.join(out, "best")
    clf = predict.load(best, device=-1)
    assert ids(clf.tokenizer, rows[0]["text"]).count("<e1>") == 1
    assert len(predict.predict(best, [rows[0]["text"], "bad"])) == 2
    with pytest.raises(UserError, match=r"^text 2 holds the literal '</s>', which this encoder-decoder's tokenizer "
                                        r"reads as a second end-of-text token .*; remove '</s>' from that text\.$"):
        predict.predict(best, ["bad", "good </s> film"])


def test_predict_reads_a_literal_eos_as_training_does_for_a_classifier_saved_elsewhere(bart, tmp_path):
    """loop-predict of a BART classifier not saved by the loop (Trainer, the Hub) split nothing: 'good </s> film'
    beside 'bad' failed the batch (ValueError: All examples must have the same number of <eos> tokens). It now
    reads the text as training would: split, and scored alone as in the batch; with markers kept whole, the
    literal '</s>' is refused in one line; a split the folder's tokenizer_config.json records stands."""
    from loop import predict

    plain = classifier_elsewhere(bart, bart, tmp_path / "plain")
    alone = predict.predict(plain, ["good </s> film"])
    both = predict.predict(plain, ["good </s> film", "bad"], batch_size=2)
    assert both[0]["label"] == alone[0]["label"] and both[0]["score"] == pytest.approx(alone[0]["score"], abs=1e-5)

    marked = classifier_elsewhere(bart, marked_tokenizer(bart, tmp_path / "marked"), tmp_path / "with_markers")
    clf = predict.load(marked, device=-1)
    assert ids(clf.tokenizer, "<e1> good </e1>") == ["<e1>", "good", "</e1>", "</s>"]
    assert len(predict.predict(marked, ["<e1> good </e1>", "bad"])) == 2
    with pytest.raises(UserError, match=r"^text 1 holds the literal '</s>'"):
        predict.predict(marked, ["good </s> film", "bad"])

    path = os.path.join(marked, "tokenizer_config.json")  # an earlier loop run's best/ that split its markers
    config = json.load(open(path))
    json.dump({**config, "split_special_tokens": True}, open(path, "w"))
    clf = predict.load(marked, device=-1)
    assert clf.tokenizer.split_special_tokens is True and "<e1>" not in ids(clf.tokenizer, "<e1> good")


def test_eval_only_reads_texts_as_the_model_was_trained_and_byt5_sentinels_are_no_markers(bart, tmp_path):
    """(review r F3, F5) --eval_only of a best/ whose tokenizer split its markers (an older loop's run) read them
    whole, inputs its model never saw, while loop-predict split them; ByT5's 125 sentinels (added tokens past its 256
    bytes, without a fast backend to tell them from a user's) were taken for markers, and a text with '</s>' was
    refused of a user who added none."""
    from transformers import AutoConfig, ByT5Tokenizer

    from loop import models

    marked = classifier_elsewhere(bart, marked_tokenizer(bart, tmp_path / "marked"), tmp_path / "with_markers")
    path = os.path.join(marked, "tokenizer_config.json")
    json.dump({**json.load(open(path)), "split_special_tokens": True}, open(path, "w"))
    config = AutoConfig.from_pretrained(marked)
    for name in ("t.jsonl", "v.jsonl"):
        (tmp_path / name).write_text('{"text": "good", "label": "POSITIVE"}\n')
    common = ["--model_name_or_path", marked, "--output_dir", str(tmp_path / "out"), "--validation_file",
              str(tmp_path / "v.jsonl")]
    scored = models.load_tokenizer(parse_args(common + ["--eval_only", "true"]), config)
    assert scored.split_special_tokens is True and "<e1>" not in ids(scored, "<e1> good")
    trained = models.load_tokenizer(parse_args(common + ["--train_file", str(tmp_path / "t.jsonl")]), config)
    assert trained.split_special_tokens is False and ids(trained, "<e1> good")[:2] == ["<e1>", "good"]

    byt5 = ByT5Tokenizer()
    assert len(byt5) > byt5.vocab_size and models.added_markers(byt5) == []
    t5_config = type("T5ish", (), {"is_encoder_decoder": True})()
    models.split_special_tokens(byt5, t5_config)
    assert byt5.split_special_tokens is True


def test_a_literal_eos_is_refused_only_in_the_rows_the_run_reads(bart, tmp_path):
    """The literal-eos check read the files whole: a row --max_train_samples leaves out, or the training file of an
    --eval_only run (it only names the labels), refused the run. It reads the splits the run reads, and names the
    row in the file: a carved evaluation text by its row of the training data."""
    from loop import data, models

    marked = marked_tokenizer(bart, tmp_path / "marked")
    folder = tmp_path / "data"

    def checked(*extra, rows=None):
        if rows is not None:
            write_rows(folder)
            all_rows = [json.loads(line) for line in open(folder / "train.jsonl")]
            for r in rows:  # (one text for them all)
                all_rows[r]["text"] = all_rows[rows[0]]["text"] + " <s>struck</s> out"
            synthetic.write_jsonl(all_rows, str(folder / "train.jsonl"))
        cfg = parse_args(["--model_name_or_path", bart, "--tokenizer_name", marked, "--output_dir",
                          str(tmp_path / "out"), *extra])
        tok = models.load_tokenizer(cfg, models.load_config(cfg))
        model = {"model_labels": ["NEGATIVE", "POSITIVE"], "model_problem": "single_label_classification"} \
            if cfg.eval_only else {}
        return data.checked_raw(cfg, tok, 32, None, model.get("model_labels"), model.get("model_problem"), None)

    kept = data.subset_indices(40, 10, 42)
    left_out = next(r for r in range(8, 40) if r not in kept)  # (validation.jsonl is rows 0-7)
    files = ["--train_file", str(folder / "train.jsonl"), "--validation_file", str(folder / "validation.jsonl")]
    with pytest.raises(UserError, match=rf"^the training text in column 'text' at row {left_out} holds the literal"):
        checked(*files, rows=[left_out])
    raw = checked(*files, "--max_train_samples", "10")[0]
    assert len(raw[TRAIN]) == 10 and "__loop_row" not in raw[TRAIN].column_names
    # the same text in a row left out and in one kept: the kept one is named (the first in the file is left out)
    with pytest.raises(UserError, match=rf"^the training text in column 'text' at row {kept[-1]} holds the literal"):
        checked(*files, "--max_train_samples", "10", rows=[left_out, kept[-1]])
    assert checked(*files, "--eval_only", "true")[0][EVAL].num_rows == 8  # (its training data names the labels)

    # a carved evaluation split: its text named by its row of the training data, which it came from
    clean = checked(files[0], str(folder / "train.jsonl"), "--validation_split_percentage", "25", rows=[])[0]
    texts = [json.loads(line)["text"] for line in open(folder / "train.jsonl")]
    row = texts.index(next(t for t in clean[EVAL]["text"] if texts.count(t) == 1))  # (synthetic texts repeat)
    with pytest.raises(UserError, match=rf"^the evaluation \(carved from the training data\) text in column 'text' at "
                                        rf"row {row} of the training data holds the literal '</s>'"):
        checked(files[0], str(folder / "train.jsonl"), "--validation_split_percentage", "25", rows=[row])
    with pytest.raises(UserError, match=r"^2 training texts in column 'text' \(first at row 3\) hold the literal"):
        checked(*files, rows=[3, 30])
