"""Data: load (Hub or local files) -> check -> labels to ids -> tokenize -> batch.

Owns: reading the Hub dataset or local files, column and label checks, labels to ids, seeded
subsets, tokenization (cached), the length-grouped `EpochBatchSampler` and the DataLoaders with
`DataCollatorWithPadding`. Does not own: the tokenizer or the max-length rule (`models.py`),
moving batches to devices (`accelerator.prepare` in the loop), nor naming what is wrong in a file
that cannot be read (`file_checks.py`).

Every check here runs before any expensive work and depends only on the data and the
config, so every rank reaches the same verdict (no rank left waiting in a collective).
"""

import csv
import errno
import logging
import math
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from . import hub
from .config import CUDA_GRAPH_MODES, FILE_EXTENSIONS
from .errors import UserError, is_main_rank, listed, short
from .file_checks import (check_csv_header, check_json_shape, check_shard_features, diagnose_file, is_blank,
                          other_separator, shard_columns)

TRAIN, EVAL, TEST = "train", "eval", "test"
EXTRA = "eval_"  # an extra evaluation set's split key and metric prefix: eval_ood (--extra_eval_files ood=...)


def extra_name(split):
    """The name of an extra evaluation set's split key ('eval_ood' -> 'ood'), else None."""
    return split[len(EXTRA):] if split.startswith(EXTRA) else None


def extra_sets(data):
    """{name: split} of the extra evaluation sets of a `Data` ({} without, or for a variant's own data
    object that has none)."""
    return getattr(data, "extra_eval", None) or {}


class _SplitText(dict):
    """{split: text} for messages; an extra evaluation set's key gets `template` with its name."""

    def __init__(self, known, template):
        super().__init__(known)
        self.template = template

    def __missing__(self, split):
        name = extra_name(split)
        if name is None:
            raise KeyError(split)
        return tuple(t.format(name) for t in self.template) if isinstance(self.template, tuple) else \
            self.template.format(name)


SPLIT_WORDS = _SplitText({TRAIN: "training", EVAL: "evaluation", TEST: "test"},
                         "'{}' evaluation")  # how messages name each split
WEIGHT = "__loop_weight"  # --weight_column's values, float32, in the training split (dropped from the others)
CUT = "__loop_cut"  # tokenizing: whether truncation cut the row's text (counted, then dropped)
ROW = "__loop_row"  # --eval_only: a column of each example's row in its file, kept through carving and subsets
# for the advice in warnings about each held-out split: where its data comes from, the option that cuts it
SPLIT_FLAGS = _SplitText({EVAL: ("--validation_file", "--max_eval_samples"), TEST: ("the test data", "--max_test_samples")},
                         ("the '{}' evaluation set", "--max_eval_samples"))
MAX_UNUSED_LABELS = 1000  # integer label ids above this (and above twice the ids seen) need --label_names


@dataclass
class Data:
    """What the loop needs from the data step."""

    train: object  # datasets.Dataset with input_ids, attention_mask, labels (None with --eval_only)
    eval: object
    label_names: list
    train_lengths: object  # token count per training example, an int array (for length grouping; None with --eval_only)
    max_token_id: int = None  # the largest input id in either split (checked against the embedding table)
    carved: bool = False  # the evaluation split was carved from train (--validation_split_percentage)
    subset_cut: frozenset = frozenset()  # the splits --max_*_samples took a subset of (they had more rows)
    head_order: bool = False  # the label ids follow a trained head's rows, not the data's own order
    # how the labels were read (label_reading, for best_metrics.json): "texts" (names) or "positions" (integer ids,
    # a ClassLabel's, one-hot positions) with `id_names`, the name of each of the data's ids; None: not said
    label_ids: str = None
    id_names: list = None
    # the training labels' ClassLabel names in id order (IMDb's neg, pos), where they were one: --eval_only of the
    # model on data of that same ClassLabel reads its ids as this run did (eval_only_labels); None otherwise
    class_names: list = None
    multi_label: bool = False  # each label is a list of names (or ids); "labels" holds multi-hot float rows
    regression: bool = False  # each label is a number (--problem_type regression); "labels" holds float32 targets
    test: object = None  # the held-out test split (--test_file, --test_split), tokenized like eval; None without one
    # --eval_only: for each example of `eval` / `test` (in their order), its row in the file or Hub split it was
    # read from (0-based; a carved example's row in the training file), for eval_predictions.jsonl
    eval_rows: object = None
    test_rows: object = None
    eval_split_name: str = None  # the Hub dataset's split evaluated on (None: a file, or carved from train)
    truncated: dict = None  # {split: (texts cut at max_length, rows)} (a fast tokenizer's exact count)
    # --extra_eval_files / --extra_eval_splits: {name: tokenized split}, in the order given, scored like `eval`
    # at every evaluation (metrics eval_<name>_*); and with --eval_only each example's row, as eval_rows
    extra_eval: dict = None
    extra_rows: dict = None

    def rows_of(self, prefix):
        """The rows behind a scored split's examples ('eval', 'test', 'eval_<name>'), or None."""
        name = extra_name(prefix)
        return (self.extra_rows or {}).get(name) if name is not None else getattr(self, f"{prefix}_rows", None)


def prepare(cfg, tokenizer, max_length, accelerator, head_labels=None, model_labels=None, model_problem=None,
            model_reading=None):
    """The whole data step: raw rows -> checked -> labels as ids -> tokenized -> `Data`.

    `head_labels`: the label names of a trained classification head, in row order
    (models.trained_head_labels); the data's ids follow that order when the names are the same.
    `model_labels`, `model_problem`: with --eval_only, the model's label names in id order (its
    id2label; without training data they name the classes) and what it was trained for
    (models.trained_problem), which the data must match; `model_reading`: how its training run read its labels
    (label_reading, from its best_metrics.json; None when it does not say). With --eval_only the training split,
    if any, only decides the labels (as in the training run) and is not tokenized."""
    raw = load_raw(cfg)
    scored_split = getattr(raw, "eval_split_name", None)  # which Hub split evaluation reads (_load_hub)
    named = getattr(raw, "split_names", {})  # a dataset's splits by name: which one trains, evaluates, tests
    _say("data: " + " / ".join(f"{len(ds)} {SPLIT_WORDS[s]}" + (f" ('{named[s]}')" if named.get(s) else "")
                               for s, ds in raw.items()) + " rows loaded")
    label_columns_as_lists(cfg, raw)  # --label_column toxic,obscene: each text's list of the labels that apply
    if cfg.eval_only:
        check_label_columns_cover(cfg, model_labels)
    check_columns(cfg, raw)
    if cfg.eval_only:  # each example's row in its file or split, for the predictions file
        raw = type(raw)({split: ds.add_column(ROW, list(range(len(ds)))) for split, ds in raw.items()})
    raw = select_and_split(cfg, raw)
    # what multi-hot positions mean: --label_names, else with --eval_only the names the training run gave them
    # (a head reordered by --label_names POSITIVE,NEGATIVE: the model's id order would score 0.08 for 0.92)
    hot_names = cfg.label_list() or (recorded_positions(model_reading, model_labels) or model_labels
                                     if cfg.eval_only else None)
    width = multi_hot_as_lists(cfg, raw, hot_names)
    for split in list(raw):
        raw[split] = booleans_as_names(cfg, raw[split], split)
    info = {}
    # multi-hot rows without names: ids 0..width-1, each a label even if no training row has it
    unnamed = [f"LABEL_{i}" for i in range(width)] if width and not hot_names else None
    # --eval_only of a single-label model on one-hot rows (or [2]): each row is its class, as the model was trained
    # (its run needed --problem_type single_label_classification, which the model's config now says)
    classes = cfg.eval_only and not cfg.problem_type and model_problem == "single_label_classification" \
        and one_label_per_list(cfg, raw)
    if TRAIN in raw:  # (several label columns name the labels, in their order)
        label_names = encode_labels(cfg, raw, head_labels, info, given=unnamed or cfg.label_columns(), classes=classes)
    else:  # --eval_only on evaluation data alone: the model's labels name the classes
        label_names = encode_labels(cfg, raw, head_labels, info, source=EVAL, classes=classes,
                                    given=eval_only_labels(cfg, raw, model_labels, model_reading)
                                    if not unnamed else unnamed)
    if width:  # multi-hot (or one-hot) rows: each label is a position, named by hot_names (or LABEL_i)
        info["label_ids"], info["id_names"] = "positions", list(hot_names or unnamed)
    if cfg.eval_only:  # scored as the model was trained, on its own classes: before the tokenizing
        check_model_problem(cfg, info, model_problem)
        check_model_labels(cfg, label_names, model_labels, info)
    carved = EVAL not in raw
    raw = carve_validation(cfg, raw)
    if cfg.weight_column and TRAIN in raw and (carved or cfg.max_train_samples):  # the rows left to train on
        check_some_weight(column(raw[TRAIN], WEIGHT), cfg.weight_column,
                          " left after --max_train_samples and --validation_split_percentage")
    check_final_splits(raw, label_names, "regression" if info.get("regression") else
                       "multi" if info.get("multi_label") else "single")
    check_max_length(cfg, tokenizer, max_length)
    check_pair_separator(cfg, tokenizer)
    if cfg.eval_only:
        raw.pop(TRAIN, None)  # it decided the labels; nothing trains on it
    first = TRAIN if TRAIN in raw else EVAL  # (--eval_only: the evaluation split)
    check_unknown_tokens(cfg, tokenizer, raw[first], what=SPLIT_WORDS[first])  # before the tokenizing a wrong tokenizer would waste
    num_proc = cfg.preprocessing_num_workers
    if num_proc is None and len(raw[first]) >= 20_000:
        # the CPUs this process may run on (a container's cpuset, taskset), not the machine's
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        num_proc = min(8, cpus)
    if info.get("regression"):
        targets = np.asarray(column(raw[first], "labels"), dtype=np.float64)
        what = (f"regression target '{label_names[0]}' ({SPLIT_WORDS[first]} mean {targets.mean():.4g}, "
                f"std {targets.std():.4g})")
    else:
        # (10,000 label names would make this one line 80 KB: config.json's id2label holds them all)
        what = f"labels {listed(label_names, 20)}" + (" (multi-label)" if info.get("multi_label") else "")
    _say(f"data: {what}; tokenizing (max_length {max_length}"
         + (f", {num_proc} processes)" if num_proc and num_proc > 1 else ")"))
    with accelerator.main_process_first():  # tokenize once, the other ranks read the cache
        tok = tokenize(cfg, raw, tokenizer, max_length, num_proc=num_proc)
    max_id = max(int(np.max(column(ds, "max_id"), initial=0)) for ds in tok.values())
    cut = {split: (int(np.sum(column(ds, CUT))), len(ds)) for split, ds in tok.items()}
    tok = {split: ds.remove_columns(["max_id", CUT]) for split, ds in tok.items()}
    said = truncation_line(cut, max_length, pair=bool(cfg.text_pair_column), side=tokenizer.truncation_side)
    if said:
        _say(said)
    train = tok.get(TRAIN)  # None with --eval_only
    lengths = None if train is None else np.asarray(column(train, "length"), dtype=np.int32)
    held = {split: by_length(ds) for split, ds in tok.items() if split != TRAIN}
    rows = {split: np.asarray(column(ds, ROW), dtype=np.int64) for split, ds in held.items() if ROW in ds.column_names}
    held = {split: ds.remove_columns(ROW) if split in rows else ds for split, ds in held.items()}
    extra = [(extra_name(split), split) for split in held if extra_name(split) is not None]
    return Data(train=None if train is None else train.remove_columns("length"), eval=held[EVAL],
                test=held.get(TEST), label_names=label_names, train_lengths=lengths, max_token_id=max_id,
                carved=carved, subset_cut=frozenset(getattr(raw, "subset_cut", ())),
                head_order=bool(info.get("head_order")), label_ids=info.get("label_ids"), id_names=info.get("id_names"),
                class_names=info.get("class_names"),
                multi_label=bool(info.get("multi_label")),
                regression=bool(info.get("regression")), eval_rows=rows.get(EVAL), test_rows=rows.get(TEST),
                eval_split_name=None if carved else scored_split, truncated=cut,
                extra_eval={name: held[split] for name, split in extra},
                extra_rows={name: rows[split] for name, split in extra if split in rows})


def truncation_line(cut, max_length, pair=False, side="right"):
    """'data: 9,120 of 25,000 training texts (36.5%) ... cut at max_length 256 (their end dropped; ...)'
    for the splits where truncation cut any text ({split: (cut, rows)}), else None: how much of the data
    a model sees, and which part, is the first thing to know when choosing --max_length and
    --truncation_side."""
    parts = [f"{n:,} of {rows:,} {SPLIT_WORDS[split]} {'pairs' if pair else 'texts'} ({100 * n / rows:.1f}%)"
             for split, (n, rows) in cut.items() if n]
    if not parts:
        return None
    one = sum(n for n, _ in cut.values()) == 1
    which = ("their start dropped: --truncation_side left" if side == "left" else
             "their end dropped; --truncation_side left keeps the end instead")
    if one:
        which = which.replace("their", "its")
    return f"data: {', '.join(parts)} {'was' if one else 'were'} cut at max_length {max_length} ({which})"


def column(ds, name):
    """A split's column as a numpy array (rows of a fixed-length list column as a 2-D array: multi-hot
    labels), read through Arrow: `ds.with_format("numpy")[name]` reads row by row in datasets 5, seconds
    per 25k rows, where this takes milliseconds."""
    import pyarrow as pa

    values = ds.with_format("arrow", columns=[name])[:][name]
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_fixed_size_list(values.type) and values.null_count == 0:  # (our multi-hot labels)
        return values.flatten().to_numpy(zero_copy_only=False).reshape(len(values), values.type.list_size)
    if pa.types.is_nested(values.type) or values.null_count:
        return np.asarray(ds.with_format("numpy")[name])  # other lists, missing values: as datasets gives them
    return values.to_numpy(zero_copy_only=False)


def column_values(ds, name):
    """A column's values as a Python list, converted by Arrow in one pass: datasets 5's `ds[name]` is a lazy
    Column that formats one row at a time (~12 s per pass over a million labels, where this takes 0.1 s, so
    the label checks' passes no longer add minutes to every start and resume of a large run). A column whose
    values need decoding (a JSON column of mixed values) is read as datasets decodes it."""
    from datasets.features.features import require_decoding

    if require_decoding(ds.features[name]):
        return list(ds[name])
    return ds.with_format("arrow", columns=[name])[:][name].to_pylist()


def by_length(ds):
    """An evaluation (or test) split sorted by length, longest first: less padding, same results
    (a metric does not depend on order). Our own stable argsort: datasets' sort() trips a pyarrow
    FutureWarning."""
    lengths = np.asarray(column(ds, "length"), dtype=np.int64)
    return ds.select(np.argsort(-lengths, kind="stable")).remove_columns("length")


def _say(msg):
    """One short `[loop]` line per data step (main rank), in place of datasets' progress bars."""
    if is_main_rank():
        from .logs import say

        say(msg)


# ---------------------------------------------------------------- loading
def load_raw(cfg):
    """Return a DatasetDict with 'train' and 'eval' splits of raw (untokenized) rows."""
    import datasets

    if cfg.train_file or cfg.validation_file:  # (--validation_file alone: --eval_only, config.py)
        raw = datasets.DatasetDict({TRAIN: load_file(cfg.train_file, "--train_file")} if cfg.train_file else {})
        if cfg.validation_file:
            raw[EVAL] = load_file(cfg.validation_file, "--validation_file")
            same = shared_file(cfg.train_file, cfg.validation_file)
            if same and is_main_rank():
                warnings.warn(f"--train_file and --validation_file {same}: the evaluation scores examples the model "
                              f"trained on and overstates how it does on new text; carve one instead with "
                              f"--validation_split_percentage (and no --validation_file).", stacklevel=2)
        if cfg.test_file:
            raw[TEST] = load_file(cfg.test_file, "--test_file")
            for flag, other in (("--train_file", cfg.train_file), ("--validation_file", cfg.validation_file)):
                same = shared_file(cfg.test_file, other)
                if same and is_main_rank():
                    warnings.warn(f"--test_file and {flag} {same}: its test scores are not held out; pass a file of "
                                  f"examples the run neither trains on nor picks best/ by.", stacklevel=2)
    else:
        raw = _load_hub(cfg)
    extras = cfg.extra_evals()
    for name, kind, source in extras:
        if kind == "file":  # (a Hub dataset's splits: _load_hub)
            raw[EXTRA + name] = load_file(source, f"--extra_eval_files {name}")
            for flag, other in (("--train_file", cfg.train_file), ("--validation_file", cfg.validation_file),
                                ("--test_file", cfg.test_file)):
                same = shared_file(source, other)
                if same and is_main_rank():
                    why = "it is scored twice, under two names" if flag == "--validation_file" else \
                        "its scores are not of new text"
                    warnings.warn(f"--extra_eval_files {name} and {flag} {same}: {why}.", stacklevel=2)
    for name, _, _ in extras:  # in the order given (logs, records and the model card follow it)
        raw[EXTRA + name] = raw.pop(EXTRA + name)
    return raw


def file_key(f):
    """The identity of a file whatever path or link leads to it."""
    st = os.stat(f)
    return st.st_dev, st.st_ino


def same_files(files):
    """(a, b): two of `files` that are the same file (a link), else None."""
    seen = {}
    for f in files:
        first = seen.setdefault(file_key(f), f)
        if first != f:
            return first, f
    return None


