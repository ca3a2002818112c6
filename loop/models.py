"""Models: tokenizer, model config and the classification model, ready for the loop.

Owns: loading the config and tokenizer (Hub id or folder, `--trust_remote_code`), the pad token
and padding side each head needs, the max-length rule, labels into the config,
`--config_overrides` (typed), the attention kernel, fp32 master weights, gradient
checkpointing, LoRA's place in the build (`--lora_r`: the adapters themselves and their merge
for best/ are `lora.py`'s), `torch.compile`, the optimizer's weight-decay groups (`param_groups`) and what DDP
and FSDP2 must know of a model (`find_unused_parameters`, `fsdp_wrap_classes`, `shared_input_embeddings`). Does
not own: building the optimizer (`Loop.build_optimizer`), distribution (`distributed.py`) or writing folders
(`checkpoint.py`).

Every function takes the config and what it needs, and returns a plain transformers object, so
`Loop.build_model()` and friends stay one line and a variant can call them with other arguments.
"""

import contextlib
import copy
import importlib.util
import json
import os
import re
import warnings

import torch

from . import lora
from .hub import check_readable
from .errors import UserError, is_main_rank, short
from .logs import last_mismatched_keys, quiet_weight_report

REMOTE_CODE = ("--trust_remote_code runs the Python code stored in the model's repository on this machine; "
               "pass it only for repositories you trust")


def _remote_code_error(name, e):
    if "trust_remote_code" in str(e):
        return UserError(f"model '{name}' needs code from its own repository (a custom architecture); "
                         f"{REMOTE_CODE}.")
    return None


def load_config(cfg):
    """The model's `PretrainedConfig` from --model_name_or_path, or one `error:` line."""
    from transformers import AutoConfig

    name = cfg.model_name_or_path
    check_readable(name, "--model_name_or_path")
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=cfg.trust_remote_code)
    except Exception as e:
        remote = _remote_code_error(name, e)
        if remote:
            raise remote from e
        if os.path.isdir(name) and not os.path.isfile(os.path.join(name, "config.json")):
            # a run folder, a resumable checkpoint, a LoRA adapter: name the model folder to pass instead
            from .predict import check_folder

            check_folder(name, "--model_name_or_path")
        where = "is not a local folder and could not be fetched from the Hugging Face Hub" if not os.path.isdir(name) \
            else "is a folder without a usable config.json"
        raise UserError(f"model '{name}' {where} ({short(e)}); pass a local model folder with "
                        f"--model_name_or_path (offline, set HF_HUB_OFFLINE=1).") from e


def load_tokenizer(cfg, model_config=None, say=None):
    """The tokenizer of --tokenizer_name, else of the model, with a pad token and the padding
    side the model's head needs (see `prepare_padding`); `say` reports a pad token we chose."""
    from transformers import AutoTokenizer

    name = cfg.tokenizer_name or cfg.model_name_or_path
    check_readable(name, "--tokenizer_name" if cfg.tokenizer_name else "--model_name_or_path")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=cfg.trust_remote_code)
    except Exception as e:
        remote = _remote_code_error(name, e)
        if remote:
            raise remote from e
        raise UserError(f"could not load a tokenizer from '{name}' ({short(e)}); pass a folder with tokenizer "
                        f"files via --tokenizer_name.") from e
    if model_config is not None:
        overridden = pad_as_overridden(cfg, tokenizer)  # first: a tokenizer without a pad token takes that one
        note = prepare_padding(tokenizer, model_config) or overridden
        if note and say is not None:
            say(note)
        if getattr(model_config, "type_vocab_size", None) == 1 and "token_type_ids" in tokenizer.model_input_names:
            # a BERT-style tokenizer beside a model with one segment embedding (RoBERTa's kind): a pair's second text
            # would get segment id 1, and the first batch of pairs an IndexError; the model has no segments to read
            tokenizer.model_input_names = [n for n in tokenizer.model_input_names if n != "token_type_ids"]
            tokenizer.init_kwargs["model_input_names"] = list(tokenizer.model_input_names)  # saved with best/
        split_special_tokens(tokenizer, model_config, keep_saved=cfg.eval_only)
    if cfg.truncation_side:  # saved with best/ (init_kwargs), so pipeline(truncation=True) cuts the same end
        tokenizer.truncation_side = cfg.truncation_side
        tokenizer.init_kwargs["truncation_side"] = cfg.truncation_side
    if model_config is not None and cfg.tokenizer_name and not cfg.eval_only:
        check_reloads(cfg, tokenizer, model_config)
    return tokenizer


def forced_class(name, tokenizer):
    """The tokenizer class a local folder's tokenizer_config.json names when transformers loaded `tokenizer` from it
    as the class it fixes for the folder's model type (check_reloads), else None; for a line that would otherwise
    guess the folder holds no tokenizer files (data.check_unknown_tokens). A class name transformers reads as another
    of the same kind (ElectraTokenizer as BertTokenizer) is no such case."""
    try:
        from transformers.models.auto.tokenization_auto import MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS as FIXED

        with open(os.path.join(name, "tokenizer_config.json"), encoding="utf-8") as f:
            named = json.load(f).get("tokenizer_class")
        with open(os.path.join(name, "config.json"), encoding="utf-8") as f:
            model_type = json.load(f).get("model_type")
    except (ImportError, OSError, ValueError, AttributeError, TypeError):
        return None
    loaded, generic = type(tokenizer).__name__, ("PreTrainedTokenizerFast", "TokenizersBackend")
    if model_type not in FIXED or not isinstance(named, str) \
            or named.removesuffix("Fast") == loaded.removesuffix("Fast") or (named in generic and loaded in generic):
        return None
    return named


PROBE = "The film was great, and the ending surprised me: 10/10! Ça m'a plu."  # check_reloads' text


def check_reloads(cfg, tokenizer, model_config):
    """--tokenizer_name beside a model of another folder: best/ holds the two together, and transformers 5 loads a
    folder's tokenizer by its config's model type for some types (qwen2, phi3, modernbert, ...: its
    MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS), whatever tokenizer_config.json names. A tokenizer of another class
    then came back from best/ reading other ids (every word but a few as one token), and pipeline() scored every text
    NEGATIVE, silently. Saved beside the model's config in a temporary folder and loaded back as pipeline() loads
    best/: other ids for a probe text are refused before any work (a tokenizer that loads back as itself: a few
    milliseconds to a second)."""
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        try:
            tokenizer.save_pretrained(tmp)
            model_config.save_pretrained(tmp)
            back = AutoTokenizer.from_pretrained(tmp, trust_remote_code=cfg.trust_remote_code)
        except Exception as e:  # (not ours to judge: best/ is saved and loaded by the same calls later)
            warnings.warn(f"could not check that best/ loads the tokenizer of '{cfg.tokenizer_name}' back "
                          f"({short(e)}).", stacklevel=2)
            return
    ids, again = tokenizer(PROBE)["input_ids"], back(PROBE)["input_ids"]
    if ids != again:
        raise UserError(f"best/ would not load the tokenizer of --tokenizer_name '{cfg.tokenizer_name}' back: "
                        f"transformers loads the tokenizer of a '{model_config.model_type}' model's folder as "
                        f"{type(back).__name__} whatever its tokenizer_config.json names, and that class reads these "
                        f"files otherwise ({len(again)} tokens for a sentence {type(tokenizer).__name__} reads as "
                        f"{len(ids)}), so pipeline() would score other inputs than training; use a tokenizer of that "
                        f"class (the model's own) or a model of another type.")


# The special tokens a tokenizer names; any other it marks special is its model's own (T5's sentinels <extra_id_N>,
# in its vocabulary) or a marker added to it (added_markers)
NAMED_SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
SENTINEL = re.compile(r"<extra_id_\d+>")  # T5's and ByT5's own special tokens, never a user's markers
KEPT_MARKERS = "loop_kept_markers"  # tokenizer attribute: the markers split_special_tokens kept (data.py reads it)


def added_markers(tokenizer):
    """The special tokens added to `tokenizer` beyond its named ones and its model's vocabulary, in id order: markers
    a user added (add_special_tokens({"additional_special_tokens": ["<e1>", "</e1>"]}), entity markers). T5's
    sentinels and other tokens a converter put in the vocabulary itself are not markers."""
    named = {str(getattr(tokenizer, k)) for k in NAMED_SPECIAL if getattr(tokenizer, k, None) is not None}
    try:  # a fast tokenizer's own vocabulary, without the added tokens
        own = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False)
    except (AttributeError, TypeError):
        own = None
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    # (a tokenizer without a fast backend, ByT5's: its 125 sentinels are added tokens past its 256 bytes)
    return [t.content for i, t in sorted(added.items()) if getattr(t, "special", False) and t.content not in named
            and not SENTINEL.fullmatch(t.content)
            and (t.content not in own if own is not None else i >= tokenizer.vocab_size)]


