"""What a resume must agree with: a checkpoint's options, classes and processes (`config_differences`), the prepared
data (`data_signature`, `data_differences`) and the model config (`model_config_record`), and the rules for options
that may change (`RESUME_MAY_CHANGE`) or name the same files by another path (`same_files`). Pure functions of the
checkpoint's record and this run's; the Checkpointer reads the record, calls them, and refuses or warns.
"""

import dataclasses
import glob
import hashlib
import json
import os

import numpy as np

from .errors import listed
from .splits import WEIGHT, column, column_values, extra_sets

# Options that may change on resume: they do not change the trajectory (weights, data order, the
# schedule, evaluation or which model is best). Every other option, including options added
# later, is compared with the checkpoint's config and a difference is refused.
RESUME_MAY_CHANGE = ("output_dir", "overwrite_output_dir", "resume_from_checkpoint", "logging_steps",
                     "logging_first_step", "report_to", "checkpointing_steps", "save_total_limit", "push_to_hub",
                     "hub_model_id", "debug", "dataloader_num_workers", "preprocessing_num_workers",
                     "per_device_eval_batch_size", "verbose",
                     "ddp_find_unused_parameters", "ddp_timeout", "eval_on_start",
                     # an extra evaluation set may come or go (a set kept under its name must hold the same
                     # examples: check_resume_data)
                     "extra_eval_files", "extra_eval_splits", "run_name",
                     # how the code runs, not what it trains: compilation (accelerate's dynamo becomes
                     # --torch_compile since 2026-12-03), deterministic kernels, attention kernels;
                     # --trust_remote_code: config_differences
                     "torch_compile", "torch_compile_mode", "full_determinism", "sdpa_backends")

BATCH_KEYS = ("per_device_train_batch_size", "gradient_accumulation_steps")

# Options naming a local file or folder (or a Hub name). A resume or a re-run: the same files named by another path
# (absolute, or relative from another folder: a job script that requeues with `cd` elsewhere) are the same run; the
# data signature still checks the rows, and the weights come from the checkpoint; --extra_eval_files may change
# (check_resume_data). best/training_args.json: each is named by its last part (published_args).
PATH_OPTIONS = ("model_name_or_path", "tokenizer_name", "dataset_name", "train_file", "validation_file", "test_file",
                "output_dir")

# model config fields a run sets as it goes (save_pretrained the architectures, a first forward the problem type
# from the labels, gradient checkpointing use_cache) or that name the files, not the model
VOLATILE_CONFIG = ("_name_or_path", "transformers_version", "architectures", "problem_type", "use_cache")


def jsonable(v):
    """A config value as it reads back from loop_state.json (tuples become lists, and so on)."""
    return json.loads(json.dumps(v, default=str))


def _shown(value):
    """An option's value for a message: None (an option left out) as 'not given'."""
    return "not given" if value is None else repr(value)


def _data_seed(cfg_dict):
    """A recorded config's seed of the data's draws (TrainConfig.data_seed_or_seed)."""
    return cfg_dict.get("seed") if cfg_dict.get("data_seed") is None else cfg_dict["data_seed"]


def batch_of(cfg_dict):
    """(rows per device, accumulation) of a recorded config, or None where it lacks them."""
    try:
        return tuple(int(cfg_dict[k]) for k in BATCH_KEYS)
    except (KeyError, TypeError, ValueError):
        return None


def found_batch_size(old_cfg, new_cfg):
    """(rows, accumulation) a checkpoint's --auto_find_batch_size run trained with, when this run asks the same
    search of the same examples per step (rows x accumulation); else None."""
    if not (old_cfg.get("auto_find_batch_size") and new_cfg.get("auto_find_batch_size")):
        return None
    old, new = batch_of(old_cfg), batch_of(new_cfg)
    return old if old and new and old[0] * old[1] == new[0] * new[1] else None


