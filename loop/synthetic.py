"""A small, learnable sentiment task and a matching tokenizer, made from scratch (offline).

The words below are our own; no text is copied from anywhere. A review mixes neutral film
words with sentiment words, most of them of the label's polarity; "not" before an opposite
word supports the label. A tiny transformer learns it well above chance in a minute on a CPU.

    python -m loop.synthetic configs/smoke     # writes train/validation jsonl, model/ (config + tokenizer)
"""

import json
import os
import random
import sys

if __package__ in (None, ""):  # run as a script (python loop/synthetic.py DIR): the repository root on the path
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.path.dirname(here))

POSITIVE = "good great wonderful superb moving brilliant charming delightful fine lovely gripping clever".split()
NEGATIVE = "bad awful dull boring weak clumsy tedious poor messy bland silly lifeless".split()
NEUTRAL = ("the a this film movie plot actor actress scene story script camera music ending director cast "
           "was is felt seemed and with its of in at very quite rather really overall").split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LABELS = ["NEGATIVE", "POSITIVE"]


def make_review(rng):
    """Two or three sentiment words of the label's polarity, maybe one of the other; 'not' + an
    opposite word ("not bad") supports the label too, so context matters a little."""
    y = rng.random() < 0.5
    own, other = (POSITIVE, NEGATIVE) if y else (NEGATIVE, POSITIVE)
    cues = [rng.choice(own) for _ in range(rng.randint(2, 3))]
    if rng.random() < 0.5:
        cues.append(rng.choice(other))
    if rng.random() < 0.3:
        cues.append("not " + rng.choice(other))
    rng.shuffle(cues)
    words = []
    for cue in cues:
        words += rng.sample(NEUTRAL, rng.randint(1, 4)) + [cue]
    return " ".join(words), int(y)


def make_rows(n, seed=0, label_names=True):
    """n rows {"text", "label"}; label is a name (NEGATIVE/POSITIVE) or an id."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        text, y = make_review(rng)
        rows.append({"text": text, "label": LABELS[y] if label_names else y})
    return rows


def write_jsonl(rows, path):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def make_tokenizer(path):
    """A word-level, BERT-style ([CLS] x [SEP]) fast tokenizer over our vocabulary, saved to `path`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL + sorted(set(POSITIVE + NEGATIVE + NEUTRAL + ["not"])))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    fast.save_pretrained(path)
    return fast


def make_model_dir(path, n_layers=2, dim=64):
    """Tokenizer + a tiny DistilBERT config (no weights: train with --from_scratch)."""
    from transformers import DistilBertConfig

    tok = make_tokenizer(path)
    DistilBertConfig(vocab_size=len(tok), n_layers=n_layers, dim=dim, hidden_dim=2 * dim, n_heads=2,
                     max_position_embeddings=128, pad_token_id=tok.pad_token_id).save_pretrained(path)
    # without the writing library's version: the same folder from every transformers (regenerating the tracked
    # configs/smoke changed it)
    file = os.path.join(path, "config.json")
    with open(file) as f:
        config = json.load(f)
    config.pop("transformers_version", None)
    with open(file, "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path


def make_all(root, n_train=2000, n_eval=500):
    os.makedirs(root, exist_ok=True)
    write_jsonl(make_rows(n_train, seed=1), os.path.join(root, "train.jsonl"))
    write_jsonl(make_rows(n_eval, seed=2), os.path.join(root, "validation.jsonl"))
    make_model_dir(os.path.join(root, "model"))


USAGE = "usage: python -m loop.synthetic [FOLDER]   (default: configs/smoke)"


def main(argv):
    """The command: --help is the usage (exit 0); a folder that cannot be written is one `error:` line (exit 2)."""
    from loop.errors import UserError, short

    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\n" + USAGE)
        return
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        raise UserError(f"expected one folder, got {' '.join(argv)!r}; {USAGE}")
    root = argv[0] if argv else "configs/smoke"
    try:
        make_all(root)
    except OSError as e:
        raise UserError(f"cannot write the synthetic data into {root!r} ({short(e)}); choose another folder.")


if __name__ == "__main__":
    from loop.errors import run_cli

    run_cli(main)
