"""What a trained model's run recorded, read back when --eval_only scores it again.

A loop run's best/ holds best_metrics.json (Checkpointer.save_best): the columns the run read, how it read label
ids, and how it drew its evaluation rows (the seed, a carve's percentage, the --max_*_samples, a hash of the
examples). Scoring that model without them reads other columns, other ids or other rows (for a carve with another
seed, mostly rows the model trained on), and the score looks right while describing something else. So, for a
best/ of a loop run, what the user did not give is taken from the record, and what contradicts it is refused;
a model from elsewhere, without the record, is scored as the options say. Each check returns the line saying
what it took (or None); the Loop prints it.
"""

import json
import os
import warnings

from . import models
from .checkpoint_folders import TRAINING_ARGS
from .errors import UserError, is_main_rank
from .resume_checks import examples_sha1
from .storage import read_best_record


def model_file(cfg, filename):
    """The local path of `filename` among --model_name_or_path's files: in its folder, or for a Hub id (a loop run's
    best/ pushed with --push_to_hub uploads these records with it) in the hub cache, else fetched (after hub.check:
    offline, or with the Hub unreachable, nothing is tried); None where it has none."""
    name = cfg.model_name_or_path
    if os.path.isdir(name):
        return os.path.join(name, filename)
    from huggingface_hub import constants

    key = (constants.HF_HUB_CACHE, name, filename)
    if key not in _hub_files:  # asked by several checks: one lookup a run (a Hub answering 503 costs ~23 s of retries)
        _hub_files[key] = _hub_file(name, filename)
    return _hub_files[key]


_hub_files = {}  # model_file's answers for Hub ids: {(hub cache, name, filename): local path or None}


def _hub_file(name, filename):
    try:
        from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

        found = try_to_load_from_cache(name, filename)
        if isinstance(found, str):
            return found
        if found is not None or constants.HF_HUB_OFFLINE:  # known to be absent (a fetch found none), or offline
            return None
        return hf_hub_download(name, filename)
    except Exception:  # not on the Hub, or not a file of this repository
        return None


def run_record(cfg):
    """best_metrics.json of --model_name_or_path (a loop run's best/, a folder or a Hub id) as a dict, else None."""
    path = model_file(cfg, "best_metrics.json")
    return read_best_record(os.path.dirname(path)) if path else None


def run_args(cfg):
    """training_args.json of --model_name_or_path (a loop run's best/: its options, data files' sha256) as a dict,
    or None where there is none, or it cannot be read."""
    path = model_file(cfg, TRAINING_ARGS)
    try:
        with open(path, encoding="utf-8") as f:
            args = json.load(f)
    except (OSError, ValueError, TypeError):  # (TypeError: no path)
        return None
    return args if isinstance(args, dict) else None


def trained_dtype(cfg, accelerator):
    """--eval_only on the best/ of a run that kept the model body in bfloat16 (--lora_r --torch_dtype bfloat16):
    best/ holds the merged weights in it, and pipeline() and predict.py load them so. Unless --torch_dtype is given,
    they are scored in it too (float32 would upcast them: a label near the boundary may differ from what the served
    model says, audit52). float16 on a GPU alike; not under accelerate's mixed precision of the other half dtype
    (models.check_dtype refuses that pairing): float32 then, as before. Returns the line saying so, or None."""
    if cfg.was_given("torch_dtype"):
        return None
    try:
        dtype = run_args(cfg)["options"]["torch_dtype"]
    except (KeyError, TypeError):
        return None  # a model from elsewhere, or a record without it: as the options say
    usable = {"bfloat16": True, "float16": accelerator.device.type == "cuda"}
    if not usable.get(dtype) or models.other_half_autocast(dtype, accelerator):
        return None
    cfg.torch_dtype = dtype
    return (f"--torch_dtype {dtype} as the model was trained (its body kept in {dtype}, from its training_args.json: "
            f"pipeline() loads it so; pass --torch_dtype float32 to score it in float32)")


def check_model(cfg, config, say):
    """--eval_only, before the data work: the model is a trained classifier (not a base model whose head would be
    new), a regression model is scored as one (models.check_trained_model), and the columns and evaluation rows
    its run recorded are taken where no option says otherwise; `say` gets the line naming each thing taken."""
    models.check_trained_model(cfg, config)
    # the columns the run recorded, unless given; a sentence-pair model scored on single texts is refused
    adopted = check_trained_columns(cfg)
    if adopted:
        say(adopted)
    drawn = check_trained_split(cfg)  # a carved split: the run's own, not rows the model trained on
    if drawn:
        say(drawn)


def data_must_match(cfg, config):
    """data.prepare's keyword arguments for --eval_only: the model's classes (its id2label) and what it was
    trained for, which the data must match, and how its run read label ids (trained_label_reading)."""
    return dict(model_labels=models.config_labels(config), model_problem=models.trained_problem(config),
                model_reading=trained_label_reading(cfg))