def option_defaults():
    """TrainConfig's options and their defaults: what a checkpoint of a loop before an option had."""
    from .config import TrainConfig

    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def local_path(value, cwd):
    """The file or folder (or the glob pattern) a path option names, resolved against the folder `cwd` it was given
    in, links included; None when nothing there has that name (a Hub name, a file gone)."""
    if not isinstance(value, str) or not value or not cwd:
        return None
    path = os.path.join(cwd, value)  # (an absolute value is itself)
    if not (os.path.exists(path) or glob.has_magic(path) and glob.glob(path, recursive=True)):
        return None
    return os.path.realpath(path)


def path_options(cfg):
    """The options of config `cfg` that name a local file or folder: PATH_OPTIONS and those its class adds to
    TrainConfig.PATHS (a variant's own)."""
    return tuple(dict.fromkeys(PATH_OPTIONS + type(cfg).PATHS))


def same_files(key, old, new, old_cwd, paths=PATH_OPTIONS):
    """Whether path option `key` (one of `paths`)'s value `new` names the local file or folder its value `old`
    named, given in `old_cwd` (that run's working folder; a checkpoint or finish record older than 2026-12-04 has
    none: this one's is the best guess). Not a Hub name (compared as text), nor another file with the same
    content (a changed option, refused as any other)."""
    if key not in paths:
        return False
    then = local_path(old, old_cwd or os.getcwd())
    return then is not None and then == local_path(new, os.getcwd())


GONE = "(gone)"  # config_differences' word for an option of the checkpoint this loop does not have


def config_differences(saved, new_cfg, classes, num_processes, paths=PATH_OPTIONS, may_change=()):
    """(differences, renamed) between a checkpoint's record `saved` (its loop_state.json) and this run: its options
    (`new_cfg`, TrainConfig.to_dict()), loop and config classes and number of processes. Each difference is a phrase
    for the refusal ("--learning_rate 0.001 → 0.002"); `renamed`, the path options (`paths`) that name the
    checkpoint's files by another path (the same run). Options that may change (RESUME_MAY_CHANGE and a variant's
    `may_change`), or that did nothing in either run, are not compared."""
    may_change = set(RESUME_MAY_CHANGE) | set(may_change)
    old_cfg = saved.get("config", {})
    diff, renamed = [], []
    old_classes = saved.get("classes")  # absent in checkpoints of earlier versions
    if old_classes and old_classes != classes:
        diff += [f"{kind} class {old_classes.get(kind)} → {now}" for kind, now in classes.items()
                 if old_classes.get(kind) != now]
    base = option_defaults()
    found = found_batch_size(old_cfg, new_cfg)  # --auto_find_batch_size: the checkpoint's batch is the run's
    skip = set(BATCH_KEYS) if found else set()
    if new_cfg.get("auto_find_batch_size") and not old_cfg.get("auto_find_batch_size") \
            and batch_of(old_cfg) is not None and batch_of(old_cfg) == batch_of(new_cfg):
        skip.add("auto_find_batch_size")  # added on resume: the training batch stays, evaluation's is searched
    if old_cfg.get("auto_find_batch_size") and not found:
        old_batch, new_batch = batch_of(old_cfg), batch_of(new_cfg)
        if old_batch and new_batch == old_batch:
            skip.add("auto_find_batch_size")  # the batch it found, given as flags: a resume never searches
        elif old_batch and new_cfg.get("auto_find_batch_size"):
            skip.update(BATCH_KEYS)
            diff.append(f"examples per step and process {old_batch[0] * old_batch[1]} then ({old_batch[0]} x "
                        f"{old_batch[1]}, found by --auto_find_batch_size), {new_batch[0] * new_batch[1]} now")
    # --data_seed equal to --seed (or left out) draws the same data: one trajectory, however it is spelled
    if _data_seed(old_cfg) == _data_seed(new_cfg):
        skip.add("data_seed")
    # options that did nothing in either run (a loop before 2026-12-03 took them silently; now refused): a
    # checkpoint made with them resumes without them
    if not old_cfg.get("lora_r") and not new_cfg.get("lora_r"):
        skip.update(("lora_alpha", "lora_dropout", "lora_target_modules"))
    elif old_cfg.get("lora_r") == new_cfg.get("lora_r"):  # the same adapters however spelled (audit64 p7)
        from .lora import alpha, target_names

        def targets(c):  # the set of names, in any order; left out is all-linear
            return frozenset(target_names(c.get("lora_target_modules"))) or frozenset(["all-linear"])
        r = new_cfg["lora_r"]
        if alpha(r, old_cfg.get("lora_alpha")) == alpha(r, new_cfg.get("lora_alpha")):
            skip.add("lora_alpha")
        if targets(old_cfg) == targets(new_cfg):
            skip.add("lora_target_modules")
    if old_cfg.get("train_file") and new_cfg.get("train_file"):
        skip.add("dataset_config_name")
    # a model without code of its own (no auto_map in its config): the flag then runs a metric's code alone (needed
    # for a local or user/ metric since 2026-12-03); with one, it picks the folder's classes or the built-in ones
    if "auto_map" not in (saved.get("model_config") or {"auto_map": None}):
        skip.add("trust_remote_code")
    for key, new in new_cfg.items():
        if key in may_change or key in skip:
            continue
        if key == "truncation_side" and "truncation_side" in (saved.get("data") or {}):
            continue  # check_resume_data compares the side the tokenizer cut (unset: the tokenizer's own)
        if key == "warmup_steps" and not new and not old_cfg.get(key):
            continue  # 0 and none are one setting (the loop of 2026-12-01, ccd515b to e420b47, recorded a given 0)
        if key == "attn_implementation" and new is None and old_cfg.get(key) == "sdpa":
            # loop before 2026-11-29 asked for SDPA by default, which that run's model took: left out,
            # transformers picks SDPA where a model has it (audit30: refused over a flag nobody gave)
            continue
        if key not in old_cfg:
            # an option newer than the checkpoint's loop version: that run had its default
            if key in base and jsonable(new) == jsonable(base[key]):
                continue
            diff.append(f"--{key} (new) {new!r}")  # a variant's option the checkpoint's run did not have
            continue
        old = old_cfg[key]
        if jsonable(old) != jsonable(new):
            if same_files(key, old, new, saved.get("cwd"), paths):  # the same files by another path
                renamed.append(f"--{key}")
                continue
            diff.append(f"--{key} {_shown(old)} → {_shown(new)}")
    diff += [f"--{key} {old_cfg[key]!r} → {GONE}" for key in old_cfg if key not in new_cfg and key not in base
             and key not in may_change]
    if saved.get("num_processes") not in (None, num_processes):
        diff.append(f"number of processes ({saved['num_processes']} then, {num_processes} now)")
    return diff, renamed