def shared_file(a, b):
    """'are the same file (x.jsonl)' / 'share a file (x-1.parquet)' when data options `a` and `b` (files or
    patterns of shards) read a file in common; else None."""
    if not a or not b:
        return None
    from .config import data_files

    ours = {file_key(g) for g in data_files(a, "")}
    for f in data_files(b, ""):
        if file_key(f) in ours:
            return f"are the same file ({b})" if os.path.isfile(a) and os.path.isfile(b) else f"share a file ({f})"
    return None


def load_file(path, flag, csv_as_text=False):
    """A local csv, tsv, json, jsonl or parquet file as a Dataset, or one line naming what is wrong with it.
    `path` may be a glob pattern of shards of one format (config.data_files): read in name order as one
    Dataset (rows numbered across them in that order); a blank shard among others is skipped.
    `csv_as_text`: a csv's every column is read as text (predict.py reads text columns only: a column
    whose values look like numbers in the first 10,000 rows and not later would otherwise fail the read)."""
    import datasets

    from .config import data_files

    files = list(path) if isinstance(path, (list, tuple)) else data_files(path, flag)  # (a folder's split: a list)
    path = path if isinstance(path, str) else os.path.commonpath(files) if len(files) > 1 else files[0]
    twice = same_files(files)
    if twice and is_main_rank():  # a link to another shard of the pattern: its rows would count twice
        warnings.warn(f"{flag} '{path}' reads one file twice ({twice[0]} and {twice[1]}, the same file through a "
                      f"link): its rows count twice; narrow the pattern or remove the link.", stacklevel=2)
    kept = [f for f in files if not is_blank(f)]
    if not kept:
        raise UserError(f"{flag} {path} is empty; put at least one example in it." if files == [path] else
                        f"{flag} '{path}': all {len(files)} files it matches are empty; put examples in them.")
    builder = FILE_EXTENSIONS[os.path.splitext(kept[0])[1].lower()]
    kwargs = {}
    if builder == "csv":
        # only an empty field is missing: pandas would also read the words NA, N/A, null, None, nan (a class
        # "NA", a text "None") as missing, where a JSON file keeps them
        kwargs = {"keep_default_na": False, "na_values": [""]}
        if kept[0].lower().endswith(".tsv"):  # TSV has no quoting (GLUE's files): a quote is a character of the text
            kwargs.update(delimiter="\t", quoting=csv.QUOTE_NONE)
        for f in kept:
            check_csv_header(f, flag, kwargs.get("delimiter", ","), kwargs.get("quoting", csv.QUOTE_MINIMAL))
        if csv_as_text:
            import pandas as pd

            try:
                names = pd.read_csv(kept[0], nrows=0, sep=kwargs.get("delimiter", ","),
                                    quoting=kwargs.get("quoting", csv.QUOTE_MINIMAL), encoding_errors="strict").columns
            except Exception:  # unreadable: the read below says why
                names = None
            if names is not None and len(set(names)) == len(names):
                kwargs["features"] = datasets.Features({str(n): datasets.Value("string") for n in names})
    if builder == "json":
        for f in kept:
            check_json_shape(f, flag)
    if builder == "parquet" and len(kept) > 1:
        check_shard_features(kept, flag, path)  # datasets would read every shard with the first one's classes
    library = logging.getLogger("datasets")  # its readers log the parse error too: ours below says it once
    level = library.level
    library.setLevel(logging.CRITICAL)
    try:
        try:
            ds = _read(builder, kept, kwargs)
        except UserError:
            raise
        except Exception:
            # pandas reads a csv 10,000 rows at a time and datasets types every chunk as the first one: a
            # column that changes type further down (an id 'x10100', a label 'unknown', a weight 0.5 after
            # ones) fails the read. Read it again whole, each column typed from all of its rows: an unused
            # column is then just text, and a label column's checks name the row.
            ds = csv_whole(kept, kwargs) if builder == "csv" and "features" not in kwargs else None
            if ds is None:  # not a question of types: the diagnosis below reads the file for its cause
                raise
    except UserError:
        raise
    except Exception as e:  # datasets wraps parser errors in many types; find the real cause
        if len(kept) == 1:
            raise UserError(f"{flag} {path} could not be read: {diagnose_file(kept[0], builder) or short(e)}.") from e
        for f in kept:
            problem = diagnose_file(f, builder)
            if problem:
                raise UserError(f"{flag} '{path}': {f} could not be read: {problem}.") from e
        raise UserError(f"{flag} '{path}': its {len(kept)} files could not be read as one table "
                        f"({shard_columns(kept, builder) or short(e)}).") from e
    finally:
        library.setLevel(level)
    return ds


def _read(builder, files, kwargs):
    import datasets
    import glob

    # datasets matches each name as a pattern again: a literal '[' or '?' in a file's name must not
    try:
        ds = datasets.load_dataset(builder, name=file_stamp(files), data_files={"data": [glob.escape(f) for f in files]},
                                   split="data", **kwargs)
    except Exception as e:  # (a write failure reaches us as datasets' DatasetGenerationError, raised from it)
        check_cache_writable(e)
        raise
    ds.data.table.validate(full=True)  # the JSON reader lets invalid UTF-8 through; catch it here, not mid-run
    return plain_strings(ds)


# errors that only a write can give: reading a data file never does, so they are the cache's (and the words its
# libraries use for them when they wrap one: pyarrow, fsspec)
_WRITE_ERRNOS = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large",
                 errno.EROFS: "read-only file system"}
_DENIED_ERRNOS = (errno.EACCES, errno.EPERM)


def check_cache_writable(e, folder=None):
    """A read or a map that failed writing the datasets cache (full, over quota, a read-only HF_HOME or a shared
    pre-filled store, an HF_HOME whose folders cannot be created): one line naming the folder, the cause and the
    fix, not 'the file could not be read' (nor a CSV read again in memory, naming the next file), nor a map's
    two chained tracebacks. `folder`: where the write went (a map's: `map_folder`), by default the datasets
    cache. The failure is `e` or an error it was raised from (DatasetGenerationError), an OSError of a write
    errno, one denied on a path in (or above) the folder, datasets' own errno-less 'Not enough disk space'
    (a full disk), or a wrapped one saying so in words (is_storage_error's)."""
    from datasets import config

    from .errors import is_storage_error

    cache = os.path.realpath(str(config.HF_DATASETS_CACHE))
    folder = os.path.realpath(str(folder)) if folder else cache
    cause, where, texts = None, None, []
    seen, err = set(), e
    while err is not None and id(err) not in seen and cause is None:
        seen.add(id(err))
        texts.append(str(err).lower())
        name = getattr(err, "filename", None) if isinstance(err, OSError) else None
        if name and isinstance(name, (str, bytes, os.PathLike)):
            name = os.path.realpath(os.fsdecode(name))
            # in the folder, or a folder above it that could not be created (HF_HOME on a read-only disk)
            if not (name == folder or name.startswith(folder + os.sep) or folder.startswith(name + os.sep)):
                return  # another file's failure (the data file's): its own message says it
        if isinstance(err, OSError) and (err.errno in _WRITE_ERRNOS or err.errno in _DENIED_ERRNOS):
            cause, where = err.strerror or os.strerror(err.errno), name
        elif isinstance(err, OSError) and str(err).startswith("Not enough disk space"):  # datasets' check: 0 free
            cause = os.strerror(errno.ENOSPC)
        err = err.__cause__
    if cause is None and is_storage_error(e):  # wrapped, in words: only the kinds no read gives
        cause = next((os.strerror(n) for n, words in _WRITE_ERRNOS.items() if any(words in t for t in texts)), None)
    if cause is None:
        return
    if where and folder.startswith(where + os.sep):  # a folder above it could not be created
        cause += f", creating '{where}'"
    full = cause.startswith(tuple(os.strerror(n) for n in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)))
    if folder == cache or folder.startswith(cache + os.sep):
        fix = ("free space there, or set HF_DATASETS_CACHE (or HF_HOME) to a folder with room" if full else
               "set HF_DATASETS_CACHE (or HF_HOME) to a writable folder with free space")
        raise UserError(f"the datasets cache '{cache}' cannot be written ({cause}); {fix}.") from e
    # a save_to_disk folder: datasets writes a map's result beside the dataset's own files, not in its cache
    raise UserError(f"the saved dataset's folder '{folder}', where datasets writes its tokenized copy, cannot be "
                    f"written ({cause}); {'free space there' if full else 'make it writable'}, or save the "
                    f"dataset to a writable folder with room.") from e


def file_stamp(files):
    """The name of the datasets cache entry for `files`: datasets keys a local file's cached copy on its path and
    modification time alone, so a file rewritten with the same mtime (cp -p, rsync -a, touch -r, an image built
    with fixed times) was read from the old copy, and trained on, without a word. The size, inode and change
    time (which no copy or touch can set back) go into the name: any rewrite reads the file again."""
    import hashlib

    stats = [os.stat(f) for f in files]
    key = repr([(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) for st in stats])
    return "loop-" + hashlib.sha1(key.encode()).hexdigest()[:16]


def plain_strings(ds):
    """`ds` with its Arrow string_view columns (a Parquet file that keeps that schema) as plain strings: text and
    labels are checked and tokenized as strings (a string_view text was refused as "not text")."""
    import datasets

    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Value) and feature.dtype == "string_view":
            ds = ds.cast_column(name, datasets.Value("string"))
    return ds


def csv_whole(files, kwargs):
    """csv `files` as one in-memory Dataset, each column typed from all of its rows (pandas with
    low_memory=False: numbers where every value is one, text otherwise; int in one file and float in another
    is float), or None when that cannot be read either or holds no row (a header alone: the diagnosis names
    the file). The datasets reader types every 10,000-row chunk as the first; this is the way round that."""
    import datasets
    import pandas as pd

    try:
        frame = pd.concat([pd.read_csv(f, sep=kwargs.get("delimiter", ","),
                                       quoting=kwargs.get("quoting", csv.QUOTE_MINIMAL), keep_default_na=False,
                                       na_values=[""], low_memory=False) for f in files], ignore_index=True)
        if not len(frame):
            return None
        frame = huge_ints_as_text(frame)
        return datasets.Dataset.from_pandas(frame, preserve_index=False)
    except UserError:
        raise
    except Exception:
        return None


def huge_ints_as_text(frame):
    """A csv column holding an integer beyond 64 bits (pandas keeps it as a Python int, which Arrow cannot hold:
    the read failed with datasets' 'An error occurred while generating the dataset') as text: an id column the
    run does not use reads, and a label column's checks name the row."""
    for column in frame.columns[frame.dtypes == object]:
        if frame[column].map(lambda v: isinstance(v, int) and not -2**63 <= v < 2**64).any():
            frame[column] = frame[column].map(lambda v: v if isinstance(v, str) or v != v else str(v))
    return frame


def _load_hub(cfg):
    import datasets

    name = cfg.dataset_name
    if not name:
        raise UserError("no data given; pass --train_file (and --validation_file) or --dataset_name.")
    ds = _load_folder(cfg) if os.path.isdir(name) else None
    if ds is None:
        try:
            ds = datasets.load_dataset(name, cfg.dataset_config_name)
        except UserError:
            raise
        except Exception as e:
            where = (f"could not read the dataset folder '{name}' ({short(e, limit=600)}); check its files, or pass "
                     f"them with --train_file / --validation_file" if os.path.isdir(name) else
                     f"could not load dataset '{name}' from the Hugging Face Hub ({short(e, limit=600)}); if you are "
                     f"offline, pass local files instead: {hub.local_files(cfg)}")
            raise UserError(where + ".") from e
    ds = datasets.DatasetDict({split: plain_strings(part) for split, part in ds.items()})
    for flag, split in (("--train_split", cfg.train_split), ("--eval_split", cfg.eval_split),
                        ("--test_split", cfg.test_split)):
        if flag == "--train_split" and cfg.eval_only and split == "train":
            continue  # only its labels would be read: the model's do without (below)
        if split is not None and split not in ds:
            raise UserError(f"dataset '{name}' has no '{split}' split (it has: {', '.join(ds)}); pass one of those "
                            f"as {flag}, or local files (--train_file, --validation_file"
                            f"{', --test_file' if flag == '--test_split' else ''}).")
    # --eval_only on a dataset without a train split (a benchmark's test set): the model's labels name the classes
    no_train = cfg.eval_only and cfg.train_split not in ds and cfg.train_split == "train"
    out = datasets.DatasetDict({} if no_train else {TRAIN: ds[cfg.train_split]})
    # the one named, else validation if there is one, else test (not the one trained on); beside a held-out
    # --test_split only validation (else a carve): never a split the user did not name or expect
    held = (cfg.train_split, cfg.test_split)
    fallback = ("validation", "dev") if cfg.test_split else ("validation", "dev", "test")  # (dev: a folder's own name)
    for split in [cfg.eval_split] if cfg.eval_split else [s for s in fallback if s not in held]:
        if split in ds:
            out[EVAL] = ds[split]
            out.eval_split_name = split
            if cfg.validation_split_percentage is not None and not cfg.eval_split and is_main_rank():
                warnings.warn(f"--validation_split_percentage {cfg.validation_split_percentage:g} is used only when "
                              f"there is no evaluation data, and dataset '{name}' has a '{split}' split: it is "
                              f"evaluated on, no split is carved from train.", stacklevel=2)
            break
    others = [s for s in ds if s not in (cfg.train_split, cfg.test_split)]
    if EVAL not in out and cfg.validation_split_percentage is None and others and not (cfg.eval_only or cfg.test_split):
        raise UserError(f"dataset '{name}' has no 'validation' split to evaluate on (it has: {', '.join(ds)}); name "
                        f"one with --eval_split (e.g. --eval_split {others[0]}), or carve one from train with "
                        f"--validation_split_percentage 10.")
    if cfg.test_split:
        out[TEST] = ds[cfg.test_split]
    out.split_names = {TRAIN: cfg.train_split, EVAL: getattr(out, "eval_split_name", None), TEST: cfg.test_split}
    for extra, kind, split in cfg.extra_evals():
        if kind != "split":
            continue
        out.split_names[EXTRA + extra] = split
        if split not in ds:
            raise UserError(f"dataset '{name}' has no '{split}' split (it has: {', '.join(ds)}); name one of those in "
                            f"--extra_eval_splits, or pass the set as a file with --extra_eval_files.")
        if split in (cfg.train_split, cfg.test_split, getattr(out, "eval_split_name", None)) and is_main_rank():
            which = "trains on" if split == cfg.train_split else "holds out as --test_split" \
                if split == cfg.test_split else "evaluates on"
            why = "it is scored twice, under two names" if which == "evaluates on" else "its scores are not of new text"
            warnings.warn(f"--extra_eval_splits {extra}: the run also {which} split '{split}'; {why}.", stacklevel=2)
        out[EXTRA + extra] = ds[split]
    return out


# the words datasets finds in file names for its three splits (datasets.data_files), for a folder's split of several
SPLIT_WORDS_IN_NAMES = {"train": ("train", "training"), "validation": ("validation", "valid", "val", "dev", "eval"),
                        "test": ("test", "testing", "eval")}


def _load_folder(cfg):
    """A local --dataset_name folder, as its splits, or None to let datasets read it (another format, a loading
    script). A save_to_disk folder is loaded as saved (load_dataset renamed 'dev' to 'validation' and dropped
    IMDb's 'unsupervised'). A folder of csv/json/parquet files is split as datasets splits it (file names, a
    README's configs), then each split is read as --train_file would be: one at a time, so two files naming their
    classes in other orders are matched by name (read as one table, every label of one was flipped); a file two
    splits claim (train_dev.csv: train and dev) is refused; a split of several names (validation_matched.jsonl,
    validation_mismatched.jsonl, merged into 'validation') becomes one split per name."""
    import datasets

    name, config = cfg.dataset_name, cfg.dataset_config_name
    folder = os.path.join(name, config) if config and os.path.isdir(os.path.join(name, config)) else name
    for saved, kind in (("dataset_dict.json", "splits"), ("state.json", "one")):
        if os.path.isfile(os.path.join(folder, saved)):
            try:
                ds = datasets.load_from_disk(folder)
            except Exception as e:
                raise UserError(f"could not read the saved dataset '{folder}' ({short(e)}); save it again with "
                                f"save_to_disk, or pass its files with --train_file / --validation_file.") from e
            return ds if kind == "splits" else datasets.DatasetDict({"train": ds})
    try:
        builder = datasets.load_dataset_builder(name, config)
        found = {str(split): [str(f) for f in files] for split, files in (builder.config.data_files or {}).items()}
    except Exception:
        return None  # datasets' own read says what is wrong
    if builder.name not in ("csv", "json", "parquet") or not found or not all(
            os.path.splitext(f)[1].lower() in FILE_EXTENSIONS for files in found.values() for f in files):
        return None  # compressed files (.jsonl.gz), another format: read by datasets as they were
    claimed = {}
    for split, files in found.items():
        for f in files:
            if f in claimed:
                raise UserError(f"dataset folder '{name}': file {os.path.relpath(f, name)} is read as split "
                                f"'{claimed[f]}' and as '{split}' (datasets finds split names inside file names); "
                                f"rename it, or pass each split's files with --train_file / --validation_file.")
            claimed[f] = split
    splits = {}
    for split, files in found.items():
        stems = {file_stem(f) for f in files}
        words = SPLIT_WORDS_IN_NAMES.get(split, (split,))
        # evaluation sets of their own names and none of the split's plain one (MNLI's validation_matched and
        # validation_mismatched, GLUE's dev_matched.tsv): never a training split's shards or extra files, nor a
        # plain validation.jsonl beside a validation_extra.jsonl (datasets' one split stays, as it was)
        if split != "train" and len(stems) > 1 and all(
                stem.lower().startswith(words) and stem.lower() not in words for stem in stems):
            for f in files:
                splits.setdefault(file_stem(f), []).append(f)
            _say(f"data: '{name}' split '{split}' holds files of {len(stems)} names: read as the splits "
                 f"{', '.join(sorted(stems))}")
        else:
            splits[split] = files
    return datasets.DatasetDict({split: load_file(files, f"--dataset_name {name} (split '{split}')")
                                 for split, files in splits.items()})