def split_special_tokens(tokenizer, model_config, keep_saved=False):
    """BART/T5 heads read the eos token: a text holding the literal '</s>' (HTML strike-through) would add one and
    crash the batch ('All examples must have the same number of <eos> tokens'), so an encoder-decoder's tokenizer
    splits special tokens written in the text into plain text. Not when markers were added to it (added_markers):
    splitting made them '<unk>' or pieces, and their embedding rows were never read; it keeps them whole, and a text
    holding the literal eos is refused before training (data.check_literal_eos). Saved with best/ (init_kwargs), so
    pipeline() and loop-predict read texts as training did. Decoders and encoders: unchanged. `keep_saved` (a
    trained model scored or used): a tokenizer saved splitting keeps splitting, as its model was trained (a best/ of
    an older loop split its markers too)."""
    if not getattr(model_config, "is_encoder_decoder", False):
        return
    markers = added_markers(tokenizer)
    split = not markers or (keep_saved and tokenizer.init_kwargs.get("split_special_tokens") is True)
    tokenizer.split_special_tokens = split
    tokenizer.init_kwargs["split_special_tokens"] = split
    setattr(tokenizer, KEPT_MARKERS, [] if split else markers)


def pad_as_overridden(cfg, tokenizer):
    """--config_overrides pad_token_id=N: the tokenizer pads with token N (sync_pad_token then makes the config's pad
    id the tokenizer's, which silently undid the override); returns the line saying so, or None without it or when
    the tokenizer pads with N already. An id the tokenizer does not have is refused."""
    wanted = cfg.overrides_dict().get("pad_token_id")
    if wanted is None:
        return None
    try:
        wanted = int(wanted)
        token = tokenizer.convert_ids_to_tokens(wanted)
    except (TypeError, ValueError, IndexError, OverflowError):
        token = None
    if token is None or wanted < 0:
        raise UserError(f"--config_overrides pad_token_id={cfg.overrides_dict()['pad_token_id']} names no token of "
                        f"the tokenizer ({len(tokenizer)} tokens); give the id of a token it has, or drop it (a pad "
                        f"token is chosen for a tokenizer without one).")
    if tokenizer.pad_token_id == wanted:
        return None
    tokenizer.pad_token = token
    return f"padding with {token!r} (id {wanted}), as --config_overrides pad_token_id={wanted} asks."


def padding_side(model_config):
    """'left' for heads that read the last position (XLNet's summary_type 'last'), else 'right'.

    Decoder LMs (GPT-2, Llama, Qwen, ...) classify from the rightmost token that is not padding,
    which both sides would find, but their position ids count from the first column: padding on
    the left would shift a text's positions, so a text alone and the same text in a batch would
    differ. On the right, causal attention never sees the padding. Encoders read [CLS] (first)
    and encoder-decoders the last eos, both unaffected by right padding.
    """
    return "left" if getattr(model_config, "summary_type", None) == "last" else "right"


def prepare_padding(tokenizer, model_config):
    """Give the tokenizer a pad token if it has none (decoder LMs ship without one) and the
    padding side of `padding_side`. Returns a sentence saying which pad token was chosen, or None."""
    tokenizer.padding_side = padding_side(model_config)
    # save_pretrained writes init_kwargs: this is how best/ (and pipeline()) keeps the side
    tokenizer.init_kwargs["padding_side"] = tokenizer.padding_side
    if tokenizer.pad_token is not None:
        return None
    # eos first: the usual choice for decoder LMs, and the head skips padding by id, so a pad
    # equal to eos only matters for a text ending in eos (then alone and batched agree anyway). Then bos, which
    # begins a text and never ends one; unk only after it: a decoder's head reads the last token that is not the
    # pad, and a text ending in unknown words would be read at the word before them, alone or batched.
    for kind in ("eos_token", "bos_token", "unk_token", "sep_token", "cls_token"):
        token = getattr(tokenizer, kind, None)
        if token is not None:
            tokenizer.pad_token = token
            return (f"the tokenizer has no pad token; padding with its {kind.replace('_token', '')} token "
                    f"{token!r} (id {tokenizer.pad_token_id}) on the {tokenizer.padding_side}.")
    raise UserError("the tokenizer has no pad, eos, unk, bos, sep or cls token to pad batches with; add a "
                    "pad token to the tokenizer (tokenizer.add_special_tokens) and pass its folder with --tokenizer_name.")


# Where configs keep their position limit (MPT: max_seq_len; GPT-2's n_positions is also mapped to the first).
POSITION_FIELDS = ("max_position_embeddings", "n_positions", "max_seq_len", "max_sequence_length")
OWN_LIMIT = "loop_own_model_max_length"  # tokenizer_config.json key: the tokenizer's limit before a run set its own


def record_max_length(tokenizer, length):
    """Make `length` the tokenizer's model_max_length, so best/ truncates in pipeline() where training
    did, keeping the tokenizer's own limit beside it: a run started from best/ is limited by that
    (max_length), not by the earlier run's choice."""
    tokenizer.init_kwargs.setdefault(OWN_LIMIT, tokenizer.model_max_length if tokenizer.model_max_length < 1e9 else None)
    tokenizer.model_max_length = length


def unrecorded_max_length(model_dir, tokenizer):
    """A sentence for a loop run's best/ whose tokenizer holds no --max_length (a loop version before 2026-11-30
    recorded none): it is scored where the tokenizer's own limit cuts, not where training cut (audit30: 0.79
    instead of the recorded 0.76 for a model trained at 10 tokens); None for any other folder."""
    if not (os.path.isfile(os.path.join(str(model_dir), "best_metrics.json")) and OWN_LIMIT not in tokenizer.init_kwargs):
        return None
    return f"'{model_dir}' was saved by a loop version that did not record the --max_length it trained with"


# model types whose learned positions are numbered from pad_token_id + 1 (transformers'
# create_position_ids_from_input_ids): max_position_embeddings - pad_token_id - 1 of them hold tokens
PADDED_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "mpnet", "ibert",
                    "roberta-prelayernorm", "xmod", "luke", "markuplm", "lilt", "layoutlmv3", "esm", "data2vec-text"}


def max_length(cfg, model_config, tokenizer):
    """--max_length, or the model's position limit capped at 512; never above the limit. With
    --eval_only, a model a loop run saved is scored at the length it recorded (record_max_length).

    Models without a limit (XLNet: max_position_embeddings = -1; T5: relative positions) get
    --max_length or 512."""
    own = tokenizer.init_kwargs.get(OWN_LIMIT, tokenizer.model_max_length)  # not a length a loop run recorded
    # --config_overrides reach the config later (`configure`, after the labels): read a position field's from them
    # (a RoBERTa's positions start after the pad id the model is built with: the tokenizer's, sync_pad_token)
    positions = position_limit(model_config, cfg.overrides_dict(), pad_id=tokenizer.pad_token_id)
    limits = [n for n in (positions, own) if isinstance(n, int) and 0 < n < 1_000_000]
    limit = min(limits) if limits else None
    if cfg.max_length is None and getattr(cfg, "eval_only", False) and OWN_LIMIT in tokenizer.init_kwargs:
        # a loop run's best/: score texts cut where it cut them
        return min(limit, tokenizer.model_max_length) if limit else tokenizer.model_max_length
    if cfg.max_length is None and getattr(cfg, "eval_only", False) and is_main_rank():
        unrecorded = unrecorded_max_length(cfg.model_name_or_path, tokenizer)
        if unrecorded:
            warnings.warn(f"{unrecorded}, so texts are cut at {min(limit, 512) if limit else 512} tokens, not where "
                          f"training cut them; pass that --max_length to score it as trained.", stacklevel=2)
    if limit is None:  # no position limit (XLNet, T5's relative positions): as long as asked
        return cfg.max_length or 512
    if cfg.max_length is None:
        return min(limit, 512)
    if cfg.max_length > limit:
        if is_main_rank():
            whose = "the model's limit" if limit == positions else "the tokenizer's model_max_length"
            warnings.warn(f"--max_length {cfg.max_length} is above {whose} of {limit} positions; "
                          f"using {limit}.", stacklevel=2)
        return limit
    return cfg.max_length