def model_config_record(model):
    """The model config's fields as JSON reads them back (a resume compares them), without where it was read
    from (a model folder moved is the same model) and the library version that wrote it."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return {}
    fields = {k: v for k, v in config.to_dict().items() if k not in VOLATILE_CONFIG}
    return json.loads(json.dumps(fields, default=str))


def data_signature(data, tokenizer):
    """What a resume must find again (Checkpointer.data_signature, which computes it once per Data): the example
    counts, the label names, hashes of the training examples' token lengths (the batch order is a function of them,
    the seed and the epoch) and tokens, of each split's encoded labels and of the scored splits' examples as sets,
    the side truncation cut (`tokenizer`'s) and --weight_column's values. A pure function of the prepared data.
    With --eval_only (no training split: Checkpointer.check_same_data) the scored splits' keys alone."""
    signature = {"eval_examples": len(data.eval), "labels": list(data.label_names),
                 "eval_labels_sha1": labels_sha1(data.eval),
                 # best/'s test_* scores are of one test split: a resume on another would mix two
                 "test_examples": len(data.test) if data.test is not None else 0,
                 "test_labels_sha1": labels_sha1(data.test) if data.test is not None else None}
    if data.train is not None:
        lengths = hashlib.sha1(np.ascontiguousarray(data.train_lengths, dtype=np.int32).tobytes()).hexdigest()[:16]
        signature.update(train_examples=len(data.train), train_lengths_sha1=lengths,
                         train_labels_sha1=labels_sha1(data.train),
                         # the tokens themselves: the same lengths from other tokens (another tokenizer, the other
                         # --truncation_side, edited words) would train on other inputs
                         train_tokens_sha1=tokens_sha1(data.train))
    # the scored splits' examples as sets (texts and labels): an edited evaluation file would mix two sets'
    # scores in metrics.jsonl and pick best/ on another
    signature["eval_examples_sha1"] = examples_sha1(data.eval)
    signature["test_examples_sha1"] = examples_sha1(data.test) if data.test is not None else None
    # an extra evaluation set's scores are logged under its name: one name, one set of examples (in any
    # order: its rows sorted by length differently are the same set)
    signature["extra_eval"] = {name: [len(ds), examples_sha1(ds)]
                               for name, ds in extra_sets(data).items()}
    # the end cut, as cut: --truncation_side, or the tokenizer's own when not given (the same for "right")
    signature["truncation_side"] = getattr(tokenizer, "truncation_side", None)
    # --weight_column's values: other weights train otherwise
    if data.train is not None and WEIGHT in data.train.column_names:
        weights = np.ascontiguousarray(column(data.train, WEIGHT), dtype=np.float32)
        signature["train_weights_sha1"] = hashlib.sha1(weights.tobytes()).hexdigest()[:16]
    return signature


# how a line names each key of data_signature
DATA_WORDS = {"train_examples": "training examples", "eval_examples": "evaluation examples", "labels": "labels",
              "train_lengths_sha1": "training texts (token lengths)",
              "train_tokens_sha1": "the training texts' tokens (other texts, tokenizer or --truncation_side)",
              "truncation_side": "--truncation_side (as the tokenizer cut)",
              "train_labels_sha1": "the training examples' labels",
              "eval_labels_sha1": "the evaluation examples' labels",
              "test_examples": "test examples", "test_labels_sha1": "the test examples' labels",
              "eval_examples_sha1": "the evaluation examples (texts or labels)",
              "test_examples_sha1": "the test examples (texts or labels)",
              "train_weights_sha1": "the training examples' weights (--weight_column)"}


def what_differs(first, other, keys, index):
    """The differing `keys` of two processes' data signatures (process 0's `first`, process `index`'s `other`) in
    words, for Checkpointer.check_same_data's line: four at the most, a scored split whose examples are the same set
    in another order said so (each process would score its share of its own order), an extra set by its name."""
    shown = []
    for k in keys:
        split = k.split("_")[0]
        if k == "extra_eval":
            names = sorted(n for n in set(first[k]) | set(other[k]) if first[k].get(n) != other[k].get(n))
            shown.append(f"the evaluation set{'s' if len(names) > 1 else ''} {listed([repr(n) for n in names], 4)} "
                         f"{'differ' if len(names) > 1 else 'differs'}")
        elif k.endswith("_labels_sha1") and split in ("eval", "test") and f"{split}_examples_sha1" in first:
            if f"{split}_examples_sha1" not in keys:  # the same texts and labels as a set: another order
                shown.append(f"the order of the {'evaluation' if split == 'eval' else 'test'} examples differs")
        elif k.endswith("_sha1"):
            shown.append(f"{DATA_WORDS.get(k, k)} differ")
        else:
            shown.append(f"{DATA_WORDS.get(k, k)}: {first.get(k)} on process 0, {other.get(k)} on process {index}")
    return "; ".join(shown[:4])


def data_differences(saved, now):
    """The differences between a checkpoint's data signature (`saved`) and this run's (`now`, data_signature), each a
    phrase for the refusal; [] when the data is the same. A key the checkpoint lacks (written before it was recorded)
    is not compared; a scored split's examples are compared as a set (a shuffled evaluation file resumes)."""
    # a key the checkpoint lacks (written before it was recorded) is not compared
    # (nor a labels hash it recorded as None: a variant's ragged labels, which numpy 2 made no array of, went unhashed)
    changed = [k for k in DATA_WORDS if k in saved and saved[k] != now[k]
               and not (k.endswith("_labels_sha1") and saved[k] is None)]
    retokenized = bool({"truncation_side", "train_tokens_sha1"} & set(changed))  # other tokens everywhere: said once
    for split in ("eval", "test"):  # one line per split: its count, else its examples as a set (texts and
        examples = f"{split}_examples_sha1"  # labels; scores do not depend on the order, so a shuffled file
        if examples in saved:  # resumes: the labels' hash in order is for checkpoints written before this one)
            drop = {f"{split}_labels_sha1"} | ({examples} if retokenized or f"{split}_examples" in changed else set())
            changed = [k for k in changed if k not in drop]
    diff = [f"{DATA_WORDS[k]}: {saved[k]} then, {now[k]} now" if not k.endswith("_sha1") else f"{DATA_WORDS[k]} changed"
            for k in changed]
    for name, (n, labels) in now["extra_eval"].items():  # a set added or dropped on resume is no change
        then = (saved.get("extra_eval") or {}).get(name)
        if then and then != [n, labels] and not (retokenized and then[0] == n):
            diff.append(f"evaluation set '{name}': " + (f"{then[0]} examples then, {n} now" if then[0] != n else
                                                        "other texts or labels"))
    return diff


def tokens_sha1(ds, rows=65_536):
    """A short sha1 of a prepared split's input ids, in the split's order, read `rows` rows at a time (the
    memory stays bounded for any size: 7 million tokens take about 0.2 s on 2 CPU cores); None when the
    split has no such column (a variant's own data)."""
    try:
        if "input_ids" not in ds.column_names:
            return None
        arrow = ds.with_format("arrow")
    except Exception:  # a variant's dataset that is no datasets.Dataset: nothing to compare
        return None
    h = hashlib.sha1()
    for start in range(0, len(ds), rows):
        ids = arrow[start:start + rows]["input_ids"].combine_chunks().flatten()
        h.update(np.ascontiguousarray(ids.to_numpy(zero_copy_only=False), dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def examples_sha1(ds):
    """A short sha1 of a prepared split's examples (each one's tokens and label) as a set: the same
    examples in another order give the same hash; another text, label or count another. None for a
    split that is no datasets.Dataset of input_ids and labels (a variant's own)."""
    try:
        if not {"input_ids", "labels"} <= set(ds.column_names):
            return None
        table = ds.with_format("arrow", columns=["input_ids", "labels"])[:]
        ids = table["input_ids"].combine_chunks()
        at = ids.offsets.to_numpy()
        tokens = np.ascontiguousarray(ids.flatten().to_numpy(zero_copy_only=False), dtype=np.int64)
        labels = table["labels"].to_numpy(zero_copy_only=False)  # (multi-label: an array per row)
        digests = sorted(hashlib.sha1(tokens[at[i]:at[i + 1]].tobytes() + np.asarray(labels[i]).tobytes()).digest()
                         for i in range(len(labels)))
    except Exception:  # noqa: BLE001
        return None
    return hashlib.sha1(b"".join(digests)).hexdigest()[:16]


def labels_sha1(ds):
    """A short sha1 of a prepared split's encoded "labels" column (class ids, multi-hot rows or
    regression targets), in the split's order; None when the split has no such column (a variant's
    own data). Arrow to numpy, one pass: milliseconds for 25k rows."""
    try:
        if "labels" not in ds.column_names:
            return None
        try:
            labels = np.asarray(column(ds, "labels"))
        except ValueError:  # ragged rows (a variant's variable-length lists): numpy makes no array of them
            labels = np.fromiter(column_values(ds, "labels"), dtype=object)  # one row each, as older datasets gave
    except Exception:  # a variant's dataset that is no datasets.Dataset: nothing to compare
        return None
    h = hashlib.sha1(f"{labels.dtype.str}{labels.shape}".encode())
    if labels.dtype == object:  # ragged rows (variable-length lists): their text, in order
        h.update(json.dumps([np.asarray(v).tolist() for v in labels]).encode())
    else:
        h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()[:16]