def file_stem(path):
    """'validation_matched' of 'data/validation_matched-00000-of-00001[-hash].parquet', of 'validation_matched_2.jsonl'
    (a shard's number, its count and hash dropped)."""
    stem = os.path.basename(path).split(".", 1)[0]
    stem = re.sub(r"-\d{5}-of-\d{5}.*$", "", stem)
    return re.sub(r"[-_]?\d+$", "", stem) or stem


# ---------------------------------------------------------------- checks and labels
def label_columns_as_lists(cfg, raw):
    """--label_column naming several columns (toxic,obscene,insult: Jigsaw's toxic comments, one 0/1 column per
    label): multi-label data, each column a label named after it, in the order given. Each split's columns become
    one column of lists of the labels that apply (where the column holds 1 or true), named as the option is (the
    column every later step reads), so that the rest is the path of lists of names, the columns as
    --label_names: class weights, metrics and the checks against a trained head alike. A missing column, or a
    value other than 0/1 or true/false, is refused naming the column and the row."""
    columns = cfg.label_columns()
    if not columns:
        return
    import datasets
    import pyarrow as pa

    if cfg.label_list():
        raise UserError(f"--label_names names the labels, but --label_column '{cfg.label_column}' names several "
                        f"columns, and each is a label named after its column; drop --label_names (rename the "
                        f"columns to rename the labels).")
    if cfg.problem_type == "regression":
        raise UserError(f"--problem_type regression predicts one number, from one --label_column, but "
                        f"'{cfg.label_column}' names {len(columns)} columns; name one, or leave --problem_type out "
                        f"for multi-label data with a 0/1 column per label.")
    for split, ds in raw.items():
        where = SPLIT_WORDS[split]
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            raise UserError(f"--label_column '{cfg.label_column}': {listed(missing)} "
                            f"{'is' if len(missing) == 1 else 'are'} not in the {where} data; its columns are: "
                            f"{', '.join(repr(c) for c in ds.column_names)}.")
        hot = np.zeros((len(ds), len(columns)), dtype=bool)
        table = ds.with_format("arrow", columns=columns)[:]  # (through the format: a subset's own rows)
        for j, name in enumerate(columns):
            values = table.column(name).combine_chunks()
            bad = None
            if values.null_count:
                bad = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
            elif pa.types.is_boolean(values.type):
                hot[:, j] = values.to_numpy(zero_copy_only=False)
            elif pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
                x = values.to_numpy(zero_copy_only=False)
                wrong = np.flatnonzero((x != 0) & (x != 1))  # (NaN too)
                bad = int(wrong[0]) if len(wrong) else None
                hot[:, j] = x == 1
            elif len(values):
                bad = 0  # text, lists: the first row shows what the column holds
            if bad is not None:
                v = values[bad].as_py()
                what = "no value" if v is None or (isinstance(v, float) and math.isnan(v)) else \
                    f"the text {v!r}" if isinstance(v, str) else repr(v)
                raise UserError(f"--label_column '{cfg.label_column}': {where} row {bad} of column '{name}' holds "
                                f"{what}; each label column says whether its label applies to the text, as the number "
                                f"0 or 1 (or false/true).")
        # each row's list of names, built in Arrow (Python lists took 1.7 s for Jigsaw's 160k rows of 6 columns)
        rows, which = np.nonzero(hot)  # (row by row, each row's columns in order)
        offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(ds)))]).astype(np.int32)
        lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.asarray(columns, dtype=object)[which],
                                                                     type=pa.string()))
        raw[split] = ds.remove_columns(columns).add_column(cfg.label_column, lists,
                                                           feature=datasets.List(datasets.Value("string")))


def check_label_columns_cover(cfg, model_labels):
    """--eval_only with several label columns naming some of a model's labels (a model of Jigsaw's 6 columns scored
    on a set labelled for 2): a label without its column would count as absent from every text, and each of its
    predictions as wrong. Refused, naming the labels whose columns are missing."""
    columns = cfg.label_columns()
    if not columns or not model_labels or not set(columns) <= set(model_labels):
        return  # (labels that are not the model's: check_model_labels says so)
    missing = [name for name in model_labels if name not in columns]
    if missing:
        raise UserError(f"--label_column '{cfg.label_column}' names {len(columns)} of the model's "
                        f"{len(model_labels)} labels; {listed(missing)} would count as absent from every text, and "
                        f"each prediction of {'it' if len(missing) == 1 else 'them'} as wrong: name every label's "
                        f"column (--label_column {','.join(model_labels)}).")


def check_columns(cfg, raw):
    """The named columns exist; empty texts (they train as empty inputs) are counted in a warning."""
    for split, ds in raw.items():
        flag_name = SPLIT_WORDS[split]
        for flag in ("text_column", "text_pair_column", "label_column"):
            col = getattr(cfg, flag)
            if col is not None and col not in ds.column_names:
                other = other_separator(ds.column_names)
                if other:  # a ';'-separated csv read as one column named 'text;label'
                    raise UserError(f"the {flag_name} data has one column, {ds.column_names[0][:60]!r}: the file looks "
                                    f"{other!r}-separated; save it with ',' between fields (or as .tsv with tabs).")
                raise UserError(
                    f"--{flag} '{col}' is not in the {flag_name} data; its columns are: {', '.join(repr(c) for c in ds.column_names)}."
                )
        for flag in ("text_column", "text_pair_column"):
            col = getattr(cfg, flag)
            if col is None:
                continue
            raw[split] = ds = text_as_strings(ds, col, flag_name, flag)
            count, first = empty_texts(ds, col)
            if count and is_main_rank():
                warnings.warn(f"{count} {flag_name} rows have an empty or missing text in column '{col}' (first at "
                              f"row {first}); they count as empty inputs: drop them if that is not meant.", stacklevel=2)
            path = {TRAIN: cfg.train_file, EVAL: cfg.validation_file, TEST: cfg.test_file}.get(split) or \
                next((s for n, kind, s in cfg.extra_evals() if kind == "file" and EXTRA + n == split), None)
            if path and path.lower().endswith(".csv"):
                check_merged_rows(ds, col, cfg.label_column, path)
    if cfg.weight_column and TRAIN in raw:
        raw[TRAIN] = example_weights(raw[TRAIN], cfg.weight_column)


MAX_EXAMPLE_WEIGHT = 1e30  # --weight_column: far below float32's 3.4e38, so a micro-batch's weighted sum fits


def check_some_weight(values, col, after=""):
    """Refuse weights that are 0 for every training example (nothing would be learned)."""
    if not np.asarray(values).any():
        raise UserError(f"--weight_column '{col}' is 0 for every training example{after}: nothing would be learned; "
                        f"give the examples to learn from a weight above 0.")