def position_limit(model_config, overrides=None, pad_id=None):
    """The most tokens the model's position embeddings hold (the POSITION_FIELDS; RoBERTa's start after the pad id:
    514 embeddings hold 512 tokens, 513 died with an IndexError), or None without a limit (XLNet's -1, T5's
    relative positions). `overrides`: --config_overrides not yet applied to the config, as max_length reads them;
    `pad_id`: the pad id the model will be built with, where it is not the config's (the tokenizer's)."""
    overrides = overrides or {}
    positions = [typed_value(f, overrides[f], getattr(model_config, f, None)) if f in overrides
                 else getattr(model_config, f, None) for f in POSITION_FIELDS]
    if getattr(model_config, "model_type", None) in PADDED_POSITIONS and isinstance(positions[0], int):
        pad = pad_id if isinstance(pad_id, int) else getattr(model_config, "pad_token_id", None)
        positions[0] -= (pad if isinstance(pad, int) and pad >= 0 else 1) + 1
    limits = [n for n in positions if isinstance(n, int) and not isinstance(n, bool) and 0 < n < 1_000_000]
    return min(limits) if limits else None


def parse_value(text):
    """A --config_overrides value for a field that is None: null, true/false, int, float, [a,b] or a string."""
    low = text.strip().lower()
    if low in ("null", "none"):
        return None
    if low in ("true", "false"):
        return low == "true"
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [parse_value(v.strip()) for v in inner.split(",")] if inner else []
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def typed_value(key, text, old):
    """`text` converted to the type of the field's current value `old`; one `error:` line if it cannot be."""
    if text.strip().lower() in ("null", "none"):
        return None
    if old is None:
        return parse_value(text)
    try:
        if isinstance(old, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if isinstance(old, (list, tuple)):
            value = parse_value(text if text.startswith("[") else f"[{text}]")
            return type(old)(value)
        if isinstance(old, int):
            return int(text)
        if isinstance(old, float):
            return float(text)
        if isinstance(old, str):
            return text
        if isinstance(old, dict):  # a JSON object: its keys set, the field's others kept (rope_parameters)
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError(text)
            return {**old, **value}
        return parse_value(text)
    except (ValueError, TypeError):
        name = type(old).__name__
        what = {bool: "true or false", list: "a list like [1,2]", tuple: "a list like [1,2]",
                dict: 'a JSON object like {"key": 1}'}.get(type(old), f"{'an' if name[0] in 'aeiou' else 'a'} {name}")
        raise UserError(f"--config_overrides {key}={text}: expected {what} (the field is {old!r} now).") from None


def is_classifier(config):
    """Whether the config names a sequence-classification architecture (a trained head, not a base model's)."""
    return any("SequenceClassification" in a for a in getattr(config, "architectures", None) or [])


def trained_head_labels(cfg, config):
    """The label names of a trained classification head, in row order; None for a base model, a
    from-scratch run or a head with the default LABEL_i names."""
    if cfg.from_scratch or not is_classifier(config):
        return None
    id2label = getattr(config, "id2label", None) or {}
    names = [id2label.get(i, id2label.get(str(i))) for i in range(len(id2label))]
    if None in names or names == [f"LABEL_{i}" for i in range(len(names))]:
        return None
    return [str(n) for n in names]


def config_labels(config):
    """The model config's label names in id order (its id2label; LABEL_i where it names none)."""
    id2label = getattr(config, "id2label", None) or {}
    n = getattr(config, "num_labels", None) or len(id2label)
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]


def check_trained_model(cfg, config):
    """--eval_only scores a trained classifier as it was trained: a config that names no sequence-
    classification architecture (a base model, a language model) would get a fresh, random head, and
    a regression model is scored as one when --problem_type is not given."""
    archs = getattr(config, "architectures", None) or []
    if not is_classifier(config):
        raise UserError(f"--eval_only scores a trained classifier, but '{cfg.model_name_or_path}' is "
                        f"{', '.join(archs) or 'a model without a named architecture'}, not one trained for sequence "
                        f"classification (its head would be new and score at random); pass a fine-tuned model, such "
                        f"as a run's output/best.")
    if cfg.problem_type is None and trained_problem(config) == "regression":
        cfg.score_as_regression()


def trained_problem(config):
    """What a trained classifier was trained for: its config's problem_type, else regression for a head
    of one output; None when it does not say (single- or multi-label)."""
    problem = getattr(config, "problem_type", None)
    if problem in ("single_label_classification", "multi_label_classification", "regression"):
        return problem
    return "regression" if getattr(config, "num_labels", None) == 1 else None


def configure(cfg, config, label_names, multi_label=False, regression=False):
    """Put our labels, the problem type and --config_overrides into the model config (in place).

    A fresh head is always made for our labels, whatever the base config's default label count
    (BART's says 3); only a trained classifier with a different label set is refused. A regression
    has one output, named by `label_names[0]`."""
    set_labels(cfg, config, label_names, multi_label, regression)
    if getattr(config, "use_mems_eval", None):  # XLNet: memories are for generation; the pipeline cannot unbatch them
        config.use_mems_eval = False
    apply_overrides(cfg, config)
    check_landmarks(config)
    return config


def set_labels(cfg, config, label_names, multi_label=False, regression=False):
    """configure's labels: id2label, label2id, num_labels and the problem type; a trained head with another label
    count refused (or replaced with --ignore_mismatched_sizes), one with other names warned about."""
    head = getattr(config, "num_labels", None)
    trained = trained_head_labels(cfg, config)
    if is_classifier(config) and head not in (None, len(label_names)) \
            and not cfg.from_scratch:
        size = "1 output (a regression)" if head == 1 else f"{head} labels"  # a regression's head has one output
        data = "1 output (a regression)" if regression else f"{len(label_names)} ({', '.join(label_names)})"
        if not cfg.ignore_mismatched_sizes:
            raise UserError(f"the model's classification head has {size} but the data has {data}; add "
                            f"--ignore_mismatched_sizes to train a new head on its trained body, or use a base model "
                            f"or one trained on the same labels.")
        if is_main_rank():
            from .logs import say

            was = f" ({', '.join(trained)})" if trained else ""
            say(f"--ignore_mismatched_sizes: the model's head was trained on {size}{was}; a new one is made for the "
                f"data's {'1 output' if regression else len(label_names)}")
        trained = None  # nothing of the old head is reused: no warning about its names
    if trained and [n.lower() for n in trained] != [n.lower() for n in label_names] and is_main_rank():
        warnings.warn(f"the model's classification head was trained on the labels {', '.join(trained)}, the data's are "
                      f"{', '.join(label_names)}: its rows are reused in that order under the new names (for a new "
                      f"head, start from the base model).", stacklevel=2)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {n: i for i, n in enumerate(label_names)}
    config.num_labels = len(label_names)
    # multi-label: the model's loss is binary cross-entropy per label and pipeline() scores with a sigmoid;
    # single-label data starting from a multi-label checkpoint goes back to softmax cross-entropy
    # regression: one output, mean squared error, pipeline() returns the output itself
    if multi_label:
        config.problem_type = "multi_label_classification"
    elif regression:
        config.problem_type = "regression"
    elif getattr(config, "problem_type", None) in ("multi_label_classification", "regression"):
        config.problem_type = "single_label_classification"


