"""Classify texts with a trained model folder (e.g. output/best).

    python loop/predict.py --model output/best "A wonderful film." "Dull and far too long."
    python loop/predict.py --model output/best --file reviews.txt     # one text per line
    python loop/predict.py --model output/best --pairs "A man sleeps.<TAB>Someone rests."   # sentence pairs

Prints one JSON line per text: {"text": ..., "label": ..., "score": ...}, plus "line" (its line number)
for a text from --file; blank lines of the file are skipped (their count goes to stderr). With
--pairs each input is two texts separated by a tab, and "text_pair" holds the second. A multi-label
model gives {"text": ..., "labels": [every label whose sigmoid score is above 0.5], "scores":
{label: score}} instead; a regression model's "score" is the predicted number itself.
"""

import argparse
import json
import os
import sys

if __package__ in (None, ""):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.path.dirname(here))

from loop.errors import UserError, run_cli, short  # noqa: E402


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one `error:` line (exit 2) rather than usage + message."""

    def error(self, message):
        raise UserError(f"{message.rstrip('.')}; see --help.")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if not 1 <= value <= 2**20:
        raise argparse.ArgumentTypeError(f"expected a positive integer up to {2**20}, got {value}")
    return value


def load_texts(args):
    """[(text, line number or None)]: the arguments, then --file's non-blank lines."""
    texts = [(t, None) for t in args.texts]
    if args.file:
        try:
            with open(args.file, encoding="utf-8-sig") as f:  # a byte-order mark (Notepad) is not text
                lines = [line.rstrip("\r\n") for line in f]
        except OSError as e:
            raise UserError(f"--file '{args.file}' could not be read ({e.strerror}).")
        except UnicodeDecodeError:
            raise UserError(f"--file '{args.file}' is not UTF-8 text; re-save it as UTF-8.")
        texts += [(line, n) for n, line in enumerate(lines, 1) if line.strip()]
        blank = sum(1 for line in lines if not line.strip())
        if blank:
            print(f"[loop] --file: skipped {blank} blank line(s); each output's \"line\" is its line in the file",
                  file=sys.stderr, flush=True)
    if not texts:
        raise UserError("no texts given; pass them as arguments or with --file FILE (one per line).")
    blank = next((i for i, (t, _) in enumerate(texts) if not t.strip()), None)
    if blank is not None:
        raise UserError(f"text {blank + 1} of the arguments is empty; give each text some words.")
    return texts


def as_inputs(texts, pairs):
    """Pipeline inputs: the texts, or with --pairs {"text", "text_pair"} split at the first tab."""
    if not pairs:
        return [t for t, _ in texts]
    out = []
    for text, line in texts:
        if "\t" not in text:
            where = f"line {line} of --file" if line else f"the input {text[:40]!r}"
            raise UserError(f"--pairs: {where} has no tab; give each input as 'first text<TAB>second text'.")
        first, second = text.split("\t", 1)
        out.append({"text": first, "text_pair": second})
    return out


def trained_on_pairs(model_dir):
    """The pair column a loop run trained this model with (best_metrics.json): its name, False when
    best_metrics.json says the run had none, None when there is no (readable) best_metrics.json."""
    try:
        with open(os.path.join(model_dir, "best_metrics.json")) as f:
            return json.load(f).get("text_pair_column") or False
    except (OSError, ValueError, AttributeError):
        return None


def check_tokenizer(model_dir, tokenizer):
    """Refuse a tokenizer that holds nothing but its special tokens: in transformers 5 a model folder
    without tokenizer files still loads one (an empty vocabulary), every word becomes the unknown
    token (or nothing), and every text would get the same label (train.py refuses it likewise,
    data.check_unknown_tokens)."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    special = set(tokenizer.all_special_tokens) | {str(t) for t in added.values()}
    if not set(tokenizer.get_vocab()) - special:
        raise UserError(f"--model '{model_dir}' has no tokenizer of its own (its vocabulary holds only the "
                        f"{len(tokenizer)} special tokens): every text would get the same label; copy the "
                        f"tokenizer files of the model it was trained from (tokenizer.json, vocab.txt, ...) into it.")


def check_head(model_dir, model, missing):
    """Refuse a model whose classification head is not in the checkpoint's weights (a plain pretrained
    encoder, e.g. bert-base-uncased): transformers initialises the head at random, and every label
    and score would be noise. `missing`: from_pretrained's missing_keys."""
    prefix = getattr(model, "base_model_prefix", "") or ""
    head = sorted(k for k in missing or () if not (prefix and k.startswith(prefix + ".")))
    if head:
        names = ", ".join(head[:4]) + (", ..." if len(head) > 4 else "")
        raise UserError(f"--model '{model_dir}' has no trained classification head (not in its weights: {names}); "
                        f"its labels would be random: pass a folder written by loop/train.py, e.g. output/best, "
                        f"or train one from this model first.")


def is_multi_label(model_dir):
    """Whether the model folder's config says multi_label_classification (sigmoid per label)."""
    try:
        with open(os.path.join(model_dir, "config.json")) as f:
            return json.load(f).get("problem_type") == "multi_label_classification"
    except (OSError, ValueError, AttributeError):
        return False


