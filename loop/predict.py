"""Classify texts with a trained model folder (e.g. output/best).

    python loop/predict.py --model output/best "A wonderful film." "Dull and far too long."
    python loop/predict.py --model output/best --file reviews.txt     # one text per line

Prints one JSON line per text: {"text": ..., "label": ..., "score": ...}.
"""

import argparse
import json
import os
import sys

if __package__ in (None, ""):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.path.dirname(here))

from loop.errors import UserError, run_cli  # noqa: E402


def load_texts(args):
    texts = list(args.texts)
    if args.file:
        try:
            with open(args.file, encoding="utf-8") as f:
                texts += [line.rstrip("\n") for line in f if line.strip()]
        except OSError as e:
            raise UserError(f"--file {args.file} could not be read ({e.strerror}).")
        except UnicodeDecodeError:
            raise UserError(f"--file {args.file} is not UTF-8 text; re-save it as UTF-8.")
    if not texts:
        raise UserError("no texts given; pass them as arguments or with --file FILE (one per line).")
    return texts


def predict(model_dir, texts, batch_size=32, device=None):
    """Return [{"label", "score"}] per text, through the same pipeline users call."""
    from transformers import pipeline

    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise UserError(f"--model {model_dir} is not a model folder (no config.json); pass e.g. output/best.")
    if device is None:
        import torch
        device = 0 if torch.cuda.is_available() else -1
    clf = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device=device)
    return clf(texts, batch_size=batch_size, truncation=True)


def run(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="Model folder, e.g. output/best.")
    p.add_argument("--file", help="Text file with one input per line.")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("texts", nargs="*", help="Texts to classify.")
    p.add_argument("--debug", action="store_true", help="Show tracebacks.")
    args = p.parse_args(argv)
    texts = load_texts(args)
    for text, out in zip(texts, predict(args.model, texts, args.batch_size)):
        print(json.dumps({"text": text, "label": out["label"], "score": round(float(out["score"]), 6)}), flush=True)


if __name__ == "__main__":
    run_cli(run)