def apply_overrides(cfg, config):
    """--config_overrides into the config, each value typed as the field it replaces (a field of a dict field by
    its old name); head_dim and layer_types follow the sizes they derive from; the config validated."""
    overrides = cfg.overrides_dict()
    derived_head_dim = _derived_head_dim(config)
    for key, text in overrides.items():
        if not hasattr(config, key):
            # transformers 5 keeps some former fields in a dict field (rope_theta in rope_parameters), and the
            # config's own constructor takes them by their old name: so do we
            holder = [f for f, v in vars(config).items() if isinstance(v, dict) and key in v and not f.startswith("_")
                      and f not in ("id2label", "label2id")]  # (the labels come from the data)
            if len(holder) != 1:
                raise UserError(f"--config_overrides key '{key}' is not a field of {type(config).__name__}.")
            inner = getattr(config, holder[0])
            inner[key] = typed_value(key, text, inner[key])
            if is_main_rank():
                from .logs import say

                say(f"--config_overrides: {key} is {holder[0]}['{key}'] in {type(config).__name__}: {inner[key]!r}")
            continue
        value = typed_value(key, text, getattr(config, key))
        try:
            setattr(config, key, value)
        except Exception as e:  # strict config dataclasses validate on assignment
            raise UserError(f"--config_overrides {key}={text}: not a valid value for {type(config).__name__}.{key} "
                            f"({short(e)}).") from e
    if derived_head_dim and "head_dim" not in overrides and _derived_head_dim(config) is False:
        # head_dim was hidden_size / num_attention_heads (a fresh config derives it so); overriding either
        # would otherwise leave attention at the old width
        old = config.head_dim
        config.head_dim = config.hidden_size // config.num_attention_heads
        if is_main_rank():
            from .logs import say

            say(f"--config_overrides: head_dim follows hidden_size / num_attention_heads: {old} -> {config.head_dim}")
    layers, types = getattr(config, "num_hidden_layers", None), getattr(config, "layer_types", None)
    if "layer_types" not in overrides and isinstance(layers, int) and layers > 0 and isinstance(types, list) \
            and types and len(types) != layers:
        # Qwen2, Gemma, ...: one attention type per layer; another layer count keeps the pattern (cut, or
        # repeated), where the model would fail at its first layer past the list or at the first save
        config.layer_types = [types[i % len(types)] for i in range(layers)]
        if is_main_rank():
            from .logs import say

            say(f"--config_overrides: layer_types follows num_hidden_layers={layers}: {_runs(config.layer_types)}")
    if overrides and callable(getattr(config, "validate", None)):
        try:  # a config the model's class would refuse at save_pretrained, after all of training
            config.validate()
        except Exception as e:
            raise UserError(f"--config_overrides '{cfg.config_overrides}' makes a {type(config).__name__} that does not "
                            f"hold together ({short(e)}); change the related fields too.") from e


def check_landmarks(config):
    """Nystromformer with fewer landmarks than segment_means_seq_len reshapes every input to exactly that many
    tokens, which padding each batch to its longest text never gives: its first step failed with a reshape
    traceback. With equal values it computes exact softmax attention (the same weights) on any length."""
    landmarks, length = getattr(config, "num_landmarks", None), getattr(config, "segment_means_seq_len", None)
    if getattr(config, "model_type", None) == "nystromformer" and landmarks != length:
        raise UserError(f"nystromformer with num_landmarks {landmarks} and segment_means_seq_len {length} takes "
                        f"inputs of exactly {length} tokens only, and batches are padded to their longest text; pass "
                        f"--config_overrides num_landmarks={length} (exact attention, the same weights).")


def _runs(values):
    """['full', 'full', 'sliding'] as 'full x2, sliding'."""
    out = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return ", ".join(f"{v} x{n}" if n > 1 else str(v) for v, n in out)


def _derived_head_dim(config):
    """True when the config's head_dim is hidden_size / num_attention_heads, False when it is another
    number, None when the config has no such fields (or heads do not divide the width)."""
    dims = [getattr(config, k, None) for k in ("head_dim", "hidden_size", "num_attention_heads")]
    if not all(isinstance(d, int) and d > 0 for d in dims) or dims[1] % dims[2]:
        return None
    return dims[0] == dims[1] // dims[2]


def added_tokens_past(tokenizer, rows):
    """Whether the tokenizer's ids run past an embedding table of `rows` only through tokens added to it (special
    tokens, markers such as <e1>: its own vocabulary fits), which the table grows for (grow_embeddings); a tokenizer
    whose own vocabulary is larger is another model's."""
    return isinstance(rows, int) and tokenizer.vocab_size <= rows < len(tokenizer)


def grow_embeddings(model, tokenizer, with_lora=False):
    """Tokens added to the tokenizer past the model's embedding table: the table grows to the tokenizer's length,
    as transformers' examples do (resize_token_embeddings; the new rows start near the others' mean), and the
    config's vocab_size with it, so best/ holds a model its tokenizer fits. Else their first text failed with an
    IndexError deep in torch, in training or, where no training text held one, in predict.py."""
    try:
        rows = model.get_input_embeddings().num_embeddings
    except (AttributeError, NotImplementedError):  # CANINE and some remote-code models have no such table
        return
    if not added_tokens_past(tokenizer, rows):
        return
    model.resize_token_embeddings(len(tokenizer))
    if is_main_rank():
        from .logs import say

        say(f"embeddings: {len(tokenizer) - rows} token(s) added to the tokenizer past the model's {rows}; the table "
            f"grows to {len(tokenizer)} rows" + (" (new ones, frozen under --lora_r: they keep their first values)"
                                                 if with_lora else " (new ones, trained with the rest)"))


def sync_pad_token(config, tokenizer):
    """The model finds each text's last token by the pad id (an encoder-decoder's head: by the eos id):
    make the config's equal the tokenizer's."""
    if tokenizer is None or tokenizer.pad_token_id is None:
        return
    vocab = getattr(config.get_text_config(), "vocab_size", None)
    if isinstance(vocab, int) and tokenizer.pad_token_id >= vocab and added_tokens_past(tokenizer, vocab):
        # (the model is built with its pad row before the table grows: torch refuses a padding index past it)
        other = f" (its eos token's id is {tokenizer.eos_token_id})" if tokenizer.eos_token_id is not None else ""
        raise UserError(f"the tokenizer's pad token {tokenizer.pad_token!r} was added to it, with id "
                        f"{tokenizer.pad_token_id}, past the model's {vocab} embeddings; pad with a token the model "
                        f"has: --config_overrides pad_token_id=N, N below {vocab}{other}.")
    if isinstance(vocab, int) and tokenizer.pad_token_id >= vocab:
        raise UserError(f"the tokenizer's pad token {tokenizer.pad_token!r} has id {tokenizer.pad_token_id}, outside the "
                        f"model's {vocab} embeddings; use a tokenizer that matches the model (--tokenizer_name).")
    eos = tokenizer.eos_token_id if getattr(config, "is_encoder_decoder", False) else None
    for c in {id(c): c for c in (config, config.get_text_config())}.values():
        c.pad_token_id = tokenizer.pad_token_id
        if eos is not None:  # BART's and T5's heads read the text's last eos token, found by the config's id
            c.eos_token_id = eos


def no_cache(config):
    """use_cache off: a classifier generates nothing, and a decoder's forward otherwise builds and holds every layer's
    keys and values until it returns (one evaluation batch of 64 x 512 tokens of a 7B Llama: about 17 GB more, and
    --auto_find_batch_size halves the batch for it). best/ saves it so; pipeline() reads it too."""
    for c in {id(c): c for c in (config, config.get_text_config())}.values():
        if getattr(c, "use_cache", None):
            c.use_cache = False