def check_trained_columns(cfg):
    """--eval_only on a loop run's best/: its best_metrics.json records the columns a run read when they
    were not the default `text` and `label` (and a sentence-pair run's two). Given no column option, they are
    taken from there (as predict.py does), and the line saying so is returned; scoring a pair model on single
    texts (or a single-text model on pairs) is refused rather than silently wrong. A record without
    text_pair_column (loop before 2026-11-30 wrote it only for pairs) leaves a given --text_pair_column to the
    user; one without label_column (before 2026-12-04) reads `label` unless given. --weight_column is not taken:
    evaluation never reads weights (its loss is unweighted), so data without that column scores as well."""
    record = run_record(cfg)
    if record is None:
        return None
    pair, text, label = record.get("text_pair_column"), record.get("text_column"), record.get("label_column")
    adopted = []
    if text and text != cfg.text_column and not cfg.was_given("text_column"):
        cfg.text_column = text
        adopted.append(f"--text_column {text}")
    if pair and cfg.text_pair_column is None and not cfg.was_given("text_pair_column") and pair != cfg.text_column:
        cfg.text_pair_column = pair
        adopted.append(f"--text_pair_column {pair}")
    if (label and label != cfg.label_column and not cfg.was_given("label_column")
            and label not in (cfg.text_column, cfg.text_pair_column)):  # (a text column given by that name: read)
        cfg.label_column = label
        adopted.append(f"--label_column {label}")
    said = (f"columns as the model was trained: {' '.join(adopted)} (from its best_metrics.json; pass "
            f"{'it' if len(adopted) == 1 else 'them'} to read others)") if adopted else None
    if pair and not cfg.text_pair_column:
        raise UserError(f"'{cfg.model_name_or_path}' was trained on text pairs (--text_column {text} "
                        f"--text_pair_column {pair}); pass --text_column and --text_pair_column with the columns of "
                        f"your data that hold the two texts.")
    if pair and (cfg.text_column, cfg.text_pair_column) == (pair, text):
        raise UserError(f"'{cfg.model_name_or_path}' was trained with --text_column {text} --text_pair_column {pair}, "
                        f"and these are given the other way round; swap them back.")
    if cfg.text_pair_column and not pair and "text_pair_column" in record:  # (absent: an older record, unknown)
        raise UserError(f"'{cfg.model_name_or_path}' was trained on single texts (its best_metrics.json names no "
                        f"--text_pair_column); drop --text_pair_column {cfg.text_pair_column}.")
    return said


def trained_label_reading(cfg):
    """--eval_only on a loop run's best/: how its training read the labels ({"label_ids": "texts"} or {"label_ids":
    "positions", "label_names": [...]}, with "class_names" where they were a ClassLabel; labels.label_reading), or
    None where best_metrics.json does not say (a loop before 2026-12-04, a model from elsewhere)."""
    record = run_record(cfg)
    read = (record or {}).get("label_ids")
    if read == "texts":
        return {"label_ids": "texts"}
    names, classes = (record or {}).get("label_names"), (record or {}).get("class_names")
    if read == "positions" and isinstance(names, list) and all(isinstance(n, str) for n in names):
        same = isinstance(classes, list) and len(classes) == len(names) and all(isinstance(n, str) for n in classes)
        return {"label_ids": "positions", "label_names": names, **({"class_names": classes} if same else {})}
    return None