def example_weights(ds, col):
    """--weight_column: the training split with its weights as float32 in the WEIGHT column, checked: a
    number >= 0 in every row (a missing one, text, NaN or a negative weight is refused naming the row), and
    not all 0 (nothing would train)."""
    import datasets

    if col not in ds.column_names:
        raise UserError(f"--weight_column '{col}' is not in the training data; its columns are: "
                        f"{', '.join(repr(c) for c in ds.column_names)}.")
    feature = ds.features[col]
    numeric = isinstance(feature, datasets.Value) and (feature.dtype.startswith(("int", "uint", "float", "decimal"))
                                                       or feature.dtype in ("bool", "null"))
    if not numeric:
        if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
            # a csv cell that is not a number ('n/a') makes the whole column text: name the first such row
            for row, value in enumerate(column_values(ds, col)):
                if value is not None and not is_number_text(str(value)):
                    raise UserError(f"--weight_column '{col}': training row {row} holds {str(value)[:40]!r}, not a "
                                    f"number; give each training example a weight such as 1 or 0.5.")
        else:
            kind = feature.dtype if isinstance(feature, datasets.Value) else type(feature).__name__
            raise UserError(f"--weight_column '{col}' holds {kind}, not numbers; give each training example a "
                            f"weight such as 1 or 0.5.")
    # through the format, not ds.data: a selected dataset's table still holds every row in file order
    values = np.asarray(ds.with_format("arrow")[:][col].to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if len(bad):
        row, value = int(bad[0]), values[bad[0]]
        what = "no weight" if np.isnan(value) else f"the weight {value:g}"
        raise UserError(f"--weight_column '{col}': training row {row} has {what} ({len(bad)} such row(s)); each "
                        f"example needs a number >= 0 (0 leaves it out of the loss).")
    big = np.flatnonzero(values > MAX_EXAMPLE_WEIGHT)
    if len(big):  # float32 holds up to 3.4e38, and a micro-batch's sum of weights times losses must fit too
        raise UserError(f"--weight_column '{col}': training row {int(big[0])} has the weight {values[big[0]]:g} "
                        f"({len(big)} such row(s)), above {MAX_EXAMPLE_WEIGHT:g}, which float32 training cannot sum; "
                        f"weights count only relative to each other: divide them all by the largest.")
    weights = values.astype(np.float32)
    check_some_weight(weights, col, " in float32" if values.any() else "")  # 1e-50 is 0 there
    ds = ds.remove_columns(col) if col != WEIGHT else ds
    return ds.add_column(WEIGHT, weights)


def check_merged_rows(ds, col, label_col, path):
    """A CSV field with an unclosed quote runs on to the next quote, swallowing the rows between: one
    text then holds a line that ends like a row of its own (',POSITIVE'), and those examples and their
    labels are gone. Warn, naming the row (a quoted text may span lines; one ending in a label rarely does)."""
    import pyarrow.compute as pc

    import datasets

    column = ds.data.column(col)
    if (not (column.type == "string" or column.type == "large_string") or label_col not in ds.column_names
            or not isinstance(ds.features[label_col], datasets.Value)):  # single labels only: lists are not hashed
        return
    multi = pc.indices_nonzero(pc.fill_null(pc.match_substring(column, "\n"), False)).to_pylist()
    if not multi:
        return
    labels = {str(v) for v in set(column_values(ds, label_col)) if isinstance(v, (str, int))}
    if not labels or len(labels) > MANY_LABELS:
        return
    for row in multi:
        lines = ds[row][col].split("\n")[:-1]
        hit = next((line for line in lines if "," in line and line.rsplit(",", 1)[1].strip().strip('"') in labels), None)
        if hit is not None and is_main_rank():
            warnings.warn(f"{path}: the text of row {row} spans {len(lines) + 1} lines, and one of them ends in "
                          f"',{hit.rsplit(',', 1)[1].strip()}' like a row of its own: an unclosed quote probably merged "
                          f"rows (their examples are lost); check the quotes in that row.", stacklevel=2)
            return


TEXT_TYPES = ("string", "large_string", "null")  # null: a column with no value at all (empty texts, warned about)


def text_as_strings(ds, col, where, flag="text_column"):
    """A text column must hold text: bytes (Parquet BINARY written without its UTF-8 annotation, as Spark
    and Hive do) are decoded as UTF-8; anything else (numbers, lists of words, objects) is refused,
    because it would be tokenized as its Python repr ("[' and ', ' boring ']", "b'\\xe2...'")."""
    import datasets

    feature = ds.features[col]
    dtype = getattr(feature, "dtype", None) if isinstance(feature, datasets.Value) else None
    if dtype in TEXT_TYPES:
        return ds
    if dtype in ("binary", "large_binary"):
        try:
            out = ds.cast_column(col, datasets.Value("string"))
            out.data.table.column(col).validate(full=True)
        except Exception as e:
            raise UserError(f"{where} text column '{col}' holds bytes that are not UTF-8 text ({short(e)}); write it "
                            f"as UTF-8 strings.") from e
        return out
    if isinstance(feature, (datasets.Sequence, getattr(datasets, "List", datasets.Sequence))):
        what, fix = "lists (words already split?)", "join each list into one string"
    elif isinstance(feature, dict):
        what, fix = f"objects with fields {', '.join(feature)}", "pick or join the field that holds the text"
    elif type(feature).__name__ == "Json":  # a JSON column of mixed values: name the first that is not text
        values = ds[col]
        row = next((i for i, v in enumerate(values) if v is not None and not isinstance(v, str)), None)
        if row is not None and any(isinstance(v, str) for v in values):
            raise UserError(f"{where} text column '{col}' mixes text and other values (row {row}: "
                            f"{repr(values[row])[:40]}); write every text as a JSON string.")
        what, fix = "JSON values (numbers, lists or objects)", f"is it the right column? check --{flag}"
    else:
        what, fix = f"{dtype or type(feature).__name__} values", f"is it the right column? check --{flag}"
    raise UserError(f"{where} text column '{col}' holds {what}, not text; {fix}.")


EMPTY_TEXTS_SLICE = 65_536  # rows


def empty_texts(ds, col):
    """(count, first row) of the rows whose `col` is missing or blank, counted in Arrow: a column of
    millions of texts is never copied into Python."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = ds.data.column(col) if getattr(ds, "_indices", None) is None else ds.with_format("arrow", columns=[col])[:][col]
    text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    count, first = 0, None
    # a slice at a time: trimming copies the texts (+1.45 GB at once for 20k reviews of 5k words)
    for start in range(0, len(column), EMPTY_TEXTS_SLICE):
        part = column.slice(start, EMPTY_TEXTS_SLICE)
        blank = pc.is_null(part)
        if text:
            blank = pc.or_kleene(blank, pc.equal(pc.utf8_trim_whitespace(part), "")).fill_null(True)
        n = pc.sum(blank).as_py() or 0
        if n and first is None:
            first = start + pc.index(blank, True).as_py()
        count += n
    return count, first


def select_and_split(cfg, raw):
    """Apply --max_*_samples and make sure there is an evaluation split.

    The subsets are seeded random samples (by --data_seed, else --seed), not the first N rows: data files are
    often sorted by label (IMDb is), and the first 1000 rows would all be one class. The
    indices depend only on the seed and the number of rows, so every rank and every resume
    picks the same examples; they are kept in file order. When the evaluation split is still
    to be carved from train (--validation_split_percentage), the subsets are taken after the
    carve (carve_validation), so both flags count examples of the splits the run uses.
    """
    if EVAL not in raw and cfg.validation_split_percentage is None:
        if cfg.test_split:  # the Hub dataset's only other split is the held-out one
            raise UserError(f"dataset '{cfg.dataset_name}' has no evaluation split beside the held-out --test_split "
                            f"'{cfg.test_split}'; carve one from train with --validation_split_percentage 10, or name "
                            f"one with --eval_split.")
        raise UserError(
            "the data has no evaluation split; pass --validation_file, or carve one from train with "
            "--validation_split_percentage 10" + (" (--test_file is held out: it never picks best/)." if TEST in raw else ".")
        )
    if TRAIN in raw and len(raw[TRAIN]) == 0:
        raise UserError("the training data is empty; check --train_file.")
    if EVAL in raw:
        raw = limit(cfg, raw)
    return raw


def limit(cfg, raw):
    """--max_train_samples and --max_eval_samples: seeded subsets (see select_and_split)."""
    cut = set()  # the splits a subset was taken of (more rows than the limit; raw.subset_cut, Data.subset_cut)

    def take(split, n):
        if n is not None and split in raw:
            if len(raw[split]) > n:
                cut.add(split)
            raw[split] = subset(raw[split], n, cfg.data_seed_or_seed)

    take(TRAIN, cfg.max_train_samples)
    take(EVAL, cfg.max_eval_samples)
    take(TEST, cfg.max_test_samples)
    extras = [split for split in raw if extra_name(split) is not None]
    for split in extras:  # each extra evaluation set is cut like the evaluation data
        take(split, cfg.max_eval_samples)
    raw.subset_cut = cut
    if TRAIN in raw and len(raw[TRAIN]) == 0:
        raise UserError("the training data is empty; check --train_file / --max_train_samples.")
    if len(raw[EVAL]) == 0:
        raise UserError("the evaluation data is empty; check --validation_file / --max_eval_samples.")
    if TEST in raw and len(raw[TEST]) == 0:
        raise UserError("the test data is empty; check --test_file / --test_split / --max_test_samples.")
    for split in extras:
        if len(raw[split]) == 0:
            raise UserError(f"the {SPLIT_WORDS[split]} set is empty; check --extra_eval_files / --extra_eval_splits "
                            f"{extra_name(split)}.")
    return raw


def subset_indices(num_rows, n, seed):
    """The rows --max_*_samples keeps: `n` of `num_rows` drawn with `seed`, in file order."""
    if n >= num_rows:
        return list(range(num_rows))
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(num_rows, generator=g)[:n].sort().values.tolist()


def subset(ds, n, seed):
    """`n` rows of `ds` drawn at random (seeded), in file order; all rows if there are no more."""
    return ds if n >= len(ds) else ds.select(subset_indices(len(ds), n, seed))


def encode_labels(cfg, raw, head_labels=None, info=None, given=None, source=TRAIN, classes=False):
    """Turn the label column into ids 0..n-1 in a 'labels' column; return the label names.

    ClassLabel features keep their names (or take --label_names for display); string labels
    map through --label_names or, without it, their sorted unique values; integer labels are
    used as ids. Then, when the model's trained head knows the same names (`head_labels`, any
    case) in another order, the ids are renumbered to its rows: a fine-tuned sentiment or
    emotion model keeps predicting what it predicted, instead of its rows being relabelled
    (`info["head_order"]` is then True). `given`: label names in id order in place of --label_names'.
    `source`: the split whose labels define the classes (the evaluation split for --eval_only without
    training data); only the training split's classes bound the other splits'. `classes`: lists of one label
    are read as their class, as under --problem_type single_label_classification (--eval_only of a single-label
    model).
    """
    import datasets

    col = cfg.label_column
    given = given or cfg.label_list()
    train_feat = raw[source].features[col]
    if cfg.problem_type == "regression":
        if info is not None:
            info["regression"] = True
        return encode_regression_targets(cfg, raw, given, source)
    kinds = {split: _label_kind(ds, col, split) for split, ds in raw.items()}
    if "list" in kinds.values() and (cfg.problem_type == "single_label_classification" or classes):
        kinds = single_labels_from_lists(cfg, raw, kinds, "the model is single-label" if classes else
                                         "--problem_type single_label_classification")  # one-hot rows, [2], ["pos"]
    if "list" in kinds.values() or cfg.problem_type == "multi_label_classification":
        if "list" not in kinds.values():
            raise UserError(f"--problem_type multi_label_classification needs a list of labels per text, but label "
                            f"column '{col}' holds single {'names' if kinds[source] == 'str' else 'ids'}; write "
                            f"lists (json/jsonl/parquet: [\"ACTING\", \"STORY\"]), or leave --problem_type out.")
        if info is not None:
            info["multi_label"] = True
            if cfg.eval_only:  # (check_model_labels' advice)
                info["names_in_data"] = any(isinstance(v, str) for row in column_values(raw[source], col) for v in row)
        return encode_multi_labels(cfg, raw, kinds, head_labels, info, given, source)

    class_names = list(train_feat.names) if isinstance(train_feat, datasets.ClassLabel) else None
    if given and class_names is None and kinds[source] == "str":
        kinds = number_texts_as_ids(cfg, raw, kinds, given, source)
    if info is not None and cfg.eval_only:  # (check_model_labels' advice)
        info["names_in_data"] = class_names is None and kinds[source] == "str"  # the texts of the labels themselves
    if class_names is not None:
        names = given or class_names
        if given:
            if len(given) != len(class_names):
                raise UserError(f"--label_names has {len(given)} names but the label column has {len(class_names)} "
                                f"classes ({', '.join(class_names)}).")
            class_names = rename_class_labels(class_names, given)  # for each new id, the ClassLabel name it stands for
        to_id = None
        # (the ClassLabel's ids, as the data holds them: each one's name, --label_names applied)
        reading = [names[class_names.index(n)] for n in train_feat.names]
        if info is not None:
            info["class_names"] = list(train_feat.names)
    elif kinds[source] == "str":
        seen = sorted(set(column_values(raw[source], col)))
        if not given:  # labels listed in --label_names are meant
            check_near_duplicate_labels(seen)
            check_label_column(col, len(seen), len(raw[source]))
        names = given or seen
        unknown = sorted(set(seen) - set(names))
        if unknown:
            why = ("; numbers written as text are read as ids (the text '0' is id 0) only when --label_names names "
                   "none of them" if all(_is_int_text(v) for v in seen) else "")
            raise UserError(f"{SPLIT_WORDS[source]} labels {listed(unknown)} are not in --label_names ({listed(names)}); add them "
                            f"or fix the data{why}.")
        warn_unused_names(cfg, names, [n for n in names if n not in set(seen)], source)
        to_id = {n: i for i, n in enumerate(names)}
        reading = None  # texts: an integer id means nothing to this run
    else:  # integer ids
        ids = {int(v) for v in column_values(raw[source], col)}
        names = id_label_names(ids, given, source)
        n = len(names)
        to_id = None
        reading = list(names)
        unused = sorted(set(range(n)) - ids)
        if given:
            warn_unused_names(cfg, names, [names[i] for i in unused], source)
        elif unused and is_main_rank():
            warnings.warn(f"{SPLIT_WORDS[source]} label ids {_ranges(sorted(ids))} leave id(s) {_ranges(unused)} unused: the model "
                          f"gets {n} classes, {len(unused)} of them never trained (and f1/precision/recall become "
                          f"averages over classes); renumber the labels 0..{len(ids) - 1}, or name the ids with "
                          f"--label_names.", stacklevel=2)
    if len(names) < 2:
        raise UserError(f"the {SPLIT_WORDS[source]} data has a single label ('{names[0]}'); a classifier needs at least two.")
    if info is not None:  # how the labels were read, for best_metrics.json (label_reading)
        info["label_ids"], info["id_names"] = ("texts", None) if reading is None else ("positions", reading)
    row = head_order(names, head_labels)  # id -> the trained head's row for that name, or None
    if row is not None:
        if info is not None:
            info["head_order"] = True
        names = [names[i] for i in sorted(range(len(names)), key=row.__getitem__)]
        _say(f"data: label ids follow the model's trained head: {', '.join(names)}")
        if to_id is not None:
            to_id = {n: i for i, n in enumerate(names)}

    train_ids = None
    for split, ds in raw.items():
        feature = ds.features[col]
        if split != source and kinds[split] != kinds[source] and {kinds[split], kinds[source]} == {"int", "str"}:
            # one file names its classes, the other is a ClassLabel (ids with names): compare by name
            if to_id is not None and isinstance(feature, datasets.ClassLabel):
                ds, kinds[split] = _map_labels(ds, col, feature.int2str, datasets.Value("string"), split), "str"
            elif class_names is not None and kinds[split] == "str":
                position = {n: i for spelling in (names, class_names) for i, n in enumerate(spelling)}
                unseen = sorted(set(column_values(ds, col)) - set(position))
                if unseen:
                    raise UserError(f"{SPLIT_WORDS[split]} labels {listed(unseen)} are not among the training classes "
                                    f"({listed(class_names)}); fix the data or --label_names.")
                ds, kinds[split] = _map_labels(ds, col, position.__getitem__, datasets.Value("int64"), split), "int"
        if kinds[split] != kinds[source] and not (isinstance(ds.features[col], datasets.ClassLabel) and kinds[source] == "int"):
            raise UserError(f"the {SPLIT_WORDS[split]} labels are {kind_words(ds, col, kinds[split])} but the "
                            f"{SPLIT_WORDS[source]} labels are {kind_words(raw[source], col, kinds[source])}; use "
                            f"the same kind in every file.")
        if to_id is not None:
            unseen = sorted(set(column_values(ds, col)) - set(to_id))
            if unseen:
                raise UserError(f"{SPLIT_WORDS[split]} labels {listed(unseen)} were never seen in training (known: {listed(names)}); "
                                f"fix the data or --label_names.")
            encoded = [to_id[v] for v in column_values(ds, col)]
        else:
            # a ClassLabel's ids mean its own names: another file's ClassLabel may list them in another order
            own = ds.features[col].names if isinstance(ds.features[col], datasets.ClassLabel) else None
            by_name = class_id_map(own, class_names, split) if own is not None and class_names is not None else None
            if own is not None and class_names is None and given and not numbered_names(own):
                # plain ids named by --label_names, beside a ClassLabel that names its own ids: by name too (its
                # 0 may be another class than the ids' 0; taken as ids, every label was flipped, silently); names
                # none of which --label_names has rename by position, as over a training ClassLabel (IMDb's neg, pos
                # as NEGATIVE, POSITIVE), said once; a mix is refused
                folded = {g.casefold() for g in given}
                if len(own) == len(given) and not any(n.casefold() in folded for n in own):
                    _say(f"data: the {SPLIT_WORDS[split]} label column's classes {', '.join(own)} are taken as "
                         f"{', '.join(given)} (by position)")
                else:
                    by_name = class_id_map(own, given, split)
            if by_name is not None:
                ds = _map_labels(ds, col, by_name.__getitem__, datasets.Value("int64"), split)
            ids = {int(v) for v in column_values(ds, col)}
            if -1 in ids and split != source:  # the Hub's unlabelled rows (GLUE's test splits are all -1)
                raise UserError(f"{len(ds) if ids == {-1} else 'some'} {SPLIT_WORDS[split]} rows have the label -1, "
                                f"which the Hub uses for unlabelled rows (GLUE's test splits), so they cannot be scored; "
                                + ("hold out a labelled split or file, or drop --test_split / --test_file."
                                   if split == TEST else
                                   f"drop {extra_name(split)} from --extra_eval_splits / --extra_eval_files."
                                   if extra_name(split) is not None else "evaluate on a labelled split (--eval_split) or "
                                   "carve one (--validation_split_percentage 10)."))
            bad = sorted(i for i in ids if not 0 <= i < len(names))
            if bad:
                raise UserError(f"{SPLIT_WORDS[split]} labels {bad[:5]} are outside 0..{len(names) - 1}; the model has {len(names)} labels.")
            if split == source:
                train_ids = ids
            elif source == TRAIN and train_ids is not None and ids - train_ids:
                raise UserError(f"{SPLIT_WORDS[split]} labels {sorted(ids - train_ids)[:5]} were never seen in training; fix the data.")
            renumber = int if row is None else (lambda v: row[int(v)])
            encoded = [renumber(v) for v in column_values(ds, col)]
        raw[split] = with_class_ids(ds, encoded, names)
    return names


def single_labels_from_lists(cfg, raw, kinds, why="--problem_type single_label_classification"):
    """--problem_type single_label_classification over label lists: one-hot rows (multi_hot_as_lists has made
    them [1] or ["mid"]) and one-element lists ([2], ["pos"]) hold a text's one class: each list becomes its
    element. A list of another length is refused, naming its row. Returns the kinds of the splits anew. `why`:
    what says they are classes, for the line that says so."""
    col = cfg.label_column
    for split, kind in kinds.items():
        if kind != "list":
            continue
        ds = raw[split]
        row = next(((i, r) for i, r in enumerate(column_values(ds, col)) if len(r) != 1), None)
        if row is not None:
            i, r = row
            raise UserError(f"--problem_type single_label_classification, but the {SPLIT_WORDS[split]} label column "
                            f"'{col}' holds lists, and row {i} has {len(r)} labels ({listed(r) or 'none'}); use "
                            f"multi_label_classification for a set of labels per text, or one label per text.")
        raw[split] = _map_labels(ds, col, lambda r: r[0], ds.features[col].feature, split)
    _say(f"data: label column '{col}' holds one label per list (one-hot rows or [id]): each is read as its class "
         f"({why})")
    return {split: _label_kind(ds, col, split) for split, ds in raw.items()}


def one_label_per_list(cfg, raw):
    """Whether the label column holds lists (one-hot rows made lists by multi_hot_as_lists, [2], ["pos"]) of
    exactly one label each, in every split."""
    import datasets

    col = cfg.label_column
    return all(isinstance(ds.features[col], datasets.List) for ds in raw.values()) and \
        all(isinstance(row, list) and len(row) == 1 for ds in raw.values() for row in column_values(ds, col))


def number_texts_as_ids(cfg, raw, kinds, given, source):
    """Labels written as numbers in text ("0", "1": a JSON or Parquet string column) beside --label_names that
    name none of them (NEGATIVE,POSITIVE) are ids, as the same numbers written as integers are: the text "0"
    is id 0. Returns the kinds of the splits anew (unchanged when a name spells one of the numbers: then the
    labels are those names)."""
    import datasets

    col = cfg.label_column
    seen = set(column_values(raw[source], col))
    if not seen or not all(_is_int_text(v) for v in seen) or seen & set(given):
        return kinds
    read = {split: ds for split, ds in raw.items()
            if kinds[split] == "str" and all(_is_int_text(v) for v in column_values(ds, col))}
    check_one_spelling(col, {v for ds in read.values() for v in column_values(ds, col)})
    for split, ds in read.items():
        raw[split] = _map_labels(ds, col, int, datasets.Value("int64"), split)
    _say(f"data: label column '{col}' holds numbers written as text, none of them a name of --label_names: "
         f"read as ids (the text '0' is id 0, {given[0]})")
    return {split: _label_kind(ds, col, split) for split, ds in raw.items()}


def check_one_spelling(col, texts):
    """Numbers written as text about to be read as ids: two spellings of one number ('1' and '01') would make two
    labels one id, silently (as names, without --label_names, they are two classes)."""
    first = {}
    for text in sorted(texts):
        other = first.setdefault(int(text), text)
        if other != text:
            raise UserError(f"label column '{col}' holds '{other}' and '{text}', both the number {int(text)}, and "
                            f"numbers written as text are read here as ids (the text '0' is id 0), so the two would "
                            f"be one label; write each number one way in the data.")


def id_label_names(ids, given, source):
    """The class names of integer label ids (single-label ids, or the ids in multi-label rows): --label_names
    (`given`), else LABEL_0..LABEL_<max id>. Refused: ids outside them, and without names ids far sparser than
    0..max (each id up to the largest would become a class, a row of the model's head)."""
    if not given and max(ids, default=0) + 1 > max(MAX_UNUSED_LABELS, 2 * len(ids)):
        raise UserError(f"{SPLIT_WORDS[source]} label ids go up to {max(ids)} but only {len(ids)} distinct ids appear; "
                        f"renumber them 0..{len(ids) - 1} or give their names with --label_names.")
    n = len(given) if given else max(ids, default=-1) + 1
    bad = sorted(i for i in ids if not 0 <= i < n)
    if bad:
        raise UserError(outside_ids(SPLIT_WORDS[source], bad, n, given))
    if given:
        check_numbered_names(given, ids, source)
    return given or [f"LABEL_{i}" for i in range(n)]


def check_numbered_names(given, ids, source, alone=""):
    """Integer ids named by --label_names that are numbers themselves: the names go by position, so with
    --label_names 1,2,3 the id 1 is named '2'. When every id is also one of the names, the labels may as
    well mean the names of their own number (the stars 1 and 2, scored by a model trained on the texts
    "1", "2", "3"; 12 classes whose names a model sorted as text, 0, 1, 10, 11, 2, ...): scored by position,
    silently wrong (0.0 and 0.125 where 1.0 was right). Refused, naming an id. When some id is none of the
    numbers (ids 0..4 named 1..5: stars counted from 0), only the position can be meant. `alone`: what
    --eval_only does without --label_names (eval_only_labels), said in the advice to leave them out."""
    numbers = [int(g) if _is_int_text(g) else None for g in given]
    if None in numbers:
        return
    moved = [i for i in sorted(ids) if numbers[i] != i]
    if not moved or not set(ids) <= set(numbers):
        return
    i = moved[0]
    raise UserError(f"--label_names {listed(given)} name the ids by position, so the {SPLIT_WORDS[source]} label "
                    f"{i} would be named '{given[i]}', but {i} is also one of those names; list them so that each "
                    f"number is at its own position, leave --label_names out{alone}, or write the labels in the data "
                    f"as the names they mean.")


def recorded_positions(reading, model_labels):
    """The names a training run gave its data's ids and multi-hot positions, in the model's spelling, where its
    best_metrics.json records them ("label_ids": "positions") and they are the model's labels; else None."""
    recorded = (reading or {}).get("label_names")
    if (reading or {}).get("label_ids") != "positions" or not isinstance(recorded, list) or not model_labels:
        return None
    spelled = {str(n).casefold(): n for n in model_labels}
    if sorted(str(n).casefold() for n in recorded) != sorted(spelled) or len(recorded) != len(model_labels):
        return None
    return [spelled[str(n).casefold()] for n in recorded]


def label_reading(data):
    """How a training run read its labels, for best/best_metrics.json (None for a regression): {"label_ids":
    "texts"} when they were texts (names; numbers written as text too: an integer id means nothing to such a
    run), {"label_ids": "positions", "label_names": [...]} when they were integer ids (also numbers written as
    text beside --label_names, a ClassLabel's ids, one-hot positions), with the name the run gave each id, in
    id order (--label_names, the ClassLabel's names, or LABEL_i), and for a ClassLabel its own names ("class_names":
    IMDb's neg, pos). --eval_only reads integer ids by it (eval_only_labels): a model trained on ids 0..2 named
    1,2,3 was scored "by number" at 0.0 where its run scored 1.0; and data of the run's ClassLabel as the run did
    (the default job's own test split was refused: neg, pos are not NEGATIVE, POSITIVE)."""
    read = getattr(data, "label_ids", None)  # (a variant's own data object may not say)
    if getattr(data, "regression", False) or read not in ("texts", "positions"):
        return None
    if read == "texts":
        return {"label_ids": "texts"}
    classes = getattr(data, "class_names", None)
    return {"label_ids": "positions", "label_names": list(data.id_names), **({"class_names": list(classes)} if classes else {})}


def own_number_order(names):
    """The model's number labels ordered so that each that is a position (0..n-1) stands at its own, the others
    filling the rest in order (1,2,3 -> 3,1,2; 0, 1, 10, 11, 2, ... -> 0..11): --label_names that read each id as
    the label of its own number."""
    n = len(names)
    own = {int(x): x for x in names if 0 <= int(x) < n}
    rest = iter(x for x in names if not 0 <= int(x) < n)
    return [own[i] if i in own else next(rest) for i in range(n)]


def eval_only_labels(cfg, raw, model_labels, reading=None):
    """--eval_only with no training data: the label names to encode with, in id order: --label_names,
    else the model's own (`model_labels`, its id2label). Labels given by name are respelled as those
    names spell them (matched ignoring case); a name not among them or an id outside them is refused,
    naming them. Without --label_names, a ClassLabel must name the model's classes (any case and order:
    matched by name).

    Integer ids are read as the training run read its labels (`reading`: best/best_metrics.json's, see
    label_reading): a run that trained on ids recorded the name of each, and an id is the name of its position
    there (said once; also with those same --label_names given). A run that trained on texts gave ids no
    meaning: they are its labels only when these are LABEL_i, or numbers written as text ("1", "2", "3"; "0",
    "1", "10", ... as sorted as text), where an id is the label of its own number (said once). Without a
    record (a loop before 2026-12-04, a model from elsewhere) number labels are read by number where only
    that fits the ids, and refused naming both readings where the position fits too; --label_names with the
    model's labels in id order then reads them by position. Ids beside other names could mean either order,
    so --label_names must say which. Numbers written as text that name none of the labels are ids, as the
    same numbers as integers."""
    import datasets

    given = cfg.label_list()
    names = given or model_labels
    if not names or cfg.problem_type == "regression":
        return names
    col, known = cfg.label_column, ", ".join(names)
    whose = "--label_names" if given else "the model's labels"
    spelled = {str(n).casefold(): n for n in names}
    fold = lambda seq: [str(n).casefold() for n in seq]  # noqa: E731
    model = [str(n) for n in (model_labels or names)]
    read, recorded = (reading or {}).get("label_ids"), (reading or {}).get("label_names")
    run_classes = (reading or {}).get("class_names")  # the ClassLabel the run trained on, where it was one
    if read == "positions" and not (isinstance(recorded, list) and sorted(fold(recorded)) == sorted(fold(model))):
        read = None  # names that are not the model's labels (an edited best/): the record says nothing
    # ids by position in a list of names: the run's (it trained on ids so named), or for a model that records
    # nothing, the model's labels in id order given as --label_names (what the refusal below offers)
    by_position = None
    if read == "positions" and (not given or fold(given) == fold(recorded)) \
            and recorded != [f"LABEL_{i}" for i in range(len(model))]:
        by_position = [spelled[n.casefold()] for n in fold(recorded)]
    elif read is None and given and fold(given) == fold(model):
        by_position = list(given)
    # the model's labels are numbers written as text ("1", "2", "3"; "0", "1", "10", "11", "2", ...: sorted as
    # text) and its run read texts (or records nothing): an integer label means the name of its own number
    numbered = {int(n): n for n in names} if all(_is_int_text(str(n)) for n in names) else {}
    numbered = numbered if len(numbered) == len(names) and not given else {}
    if given and read == "texts":
        alone = " (--eval_only then matches each id to the model's label of that number)"
    elif given and read == "positions":
        alone = (f" (--eval_only then reads each id as the training run did: by the names its best_metrics.json "
                 f"records, {','.join(recorded)})")
    else:
        alone = ""
    said = {}  # how the splits' ids were read ("by_number", "by_run") -> the splits
    read_ids = set()  # the ids read as the run read them
    for split, ds in list(raw.items()):
        where, feature = SPLIT_WORDS[split], ds.features[col]
        own = getattr(getattr(feature, "feature", feature), "names", None)  # a ClassLabel's (or a list of them)
        if own is not None and not given and {str(n).casefold() for n in own} != set(spelled) \
                and by_position is not None and isinstance(run_classes, list) and fold(own) == fold(run_classes):
            # the ClassLabel the training run read by position (IMDb's neg, pos named NEGATIVE, POSITIVE): as it did
            mapping = dict(enumerate(by_position))
            to_names = (lambda row, m=mapping: [m[int(v)] for v in row]) if hasattr(feature, "feature") else \
                (lambda v, m=mapping: m[int(v)])
            as_text = datasets.List(datasets.Value("string")) if hasattr(feature, "feature") else datasets.Value("string")
            raw[split] = _map_labels(ds, col, to_names, as_text, split)
            said.setdefault("classes", []).append(where)
            continue
        if own is not None and not given and {str(n).casefold() for n in own} != set(spelled):
            raise UserError(f"the {where} label column's classes ({listed(own)}) are not the model's labels "
                            f"({known}); say which is which with --label_names: for each class, in that order, the "
                            f"model's name for it; or score it with a model trained on these classes.")
        if isinstance(feature, datasets.ClassLabel):
            continue  # the same names (any case): encode_labels matches them by name; --label_names: by position
        kind = _label_kind(ds, col, split)
        lists = kind == "list"
        values = [v for row in column_values(ds, col) for v in (row if lists else [row])]
        if kind == "str" and values and all(_is_int_text(v) for v in values) \
                and not any(v.casefold() in spelled for v in values):
            # numbers written as text that name none of the labels: ids, as the same numbers written as integers
            check_one_spelling(col, set(values))
            ds = raw[split] = _map_labels(ds, col, int, datasets.Value("int64"), split)
            kind, values = "int", [int(v) for v in values]
        if kind == "list" and values and all(not isinstance(v, str) for v in values):
            kind = "int"  # lists of ids
        ids = sorted({int(v) for v in values}) if kind == "int" else []
        mapping = None  # id -> the name it is read as
        if kind == "int" and own is None and by_position is not None:
            bad = [i for i in ids if not 0 <= i < len(by_position)]
            if bad:
                named = "the training run named" if read == "positions" else "of --label_names"
                raise UserError(f"{where} label ids {listed(bad)} are outside 0..{len(by_position) - 1}, the ids "
                                f"{named} ({', '.join(by_position)}); fix the data.")
            mapping = dict(enumerate(by_position))
            if read == "positions":
                said.setdefault("by_run", []).append(where)
                read_ids.update(ids)
        elif kind == "int" and own is None and numbered:
            missing = [i for i in ids if i not in numbered]
            if missing:
                # ids from 0 beside labels from 1 (stars 0..4 of a model trained on "1".."5") may count the
                # labels by position: --label_names says so unambiguously (check_numbered_names)
                counted = 0 in missing and ids[-1] < len(names)
                raise UserError(f"the {where} label id(s) {listed(missing)} match none of the model's labels "
                                f"({known}), which are numbers, and an id means the label of its own number; fix "
                                f"the data" + (f", or if the ids count the model's labels from 0, say so with "
                                               f"--label_names {','.join(names)} (the name of the data's id 0, then "
                                               f"of id 1, and so on)." if counted else "."))
            moved = [i for i in ids if i < len(names) and names[i] != numbered[i]]
            if read is None and moved and ids[-1] < len(names):
                # both readings fit these ids, and nothing says how the model's run read its labels: never guess
                i = moved[0]
                raise UserError(f"the {where} label ids ({listed(ids)}) can mean the model's labels of the same "
                                f"number (id {i} is '{numbered[i]}') or its labels at those positions (id {i} is "
                                f"'{names[i]}'), and '{cfg.model_name_or_path}' does not record how its training "
                                f"read its labels (best/best_metrics.json of a loop since 2026-12-04 does); say which "
                                f"with --label_names: {','.join(own_number_order(names))} reads each id as its "
                                f"number, {','.join(names)} as a position.")
            mapping = numbered
            said.setdefault("by_number", []).append(where)
        if mapping is not None:
            if lists:
                raw[split] = _map_labels(ds, col, lambda row, m=mapping: [m[int(v)] for v in row],
                                         datasets.List(datasets.Value("string")), split)
            else:
                raw[split] = _map_labels(ds, col, lambda v, m=mapping: m[int(v)], datasets.Value("string"), split)
            continue
        if kind == "int" and own is None and given:
            check_numbered_names(given, ids, split, alone)
        if kind == "int" and own is None and not given and names != [f"LABEL_{i}" for i in range(len(names))]:
            raise UserError(f"the {where} labels are ids ({listed(ids)}) but the model's labels have names ({known}); "
                            f"say which name each id means with --label_names: the name of the data's id 0, then "
                            f"of id 1, and so on.")
        if kind == "int":
            bad = [i for i in ids if not 0 <= i < len(names)]
            if bad:
                raise UserError(f"{where} label ids {listed(bad)} are outside 0..{len(names) - 1}, the ids of "
                                f"{whose} ({known}); fix the data.")
            continue
        unknown = sorted({str(v) for v in values if str(v).casefold() not in spelled})
        if unknown:
            raise UserError(f"{where} labels {listed(unknown)} are not among {whose} ({known}); fix the data"
                            + (", or --label_names." if given else ", or score it with a model trained on them."))

        def respell(batch):
            return {col: [[spelled[str(v).casefold()] for v in row] if isinstance(row, list) else
                          spelled[str(row).casefold()] for row in batch[col]]}

        raw[split] = ds.map(respell, batched=True, desc=f"labels ({split})")
    if said.get("by_number"):
        # (an example whose position differs from its number, where there is one: what matching by position
        # would have got wrong)
        n = next((n for i, n in enumerate(names) if int(n) != i), names[0])
        _say(f"data: the {' and '.join(said['by_number'])} label ids are the model's labels of the same number (id "
             f"{int(n)} is '{n}'), not the labels at those positions")
    if said.get("classes"):
        pairs = ", ".join(f"{c} is '{n}'" for c, n in zip(run_classes, by_position))
        _say(f"data: the {' and '.join(said['classes'])} label classes are read as the model's training run read "
             f"them ({pairs}, from its best_metrics.json)")
    if said.get("by_run"):
        # (an id whose name is not its own number, where there is one: what reading by number would get wrong)
        i = next((i for i in sorted(read_ids) if by_position[i] != str(i)), min(read_ids, default=0))
        _say(f"data: the {' and '.join(said['by_run'])} label ids are read as the model's training run read its own "
             f"(id {i} is '{by_position[i]}': {','.join(by_position)} in id order, from its best_metrics.json)")
    return list(names)


PROBLEMS = {"single_label_classification": "single-label classification (one label per text)",
            "multi_label_classification": "multi-label classification (a list of labels per text)",
            "regression": "regression (a number per text)"}


def check_model_problem(cfg, info, trained):
    """--eval_only: the data, as read, must be what the model was trained for (`trained`, a PROBLEMS
    key, or None when its config does not say: single- or multi-label); a multi-label model scored
    with softmax, a classifier's first logit read as a number, ... would be scored wrong."""
    problem = ("regression" if info.get("regression") else "multi_label_classification" if info.get("multi_label")
               else "single_label_classification")
    if problem == trained or (trained is None and problem != "regression"):
        return
    trained = trained or "single_label_classification"
    if cfg.problem_type == problem:  # the flag made it so
        fix = f"drop --problem_type {problem}"
    else:
        fix = {"regression": "give a number per text", "single_label_classification": "give one label per text",
               "multi_label_classification": "give a list of labels per text (json, jsonl or parquet)"}[trained]
    raise UserError(f"'{cfg.model_name_or_path}' was trained for {PROBLEMS[trained]}, but the data is read as "
                    f"{PROBLEMS[problem]}; {fix}, or score a model trained for {PROBLEMS[problem].split(' (')[0]}.")


def check_model_labels(cfg, label_names, model_labels, info):
    """--eval_only: the data's classes (as encoded, --label_names applied) must be the model's labels,
    in any case and order (the ids follow the model's rows by name). Other names would be scored by
    position against rows trained for something else. Labels written as names in the data are renamed
    there; ids and a ClassLabel's classes take the model's names through --label_names."""
    if not model_labels or info.get("regression"):
        return
    if {n.casefold() for n in label_names} != {str(n).casefold() for n in model_labels}:
        fix = ("rename them in the data to the model's names" if info.get("names_in_data") else
               "say which is which with --label_names: for each of the data's labels, in id order, the model's name "
               "for it")
        if info.get("names_in_data") and all(_is_int_text(n) for n in label_names):
            # numbers written as text beside --label_names that name none of them are ids (number_texts_as_ids):
            # the run that trained on them so passed its --label_names, which reads them again
            fix = (f"they are numbers written as text, which --label_names reads as ids: pass the run's --label_names "
                   f"(the model's name for the data's label 0, then for 1, and so on; its labels in id order are "
                   f"{','.join(str(n) for n in model_labels)}), or rename them in the data to the model's names")
        raise UserError(f"the data's labels ({listed(label_names)}) are not the model's ({listed(model_labels)}); "
                        f"{fix}; or score a model trained on these labels.")


def check_final_splits(raw, names, kind):
    """The labels of the final splits (carved and cut to --max_*_samples), by kind ('single', 'multi',
    'regression'): training data a model learns nothing from is refused, evaluation data whose scores
    say little is warned about."""
    if kind == "single":
        return check_classes_present(raw, names)
    if kind == "regression":
        for split, ds in raw.items():
            targets = np.asarray(column(ds, "labels"), dtype=np.float32)
            if len(targets) and targets.min() == targets.max():
                if split == TRAIN:
                    raise UserError(f"every training example has the target {targets[0]:g}: a regression learns "
                                    f"nothing from that; check the data, --label_column and --max_train_samples.")
                if is_main_rank():
                    given, cut = SPLIT_FLAGS[split]
                    warnings.warn(f"every {SPLIT_WORDS[split]} example has the target {targets[0]:g}: r2, pearson and "
                                  f"spearman are 0 on it whatever the model does; check {given} and {cut}.",
                                  stacklevel=2)
        return
    for split, ds in raw.items():
        counts = np.asarray(column(ds, "labels"), dtype=np.float32).reshape(len(ds), -1).sum(0)
        where = SPLIT_WORDS[split]
        if len(ds) and counts.sum() == 0:
            if split == TRAIN:
                raise UserError("no training example has any label (every list is empty); a classifier learns "
                                "nothing from that; check the data and --label_column.")
            if is_main_rank():
                warnings.warn(f"no {where} example has any label (every list is empty): f1, precision and recall "
                              f"are 0 on it whatever the model does; check {SPLIT_FLAGS[split][0]}.", stacklevel=2)
            continue
        if split == TRAIN and len(ds) and counts.min(initial=1) == len(ds):
            raise UserError("every training example has every label; a classifier learns nothing from that; check "
                            "the data.")
        never = [names[i] for i in np.flatnonzero(counts == 0)]
        if split == TRAIN and never and is_main_rank():
            warnings.warn(f"label(s) {', '.join(never[:5])} apply to no {where} example: the model learns never to "
                          f"predict them; check the data, and --label_names or the --label_column list.",
                          stacklevel=2)


def check_classes_present(raw, names):
    """Single-label data, after the splits are final (carved and cut to --max_*_samples): training on
    one class is refused (it learns nothing), evaluating on one class is warned about."""
    for split, ds in raw.items():
        present = sorted(set(column_values(ds, "labels")))
        if len(present) == 1:
            what = f"'{names[present[0]]}'"
            if split == TRAIN:
                raise UserError(f"every training example has the label {what} (a model trained on one class learns "
                                f"nothing); check the data, --label_column and --max_train_samples.")
            if is_main_rank():
                given, cut = SPLIT_FLAGS[split]
                also = " and --validation_split_percentage" if split == EVAL else ""
                warnings.warn(f"every {SPLIT_WORDS[split]} example has the label {what}: accuracy on it says little; "
                              f"check {given}, {cut}{also}.", stacklevel=2)


def encode_multi_labels(cfg, raw, kinds, head_labels=None, info=None, given=None, source=TRAIN):
    """Multi-label data: each label is a list of names (or of integer ids), possibly empty. The
    'labels' column becomes a multi-hot float row per example (1.0 where the label applies), as
    transformers' multi_label_classification loss takes it; returns the label names.

    Names: --label_names, or the sorted names seen in training; ids: 0..n-1. A trained head that
    knows the same names in another order decides their order (as for single-label data)."""
    import datasets

    col, given = cfg.label_column, given or cfg.label_list()
    for split, kind in kinds.items():
        if kind != "list":
            where = SPLIT_WORDS[split]
            what = {"str": "single names", "int": "single ids"}.get(kind, kind)
            raise UserError(f"the {where} labels are {what} but the others are lists (multi-label); use lists of "
                            f"label names in every file.")
    # List(ClassLabel) ids mean their own split's names: when the splits name their classes differently
    # (another order, or names as text in the other file), compare by name
    own = {split: list(ds.features[col].feature.names) for split, ds in raw.items()
           if isinstance(getattr(ds.features[col], "feature", None), datasets.ClassLabel)}
    class_order = None
    if own and (len({tuple(n) for n in own.values()}) > 1 or len(own) < len(raw)):
        class_order = own.get(source)
        for split, names_of in own.items():
            raw[split] = _map_labels(raw[split], col, lambda ids, n=names_of: [n[i] for i in ids],
                                     datasets.List(datasets.Value("string")), split)
    element = {}  # "str" / "int" -> (split, row) of its first occurrence
    for split, ds in raw.items():
        for i, row_values in enumerate(column_values(ds, col)):
            for v in row_values:
                element.setdefault("str" if isinstance(v, str) else "int", (split, i))
    if len(element) > 1:
        raise UserError(f"label column '{col}' mixes names and integer ids inside its lists (row {element['int'][1]} "
                        f"of {element['int'][0]} has an id); use one kind.")
    inner = getattr(raw[source].features[col], "feature", None)  # List(ClassLabel): ids with names (go_emotions)
    class_names = list(inner.names) if isinstance(inner, datasets.ClassLabel) else None
    by_name = (element.get("str") is not None or not element) and class_names is None
    train_values = {v for row in column_values(raw[source], col) for v in row}
    if class_names is not None:
        if given and len(given) != len(class_names):
            raise UserError(f"--label_names has {len(given)} names but the label column has {len(class_names)} "
                            f"classes ({', '.join(class_names)}).")
        names = given or class_names
        spelled = rename_class_labels(class_names, given) if given else class_names  # matched by name, as single-label
        reading = [names[spelled.index(n)] for n in class_names]
        if info is not None:
            info["class_names"] = list(class_names)
    elif by_name:
        if not given:
            check_near_duplicate_labels(sorted(train_values))
        names = given or class_order or sorted(train_values)
        unknown = sorted(train_values - set(names))
        if unknown:
            raise UserError(f"{SPLIT_WORDS[source]} labels {unknown[:5]} are not in --label_names ({', '.join(names)}); add them or "
                            f"fix the data.")
        reading = None
    else:
        names = id_label_names({int(v) for v in train_values}, given, source)
        reading = list(names)
    if len(names) < 2:
        raise UserError(f"the {SPLIT_WORDS[source]} data names {len(names)} label(s) ({', '.join(names) or 'none'}); multi-label "
                        f"classification needs at least two (or give all of them with --label_names).")
    if info is not None:  # how the labels were read, for best_metrics.json (label_reading)
        info["label_ids"], info["id_names"] = ("texts", None) if reading is None else ("positions", reading)
    asked = cfg.eval_only or cfg.was_given("problem_type")  # (the model's, or the user's, choice)
    if not asked and all(len(r) == 1 for r in column_values(raw[source], col)):
        # one-hot rows ([0, 1, 0]: Keras' to_categorical) or [2] are single-label data: trained multi-label, a
        # text's labels are the sigmoids above 0.5, often none ("labels": []) where a class was wanted
        _say(f"data: every {SPLIT_WORDS[source]} text has exactly one label: this looks like single-label data "
             f"(one-hot rows, [2]), trained here as multi-label; to train it as classes (every text gets one), "
             f"pass --problem_type single_label_classification")
    position = {(n if by_name else i): i for i, n in enumerate(names)}  # a value -> its column
    if class_names is not None:  # a ClassLabel id -> the column of its name
        position = {i: spelled.index(n) for i, n in enumerate(class_names)}
    row = head_order(names, head_labels)
    if row is not None:
        if info is not None:
            info["head_order"] = True
        position = {value: row[i] for value, i in position.items()}
        names = [names[i] for i in sorted(range(len(names)), key=row.__getitem__)]
        _say(f"data: label columns follow the model's trained head: {', '.join(names)}")
    k = len(names)

    def multi_hot(batch):
        out = []
        for values in batch[col]:
            hot = [0.0] * k
            for v in values:
                hot[position[v if by_name else int(v)]] = 1.0
            out.append(hot)
        return {"labels": out}

    for split, ds in raw.items():
        seen = {v if by_name else int(v) for row in column_values(ds, col) for v in row}
        unseen = sorted(seen - set(position), key=str)
        if unseen:
            raise UserError(f"{SPLIT_WORDS[split]} labels {unseen[:5]} were never seen in training (known: {', '.join(names)}); fix "
                            f"the data or --label_names.")
        # written as float32 rows of k at once: a cast afterwards would copy the whole table once more
        features = ds.features.copy()
        features["labels"] = datasets.Sequence(datasets.Value("float32"), length=k)
        raw[split] = ds.map(multi_hot, batched=True, features=features, desc=f"labels ({split})")
    return names


def encode_regression_targets(cfg, raw, given=None, source=TRAIN):
    """Regression (--problem_type regression): each label is a number, the model's one output is trained
    toward it with mean squared error. The 'labels' column becomes float32; returns the output's one
    name (--label_names, else the label column's). Refused: a missing, non-numeric or infinite
    target, or one whose square overflows float32 (large ones are warned about); constant targets
    are checked on the final splits (check_final_splits)."""
    import datasets

    col = cfg.label_column
    # --eval_only of a regression model sets the problem type from its config: name that, not a flag not given
    why, fix = (("--problem_type regression", "leave --problem_type out to classify") if cfg.was_given("problem_type")
                else (f"model '{cfg.model_name_or_path}' is a regression model (its config.json)",
                      "score it on the data it was trained for (its --label_column)"))
    for split, ds in raw.items():
        where = SPLIT_WORDS[split]
        feature = ds.features[col]
        if isinstance(feature, datasets.ClassLabel):
            raise UserError(f"{why}, but the {where} label column '{col}' holds classes "
                            f"({', '.join(feature.names[:4])}); regression needs a number per text.")
        values = column_values(ds, col)
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                raise UserError(f"{where} row {i} has no label in column '{col}'; fill or drop it.")
            if isinstance(v, str) and is_number_text(v):
                if not math.isfinite(float(v)):
                    raise UserError(f"the {where} label in row {i} is {v.strip()!r}; regression targets must be finite "
                                    f"numbers.")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise UserError(f"{why}: it needs a number per text, but the {where} label in row {i} "
                                f"is {v!r}; fix the data, or {fix}.")
            if not math.isfinite(v):
                raise UserError(f"the {where} label in row {i} is {v}; regression targets must be finite numbers.")
        targets = np.asarray([float(v) for v in values], dtype=np.float32)
        if not np.isfinite(targets).all():  # a finite float64 beyond float32's range, or 'inf' as text
            i = int(np.flatnonzero(~np.isfinite(targets))[0])
            raise UserError(f"the {where} label in row {i} ({values[i]!r}) is not a finite float32 number; rescale the "
                            f"targets.")
        if split != source and len(targets) >= 10 and (targets == -1).all():  # STS-B's test split on the Hub
            raise UserError(f"every {where} target is -1, which the Hub uses for unlabelled rows (GLUE's test "
                            f"splits, STS-B's too), so they cannot be scored; evaluate on a labelled split (e.g. "
                            f"--eval_split validation) and leave the unlabelled one out.")
        big = float(np.abs(targets).max(initial=0))
        if big > math.sqrt(np.finfo(np.float32).max):  # the squared error overflows float32: NaN at the first steps
            raise UserError(f"{where} targets reach {big:.3g}, too large for a squared error in float32; rescale the "
                            f"targets (e.g. standardize: subtract the mean, divide by the standard deviation).")
        if split == TRAIN and big >= LARGE_TARGET and is_main_rank():
            warnings.warn(f"training targets reach {big:.3g}: a fresh head starts near 0, so the squared errors are "
                          f"huge and training slow or unstable; standardizing the targets usually trains better.",
                          stacklevel=2)
        ds = ds.remove_columns([c for c in ("labels",) if c in ds.column_names])  # a label column named so
        raw[split] = ds.add_column("labels", targets.tolist()).cast_column("labels", datasets.Value("float32"))
    names = given or cfg.label_list() or [col]
    return names


LARGE_TARGET = 1e4  # regression targets this large are worth standardizing


def is_number_text(v):
    """'3.5', ' -2 ', '1e3', 'nan', 'inf' (refused later as not finite); not '1_000' (Python's digit grouping)."""
    try:
        float(v)
        return "_" not in v
    except ValueError:
        return False


def check_label_kind(data, metric_names, own_metrics, base):
    """Labels that suit the loop's own evaluation (`base`: which of evaluation_loss and compute_metrics
    are the loop's). Class ids do; the loop's own multi-label rows do, with the multi-label metrics;
    other labels (a variant's multi-hot vectors, scores) are refused unless both are overridden: the
    cross-entropy of a multi-hot vector would be computed, silently wrong, and the metrics would fail
    only at the first evaluation, after an epoch of training."""
    from .scores import AVERAGED, MULTI_LABEL_METRICS, REGRESSION_METRICS

    def only(allowed, scored_with):  # metrics outside `allowed` need the variant's own compute_metrics
        other = [n for n in metric_names if n not in allowed + ("loss",) and n not in own_metrics]
        if other and "compute_metrics" in base:
            shown = ", ".join(n for n in allowed if n not in AVERAGED)
            if allowed is MULTI_LABEL_METRICS:
                shown += " (f1, precision and recall pooled over the labels; f1_macro, f1_weighted and the like per label)"
            raise UserError(f"--metric/--metrics {', '.join(other)}: {scored_with} {shown} or loss; choose among "
                            f"those, or compute your own in compute_metrics (own_metrics).")

    if getattr(data, "regression", False):
        return only(REGRESSION_METRICS, "a regression is scored with")
    numeric = [n for n in metric_names if n in REGRESSION_METRICS and n not in own_metrics]
    if numeric and "compute_metrics" in base:
        raise UserError(f"--metric/--metrics {', '.join(numeric)}: {'that is a' if len(numeric) == 1 else 'those are'} "
                        f"regression metric{'s' if len(numeric) > 1 else ''}, and these labels are classes; use "
                        f"accuracy, f1, precision, recall or matthews_correlation, or --problem_type regression for "
                        f"numeric targets.")
    if getattr(data, "multi_label", False):
        return only(MULTI_LABEL_METRICS, "multi-label data is scored with")
    feature = getattr(getattr(data, "eval", None), "features", {}).get("labels")
    dtype = getattr(feature, "dtype", None)
    if feature is None or type(feature).__name__ == "ClassLabel" or (isinstance(dtype, str) and "int" in dtype):
        return
    if base:
        raise UserError(f"the evaluation labels are not class ids ({feature}); the loop's own "
                        f"{' and '.join(base)} take class ids: override {'them' if len(base) > 1 else 'it'} for "
                        f"these labels (multi-label: binary cross-entropy, F1 of thresholded sigmoids).")


def rename_class_labels(class_names, given):
    """--label_names over a ClassLabel column (same count): for each new id, the ClassLabel name it
    stands for. The same names in another order (any case) are matched by name, so the ids follow
    --label_names' order; other names rename the classes by position (said once); a mix, where a
    class would take another class's name, is refused."""
    fold = {n.casefold(): n for n in class_names}
    if set(fold) == {g.casefold() for g in given} and len(fold) == len(given):
        return [fold[g.casefold()] for g in given]
    moved = [(g, class_names.index(fold[g.casefold()])) for i, g in enumerate(given)
             if g.casefold() in fold and class_names[i].casefold() != g.casefold()]
    if moved:
        g, j = moved[0]
        raise UserError(f"--label_names {', '.join(given)} would rename the label column's classes "
                        f"({', '.join(class_names)}) by position, giving '{g}' to a class other than id {j} '{class_names[j]}'; "
                        f"list the same names in any order (matched by name), or all new names in the column's order.")
    if [g.casefold() for g in given] != [n.casefold() for n in class_names]:
        _say(f"data: the label column's classes {', '.join(class_names)} are named {', '.join(given)} (by position)")
    return list(class_names)


def class_id_map(own, class_names, split):
    """Ids of a ClassLabel whose names are `own` -> ids of the training classes (`class_names`), by
    name; None when they already agree."""
    position = {n: i for i, n in enumerate(class_names)}
    folded = {n.casefold(): i for i, n in enumerate(class_names)}
    unknown = [n for n in own if n not in position and n.casefold() not in folded]
    if unknown:
        raise UserError(f"{SPLIT_WORDS[split]} label column's classes {listed(unknown)} are not among the training classes "
                        f"({listed(class_names)}); fix the data or --label_names.")
    ids = [position[n] if n in position else folded[n.casefold()] for n in own]
    return None if ids == list(range(len(own))) else ids


def numbered_names(names):
    """Whether ClassLabel names only number the ids ('0', '1', ... or 'LABEL_0', ...: a ClassLabel made
    with num_classes): such names say nothing that --label_names could contradict."""
    return list(names) in ([str(i) for i in range(len(names))], [f"LABEL_{i}" for i in range(len(names))])


def with_class_ids(ds, ids, names):
    """`ds` with a "labels" column of class ids `ids` (a ClassLabel of `names`), added beside the table in
    memory (8 bytes a row): a map would write the whole table, texts included, into the datasets cache
    again, and the cast to ClassLabel once more (two copies: 1.49 GB of a 2.2 GB cache for 20k long
    reviews). Its fingerprint follows the ids, so the tokenized cache is still found on the next run. A subset
    (--max_*_samples: an indices mapping) is written out once by add_column, as datasets flattens it."""
    import datasets

    if "labels" in ds.column_names:  # (the label column itself may be called "labels")
        ds = ds.remove_columns("labels")
    return ds.add_column("labels", np.asarray(ids, dtype=np.int64), feature=datasets.ClassLabel(names=names))


def _map_labels(ds, col, fn, feature, split):
    """The label column with every value passed through `fn`, as `feature`."""
    features = ds.features.copy()
    features[col] = feature
    return ds.map(lambda b: {col: [fn(v) for v in b[col]]}, batched=True, features=features,
                  desc=f"label names ({split})")


MANY_LABELS = 100  # more distinct string labels than this, and more than half the rows: not a label column


def check_label_column(col, distinct, rows):
    """A label column whose values are nearly all different is a text or id column named by mistake
    (--label_column text): it would become a head with a class per row."""
    if distinct > MANY_LABELS and distinct > rows / 2:
        raise UserError(f"--label_column '{col}' has {distinct} distinct values in {rows} training rows: it does not "
                        f"look like a label column; check --label_column (and --text_column).")


def check_near_duplicate_labels(names):
    """String labels that differ only in case, surrounding spaces, Unicode form or invisible characters
    ('pos' and 'pos ', 'négatif' composed and decomposed, 'POSITIVE' and 'POSITIVE' + a zero-width
    space) are a data slip that would silently make an extra class; refuse them."""
    groups = {}
    for n in names:
        groups.setdefault(_label_key(n), []).append(n)
    clash = next((g for g in groups.values() if len(g) > 1), None)
    if clash:
        raise UserError(f"training labels {' and '.join(ascii(n) for n in clash)} differ only in case, surrounding "
                        f"spaces, Unicode form or invisible characters and would become separate classes; fix the data.")


def _label_key(name):
    """What a reader sees of a label: NFKC form, format characters (zero-width space and joiner, BOM)
    dropped, surrounding spaces stripped, case folded."""
    text = unicodedata.normalize("NFKC", name)
    return "".join(c for c in text if unicodedata.category(c) != "Cf").strip().casefold()


def _ranges(ids):
    """[0, 1, 2, 5] -> '0-2, 5': a short form for id lists in messages."""
    out, start = [], None
    for i, v in enumerate(ids):
        if start is None:
            start = v
        if i + 1 == len(ids) or ids[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out[:6]) + (", ..." if len(out) > 6 else "")


def head_order(names, head_labels):
    """For each label id, the row of the trained head that has its name (matched ignoring case), when
    both name the same labels in different orders; else None (no trained head, other names, same order)."""
    if not head_labels or len(head_labels) != len(names):
        return None
    rows = {str(n).lower(): i for i, n in enumerate(head_labels)}
    if len(rows) != len(names) or set(rows) != {n.lower() for n in names}:
        return None
    row = [rows[n.lower()] for n in names]
    return None if row == list(range(len(names))) else row


def _label_kind(ds, col, split):
    """'int' or 'str' for a label column; user errors for nulls, mixed types and fractional values."""
    import datasets

    where = SPLIT_WORDS[split]
    values = column_values(ds, col)
    # a blank name ("" or " ") is no label either: it would become a class of its own
    nulls = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and math.isnan(v))
             or (isinstance(v, str) and not v.strip())]
    if nulls:
        raise UserError(f"{len(nulls)} {where} rows have no label in column '{col}' (first at row {nulls[0]}"
                        f"{': ' + repr(values[nulls[0]]) if values[nulls[0]] is not None else ''}); fill or drop them.")
    if isinstance(ds.features[col], datasets.ClassLabel):
        return "int"
    first = {}  # kind -> first row with it; from the values, so mixed JSON columns are caught too
    for i, v in enumerate(values):
        first.setdefault(_value_kind(v), i)
    if len(first) > 1:
        (a, i), (b, j) = sorted(first.items(), key=lambda kv: kv[1])[:2]
        raise UserError(f"{where} label column '{col}' mixes {a}s (row {i}) and {b}s (row {j}); use one kind, integer ids or names.")
    kind = next(iter(first))
    if kind == "list":  # multi-label: lists of names or of integer ids (checked in encode_multi_labels)
        for i, row in enumerate(values):
            bad = next((v for v in row if v is None or (isinstance(v, str) and not v.strip())
                        or isinstance(v, (bool, float, list, dict)) and not (isinstance(v, float) and v.is_integer())),
                       "ok")
            if bad != "ok":
                raise UserError(f"{where} label list in row {i} holds {bad!r}; give label names or integer ids.")
        return "list"
    if kind == "string":
        if values and all(v.strip().startswith("[") and v.strip().endswith("]") for v in values):
            raise UserError(f"{where} label column '{col}' holds text that looks like lists ({values[0]!r}): a CSV "
                            f"cannot hold lists, so each combination would become a class; for multi-label data "
                            f"write JSON lines or Parquet with real lists ([\"ACTING\", \"STORY\"]).")
        numeric = [v for v in values if _is_int_text(v)]
        if numeric and len(numeric) != len(values):
            row, other = next((i, v) for i, v in enumerate(values) if not _is_int_text(v))
            raise UserError(f"{where} label column '{col}' mixes numbers ('{numeric[0]}') and names ('{other}' in row "
                            f"{row}); use one kind.")
        huge = next((i for i, v in enumerate(numeric) if not -2**63 <= int(v) < 2**63), None)
        if huge is not None:  # (a csv reads such a column as text: huge_ints_as_text)
            raise UserError(f"{where} label column '{col}' holds {values[huge].strip()} in row {huge}, an integer too "
                            f"large for 64 bits (a typo?); fix that row.")
        return "str"
    if kind == "number":
        if all(float(v).is_integer() for v in values):
            return "int"
        raise UserError(f"{where} label column '{col}' holds fractional numbers; classification needs integer ids or "
                        f"names; to predict the number itself, pass --problem_type regression.")
    raise UserError(f"{where} label column '{col}' holds {kind} values; use integer ids or string names.")