def model_class(config):
    """The AutoModelForSequenceClassification class for `config`, or None (custom code, unknown)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.models.auto.auto_factory import _get_model_class

    try:
        return _get_model_class(config, AutoModelForSequenceClassification._model_mapping)
    except Exception:
        return None


def attention_choices(cls):
    """The --attn_implementation values that work for model class `cls` here."""
    choices = ["eager"]
    if getattr(cls, "_supports_sdpa", False):
        choices.append("sdpa")
    if getattr(cls, "_supports_flex_attn", False) and torch.cuda.is_available():  # its CPU kernels fail in training
        choices.append("flex_attention")
    if getattr(cls, "_supports_flash_attn", False) and importlib.util.find_spec("flash_attn") and torch.cuda.is_available():
        choices.append("flash_attention_2")
    return choices


def check_attention(cfg, mixed_precision):
    """flash_attention_2 without mixed precision: the weights are fp32 masters and autocast is off,
    so flash-attn would refuse fp32 at the first batch; one line now instead."""
    if cfg.attn_implementation == "flash_attention_2" and mixed_precision == "no":
        raise UserError("--attn_implementation flash_attention_2 needs bf16 or fp16 mixed precision (accelerate "
                        "launch --mixed_precision bf16); without it use sdpa.")


# model_type -> (why it cannot run under bf16/fp16 autocast, what to use instead); checked on the config
NO_MIXED_PRECISION = {
    "deberta": ("its attention fills masked scores with the float32 minimum, which a bf16/fp16 tensor cannot hold "
                "(transformers 5.24)", "or use DeBERTa-v2/v3"),
}


def check_mixed_precision(config, mixed_precision):
    """A model family that fails under mixed precision (DeBERTa v1: at its first forward pass, after the data
    work, with a traceback) is one line at the start."""
    why, instead = NO_MIXED_PRECISION.get(getattr(config, "model_type", None), (None, None))
    if why and mixed_precision in ("bf16", "fp16"):
        raise UserError(f"{config.model_type} does not run under {mixed_precision} mixed precision: {why}; train it "
                        f"without mixed precision (accelerate launch --mixed_precision no), {instead}.")


def other_half_autocast(dtype, accelerator):
    """accelerate's autocast ("fp16" or "bf16") when it is to the other half precision than `dtype` (bfloat16 or
    float16 weights would be rounded twice), else None."""
    have = accelerator.mixed_precision if getattr(accelerator, "native_amp", True) else "no"
    other = {"bfloat16": "fp16", "float16": "bf16"}.get(dtype)
    return have if have == other else None


def check_dtype(cfg, accelerator):
    """--torch_dtype bfloat16/float16 with --lora_r: the frozen body's matmuls meet the float32 adapters and
    head only under autocast, so accelerate's mixed precision must be the same dtype (without it the head
    fails at the first batch on a dtype mismatch). FSDP and DeepSpeed cast and shard weights by their own
    rules (one dtype per flattened block); this is for one process or DDP. --eval_only takes any."""
    if cfg.torch_dtype == "float32":
        return
    if cfg.eval_only:  # any dtype scores, under autocast to it; but not under accelerate's autocast to the other one
        have = other_half_autocast(cfg.torch_dtype, accelerator)
        if have:
            raise UserError(f"--eval_only --torch_dtype {cfg.torch_dtype} under {have} mixed precision would score "
                            f"{cfg.torch_dtype} weights under {have} autocast (rounded twice); launch with accelerate "
                            f"launch --mixed_precision {'bf16' if have == 'fp16' else 'fp16'} or no, or drop --torch_dtype.")
        return
    from .distributed import sharder

    need = {"bfloat16": "bf16", "float16": "fp16"}[cfg.torch_dtype]
    if sharder(accelerator):
        raise UserError(f"--torch_dtype {cfg.torch_dtype} is for one process or DDP, not {sharder(accelerator)} (which casts "
                        f"and shards the weights itself, one dtype per block): drop --torch_dtype, or train "
                        f"with DDP (accelerate launch --multi_gpu --mixed_precision {need}).")
    if accelerator.mixed_precision != need:
        raise UserError(f"--torch_dtype {cfg.torch_dtype} keeps the frozen body in {cfg.torch_dtype} beside float32 "
                        f"adapters and head, which meet only under {need} autocast: launch with accelerate launch "
                        f"--mixed_precision {need} (mixed precision is now {accelerator.mixed_precision}), or drop "
                        f"--torch_dtype.")
    if not getattr(accelerator, "native_amp", True):  # accelerate's fp16 on a CPU: named, but nothing autocasts
        device = getattr(getattr(accelerator, "device", None), "type", "this device")
        raise UserError(f"--torch_dtype {cfg.torch_dtype} needs {need} autocast, which accelerate does not do on "
                        f"{device} (its {need} there computes in float32): use --torch_dtype bfloat16 with "
                        f"--mixed_precision bf16, or drop --torch_dtype.")


def autocast_scoring(model, cfg, accelerator):
    """--eval_only with --torch_dtype bfloat16/float16 and no autocast of accelerate's (no mixed precision,
    or fp16 on a CPU): score under autocast to that dtype, as training under mixed precision would. Some
    models (XLNet, DeBERTa, FNet, MRA) build float32 tensors in their forward pass that a bf16 weight
    would otherwise meet in a matmul and fail."""
    if cfg.torch_dtype == "float32" or (accelerator.mixed_precision != "no"
                                        and getattr(accelerator, "native_amp", True)):
        return model
    forward, dtype, device = model.forward, weights_dtype(cfg), accelerator.device.type

    def autocast_forward(*args, **kwargs):
        with torch.autocast(device_type=device, dtype=dtype):
            return forward(*args, **kwargs)

    model.forward = autocast_forward
    return model


def weightless_folder(path):
    """Whether `path` is a local model folder with a config.json and no weight file of any format transformers
    reads (safetensors, PyTorch .bin, TensorFlow .h5, Flax .msgpack, their shards and indexes)."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        return False
    return not any(name.endswith((".safetensors", ".bin", ".h5", ".msgpack", ".index.json", ".pt", ".pth"))
                   for name in os.listdir(path))


def weights_dtype(cfg):
    """The torch dtype models are loaded in: --torch_dtype (float32 unless some weights stay frozen)."""
    return getattr(torch, cfg.torch_dtype)


def set_tf32(cfg, device):
    """--tf32: fp32 matrix products and convolutions in TF32 on Ampere and newer NVIDIA GPUs (inputs
    rounded to a 10-bit mantissa, sums in fp32: several times the fp32 throughput; what bf16 autocast
    does not already cover). Left out (None): PyTorch's defaults, full-fp32 matmuls and TF32 cuDNN
    convolutions. `false` makes both full fp32. True where no such GPU is: one line, as Trainer's."""
    if cfg.tf32 is None:
        return
    if cfg.tf32:
        cuda = getattr(device, "type", None) == "cuda"
        if not cuda or torch.cuda.get_device_capability(device)[0] < 8:
            what = f"a GPU of compute capability {'.'.join(map(str, torch.cuda.get_device_capability(device)))}" \
                if cuda else f"device '{device}'"
            raise UserError(f"--tf32 true needs an NVIDIA GPU of compute capability 8.0 or newer (A100, H100, "
                            f"RTX 30xx and later); this run has {what}: drop the flag.")
    if hasattr(torch.backends, "fp32_precision"):  # torch >= 2.9: one switch for matmul and cuDNN
        torch.backends.fp32_precision = "tf32" if cfg.tf32 else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)


# --sdpa_backends' names -> torch.backends.cuda's switch for that kernel (enable_X; X_enabled reads it)
SDPA_SWITCHES = {"flash": "enable_flash_sdp", "efficient": "enable_mem_efficient_sdp", "cudnn": "enable_cudnn_sdp",
                 "math": "enable_math_sdp"}
SDPA_READ = {name: switch.replace("enable_", "", 1) + "_enabled" for name, switch in SDPA_SWITCHES.items()}
_sdpa_before = {}  # the switches as they were before set_sdpa_backends first changed them (torch puts them back)


def set_sdpa_backends(cfg, device):
    """--sdpa_backends on an NVIDIA GPU: which kernels torch's scaled_dot_product_attention may pick from.

    auto leaves cuDNN's out. On the H200 (2026-12-04, bench/results/2026-12-04-h200-profile.txt) its attention
    took 35% of the host's time per training step under the profiler (1.1-1.6 ms a call against 0.01-0.06 ms for the
    other operators; the host 45 ms a step) while the GPU worked 6.4 ms a step: cuDNN builds a kernel graph for
    every new input shape, and length-grouped batches padded to multiples of 8 have up to 64 widths (MiniLM's
    first epoch ran at three quarters of its second's rate). The memory-efficient kernel takes the same padding
    masks without a build. auto turns cuDNN's switch off and leaves the others as they are (a script that turned
    flash off keeps it off); a list turns exactly those on; torch puts the switches back as they were before a
    loop in this process changed them (PyTorch's own choice). Process-wide switches, as --tf32's are."""
    if getattr(device, "type", None) != "cuda":
        return
    if cfg.sdpa_backends == "torch":
        for name, on in _sdpa_before.items():
            getattr(torch.backends.cuda, SDPA_SWITCHES[name])(on)
        return
    if not _sdpa_before:
        _sdpa_before.update({name: getattr(torch.backends.cuda, read)() for name, read in SDPA_READ.items()})
    if cfg.sdpa_backends == "auto":
        torch.backends.cuda.enable_cudnn_sdp(False)
        return
    chosen = cfg.sdpa_backends.split(",")
    for name, switch in SDPA_SWITCHES.items():
        getattr(torch.backends.cuda, switch)(name in chosen)


def build_error(config, kwargs):
    """The error making a model of `config` raises, or None (made on the meta device: no memory, no weights): a
    load that failed on a config --config_overrides made impossible is the overrides', not the weight files'."""
    from transformers import AutoModelForSequenceClassification

    try:
        with torch.device("meta"):
            AutoModelForSequenceClassification.from_config(config, **kwargs)
    except Exception as e:
        return e
    return None


def causal_decoder_self_attention(model):
    """transformers < 5.18 builds UMT5's decoder self-attention with is_causal=False: under SDPA, which
    leaves the causal mask to `is_causal` when the decoder input has no padding, the decoder then sees
    later tokens, and a text scores differently alone and in a padded batch. No-op where it is causal."""
    for name, module in model.named_modules():
        if type(module).__name__ == "UMT5Attention" and name.endswith("SelfAttention") and module.is_decoder:
            module.is_causal = True
    return model