def predict(model_dir, texts, batch_size=32, device=None):
    """Return [{"label", "score"}] per text, through the same pipeline users call; for a multi-label
    model [{"labels": [...], "scores": {label: score}}] (every label's sigmoid score)."""
    import io

    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from loop import logs

    logs.quiet_weight_report()  # if quiet_libraries() ran

    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise UserError(f"--model '{model_dir}' is not a model folder (no config.json); pass e.g. output/best.")
    if not any(n.endswith((".safetensors", ".bin")) for n in os.listdir(model_dir)):
        raise UserError(f"--model '{model_dir}' has no weights (no .safetensors file); pass a folder written by "
                        f"loop/train.py, e.g. output/best.")
    if device is None:
        import torch
        device = 0 if torch.cuda.is_available() else -1
    # our "new head: ..." line (logs.quiet_weight_report) is held back while the model loads: a missing
    # head is refused in one line below; any other weight it names is shown after that check
    report, held = logs._REPORT_FILE[0], io.StringIO()
    logs._REPORT_FILE[0] = held
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        check_tokenizer(model_dir, tokenizer)
        # as pipeline(model=model_dir) loads it (dtype "auto"), with the report of which weights were missing
        model, info = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype="auto",
                                                                         output_loading_info=True)
        check_head(model_dir, model, info.get("missing_keys"))
        if held.getvalue():
            print(held.getvalue(), end="", file=report or sys.stdout, flush=True)
        clf = pipeline("text-classification", model=model, tokenizer=tokenizer, device=device)
    except UserError:
        raise
    except Exception as e:  # damaged weights, a broken tokenizer file, a config of another model type
        raise UserError(f"--model '{model_dir}' could not be loaded ({short(e)}); pass an intact model folder, "
                        f"e.g. output/best.") from e
    finally:
        logs._REPORT_FILE[0] = report
    from loop.models import causal_decoder_self_attention

    causal_decoder_self_attention(clf.model)  # UMT5 on transformers < 5.18
    if not is_multi_label(model_dir):
        return clf(texts, batch_size=batch_size, truncation=True)
    out = []
    for ranked in clf(texts, batch_size=batch_size, truncation=True, top_k=None):  # sigmoid per label
        by_label = {r["label"]: r["score"] for r in ranked}
        order = list(clf.model.config.id2label.values())  # the model's label order, not the ranking
        out.append({"labels": [n for n in order if by_label[n] > 0.5],  # as evaluation: logit above 0
                    "scores": {n: by_label[n] for n in order}})
    return out


def run(argv):
    p = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Trust: the model folder is loaded from safetensors and JSON only; its tokenizer and config "
                       "are data, not code.")
    p.add_argument("--model", required=True, help="Model folder, e.g. output/best.")
    p.add_argument("--file", help="Text file with one input per line (blank lines are skipped).")
    p.add_argument("--pairs", action="store_true",
                   help="Sentence-pair inputs: each is two texts separated by a tab (for a model trained with --text_pair_column).")
    p.add_argument("--batch_size", type=_positive_int, default=32)
    p.add_argument("texts", nargs="*", help="Texts to classify.")
    p.add_argument("--debug", action="store_true", help="Show tracebacks.")
    p.add_argument("--verbose", action="store_true",
                   help="Show the libraries' own output (progress bars, load reports); also LOOP_VERBOSE=1.")
    args = p.parse_args(argv)
    if not (args.verbose or os.environ.get("LOOP_VERBOSE", "") not in ("", "0")):
        # stdout is the JSON lines, so anything of ours goes to stderr; the libraries' bars not at all
        from loop.logs import quiet_libraries

        quiet_libraries(report_file=sys.stderr)
    if not args.model.strip():
        raise UserError("--model must not be empty; pass a model folder, e.g. output/best.")
    if not os.path.isdir(args.model):
        raise UserError(f"--model '{args.model}' is not a folder; pass a model folder, e.g. output/best.")
    pair_column = trained_on_pairs(args.model)
    if pair_column and not args.pairs:
        raise UserError(f"--model '{args.model}' was trained on text pairs (--text_pair_column {pair_column}); pass "
                        f"--pairs and give each input as 'first text<TAB>second text'.")
    if pair_column is False and args.pairs:
        raise UserError(f"--model '{args.model}' was trained on single texts (its best_metrics.json names no "
                        f"--text_pair_column); drop --pairs.")
    texts = load_texts(args)
    inputs = as_inputs(texts, args.pairs)
    for (text, line), item, out in zip(texts, inputs, predict(args.model, inputs, args.batch_size)):
        record = {"text": item["text"], "text_pair": item["text_pair"]} if args.pairs else {"text": text}
        if line is not None:
            record["line"] = line
        if "labels" in out:  # multi-label
            record.update(labels=out["labels"], scores={k: round(float(v), 6) for k, v in out["scores"].items()})
        else:
            record.update(label=out["label"], score=round(float(out["score"]), 6))
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    run_cli(run)