def warn_unused_names(cfg, names, unused, source):
    """--label_names naming classes no training row holds: a head with rows that never train. Only for names
    the user gave to train on (with --eval_only the model's own labels are the names: nothing trains)."""
    if unused and cfg.label_list() and not cfg.eval_only and source == TRAIN and is_main_rank():
        warnings.warn(f"--label_names {listed(unused)}: no {SPLIT_WORDS[source]} row has that label, so the model "
                      f"gets {len(names)} classes, {len(unused)} of them never trained (and f1/precision/recall "
                      f"average over them too); leave out the names the data does not hold.", stacklevel=3)


def multi_hot_as_lists(cfg, raw, names=None):
    """Multi-label rows written as multi-hot vectors ([0, 1, 1, 0]: one 0/1, true/false or 0.0/1.0 per label, the
    same length in every row of every split, some row repeating a value) become the lists of the labels that apply:
    their `names` (--label_names, or with --eval_only the model's, in id order; as many as a row is long), else
    their ids. Read as lists of ids they would all be {0, 1}: two labels, 'some absent' and 'some present'.
    Returns the rows' length, or 0 when the labels are not multi-hot (then a list of 0/1 values that repeats one,
    multi-hot rows of unequal lengths, is refused: it is neither kind)."""
    import datasets

    col = cfg.label_column
    if cfg.problem_type == "regression" or any(col not in ds.column_names for ds in raw.values()):
        return 0
    # lists of lists (or of objects) would fail below as unhashable: a multi-label row lists names or ids
    nested = next(((split, ds.features[col].feature) for split, ds in raw.items()
                   if isinstance(ds.features[col], datasets.List)
                   and not isinstance(ds.features[col].feature, (datasets.Value, datasets.ClassLabel))), None)
    if nested is not None:
        split, inner = nested
        what = "lists of lists" if isinstance(inner, (datasets.List, datasets.LargeList)) else "lists of objects"
        raise UserError(f"the {SPLIT_WORDS[split]} label column '{col}' holds {what}; a label is a name or an integer "
                        f"id, or for multi-label data a flat list of them ([\"ACTING\", \"STORY\"]); flatten the "
                        f"lists.")
    if not all(isinstance(ds.features[col], datasets.List) for ds in raw.values()):
        return 0
    rows = {split: column_values(ds, col) for split, ds in raw.items()}
    flat = [v for values in rows.values() for row in values for v in (row or [])]
    lengths = {len(row) if row is not None else -1 for values in rows.values() for row in values}
    binary = bool(flat) and all(isinstance(v, (bool, int, float)) and v in (0, 1) for v in flat)
    repeats = next(((split, i, row) for split, values in rows.items() for i, row in enumerate(values)
                    if row is not None and len(set(row)) < len(row)), None)
    # one-hot pairs ([1, 0], [0, 1]) repeat nothing, but as id lists every text would have both labels
    pairs = binary and lengths == {2} and all(sorted(row) == [0, 1] for values in rows.values() for row in values)
    if not pairs and (repeats is None or not (binary and len(lengths) == 1 and min(lengths) >= 2)):
        # a repeated 0/1 in rows of other lengths: multi-hot rows gone wrong (a repeated other id, [3, 3], or name
        # just says that label twice)
        if repeats is not None and all(not isinstance(v, str) and v in (0, 1) for v in repeats[2]):
            split, i, row = repeats
            raise UserError(f"the {SPLIT_WORDS[split]} label list in row {i} ({listed(row)}) repeats an id; a list "
                            f"holds the ids (or names) of the labels that apply, or is a multi-hot row (one 0/1 per "
                            f"label, the same length in every row).")
        return 0
    (width,) = lengths
    if names and len(names) != width:
        whose = "--label_names" if cfg.label_list() else "the model"
        raise UserError(f"the label column '{col}' holds multi-hot rows of {width} values, but {whose} names "
                        f"{len(names)} labels ({listed(names)}); give one name per position.")
    label = (lambda i: names[i]) if names else int
    feature = datasets.List(datasets.Value("string" if names else "int64"))
    for split, ds in raw.items():
        raw[split] = _map_labels(ds, col, lambda row: [label(i) for i, v in enumerate(row) if v], feature, split)
    _say(f"data: label column '{col}' holds multi-hot rows of {width}: each row's labels are the positions holding 1"
         + (f" ({listed(names)})" if names else " (ids 0..%d; name them with --label_names)" % (width - 1)))
    return width