def pad_after_every_text(model):
    """transformers' T5GemmaForSequenceClassification (encoder-decoder) reads each text at the decoder position after
    its last token, clamped to the batch's length: a text with no padding after it (scored alone, or the longest of
    its batch) was read one position early, before its last token, and scored otherwise than in a padded batch.
    A pad column appended to every batch gives each text one pad after it (a masked position: nothing else sees
    it), so each is read at the same place alone and in any batch. No-op for other models."""
    for module in model.modules():
        if type(module).__name__ == "T5GemmaForSequenceClassification" and module.config.is_encoder_decoder \
                and not getattr(module, "_pad_column_hook", None):
            module._pad_column_hook = module.register_forward_pre_hook(_append_pad_column, with_kwargs=True)
    return model


def scored_otherwise_alone(model):
    """The name of the model (T5Gemma, UMT5) that transformers' own pipeline() scores otherwise alone than in a
    padded batch, which scored_alike mends (T5Gemma's head; UMT5 before 5.18, whose attention the loop has made
    causal already: found by its class), or None: what best/'s model card then says. Any wrapper of it will do."""
    import transformers
    from packaging.version import Version

    old_umt5 = Version(transformers.__version__).release < (5, 18)
    for m in model.modules():
        if type(m).__name__ == "T5GemmaForSequenceClassification" and m.config.is_encoder_decoder:
            return "T5Gemma"
        if old_umt5 and type(m).__name__ == "UMT5Attention":
            return "UMT5"
    return None


def _append_pad_column(module, args, kwargs):
    """pad_after_every_text's hook: input_ids (and attention_mask) one pad (0) column longer, when given by name."""
    ids, pad = kwargs.get("input_ids"), module.config.pad_token_id
    if ids is None or pad is None or args:
        return None
    kwargs["input_ids"] = torch.cat([ids, ids.new_full((ids.shape[0], 1), pad)], dim=1)
    mask = kwargs.get("attention_mask")
    if mask is not None:
        kwargs["attention_mask"] = torch.cat([mask, mask.new_zeros((mask.shape[0], 1))], dim=1)
    return args, kwargs


def scored_alike(model):
    """Each text scored the same alone and in a padded batch, where a transformers version does not (UMT5's
    decoder self-attention before 5.18, T5Gemma's head): the loop's models, predict.py's, and `pipeline()`'s with
    `loop.models.scored_alike(clf.model)`."""
    return pad_after_every_text(causal_decoder_self_attention(model))


def build_model(cfg, config, label_names, tokenizer=None, say=None, multi_label=False, regression=False):
    """AutoModelForSequenceClassification in fp32 (master weights), labels and pad id in its config;
    with --lora_r, wrapped as a PEFT LoRA model whose head is fully trained. (`say`: no longer used,
    Loop.setup prints the parameter count once an override is done; kept for older callers.)"""
    from transformers import AutoModelForSequenceClassification

    with_lora = lora.check_lora(cfg)  # before any work: without peft this is one line
    config = configure(cfg, config, label_names, multi_label=multi_label, regression=regression)
    sync_pad_token(config, tokenizer)
    no_cache(config)
    kwargs = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.attn_implementation:  # None: transformers picks SDPA where the model supports it, else eager
        cls = model_class(config)
        if cls is not None and cfg.attn_implementation not in attention_choices(cls) \
                and cfg.attn_implementation in ("sdpa", "flex_attention"):  # flash: transformers decides (kernels fallback)
            raise UserError(f"--attn_implementation {cfg.attn_implementation} does not work for {cls.__name__} here; "
                            f"choose one of: {', '.join(attention_choices(cls))} (or leave it out for the best one).")
        kwargs["attn_implementation"] = cfg.attn_implementation
    quiet_weight_report()  # unless --verbose: our "new head" line instead of transformers' load report
    last_mismatched_keys(forget=True)  # an earlier load's must not name this one's
    new = []  # parameters the checkpoint lacks (made fresh): the head, sometimes a pooler
    dtype = weights_dtype(cfg)  # float32 but for a LoRA body or a model scored in bf16/fp16 (--torch_dtype)
    try:
        if cfg.from_scratch:
            model = AutoModelForSequenceClassification.from_config(config, dtype=dtype, **kwargs)
        else:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                cfg.model_name_or_path, config=config, dtype=dtype, output_loading_info=True,
                ignore_mismatched_sizes=cfg.ignore_mismatched_sizes, **kwargs)
            # made fresh: weights the checkpoint lacks, and (--ignore_mismatched_sizes) those of another shape
            new = sorted(set(info.get("missing_keys") or ()) | {k[0] for k in info.get("mismatched_keys") or ()})
            if new and cfg.eval_only:
                raise UserError(f"--eval_only scores a trained classifier, but '{cfg.model_name_or_path}' has no trained "
                                f"weights for {', '.join(new[:4])}{' ...' if len(new) > 4 else ''} (they would be new "
                                f"and random); pass a fine-tuned model, such as a run's output/best.")
    except Exception as e:
        msg = str(e)
        if isinstance(e, (ValueError, ImportError)) and cfg.attn_implementation and \
                ("attn_implementation" in msg or "attention" in msg.lower()):
            cls = model_class(config)
            choices = ", ".join(attention_choices(cls)) if cls is not None else "sdpa or eager"
            raise UserError(f"--attn_implementation {cfg.attn_implementation} is not supported here ({short(e)}); "
                            f"choose one of: {choices} (or leave it out for the best one).") from e
        if isinstance(e, ValueError) and "Unrecognized configuration class" in msg:
            raise UserError(f"transformers has no sequence-classification head for model type "
                            f"'{getattr(config, 'model_type', '?')}' ({short(e)}); use a model of a type that "
                            f"AutoModelForSequenceClassification lists (for long texts: longformer, big_bird, "
                            f"bigbird_pegasus).") from e
        impossible = e if cfg.from_scratch else build_error(config, kwargs)  # a config no model can be made of
        if cfg.config_overrides and impossible is not None and not isinstance(e, UserError):
            raise UserError(f"the model cannot be built with --config_overrides {cfg.config_overrides} "
                            f"({short(impossible)}); correct or drop the values.") from e
        if cfg.from_scratch or isinstance(e, UserError):
            raise
        if isinstance(e, RuntimeError) and "ignore_mismatched_sizes" in msg:
            raise UserError(mismatched_sizes_message(cfg)) from e
        # damaged or truncated weight files (SafetensorError, OSError, RuntimeError from torch.load)
        if cfg.eval_only:  # a config alone (no weight files) is the common case here
            raise UserError(f"--eval_only scores a trained classifier, but the weights of '{cfg.model_name_or_path}' "
                            f"could not be loaded ({short(e)}); pass a fine-tuned model with its weight files, such "
                            f"as a run's output/best.") from e
        if weightless_folder(cfg.model_name_or_path):  # a config alone: the architecture to train from scratch
            raise UserError(f"--model_name_or_path '{cfg.model_name_or_path}' holds a config but no weight files; "
                            f"pass --from_scratch true to train it from random weights, or a folder with its "
                            f"weights.") from e
        raise UserError(f"could not load the weights of --model_name_or_path '{cfg.model_name_or_path}' ({short(e)}); "
                        f"check or re-download its weight files.") from e
    # Mixed precision autocasts the forward pass; the weights the optimizer updates stay fp32,
    # even when the checkpoint was stored in fp16/bf16 (from_pretrained keeps its dtype). With
    # --torch_dtype the frozen weights stay as loaded (apply_lora makes the trained ones fp32).
    if dtype == torch.float32:
        model = model.float()
    if tokenizer is not None and not cfg.eval_only:
        grow_embeddings(model, tokenizer, with_lora)
    scored_alike(model)  # UMT5 before transformers 5.18, T5Gemma
    if cfg.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", True):  # ALBERT, XLNet, MPNet, CTRL, ...
            raise UserError(f"{type(model).__name__} does not support --gradient_checkpointing; drop the flag "
                            f"(a smaller --per_device_train_batch_size with --gradient_accumulation_steps also "
                            f"saves memory).")
        # transformers 5 renamed it activation_checkpointing_enable (which still calls a model's own override of the
        # old name); the old name warns on every run and goes in 6
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
        if with_lora:  # frozen embeddings: let the checkpointed blocks see a grad-requiring input
            model.enable_input_require_grads()
    if with_lora:
        model = lora.apply_lora(model, cfg, new)
    if cfg.torch_compile:
        model = torch.compile(model, mode=cfg.torch_compile_mode)  # None: torch's default
    return model