def check_trained_split(cfg):
    """--eval_only on a loop run's best/ that carved its evaluation split from the training data
    (--validation_split_percentage): carve the same one. Its best_metrics.json records how the run drew its rows
    (Checkpointer.split_record); a carve with another seed or percentage is mostly rows the model trained on, and
    scored them without a word (audit43: accuracy 0.45 -> 0.82 on random labels). So, when this run carves
    (training data, no evaluation data), --validation_split_percentage, the seed and --max_eval_samples default to
    the recorded ones, and another seed or percentage given is refused. Wherever the seed draws this run's rows
    (a carve, a --max_*_samples subset) and neither --seed nor --data_seed is given, the recorded seed is used:
    --max_test_samples 1000 then scores the 1,000 test rows the run did. Given the very --validation_file
    (--test_file) the run scored a --max_eval_samples (--max_test_samples) subset of (the same bytes: its
    training_args.json's sha256), that subset is drawn too. Returns the line saying what was taken,
    or None. A best/ written before the record (2026-12-04) changes nothing: carving without a seed given is noted."""
    record = run_record(cfg)
    if record is None:
        return None
    name = cfg.model_name_or_path
    carves = bool(cfg.train_file or cfg.dataset_name) and not (cfg.validation_file or cfg.eval_split)
    seed_given = "--data_seed" if cfg.was_given("data_seed") else "--seed" if cfg.was_given("seed") else None
    split = record.get("split")
    if not isinstance(split, dict):  # an older loop's best/
        if carves and cfg.validation_split_percentage is not None and not seed_given:
            return (f"'{name}' does not record the seed its evaluation split was carved with (a loop before "
                    f"2026-12-04): carving with --seed {cfg.seed}; pass the training run's --seed (or --data_seed) to "
                    f"score its own split, else the rows are mostly ones it trained on")
        return None
    seed, pct = split.get("seed"), split.get("validation_split_percentage")
    adopted = []
    if carves and pct is not None:
        if cfg.validation_split_percentage is None:
            cfg.validation_split_percentage = pct
            adopted.append(f"--validation_split_percentage {pct:g}")
        elif cfg.validation_split_percentage != pct:
            raise UserError(f"'{name}' was evaluated on {pct:g}% carved from its training data (its "
                            f"best_metrics.json), and --validation_split_percentage "
                            f"{cfg.validation_split_percentage:g} carves another split, mostly of rows it trained on; "
                            f"drop --validation_split_percentage (the run's {pct:g} is then used).")
        if seed_given and seed is not None and cfg.data_seed_or_seed != seed:
            raise UserError(f"'{name}' was evaluated on a split carved with seed {seed} (its best_metrics.json), and "
                            f"{seed_given} {cfg.data_seed_or_seed} carves another one, mostly of rows it trained on; "
                            f"drop {seed_given} (the run's seed is then used) or pass --data_seed {seed}.")
        if split.get("max_eval_samples") is not None and not cfg.was_given("max_eval_samples"):
            cfg.max_eval_samples = split["max_eval_samples"]
            adopted.append(f"--max_eval_samples {cfg.max_eval_samples}")
    elif carves and cfg.validation_split_percentage is not None and is_main_rank():
        warnings.warn(f"'{name}' was evaluated on evaluation data of its own, not carved from its training data: "
                      f"a split carved from the training file it trained on (--validation_split_percentage "
                      f"{cfg.validation_split_percentage:g}) is rows it has seen, and scores too well.", stacklevel=2)
    for flag, option in (("validation_file", "max_eval_samples"), ("test_file", "max_test_samples")):
        # the run's own evaluation (test) file, of which it scored a subset: that subset (the whole file scored
        # 0.526 where the run recorded 0.53 for its 200 rows, without a word)
        n = split.get(option)
        if n is not None and not cfg.was_given(option) and getattr(cfg, flag) and same_files_as_run(cfg, flag):
            setattr(cfg, option, n)
            adopted.append(f"--{option} {n}")
    drawn = (carves and cfg.validation_split_percentage is not None) or cfg.max_eval_samples or cfg.max_test_samples
    if drawn and seed is not None and not seed_given and cfg.data_seed_or_seed != seed:
        option = "data_seed" if split.get("seed_option") == "data_seed" else "seed"
        setattr(cfg, option, seed)
        adopted.append(f"--{option} {seed}")
    if not adopted:
        return None
    return (f"evaluation rows drawn as the run drew them: {' '.join(adopted)} (from its best_metrics.json; pass "
            f"{'it' if len(adopted) == 1 else 'them'} to draw others)")


def same_files_as_run(cfg, flag):
    """Whether --`flag` (validation_file, test_file) names files of the same bytes as the run of best/ read for it
    (its training_args.json's sha256 of each); False where either is unknown."""
    from .config import data_files
    from .storage import file_digest

    try:
        then = sorted(entry["sha256"] for entry in run_args(cfg)["data_files"][flag].values())
        now = sorted(file_digest(name) for name in data_files(getattr(cfg, flag), f"--{flag}"))  # (never empty)
    except (OSError, KeyError, TypeError, AttributeError, UserError):
        return False
    return now == then


def check_scored_split(cfg, data):
    """After --eval_only's data step: when it carved the split the run was evaluated on (check_trained_split: the
    same percentage, seed and --max_eval_samples), its examples must be those best_metrics.json records (a hash of
    each example's tokens and label, as a set). A warning when they are not (other training data): the scores
    then are not the run's. None when they are, or when nothing is to compare: a --max_length, --truncation_side or
    --tokenizer_name given makes other tokens of the same rows."""
    record = run_record(cfg)
    split = (record or {}).get("split")
    if not isinstance(split, dict) or not getattr(data, "carved", False) or not split.get("eval_examples_sha1"):
        return None
    if any(cfg.was_given(k) for k in ("max_length", "truncation_side", "tokenizer_name")):
        return None
    if (split.get("validation_split_percentage"), split.get("seed"), split.get("max_eval_samples")) != \
            (cfg.validation_split_percentage, cfg.data_seed_or_seed, cfg.max_eval_samples):
        return None
    now = examples_sha1(data.eval)
    if now is None or now == split["eval_examples_sha1"]:
        return None
    count = f"{split.get('eval_examples')} then, {len(data.eval)} now" if split.get("eval_examples") != len(data.eval) \
        else f"{len(data.eval)} examples, other texts or labels"
    return (f"the evaluation split carved here is not the one '{cfg.model_name_or_path}' was evaluated on ({count}; "
            f"its best_metrics.json), so these scores are not comparable with the run's; carve from the run's own "
            f"training data to score its split.")