def booleans_as_names(cfg, ds, split):
    """A label column of true/false values (JSON, Parquet, a csv's True/False) as the names 'false' and
    'true': two classes, ids 0 and 1 as Python counts them, matched by name across files."""
    import datasets

    feature = ds.features.get(cfg.label_column)
    if cfg.problem_type == "regression" or not (isinstance(feature, datasets.Value) and feature.dtype == "bool"):
        return ds
    return ds.cast_column(cfg.label_column, datasets.Value("string"))


def outside_ids(where, bad, n, given):
    """The message for integer labels outside 0..n-1: negative ids (-1/1 data) are no class ids at all."""
    fix = "renumber them from 0 (-1/1 as 0/1) or write the labels as names" if bad[0] < 0 else \
        "give --label_names a name for every id or fix the data"
    if given:
        return f"{where} labels {bad[:5]} are outside 0..{n - 1}, the ids of the {n} names of --label_names; {fix}."
    return f"{where} labels {bad[:5]} are negative, and integer labels are class ids 0..K-1; {fix}."


def kind_words(ds, col, kind):
    """A label kind for a message: 'ints', 'strs', or what text labels hold when they look like another kind
    ('numbers written as text', 'true/false values': a bool column read as names, booleans_as_names)."""
    values = column_values(ds, col) if kind == "str" else []
    if values and all(_is_int_text(v) for v in values):
        return f"numbers written as text ('{values[0]}')"
    if values and set(values) <= {"false", "true"}:
        return "true/false values"
    return f"{kind}s"