def mismatched_shapes(found, limit=3, stored="in the checkpoint", built="here"):
    """'name: [checkpoint shape] in the checkpoint, [model shape] here; ...' for the first `limit` of transformers'
    mismatched keys (last_mismatched_keys: (name, checkpoint shape, model shape)); None when there are none."""
    if not found:
        return None
    shown = "; ".join(f"{name}: {list(ckpt)} {stored}, {list(here)} {built}" for name, ckpt, here in found[:limit])
    return shown + (f"; and {len(found) - limit} more" if len(found) > limit else "")


def mismatched_sizes_message(cfg):
    """The one line for a checkpoint whose weights have other shapes than the model its config (and
    --config_overrides) builds, naming them as transformers' load report found them."""
    shown = mismatched_shapes(last_mismatched_keys()) or "see transformers' load report above"  # None: --verbose
    if cfg.eval_only:
        fix = "pass a model folder whose config.json belongs to its weights"
    else:
        fix = ("drop the --config_overrides that change these shapes, or " if cfg.config_overrides else "") + \
            "add --ignore_mismatched_sizes to start these weights anew"
    built = "its config and --config_overrides" if cfg.config_overrides else "its config"
    return f"the weights of '{cfg.model_name_or_path}' do not fit the model built from {built} ({shown}); {fix}."


# Trainer's patterns (transformers 5, Trainer.get_decay_parameter_names), matched in lower-cased full names
NO_DECAY_NAMES = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


def adamw(groups, cfg, accelerator):
    """Loop.build_optimizer: AdamW over the parameter groups that hold parameters, with the options' rate, betas and
    epsilon. Fused kernels on CUDA, except under fp16: there the GradScaler always calls a fused optimizer's step (the
    kernel skips an overflow itself), so accelerate could not tell a skipped step and the schedule would advance on
    it."""
    from .distributed import on_cuda

    fp16 = getattr(accelerator, "mixed_precision", None) == "fp16"
    fused = {"fused": True} if on_cuda(accelerator) and not fp16 else {}
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate,
                             betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon, **fused)


def param_groups(model, weight_decay, include_frozen=False):
    """[{"name": "decay", ...}, {"name": "no_decay", ...}]: the trainable parameters (and the frozen ones with
    `include_frozen`, for a variant that unfreezes them later: True, all of them, or a tuple of name fragments, those
    whose names hold one; AdamW skips a parameter without a gradient), with weight
    decay except for biases and norm weights (Trainer's rule, `get_decay_parameter_names`: by layer type and by
    name, so Llama's final `norm` and T5's `layer_norm`s, whose classes are not nn.LayerNorm, go undecayed)."""
    from transformers.pytorch_utils import ALL_LAYERNORM_LAYERS
    from transformers.trainer_pt_utils import get_parameter_names

    decay = set(get_parameter_names(model, ALL_LAYERNORM_LAYERS, NO_DECAY_NAMES))
    def kept(name, p):
        if p.requires_grad or include_frozen is True:
            return True
        return bool(include_frozen) and any(part in name for part in include_frozen)

    params = [(n, p) for n, p in model.named_parameters() if kept(n, p)]
    return [
        {"name": "decay", "params": [p for n, p in params if n in decay], "weight_decay": weight_decay},
        {"name": "no_decay", "params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
    ]


# ---------------------------------------------------------------- the model in the run: checks and names

def rng_kept(device):
    """A context that gives back the random state as it was (CPU, and `device`'s when a GPU): work inside it
    (an evaluation, a trial pass) draws dropout masks without moving the run's random numbers, so a run
    with it trains bit-identically to one without."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def used_outside_forward(model, tokenizer, autocast, loss_fn, batch=None):
    """Names of parameters the loss reaches but the model's own forward pass does not (a module of
    the model that compute_loss calls directly). DDP's find_unused_parameters marks them unused
    after forward, then fails when their gradient arrives."""
    try:
        return sorted(set(unused_parameters(model, tokenizer, autocast, batch=batch)) -
                      set(unused_parameters(model, tokenizer, autocast, loss_fn, batch=batch)))
    except Exception:  # a trial pass that fails says nothing here; find_unused_parameters said "on"
        return []


def check_vocabulary(cfg, model, max_token_id):
    """Refuse data whose token ids run past the model's embedding table (a --tokenizer_name that is
    not the model's): the first forward pass would fail with a bare IndexError."""
    try:
        rows = getattr(model.get_input_embeddings(), "num_embeddings", None)
    except (AttributeError, NotImplementedError):  # CANINE and some remote-code models have no such table
        rows = None
    if rows is not None and max_token_id is not None and max_token_id >= rows:
        shrunk = "vocab_size" if "vocab_size" in cfg.overrides_dict() else None
        if shrunk:
            raise UserError(f"the tokenizer gives token ids up to {max_token_id} but --config_overrides "
                            f"{shrunk}={cfg.overrides_dict()[shrunk]} leaves the embedding table {rows} rows; make it at "
                            f"least {max_token_id + 1}, or leave {shrunk} out.")
        raise UserError(f"the tokenizer gives token ids up to {max_token_id} but the model's embedding table has {rows} "
                        f"rows: tokenizer '{cfg.tokenizer_name or cfg.model_name_or_path}' does not belong to model "
                        f"'{cfg.model_name_or_path}'; use the model's own tokenizer (or drop --tokenizer_name).")


def check_outside_parameters(model, optimizer, num_processes):
    """Refuse an optimizer that updates parameters the model does not hold (a module built beside
    it): DDP would not average their gradients, and each process would train its own copy; on one
    process neither checkpoints nor best/ would hold them (a resume would silently differ)."""
    own = {id(p) for p in model.parameters()}
    outside = [p for group in optimizer.param_groups for p in group["params"] if id(p) not in own]
    if outside:
        why = (f"with {num_processes} processes their gradients would not be averaged and the processes would drift "
               f"apart" if num_processes > 1 else "they would train but be saved in neither the checkpoints nor "
               "best/, and a resume would start them again from their first values")
        raise UserError(f"the optimizer updates {len(outside)} parameter(s) that are not in the model (shapes "
                        f"{', '.join(str(list(p.shape)) for p in outside[:3])}): {why}; attach the "
                        f"module to the model in build_model() (model.my_module = ...), which wraps, synchronises "
                        f"and saves it with the model.")


def frozen_in_optimizer(model, optimizer):
    """The model's parameters the optimizer holds while they are frozen: to be unfrozen later."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return [p for p in model.parameters() if id(p) in held and not p.requires_grad]


@contextlib.contextmanager
def trainable(params):
    """Make `params` require grad inside the block (while DDP builds its reducer), then restore."""
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(False)


def uncompiled(model):
    """`model` without torch.compile's wrapper (the module it compiled), else `model` itself."""
    return getattr(model, "_orig_mod", model)


def bare_model(accelerator, model):
    """The model as it was built, its parameters under their own names: accelerate's wrappers off (DDP's, ...)
    and torch.compile's, which accelerate leaves on when it sits inside DDP."""
    return uncompiled(accelerator.unwrap_model(model, keep_torch_compile=False))


def renamed_weights(model):
    """A warning when the model lacks weights, by name, that its class's from_pretrained loads: a variant's
    build_model that wrapped a module (the classifier inside a head of its own: classifier.out.weight) would save
    a best/ that from_pretrained and pipeline() load with those weights new and random, silently (predict.py and
    --eval_only refuse it, only afterwards). Compared with the class built from the same config on the meta device
    (no memory); None when all are there, for a PEFT model (best/ is merged) or a class that cannot be built so."""
    model = uncompiled(model)
    if lora.is_peft(model):
        return None
    try:
        with torch.device("meta"):
            expected = type(model)(copy.deepcopy(model.config)).state_dict().keys()
    except Exception:
        return None
    missing = sorted(set(expected) - set(model.state_dict()))
    if not missing:
        return None
    return (f"build_model renamed or removed weights that {type(model).__name__}.from_pretrained loads "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''} are not in the model): best/ would load in "
            f"from_pretrained and pipeline() with them new and random; keep their names (replace a module's class or "
            f"forward instead of wrapping it), or load best/ with your own code.")


def describe_parameters(model):
    """'parameters: N trainable of M (x%)', and where the frozen weights are kept in another dtype than the
    trained ones (--torch_dtype with LoRA), the memory each takes."""
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    line = f"parameters: {trainable:,} trainable of {total:,} ({100 * trainable / max(total, 1):.2f}%)"
    frozen = {}  # dtype -> elements (a LoRA head's frozen original copy stays float32 beside a bf16 body)
    for p in params:
        if not p.requires_grad:
            frozen[p.dtype] = frozen.get(p.dtype, 0) + p.numel()
    if frozen and set(frozen) != {p.dtype for p in params if p.requires_grad}:
        size = lambda ps: _mib(sum(p.numel() * p.element_size() for p in ps))  # noqa: E731
        body = str(max(frozen, key=frozen.get)).replace("torch.", "")
        line += (f"; weights in memory: {size(p for p in params if not p.requires_grad)} frozen ({body}), "
                 f"{size(p for p in params if p.requires_grad)} trained")
    return line


def _mib(n):
    return f"{n / 2**30:,.2f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


# ---------------------------------------------------------------- DDP: parameters without a gradient

# Config fields of mixture-of-experts models: an expert that no token of a batch is routed to gets no
# gradient in that step, whichever batch a trial pass happens to see.
EXPERT_FIELDS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")


def unused_parameters(model, tokenizer, autocast=None, loss_fn=None, batch=None):
    """Names of trainable parameters that one training-mode forward pass does not reach.

    DDP waits for a gradient of every trainable parameter; one the loss never depends on (XLNet's
    mask embedding, ESM's contact head, LUKE's entity embeddings) makes the second step fail with
    "Expected to have finished reduction". The answer comes from the autograd graph of a forward
    pass on two short texts, walked back to its leaves: no backward, no gradients allocated, and
    the RNG is restored so the run's dropout masks do not move. `autocast`: the accelerator's
    autocast context, so the pass runs in the training precision (FlashAttention refuses fp32).
    `loss_fn(model, batch)`: the loss the run trains on (Loop.compute_loss: a research variant's
    extra module, a temperature say, is reached through it), walked instead of the logits.
    `batch`: two collated training examples, labels included (the run's own kind of labels: a
    multi-label variant's are not class ids); default: two made-up texts labelled 0. The pass leaves
    no trace on the model: transformers settles a config's problem_type at the first forward with
    labels, and that must be the first training step's.
    """
    model = uncompiled(model)  # probe the original, compile nothing
    device = next(model.parameters()).device
    if batch is None:
        texts = tokenizer(["a short trial text", "a second and slightly longer trial text"], padding=True,
                          truncation=True, max_length=32, return_tensors="pt")
        batch = dict(texts, labels=torch.zeros(2, dtype=torch.long))
    batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    configs = [m.config for m in model.modules() if hasattr(getattr(m, "config", None), "problem_type")]
    problem_types = [c.problem_type for c in configs]
    was_training = model.training
    model.train()
    try:
        with rng_kept(device), \
                (autocast or contextlib.nullcontext)():
            out = model(**inputs).logits if loss_fn is None else loss_fn(model, batch)
        reached, seen, stack = set(), set(), [out.grad_fn]
        while stack:
            fn = stack.pop()
            if fn is None or fn in seen:
                continue
            seen.add(fn)
            leaf = getattr(fn, "variable", None)  # AccumulateGrad: the node that writes a parameter's .grad
            if leaf is not None:
                reached.add(id(leaf))
            stack.extend(next_fn for next_fn, _ in fn.next_functions)
    finally:
        model.train(was_training)
        for c, kind in zip(configs, problem_types):
            c.problem_type = kind
    return [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in reached]


# Config fields of stochastic depth: a layer skipped in one step gets no gradient in that step.
LAYERDROP_FIELDS = ("layerdrop", "encoder_layerdrop", "decoder_layerdrop", "layer_drop")


def _configs(config):
    """The config and the configs inside it (a text_config, DBRX's ffn_config, ...)."""
    out, todo = [], [config]
    while todo:
        c = todo.pop()
        if c is None or any(c is seen for seen in out):
            continue
        out.append(c)
        todo.extend(v for v in vars(c).values() if hasattr(v, "to_dict") and hasattr(v, "__dict__"))
    return out


def find_unused_parameters(cfg, model, tokenizer, autocast=None, loss_fn=None, batch=None):
    """(on, reason) for DDP's find_unused_parameters: --ddp_find_unused_parameters, else experts or
    layer drop in the config (nested configs too), else parameters a trial pass does not reach. Off
    costs nothing; on walks the graph every step. A trial pass that fails says on (safe, slower),
    unless the model's own forward passes and `loss_fn` is what fails: that is a bug in the
    variant's compute_loss, raised as it is."""
    if cfg.ddp_find_unused_parameters is not None:
        return cfg.ddp_find_unused_parameters, "--ddp_find_unused_parameters"
    # Routed experts matter only when they train: LoRA on the attention of an MoE model leaves them
    # frozen (a shared expert sees every token), and then the trial pass decides, usually off. And only when each
    # expert is a module of its own (experts.3.w1): transformers 5 keeps Mixtral's, Qwen2/3-MoE's experts as one
    # tensor (experts.gate_up_proj), which some token always reaches; the trial pass decides those too (helper zoo2
    # F2: on, DDP walked the graph every step and warned on every rank that it found nothing unused).
    named = getattr(model, "named_parameters", None)
    experts_train = named is None or any(p.requires_grad and re.search(r"experts\.\d+\.", n.lower())
                                         and "shared_expert" not in n.lower() for n, p in named())
    for config in _configs(getattr(uncompiled(model), "config", None)):
        for field in EXPERT_FIELDS if experts_train else ():
            if isinstance(getattr(config, field, None), int) and getattr(config, field) > 1:
                return True, f"the model routes tokens to experts ({field}={getattr(config, field)})"
        for field in LAYERDROP_FIELDS:
            if isinstance(getattr(config, field, None), float) and getattr(config, field) > 0:
                return True, f"the model skips layers at random in training ({field}={getattr(config, field)})"
    try:
        unused = unused_parameters(model, tokenizer, autocast, loss_fn, batch)
    except Exception as e:  # a model the two trial texts do not suit: stay safe
        if loss_fn is not None and batch is not None:  # the run's own rows (made-up texts may lack a variant's keys)
            try:
                unused_parameters(model, tokenizer, autocast, None, batch)
            except Exception:
                pass
            else:
                raise  # the model runs; the loss does not: the first training step would fail the same way
        return True, f"the trial forward pass failed ({short(e)}), so every step checks"
    if unused:
        shown = ", ".join(unused[:3]) + (", ..." if len(unused) > 3 else "")
        return True, f"{len(unused)} parameter(s) get no gradient from the classification loss ({shown})"
    return False, ""


def fsdp_wrap_classes(model):
    """Class names FSDP2 should shard one by one: the model's `_no_split_modules` (its blocks),
    less any class that holds the input embeddings (BERT lists `BertEmbeddings`).

    accelerate (1.15) shards those blocks, then shards the input embedding layer on its own; when
    that layer already sits inside a sharded block (BERT, RoBERTa, MiniLM), torch refuses
    ("Invariant encountered: value was None"). Leaving the embeddings' parent out lets accelerate
    give them their own unit, as it does for Llama. Returns None when nothing needs changing.
    """
    names = list(getattr(model, "_no_split_modules", None) or [])
    if not names:
        return None
    inner = getattr(model, "get_input_embeddings", lambda: None)()
    holders = {type(m).__name__ for m in model.modules()
               if inner is not None and m is not inner and any(sub is inner for sub in m.modules())}
    present = {type(m).__name__ for m in model.modules()}
    # Some models list classes they do not contain (ESM lists its folding blocks): accelerate stops
    # with "Could not find the transformer layer class" for those.
    keep = [n for n in names if n not in holders and n in present]
    return keep if keep != names else None


def shared_input_embeddings(model):
    """Names of the other modules that use the input embedding weight itself (an encoder-decoder's
    `shared` table, used by encoder and decoder). FSDP2 shards the embedding layer as a unit of its
    own and cannot then shard the same parameter elsewhere; empty when the weight has one user."""
    inner = getattr(model, "get_input_embeddings", lambda: None)()
    weight = getattr(inner, "weight", None)
    if weight is None:
        return []
    owners = {id(inner)}
    outer = getattr(model, "get_output_embeddings", lambda: None)()
    if outer is not None:
        owners.add(id(outer))
    return [name for name, m in model.named_modules()
            if id(m) not in owners and any(p is weight for p in m.parameters(recurse=False))]