def _value_kind(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string"}.get(type(v), type(v).__name__)


INT_TEXT = re.compile(r"\s*-?[0-9]+\s*")


def _is_int_text(v):
    """Whether `v` is an integer written as text ('3', ' -2 '): ASCII digits only. str.isdigit() also takes
    circled and superscript digits ('①', '²'), which int() refuses: labels so written crashed the run."""
    return isinstance(v, str) and INT_TEXT.fullmatch(v) is not None


def carve_validation(cfg, raw):
    """A seeded, stratified evaluation split of --validation_split_percentage from train.

    Also warns when the training data is smaller than one batch (it still trains: one short batch).
    """
    import datasets

    if EVAL not in raw:
        pct = cfg.validation_split_percentage
        # stratified by class; multi-label rows (several classes each) are split at random
        stratify = "labels" if isinstance(raw[TRAIN].features["labels"], datasets.ClassLabel) else None
        try:
            split = raw[TRAIN].train_test_split(test_size=pct / 100, seed=cfg.data_seed_or_seed, stratify_by_column=stratify)
        except ValueError as e:  # too few examples for a stratified split
            n = len(raw[TRAIN])
            held = math.ceil(pct / 100 * n)  # datasets rounds the evaluation side up
            counts = np.bincount(column(raw[TRAIN], "labels").astype(np.int64)) if stratify else np.array([n])
            present = counts[counts > 0]
            classes = len(present)
            rare = int(np.argmin(np.where(counts > 0, counts, n + 1)))
            advice = (f"more examples of '{raw[TRAIN].features['labels'].names[rare]}' (it has one)"
                      if stratify and present.min() < 2
                      else "a smaller percentage, more data" if n - held < classes else
                      "a larger percentage, more data" if held < classes else "another percentage, more data")
            raise UserError(f"--validation_split_percentage {pct:g} cannot carve a{' stratified' if stratify else 'n'} "
                            f"evaluation split from {n} training examples ({held} to evaluation, {n - held} left to "
                            f"train, {classes} class{'es' if classes > 1 else ''}); use {advice} or "
                            f"--validation_file.") from e
        raw[TRAIN], raw[EVAL] = split["train"], split["test"]
        raw = limit(cfg, raw)
    if cfg.eval_only:
        return raw
    n, bs = len(raw[TRAIN]), cfg.per_device_train_batch_size
    if n < bs and is_main_rank():
        warnings.warn(f"the training data has {n} examples, fewer than --per_device_train_batch_size {bs}; "
                      f"each epoch is one batch of {n}.", stacklevel=2)
    return raw


def check_max_length(cfg, tokenizer, max_length):
    """The tokenizer cannot truncate below its special tokens (it would return longer inputs), and a
    pair needs room for a token of each text (else the second is dropped whole)."""
    pair = bool(cfg.text_pair_column)
    special = tokenizer.num_special_tokens_to_add(pair=pair)
    least = special + (2 if pair else 1)  # a pair needs a token of each text: truncation cuts the longer first
    if max_length is not None and max_length < least:
        raise UserError(f"--max_length {max_length} leaves no room for {'both texts' if pair else 'text'}: the "
                        f"tokenizer adds {special} special tokens to each input; use at least {least}.")


def check_pair_separator(cfg, tokenizer):
    """Byte-level decoder tokenizers (GPT-2, Qwen) add no token between the two texts of a pair: 'the film
    was great' + 'it was boring' becomes '...greatit was boring', and the model cannot tell where one
    text ends. Said once (the run is consistent, pipeline() joins pairs the same way)."""
    if not cfg.text_pair_column or not is_main_rank():
        return
    if tokenizer.num_special_tokens_to_add(pair=True) <= tokenizer.num_special_tokens_to_add(pair=False):
        warnings.warn(f"the tokenizer of '{cfg.tokenizer_name or cfg.model_name_or_path}' puts nothing between the "
                      f"two texts of a pair ('great' + 'it was boring' reads 'greatit was boring'): the model cannot "
                      f"tell where the first ends; join the columns into one text with a separator of your choice, or "
                      f"use a model whose tokenizer separates pairs.", stacklevel=2)


UNKNOWN_LIMIT = 0.5  # a tokenizer that makes at least this share of the training text unknown is the wrong one


def check_unknown_tokens(cfg, tokenizer, rows, sample=2000, what="training"):
    """Refuse a tokenizer that turns most of the `what` text (`rows`: the training split, or with --eval_only
    the evaluation split) into its unknown token: in transformers 5
    a model folder without tokenizer files still loads a tokenizer (an empty vocabulary, every word
    [UNK], or for byte-level BPEs no tokens at all), and the run would train on nothing, at chance
    accuracy, without a word. Counted on a seeded sample of the texts, without the special tokens
    the tokenizer adds."""
    unk = tokenizer.unk_token_id
    if len(rows) == 0:
        return
    columns = [c for c in (cfg.text_column, cfg.text_pair_column) if c]
    rows = subset(rows, sample, cfg.seed)
    where = cfg.tokenizer_name or cfg.model_name_or_path
    for col in columns:  # each column on its own: a pair column the tokenizer cannot read is as bad
        texts = [str(t)[:5000] for t in column_values(rows, col) if t is not None and str(t).strip()]  # a bounded sample
        per_text = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        ids = [i for row in per_text for i in row]
        words = sum(len(t.split()) for t in texts)
        text = f"{what} text" + (f" in column '{col}'" if len(columns) > 1 else "")
        if words and len(ids) < UNKNOWN_LIMIT * words:  # byte-level BPEs without their files drop the text instead
            raise UserError(f"the tokenizer of '{where}' drops most of the {text} ({len(ids)} tokens for {words} "
                            f"words; its vocabulary has {len(tokenizer)} tokens): that folder probably holds no "
                            f"tokenizer files of its own; pass --tokenizer_name with the model's tokenizer.")
        share = sum(i == unk for i in ids) / max(len(ids), 1) if unk is not None else 0.0
        # and in most texts, each on its own: one long row of characters it lacks (5,000 x's) outweighed a hundred
        # texts it reads well, and a fitting tokenizer was refused on small data
        read = [row for row in per_text if row]
        mostly = sum(sum(i == unk for i in row) >= UNKNOWN_LIMIT * len(row) for row in read) if unk is not None else 0
        if ids and share >= UNKNOWN_LIMIT and mostly >= UNKNOWN_LIMIT * len(read):
            raise UserError(f"the tokenizer of '{where}' turns {share:.0%} of the {text} into its unknown token "
                            f"{tokenizer.unk_token!r} (its vocabulary has {len(tokenizer)} tokens): it does not fit "
                            f"this text, or that folder holds no tokenizer files of its own; pass --tokenizer_name "
                            f"with the model's tokenizer.")


# ---------------------------------------------------------------- tokenize
def tokenize(cfg, raw, tokenizer, max_length, num_proc=None):
    """Tokenize with truncation (cached by datasets); keep input ids, mask, labels and a length column."""
    text, pair = cfg.text_column, cfg.text_pair_column

    def clean(xs):  # None and non-strings become text; empty texts still give [CLS] [SEP]
        return ["" if x is None else str(x) for x in xs]

    # A decoder's tokenizer (GPT-2, Qwen) adds no token to an empty text: zero positions, which no
    # model can score. Such an input gets one token instead (eos, else bos, unk or pad).
    filler = next((t for t in (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id,
                               tokenizer.pad_token_id) if t is not None), 0)

    def fn(batch):
        args = (clean(batch[text]),) + ((clean(batch[pair]),) if pair else ())
        enc = tokenizer(*args, truncation=True, max_length=max_length) if pair else \
            encode_truncated(tokenizer, args[0], max_length)
        for i, ids in enumerate(enc["input_ids"]):
            if not ids:
                for key in enc.keys():
                    enc[key][i] = [filler] if key == "input_ids" else [0 if key == "token_type_ids" else 1]
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        enc["max_id"] = [max(ids, default=0) for ids in enc["input_ids"]]
        # whether truncation cut the text (an exact fit cuts nothing): a fast tokenizer keeps what it cut; a
        # slow one does not, so its rows at the limit are tokenized again, whole
        if enc.encodings is not None:
            enc[CUT] = [bool(e.overflowing) for e in enc.encodings]
        else:
            enc[CUT] = [False] * len(enc["length"])
            at = [i for i, n in enumerate(enc["length"]) if n >= max_length]
            if at:
                whole = tokenizer(*[[a[i] for i in at] for a in args])["input_ids"]
                for i, ids in zip(at, whole):
                    enc[CUT][i] = len(ids) > max_length
        return enc

    out = {}
    for split, ds in raw.items():
        keep = {"labels", ROW, WEIGHT} if split == TRAIN else {"labels", ROW}  # a carved split's weights go
        remove = [c for c in ds.column_names if c not in keep]
        try:
            out[split] = ds.map(fn, batched=True, remove_columns=remove, num_proc=num_proc, desc=f"tokenize ({split})")
        except Exception as e:  # a full cache (the tokenized copy is its largest write): one line, not two tracebacks
            folder = map_folder(ds)
            if folder:
                check_cache_writable(e, folder)
            raise
    return out


def map_folder(ds):
    """The folder datasets writes a map of `ds` into: beside the dataset's own cache files (the datasets cache
    for a file or Hub dataset, a save_to_disk folder's own); None for one held in memory."""
    from datasets.fingerprint import is_caching_enabled

    return os.path.dirname(ds.cache_files[0]["filename"]) if ds.cache_files and is_caching_enabled() else None


CHARS_PER_TOKEN = 16  # more than any tokenizer's average: a prefix this many characters a token long holds the window
# where a prefix may be cut off from the window: one ASCII space between two other characters. Not any whitespace:
# a tokenizer may delete it (BERT drops U+0085 and joins the words around it), not split on it (Metaspace: only on
# ' '), or split a run of it by the run's length (byte-level BPE, Llama-style BPE) (audit31)
_SAFE_CUT = re.compile(r"(?<=\S) (?=\S)")


def encode_truncated(tokenizer, texts, max_length):
    """tokenizer(texts, truncation=True, max_length=...), without tokenizing all of a long text only to keep
    its first max_length tokens (its last with truncation_side left): a text longer than CHARS_PER_TOKEN x
    max_length characters is tokenized from that prefix (suffix). The prefix's tokens are kept only when they
    overflowed it and end before a single space between two words in its second half (start after one in the
    suffix's first half), so the word the cut split, and everything after it, lie outside the window: the same
    ids as the whole text's. Otherwise (a text of long whitespace runs, no spaces) the text is tokenized whole,
    as every text is by a slow tokenizer (no offsets to check) or one with an added token that holds a space
    ('New York'). 20k reviews of ~5k words at max_length 512 took 385 s on 2 cores; the prefix is 4x faster
    there and 18x at 128, with identical ids (WordPiece, byte-level BPE, Llama-style and Metaspace BPE, Unigram,
    a Qwen-style split; either side; fuzzed with whitespace runs, control characters, CJK and emoji)."""
    if not getattr(tokenizer, "is_fast", False) or any(
            any(c.isspace() for c in token) for token in tokenizer.get_added_vocab()):
        return tokenizer(texts, truncation=True, max_length=max_length)
    limit = CHARS_PER_TOKEN * max_length
    left = getattr(tokenizer, "truncation_side", "right") == "left"
    short = [t if len(t) <= limit else t[-limit:] if left else t[:limit] for t in texts]
    enc = tokenizer(short, truncation=True, max_length=max_length)
    redo = []
    for i, (whole, part) in enumerate(zip(texts, short)):
        if part is whole:
            continue
        e = enc.encodings[i]
        kept = [span for span, sid in zip(e.offsets, e.sequence_ids) if sid is not None]
        safe = bool(kept) and bool(e.overflowing)
        if safe and left:  # the window starts after such a space in the suffix's first half
            space = _SAFE_CUT.search(part, 1, len(part) // 2)
            safe = space is not None and kept[0][0] > space.start()
        elif safe:  # ... ends before one in the prefix's second half
            space = max((m.start() for m in _SAFE_CUT.finditer(part, len(part) // 2, len(part) - 1)), default=None)
            safe = space is not None and kept[-1][1] <= space
        if not safe:
            redo.append(i)
    if redo:
        again = tokenizer([texts[i] for i in redo], truncation=True, max_length=max_length)
        for j, i in enumerate(redo):
            for key in enc.keys():
                enc[key][i] = again[key][j]
            enc.encodings[i] = again.encodings[j]  # (its .overflowing says whether the text was cut)
    return enc


# ---------------------------------------------------------------- batching
def dataloaders(cfg, data, tokenizer, max_length, accelerator, sampler=None):
    """(train loader, eval loader, train batch sampler, pad multiple) with `DataCollatorWithPadding`.
    `sampler`: the training batch sampler (default: an `EpochBatchSampler` by the options). Without
    training data (--eval_only) the train loader and sampler are None."""
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.XLA:
        # static shapes on TPU: every batch padded to max_length, no recompiles
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length)
        pad_multiple = max_length
    else:
        pad_multiple = padding_multiple(cfg, accelerator.mixed_precision)
        collator = BucketPadding(tokenizer, pad_multiple, max_length) if pad_multiple > 1 else \
            DataCollatorWithPadding(tokenizer)
    workers = cfg.dataloader_num_workers
    if workers is None:
        workers = 2 if torch.cuda.is_available() else 0
    from .preemption import ignore_stop_signals_in_worker

    common = dict(collate_fn=collator, num_workers=workers, pin_memory=torch.cuda.is_available(),
                  persistent_workers=workers > 0,
                  worker_init_fn=ignore_stop_signals_in_worker if workers > 0 else None)
    if sampler is None and data.train is not None:
        sampler = EpochBatchSampler(data.train_lengths, cfg.per_device_train_batch_size, cfg.data_seed_or_seed,
                                    group_by_length=cfg.group_by_length)
    # A private generator: creating a DataLoader iterator must not draw from the global RNG,
    # or a resumed run's dropout masks would differ from the uninterrupted run's.
    train = None if data.train is None else \
        DataLoader(data.train, batch_sampler=sampler, generator=torch.Generator().manual_seed(cfg.seed), **common)
    evaluation = DataLoader(data.eval, batch_size=cfg.per_device_eval_batch_size, shuffle=False,
                            generator=torch.Generator().manual_seed(cfg.seed), **common)
    return train, evaluation, sampler, pad_multiple


def held_out_dataloader(cfg, dataset, like):
    """A DataLoader over `dataset` (the test split) that batches, pads and loads like `like`, the
    evaluation DataLoader: in order, the same batch size, collator and workers."""
    from torch.utils.data import DataLoader

    # a variant's evaluation loader may batch with a batch_sampler (batch_size None): ours then
    return DataLoader(dataset, batch_size=like.batch_size or cfg.per_device_eval_batch_size, shuffle=False,
                      collate_fn=like.collate_fn,
                      num_workers=like.num_workers, pin_memory=like.pin_memory,
                      persistent_workers=like.persistent_workers, worker_init_fn=like.worker_init_fn,
                      generator=torch.Generator().manual_seed(cfg.seed))


def padding_multiple(cfg, mixed_precision):
    """What a batch's width is rounded up to. Tensor cores like multiples of 8. CUDA graphs (--torch_compile_mode
    reduce-overhead, max-autotune) record one graph per width: multiples of 64 keep them few. The default
    torch.compile turns dynamic at the second width and then serves all with one graph, so 64 there only
    added padding (an audit measured padding efficiency 0.988 -> 0.904 on IMDb)."""
    if cfg.torch_compile and cfg.torch_compile_mode in CUDA_GRAPH_MODES:
        return 64
    return 8 if mixed_precision != "no" or cfg.torch_compile else 1


def padded_width(longest, multiple=1, cap=None):
    """The width a batch whose longest row has `longest` tokens is padded to: the next multiple of
    `multiple`, but never past `cap`."""
    width = -(-longest // multiple) * multiple
    return np.minimum(width, cap) if cap else width


class BucketPadding:
    """`DataCollatorWithPadding` to the next multiple of `multiple` (tensor cores like multiples of 8,
    compiled graphs few distinct shapes) but never past `cap`, the run's max length: the collator's own
    `pad_to_multiple_of` would give a model with 100 positions batches of 104 or 128 (an index error
    in its position embeddings)."""

    def __init__(self, tokenizer, multiple, cap):
        from transformers import DataCollatorWithPadding

        self.multiple, self.cap = multiple, cap
        self.collator = DataCollatorWithPadding(tokenizer, padding="max_length")

    def __call__(self, features):
        import dataclasses

        width = padded_width(max(len(f["input_ids"]) for f in features), self.multiple, self.cap)
        return dataclasses.replace(self.collator, max_length=int(width))(features)


class EpochBatchSampler:
    """Batches of indices, a pure function of (seed, epoch): resumable and the same on every rank.

    Accelerate shards the batches across processes (batch i goes to rank i % world_size), so
    every rank builds the same global list. Random mode permutes then chunks, so 2 processes
    x batch 4 x accumulation 2 see the same 16 examples per step as 1 process x batch 16.
    Length-grouped mode sorts chunks of the permutation ("megabatches") by length and then
    shuffles the batch order: batches hold similar lengths (little padding) but stay random.
    The one short batch, if any, always comes last (accelerate requires that). With several processes (set
    by distributed.no_repeats_in_training once accelerate shards this very sampler), an epoch's last round of
    batches that do not divide among them is split into one batch per process (splits_last_round), which
    accelerate then hands out as they are; a last round of fewer examples than processes is merged into the
    round before it first (merges_last_round: batches of batch_size + 1 then).

    Everything is numpy arrays (lengths int32, batches one int64 matrix), never Python lists of
    ints: on 5M examples an epoch's batches take well under a second and ~100 MB at peak, per rank.
    The arithmetic (same generator draws, stable sort within megabatches) gives exactly the
    batches of the earlier list-based version, so older checkpoints resume in the same order.
    """

    # merges_last_round on; off only to resume a checkpoint written before it (Checkpointer.merged_short_rounds)
    merge_short_round = True

    def __init__(self, lengths, batch_size, seed, group_by_length=False, megabatch_size=64, processes=1):
        self.lengths = np.asarray(lengths, dtype=np.int32)
        self.batch_size = batch_size
        self.processes = processes
        self.seed = seed
        self.group_by_length = group_by_length
        self.megabatch = megabatch_size * batch_size
        self.drop_last = False
        self.epoch = 0
        self._cache = (None, None)  # (epoch, arrays): __iter__ and padding_efficiency share one build

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        n = math.ceil(len(self.lengths) / self.batch_size)
        return self._split_from() + self.processes if self.splits_last_round() else n

    def last_round(self):
        """(the epoch's batches, how many of them its last round among the processes holds, that round's examples
        R); R is only meaningful when the round holds any."""
        n, b, p = len(self.lengths), self.batch_size, self.processes
        batches = math.ceil(n / b)
        last = batches % p
        return batches, last, n - (batches - last) * b

    def merges_last_round(self):
        """True when the epoch's last round of batches that do not divide among the processes holds fewer
        examples R than processes, and a whole round comes before it: those P * batch_size + R examples are split
        into one batch per process (R of batch_size + 1, the others of batch_size), so every process gets the same
        number of batches and none repeats (accelerate would fill the short round with P - R examples from the
        epoch's start, counted twice). Only an epoch of fewer examples than processes in all (no whole round) is
        left to accelerate's filling: some process has no example of its own there."""
        p = self.processes
        batches, last, rows = self.last_round()
        return self.merge_short_round and p > 1 and last > 0 and rows < p and batches >= p

    def splits_last_round(self):
        """True when the epoch's batches do not divide among the processes and the examples of its last round
        (its last len() % processes batches) are enough for one batch per process, or that round merges into the
        one before (merges_last_round): they are then split into one batch per process (sizes differing by one
        at most). Accelerate would otherwise fill the round up with examples from the epoch's start, counted twice
        in its step; with the split, 2 processes x batch 8 take each step's examples as 1 process x batch 8 x
        accumulation 2 does, the last step too (a merged round: one step of both rounds' examples)."""
        p = self.processes
        _, last, rows = self.last_round()
        return p > 1 and last > 0 and (rows >= p or self.merges_last_round())

    def _split_from(self):
        """The number of full batches before the split (splits_last_round): the whole rounds, less the one the
        last round merges into."""
        batches, last, _ = self.last_round()
        return batches - last - (self.processes if self.merges_last_round() else 0)

    def batch_sizes(self):
        """The rows of each batch this sampler yields, in order (the same every epoch, as a numpy array): the
        full batches, then the short one, or the split last round's (splits_last_round: array_split gives the
        first R % P processes one example more, 3 + 2 of 5; a merged round 9 + 8 of 17, 2 processes x batch 8).
        distributed.loss_shares weighs an epoch's last optimizer step by them."""
        n, b, p = len(self.lengths), self.batch_size, self.processes
        sizes = np.full(math.ceil(n / b), b, dtype=np.int64)
        if n % b:
            sizes[-1] = n % b
        if self.splits_last_round():
            whole = self._split_from()
            rows = n - whole * b  # the split round's examples
            sizes = np.concatenate([sizes[:whole], rows // p + (np.arange(p) < rows % p)])
        return sizes

    def divides_among_processes(self):
        """True when every process gets the same number of batches with none repeated: the last round splits,
        or the batches divide evenly (a short last batch then goes to its process as it is)."""
        return self.processes > 1 and (self.splits_last_round() or math.ceil(len(self.lengths) / self.batch_size)
                                       % self.processes == 0)

    def batch_arrays(self, epoch=None):
        """(rows, order, tail): full batches are rows[order[i]] in turn (rows: an (n, batch_size)
        index matrix), then `tail`, the short batch. Cached per epoch."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache[0] == epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.lengths), generator=g).numpy()
        bs, n = self.batch_size, len(perm)
        n_full = n // bs
        rows, tail = perm[: n_full * bs].reshape(n_full, bs), perm[n_full * bs:]
        order = np.arange(n_full)
        if self.group_by_length:
            # Within each megabatch, longest first; ties keep permutation order (stable sort), a
            # block of megabatches at a time to bound the temporaries. Lengths fit int16 in
            # practice, where numpy's stable sort is a fast radix sort.
            m = self.megabatch
            dtype = np.int16 if self.lengths.max(initial=0) < 2**15 else np.int32
            step = max(1, (1 << 19) // m) * m
            for start in range(0, n, step):
                block = perm[start : start + step]
                whole = (len(block) // m) * m
                if whole:
                    key = -self.lengths[block[:whole]].astype(dtype)
                    idx = np.argsort(key.reshape(-1, m), axis=1, kind="stable")
                    block[:whole] = np.take_along_axis(block[:whole].reshape(-1, m), idx, axis=1).ravel()
                if whole < len(block):
                    rest = block[whole:]
                    block[whole:] = rest[np.argsort(-self.lengths[rest].astype(dtype), kind="stable")]
            order = torch.randperm(n_full, generator=g).numpy()
            if n_full:  # the longest batch first: an out-of-memory error shows at step 1, not hours in
                longest = int(np.argmax(self.lengths[rows[order, 0]]))
                order[[0, longest]] = order[[longest, 0]]
        self._cache = (epoch, (rows, order, tail))
        return rows, order, tail

    def batches(self, epoch=None):
        """This epoch's batches as lists of indices (small data and tests; iteration is lazy)."""
        return [b.tolist() for b in self._batches(epoch)]

    def __iter__(self):
        for b in self._batches():
            yield b.tolist()

    def _batches(self, epoch=None):
        """The epoch's batches as index arrays, in order; the last round split when splits_last_round()."""
        rows, order, tail = self.batch_arrays(epoch)
        if not self.splits_last_round():
            yield from (rows[i] for i in order)
            if len(tail):
                yield tail
            return
        whole, last = self._split_round(rows, order, tail)
        yield from (rows[i] for i in order[:whole])
        yield from last

    def _split_round(self, rows, order, tail):
        """(the full batches before it, in `order`; the split last round's batches): splits_last_round(). The
        full batches before it are whole rounds (the tail is in the last), less the one a merged round takes."""
        whole = self._split_from()
        return whole, np.array_split(np.concatenate([rows[order[whole:]].ravel(), tail]), self.processes)

    def mean_length(self):
        return float(self.lengths.mean()) if len(self.lengths) else 0.0

    def padding_efficiency(self, epoch=None, multiple=1, cap=None):
        """Real tokens / padded tokens for this epoch's batches, padded as `padded_width` does (computed on
        the host, no device sync)."""
        rows, order, tail = self.batch_arrays(epoch)
        last = []  # the split last round's batches (splits_last_round); else the order changes no padding
        if self.splits_last_round():
            whole, last = self._split_round(rows, order, tail)
            rows, tail = rows[order[:whole]], tail[:0]
        real = int(self.lengths.sum(dtype=np.int64))
        padded = 0
        for start in range(0, len(rows), 1 << 16):
            widths = self.lengths[rows[start : start + (1 << 16)]].max(axis=1).astype(np.int64)
            padded += int(padded_width(widths, multiple, cap).sum()) * self.batch_size
        for batch in [tail, *last]:
            if len(batch):
                padded += padded_width(int(self.lengths[batch].max()), multiple, cap) * len(batch)
        return real / max(padded, 1)


def check_epoch_length(n, counted, sampler, epoch):
    """Refuse a training loader whose epoch `epoch` gives `n` batches per process where the run counted
    `counted` at the start: the steps per epoch, the schedule's length and a resume's skipping come from it."""
    if n != counted:
        raise UserError(f"the training batch sampler gives {n} batches per process in epoch {epoch + 1}, but the "
                        f"run counted {counted}: the steps per epoch and the learning rate schedule are fixed from "
                        f"its length at the start; make {type(sampler).__name__}'s len() the same every epoch "
                        f"(build_train_sampler).", together=True)


def seed_variant_loaders(accelerator, cfg, train, others):
    """Before prepare(): a variant's own DataLoaders resume exactly. One without a generator gets a private
    one (making its iterator drew from the global RNG: a resumed run's dropout masks differed), as ours have;
    a training DataLoader(shuffle=True) (exactly RandomSampler) gets accelerate's seedable sampler, its order a
    function of (--data_seed or --seed, epoch), so a resume skips into the right epoch's order (the generator's
    state is in no checkpoint: it restarted at the first epoch's). A RandomSampler subclass is left as it is
    (accelerate would replace it by a plain one, its own __iter__ unused): without set_epoch it is warned
    about at a resume mid-epoch (unseeded_order_warning)."""
    from torch.utils.data import RandomSampler

    for dl in [train, *others]:
        if dl is not None and hasattr(dl, "generator") and dl.generator is None:
            dl.generator = torch.Generator().manual_seed(cfg.seed)
    accelerator.dataloader_config.use_seedable_sampler = type(getattr(train, "sampler", None)) is RandomSampler


def unseeded_order_warning(dataloader, skipped):
    """The warning for a resume that skips `skipped` batches of `dataloader` when its sampler's order is one a
    resume cannot know (no `set_epoch`, not sequential, not accelerate's seedable one: its state is in no
    checkpoint), else None: the order is a function of (seed, epoch) for the loop's batch sampler, a variant's
    with `set_epoch`, a DataLoader(shuffle=True) (accelerate makes its sampler seedable), or no shuffling."""
    from torch.utils.data import SequentialSampler

    part = getattr(dataloader, "batch_sampler", None) or getattr(dataloader, "sampler", None)
    while part is not None and not (hasattr(part, "set_epoch") or isinstance(part, SequentialSampler)):
        inner = getattr(part, "batch_sampler", None) or getattr(part, "sampler", None)
        if inner is None:
            return (f"the training DataLoader's sampler ({type(part).__name__}) has no set_epoch, so its order is not a "
                    f"function of (seed, epoch): the resumed epoch skips {skipped} batches of an order the interrupted "
                    f"run may not have had (examples trained twice or never); give it set_epoch(epoch) (see "
                    f"build_train_sampler), or shuffle=True.")
        part = inner
    return None


def skip_batches(accelerator, dataloader, n):
    """`dataloader` without its first `n` batches (accelerate's skip_first_batches), keeping its
    non-blocking device copies (accelerate 1.15 rebuilds it without them: blocking copies)."""
    skipping = accelerator.skip_first_batches(dataloader, n)
    if hasattr(skipping, "_non_blocking"):
        skipping._non_blocking = getattr(dataloader, "_non_blocking", False)
    return skipping


def close_dataloaders(*loaders):
    """Stop the worker processes of these DataLoaders (--dataloader_num_workers, 2 by default on GPUs).
    They ignore stop signals (preemption.ignore_stop_signals_in_worker), and at interpreter exit
    multiprocessing stops daemonic children with SIGTERM and then waits for them: forever."""
    for dl in loaders:
        it = getattr(dl, "_iterator", None)  # persistent workers: torch keeps the iterator here
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
            dl._iterator = None
