"""Data: load (Hub or local files) -> check -> labels to ids -> tokenize.

Owns: reading the Hub dataset or local files, the column checks, seeded subsets, the carved
evaluation split, and tokenization (cached); `prepare` runs these steps in order and returns the
tokenized splits as `Data`. Delegates: the labels (`labels.py`), naming what is wrong in a file that
cannot be read (`file_checks.py`), batching the splits (`loaders.py`), the split names and column
reads every data module shares (`splits.py`). Does not own: the tokenizer or the max-length rule
(`models.py`), moving batches to devices (`accelerator.prepare` in the loop).

Every check here runs before any expensive work and depends only on the data and the
config, so every rank reaches the same verdict (no rank left waiting in a collective).
"""

import csv
import errno
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from . import hub, labels, storage
from .config import FILE_EXTENSIONS
from .errors import UserError, agreed, chain, is_main_rank, listed, short
from .file_checks import (check_csv_header, check_csv_rows, check_json_depth, check_json_shape, check_shard_features,
                          check_tsv_quoted_labels, diagnose_file, holds_rows, is_blank, other_separator, shard_columns)
from .splits import (CUT, EVAL, EXTRA, ROW, SPLIT_WORDS, TEST, TRAIN, WEIGHT, arrow_column, column, column_values,
                     extra_name, say)
# where a variant found them before 2026-12-04, when batching moved to loaders.py: one that subclasses
# loop.data.EpochBatchSampler (as the README said then) or builds its loaders with them keeps working
from .loaders import EpochBatchSampler, dataloaders, held_out_dataloader  # noqa: F401


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
    # model on data of that same ClassLabel reads its ids as this run did (labels.eval_only_labels); None otherwise
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
    try:
        raw, label_names, info, carved, scored_split = agreed(accelerator, lambda: checked_raw(
            cfg, tokenizer, max_length, head_labels, model_labels, model_problem, model_reading))
        tok, max_id, cut = tokenize_splits(cfg, raw, tokenizer, max_length, accelerator, label_names, info)
    except Exception as e:  # a map's cached result cut short or removed: a traceback from inside datasets before
        why = None if isinstance(e, UserError) else damaged_cache(e)
        if why is None:
            raise
        from datasets import config

        saved = cfg.dataset_name and os.path.isdir(cfg.dataset_name)  # a save_to_disk folder keeps its maps' results
        where = (f"the cache-*.arrow files in '{cfg.dataset_name}' (the results of maps, beside its own files)" if saved
                 else f"the folders of these data in the datasets cache ('{config.HF_DATASETS_CACHE}')")
        raise UserError(f"a cached file of these data is damaged or gone ({why}); delete {where} and run "
                        f"again.") from e
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


def checked_raw(cfg, tokenizer, max_length, head_labels, model_labels, model_problem, model_reading):
    """prepare's steps before the tokenizing: the raw rows loaded, checked, subset and carved, their labels as ids.
    Returns (raw, label_names, info, carved, the Hub split evaluated on)."""
    raw = load_raw(cfg)
    scored_split = getattr(raw, "eval_split_name", None)  # which Hub split evaluation reads (_load_hub)
    named = getattr(raw, "split_names", {})  # a dataset's splits by name: which one trains, evaluates, tests
    say("data: " + " / ".join(f"{len(ds)} {SPLIT_WORDS[s]}" + (f" ('{named[s]}')" if named.get(s) else "")
                              for s, ds in raw.items()) + " rows loaded")
    labels.label_columns_as_lists(cfg, raw)  # --label_column toxic,obscene: each text's list of the labels that apply
    if cfg.eval_only:
        labels.check_label_columns_cover(cfg, model_labels)
    check_columns(cfg, raw)
    marked = reads_literal_eos(tokenizer)
    if cfg.eval_only or marked:  # each example's row in its file or split: for the predictions file, or to name a row
        raw = type(raw)({split: ds.add_column(ROW, list(range(len(ds)))) for split, ds in raw.items()})
    raw = select_and_split(cfg, raw)
    raw, label_names, info = labels_as_ids(cfg, raw, head_labels, model_labels, model_problem, model_reading)
    carved = EVAL not in raw
    raw = carve_validation(cfg, raw)
    if cfg.weight_column and TRAIN in raw and (carved or cfg.max_train_samples):  # the rows left to train on
        check_some_weight(column(raw[TRAIN], WEIGHT), cfg.weight_column,
                          " left after --max_train_samples and --validation_split_percentage")
    labels.check_final_splits(raw, label_names, "regression" if info.get("regression") else
                              "multi" if info.get("multi_label") else "single")
    check_max_length(cfg, tokenizer, max_length)
    check_pair_separator(cfg, tokenizer)
    if cfg.eval_only:
        raw.pop(TRAIN, None)  # it decided the labels; nothing trains on it
    if marked:
        check_literal_eos(cfg, tokenizer, raw, carved)
        if not cfg.eval_only:
            for split in raw:
                raw[split] = raw[split].remove_columns(ROW)
    first = TRAIN if TRAIN in raw else EVAL  # (--eval_only: the evaluation split)
    check_unknown_tokens(cfg, tokenizer, raw[first], what=SPLIT_WORDS[first])  # before the tokenizing a wrong tokenizer would waste
    for split in raw:  # the scored splits too: text the tokenizer cannot read scores at chance, and best/ by noise
        if split != first:
            check_unknown_tokens(cfg, tokenizer, raw[split], what=SPLIT_WORDS[split], reads=SPLIT_WORDS[first])
    return raw, label_names, info, carved, scored_split


def labels_as_ids(cfg, raw, head_labels, model_labels, model_problem, model_reading):
    """prepare's label step: every split's labels as ids in a 'labels' column (multi-hot rows, booleans and
    one-hot rows read first); with --eval_only checked against the model's problem and labels. Returns the
    splits, the label names in id order and `info`, how the labels were read (labels.encode_labels)."""
    # what multi-hot positions mean: --label_names, else with --eval_only the names the training run gave them
    # (a head reordered by --label_names POSITIVE,NEGATIVE: the model's id order would score 0.08 for 0.92)
    hot_names = cfg.label_list() or (labels.recorded_positions(model_reading, model_labels) or model_labels
                                     if cfg.eval_only else None)
    width = labels.multi_hot_as_lists(cfg, raw, hot_names)
    for split in list(raw):
        raw[split] = labels.booleans_as_names(cfg, raw[split], split)
    info = {}
    # multi-hot rows without names: ids 0..width-1, each a label even if no training row has it
    unnamed = [f"LABEL_{i}" for i in range(width)] if width and not hot_names else None
    # --eval_only of a single-label model on one-hot rows (or [2]): each row is its class, as the model was trained
    # (its run needed --problem_type single_label_classification, which the model's config now says)
    classes = cfg.eval_only and not cfg.problem_type and model_problem == "single_label_classification" \
        and labels.one_label_per_list(cfg, raw)
    if TRAIN in raw:  # (several label columns name the labels, in their order)
        run_read = labels.classes_as_run_read(cfg, raw[TRAIN], model_labels, model_reading) \
            if cfg.eval_only and not (unnamed or cfg.label_columns()) else None
        label_names = labels.encode_labels(cfg, raw, head_labels, info,
                                           given=unnamed or cfg.label_columns() or run_read, classes=classes)
    else:  # --eval_only on evaluation data alone: the model's labels name the classes
        label_names = labels.encode_labels(cfg, raw, head_labels, info, source=EVAL, classes=classes,
                                           given=labels.eval_only_labels(cfg, raw, model_labels, model_reading)
                                           if not unnamed else unnamed)
    if width:  # multi-hot (or one-hot) rows: each label is a position, named by hot_names (or LABEL_i)
        info["label_ids"], info["id_names"] = "positions", list(hot_names or unnamed)
    if cfg.eval_only:  # scored as the model was trained, on its own classes: before the tokenizing
        labels.check_model_problem(cfg, info, model_problem)
        labels.check_model_labels(cfg, label_names, model_labels, info)
    return raw, label_names, info


def tokenize_splits(cfg, raw, tokenizer, max_length, accelerator, label_names, info):
    """prepare's tokenizing step, said in one line first (the labels or the regression target, the processes):
    each split tokenized once (the other ranks read the cache). Returns the tokenized splits without their
    bookkeeping columns, the largest token id and {split: (texts cut, rows)}."""
    first = TRAIN if TRAIN in raw else EVAL  # (--eval_only: the evaluation split)
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
    say(f"data: {what}; tokenizing (max_length {max_length}"
        + (f", {num_proc} processes)" if num_proc and num_proc > 1 else ")"))
    # tokenize once, the other ranks read the cache: the main process first (as accelerator.main_process_first, whose
    # barrier a failed main process never reached), then the others; a failure on any stops every rank (agreed)
    def work():
        return tokenize(cfg, raw, tokenizer, max_length, num_proc=num_proc)

    processes = getattr(accelerator, "num_processes", 1)
    tok = agreed(accelerator, work, ranks=(0,))
    if processes > 1:
        others = agreed(accelerator, work, ranks=range(1, processes))
        tok = others if accelerator.process_index else tok
    max_id = max(int(np.max(column(ds, "max_id"), initial=0)) for ds in tok.values())
    cut = {split: (int(np.sum(column(ds, CUT))), len(ds)) for split, ds in tok.items()}
    tok = {split: ds.remove_columns(["max_id", CUT]) for split, ds in tok.items()}
    said = truncation_line(cut, max_length, pair=bool(cfg.text_pair_column), side=tokenizer.truncation_side)
    if said:
        say(said)
    return tok, max_id, cut


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


def by_length(ds):
    """An evaluation (or test) split sorted by length, longest first: less padding, same results
    (a metric does not depend on order). Our own stable argsort: datasets' sort() trips a pyarrow
    FutureWarning."""
    lengths = np.asarray(column(ds, "length"), dtype=np.int64)
    return ds.select(np.argsort(-lengths, kind="stable")).remove_columns("length")


# ---------------------------------------------------------------- loading
def load_raw(cfg):
    """Return a DatasetDict with 'train' and 'eval' splits of raw (untokenized) rows."""
    import datasets

    lc = label_columns_of(cfg)
    if cfg.train_file or cfg.validation_file:  # (--validation_file alone: --eval_only, config.py)
        raw = datasets.DatasetDict({TRAIN: load_file(cfg.train_file, "--train_file", label_columns=lc)}
                                   if cfg.train_file else {})
        if cfg.validation_file:
            raw[EVAL] = load_file(cfg.validation_file, "--validation_file", label_columns=lc)
            # (the main process alone warns, and alone hashes files of equal size to compare them)
            same = is_main_rank() and shared_file(cfg.train_file, cfg.validation_file)
            if same:
                warnings.warn(f"--train_file and --validation_file {same}: the evaluation scores examples the model "
                              f"trained on and overstates how it does on new text; carve one instead with "
                              f"--validation_split_percentage (and no --validation_file).", stacklevel=2)
        if cfg.test_file:
            raw[TEST] = load_file(cfg.test_file, "--test_file", label_columns=lc)
            for flag, other in (("--train_file", cfg.train_file), ("--validation_file", cfg.validation_file)):
                same = is_main_rank() and shared_file(cfg.test_file, other)
                if same:
                    warnings.warn(f"--test_file and {flag} {same}: its test scores are not held out; pass a file of "
                                  f"examples the run neither trains on nor picks best/ by.", stacklevel=2)
    else:
        raw = _load_hub(cfg)
    extras = cfg.extra_evals()
    for name, kind, source in extras:
        if kind == "file":  # (a Hub dataset's splits: _load_hub)
            raw[EXTRA + name] = load_file(source, f"--extra_eval_files {name}", label_columns=lc)
            for flag, other in (("--train_file", cfg.train_file), ("--validation_file", cfg.validation_file),
                                ("--test_file", cfg.test_file)):
                same = is_main_rank() and shared_file(source, other)
                if same:
                    why = "it is scored twice, under two names" if flag == "--validation_file" else \
                        "its scores are not of new text"
                    warnings.warn(f"--extra_eval_files {name} and {flag} {same}: {why}.", stacklevel=2)
    for name, _, _ in extras:  # in the order given (logs, records and the model card follow it)
        raw[EXTRA + name] = raw.pop(EXTRA + name)
    return raw


def label_columns_of(cfg):
    """The columns --label_column names (several for 0/1 columns of multi-label data)."""
    return cfg.label_columns() or [cfg.label_column]


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
    patterns of shards) read a file in common; 'are identical copies (x.jsonl and y.jsonl)' / 'hold identical
    copies (...)' when a file of one is a byte-for-byte copy of a file of the other (`cp train.jsonl
    test.jsonl`): of the same size, then the same sha256 (read only for files of equal size); else None."""
    if not a or not b:
        return None
    from .config import data_files

    mine, theirs = data_files(a, ""), data_files(b, "")
    ours = {file_key(g) for g in mine}
    for f in theirs:
        if file_key(f) in ours:
            return f"are the same file ({b})" if os.path.isfile(a) and os.path.isfile(b) else f"share a file ({f})"
    sizes = {}
    for g in mine:
        sizes.setdefault(os.path.getsize(g), []).append(g)
    for f in theirs:
        for g in sizes.get(os.path.getsize(f), ()):
            if holds_rows(f) and storage.file_digest(f) == storage.file_digest(g):  # (no rows: no copy of data)
                one = os.path.isfile(a) and os.path.isfile(b)
                return f"{'are identical copies' if one else 'hold identical copies'} ({g} and {f})"
    return None


def load_file(path, flag, csv_as_text=False, label_columns=()):
    """A local csv, tsv, json, jsonl or parquet file as a Dataset, or one line naming what is wrong with it.
    `path` may be a glob pattern of shards of one format (config.data_files): read in name order as one
    Dataset (rows numbered across them in that order); a blank shard among others is skipped.
    `csv_as_text`: a csv's every column is read as text (predict.py reads text columns only: a column
    whose values look like numbers in the first 10,000 rows and not later would otherwise fail the read).
    `label_columns`: the label columns (label_columns_of); a .tsv that holds every one of a column's labels in
    quote marks was written with quoting (as one whose header is quoted) and is refused."""
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
    kinds = sorted({os.path.splitext(f)[1].lower() for f in kept})
    if len({kind.replace(".jsonl", ".json") for kind in kinds}) > 1:  # (a folder's split; data_files refuses a
        # pattern's): read as one table by the first file's rules, a .tsv's rows would be split at commas
        raise UserError(f"{flag}: {listed([os.path.basename(f) for f in kept], 4)} are files of {len(kinds)} formats "
                        f"({', '.join(kinds)}), which would be read as one table by the first one's rules; keep one "
                        f"format (convert or move the others).")
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
            check_csv_rows(f, flag, path if len(kept) == 1 else f"'{path}': {f}")
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
            check_json_depth(f, flag)  # first: the shape check reads the first line with Python's json
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
            raise UserError(f"{flag} {path} could not be read: {diagnose_file(kept[0], builder) or read_cause(e)}.") \
                from e
        for f in kept:
            problem = diagnose_file(f, builder)
            if problem:
                raise UserError(f"{flag} '{path}': {f} could not be read: {problem}.") from e
        raise UserError(f"{flag} '{path}': its {len(kept)} files could not be read as one table "
                        f"({shard_columns(kept, builder) or read_cause(e)}).") from e
    finally:
        library.setLevel(level)
    if builder == "csv" and kwargs.get("quoting") == csv.QUOTE_NONE:  # (a .tsv)
        check_tsv_quoted_labels(ds, flag, path, label_columns)
    return ds


def read_cause(e):
    """What failed a read, as a clause: the error under datasets' "An error occurred while generating the dataset"
    (e.g. a Parquet value that decompresses to more memory than there is: a file made to, or a column far larger than
    a text)."""
    for cause in chain(e, during=True):  # (the last one, when every one is datasets')
        if not (isinstance(cause, Exception) and type(cause).__module__.startswith("datasets")):
            break
    if isinstance(cause, MemoryError):
        return (f"reading it ran out of memory ({short(cause)}): "
                f"a value in it is larger, read or decompressed, than this machine can hold; check the file")
    return short(cause)


def _read(builder, files, kwargs):
    import datasets
    import glob

    # datasets matches each name as a pattern again: a literal '[' or '?' in a file's name must not
    name = file_stamp(files)

    def load(**more):
        return datasets.load_dataset(builder, name=name, split="data",
                                     data_files={"data": [glob.escape(f) for f in files]}, **kwargs, **more)

    # a copy of exactly these files (their size, times and inode are in its name) prepared by an earlier run
    # (datasets adds "-<hash of the data files>" to the name; a read that failed leaves no dataset_info.json)
    copied = bool(glob.glob(os.path.join(glob.escape(str(datasets.config.HF_DATASETS_CACHE)), builder, f"{name}-*",
                                         "*", "*", "dataset_info.json")))
    try:
        ds = load()
    except Exception as e:  # (a write failure reaches us as datasets' DatasetGenerationError, raised from it)
        check_cache_writable(e)
        if not copied and damaged_cache(e) is None:
            raise
        # the cache's copy of the files, cut short (a full disk, a killed run, at any byte) or removed (a tmp
        # cleaner): the files read well once, so they are read again into a new copy (it named the user's file as
        # unreadable; helper env F2, rev3 F1); a file that fails again is the file's (the diagnosis below). Runs of
        # a sweep share the copy, and a new one replaces its whole folder, with what other runs tokenize into it:
        # one run at a time rebuilds it, and a run that finds it rebuilt meanwhile reads it as it is (helper conc F1)
        lock = rebuild_lock(os.path.join(str(datasets.config.HF_DATASETS_CACHE), builder, f"{name}.loop_rebuild.lock"))
        try:
            try:
                ds = load()
            except Exception:
                try:
                    ds = load(download_mode="force_redownload")
                except FileNotFoundError:  # the folder changed under the rebuild's removal of it (another run's
                    ds = load()  # rebuild or tokenizing, where the lock did not hold them off: rev4 F1): read it
        except Exception as again:
            check_cache_writable(again)  # (the disk that cut the copy short is still full: rev3 F3)
            raise
        finally:
            if lock is not None:
                lock.release()
    ds.data.table.validate(full=True)  # the JSON reader lets invalid UTF-8 through; catch it here, not mid-run
    return plain_strings(ds)


REBUILD_QUIET_S = 5.0  # how long a run waits for another's rebuild of a prepared copy before it says so


def rebuild_lock(path):
    """The lock of one rebuild of a prepared copy, taken (None where the file system has no locks, some NFS: the copy
    is rebuilt unlocked, as before the lock; review rev2 F2). A run that waits for another's rebuild says so first:
    a holder stopped (Ctrl-Z, a suspended job) would otherwise hold the sweep silently (rev2 F4)."""
    from filelock import FileLock, Timeout

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock = FileLock(path)
        try:
            lock.acquire(timeout=REBUILD_QUIET_S)
        except Timeout:
            say(f"data: waiting for another run, which is rebuilding the datasets cache's copy of these data files "
                f"(lock: {path}; a second Ctrl-C stops this run)")
            lock.acquire()
        return lock
    except Timeout:  # (an OSError in filelock 4: never "no locks here"; rev4 F3)
        raise
    except OSError:
        return None


# errors that only a write can give: reading a data file never does, so they are the cache's (and the words its
# libraries use for them when they wrap one: pyarrow, fsspec)
_WRITE_ERRNOS = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large",
                 errno.EROFS: "read-only file system"}
_DENIED_ERRNOS = (errno.EACCES, errno.EPERM, errno.ENOTDIR)  # (ENOTDIR: HF_HOME naming a file)


def damaged_cache(e):
    """What failed, as a clause, when `e` (or an error it came from) is the datasets cache's own file damaged or
    gone: an Arrow file cut short (a full disk, a run killed while it wrote) or removed (a tmp cleaner); else None."""
    from datasets import config

    cache = os.path.realpath(str(config.HF_DATASETS_CACHE))
    for err in chain(e, during=True):
        text = str(err)
        if type(err).__name__ in ("ArrowInvalid", "OSError") and re.search(
                r"metadata bytes|schema message|not an arrow file|bytes for message body", text, re.I):
            return short(err)  # (pyarrow's words for an Arrow file cut short, at whatever byte)
        name = getattr(err, "filename", None) if isinstance(err, OSError) else None
        if isinstance(err, OSError) and (isinstance(name, str) and os.path.realpath(name).startswith(cache + os.sep)
                                         or f"'{cache}{os.sep}" in text and ".arrow" in text):
            return short(err)
    return None


def check_cache_writable(e, folder=None, hub_name=None):
    """A read or a map that failed writing the datasets cache (full, over quota, a read-only HF_HOME or a shared
    pre-filled store, an HF_HOME whose folders cannot be created): one line naming the folder, the cause and the
    fix, not 'the file could not be read' (nor a CSV read again in memory, naming the next file), nor a map's
    two chained tracebacks. `folder`: where the write went (a map's: `map_folder`), by default the datasets
    cache. `hub_name`: a Hub dataset being loaded, which a read-only cache may hold prepared (datasets takes a lock
    in its cache even to read that copy): the fix says to take the copy along. The failure is `e` or an error it was raised from (DatasetGenerationError), an OSError of a write
    errno, one denied on a path in (or above) the folder, datasets' own errno-less 'Not enough disk space'
    (a full disk), or a wrapped one saying so in words (is_storage_error's)."""
    from datasets import config

    from .errors import is_storage_error

    cache = os.path.realpath(str(config.HF_DATASETS_CACHE))
    folder = os.path.realpath(str(folder)) if folder else cache
    cause, where, texts = None, None, []
    for err in chain(e):
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
        if cause is not None:
            break
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
        if hub_name and hub.datasets_cache(hub_name)[0]:
            fix += f", and copy '{hub.datasets_cache_root(hub_name)}' into it (where load_dataset reads it offline)"
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
    for name in frame.columns[frame.dtypes == object]:
        if frame[name].map(lambda v: isinstance(v, int) and not -2**63 <= v < 2**64).any():
            frame[name] = frame[name].map(lambda v: v if isinstance(v, str) or v != v else str(v))
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
            check_cache_writable(e, hub_name=None if os.path.isdir(name) else name)  # a read-only shared cache
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
    warn_unread_files(name, found)
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
            say(f"data: '{name}' split '{split}' holds files of {len(stems)} names: read as the splits "
                f"{', '.join(sorted(stems))}")
        else:
            splits[split] = files
    return datasets.DatasetDict({split: load_file(files, f"--dataset_name {name} (split '{split}')",
                                                      label_columns=label_columns_of(cfg))
                                 for split, files in splits.items()})


# a folder's files of a data extension that hold no examples: the Hub's and save_to_disk's records
FOLDER_RECORDS = {"dataset_infos.json", "dataset_info.json", "dataset_dict.json", "state.json"}


def warn_unread_files(name, found):
    """Warn about files of a data extension in the folder `name` that datasets put in no split (`found`): it
    matches extensions in lower case (a train_2.TSV beside train.tsv was dropped without a word) and splits by
    the names in file names (an examples.csv beside train.csv and test.csv)."""
    import glob

    read = {os.path.realpath(f) for files in found.values() for f in files}
    unread = sorted(os.path.relpath(p, name) for p in glob.glob(os.path.join(glob.escape(name), "**", "*"),
                                                                recursive=True)
                    if os.path.splitext(p)[1].lower() in FILE_EXTENSIONS and os.path.basename(p) not in FOLDER_RECORDS
                    and os.path.isfile(p) and os.path.realpath(p) not in read)
    if unread and is_main_rank():
        warnings.warn(f"dataset folder '{name}': {listed(unread, 5)} {'is' if len(unread) == 1 else 'are'} read as "
                      f"no split (datasets finds a split by its name in file names, and extensions in lower case "
                      f"only); if {'it holds' if len(unread) == 1 else 'they hold'} examples, rename "
                      f"{'it' if len(unread) == 1 else 'them'} so, or pass each split's files with --train_file / "
                      f"--validation_file.", stacklevel=2)


def file_stem(path):
    """'validation_matched' of 'data/validation_matched-00000-of-00001[-hash].parquet', of 'validation_matched_2.jsonl'
    (a shard's number, its count and hash dropped)."""
    stem = os.path.basename(path).split(".", 1)[0]
    stem = re.sub(r"-\d{5}-of-\d{5}.*$", "", stem)
    return re.sub(r"[-_]?\d+$", "", stem) or stem


# ---------------------------------------------------------------- checks and labels
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
            if count and count == len(ds):  # a run on no text at all: it learns nothing, or scores the bias
                others = [c for c in ds.column_names if c != col]
                raise UserError(f"the {flag_name} data has no text: its column '{col}' is empty or missing in every "
                                f"row; name the column that holds the texts with --{flag} (its other columns: "
                                f"{', '.join(repr(c) for c in others) or 'none'}).")
            if count and is_main_rank():
                warnings.warn(f"{count} {flag_name} rows have an empty or missing text in column '{col}' (first at "
                              f"row {first}); they count as empty inputs: drop them if that is not meant.", stacklevel=2)
            path = {TRAIN: cfg.train_file, EVAL: cfg.validation_file, TEST: cfg.test_file}.get(split) or \
                next((s for n, kind, s in cfg.extra_evals() if kind == "file" and EXTRA + n == split), None)
            if path and path.lower().endswith(".csv"):
                check_merged_rows(ds, col, cfg.label_column, path)
    if cfg.weight_column and TRAIN in raw:
        raw[TRAIN] = example_weights(raw[TRAIN], cfg.weight_column)


def reads_literal_eos(tokenizer):
    """Whether the tokenizer reads a literal eos written in a text as its eos token: an encoder-decoder's that keeps
    added markers whole (models.split_special_tokens), which check_literal_eos is for."""
    from .models import KEPT_MARKERS

    return bool(getattr(tokenizer, KEPT_MARKERS, None)) and bool(tokenizer.eos_token)


def check_literal_eos(cfg, tokenizer, raw, carved=False):
    """An encoder-decoder whose tokenizer keeps added markers whole (reads_literal_eos) reads a literal '</s>' in a
    text as a second eos, and its head fails at that batch ('All examples must have the same number of <eos>
    tokens'), deep in training: refused now in one line, the split and the row named (searched in Arrow). `raw`: the
    splits the run reads (after --max_*_samples and the carve; with --eval_only without the training data, which only
    names the labels), so a row they leave out is not refused, each with its row as read in the ROW column;
    `carved`: the evaluation split was carved from the training data."""
    import pyarrow.compute as pc

    from .models import KEPT_MARKERS

    eos = tokenizer.eos_token
    for split, ds in raw.items():
        for col in (c for c in (cfg.text_column, cfg.text_pair_column) if c):
            found = pc.fill_null(pc.match_substring(arrow_column(ds, col), eos), False)
            count = pc.sum(found).as_py() or 0
            if count:
                first, many = arrow_column(ds, ROW)[pc.index(found, True).as_py()].as_py(), count > 1
                carved_here = carved and split == EVAL
                words = SPLIT_WORDS[split] + (" (carved from the training data)" if carved_here else "")
                row = f"row {first}" + (" of the training data" if carved_here else "")
                where = f"{count} {words} texts in column '{col}' (first at {row}) hold" if many \
                    else f"the {words} text in column '{col}' at {row} holds"
                them = "those texts" if many else "that text"
                raise UserError(f"{where} the literal {eos!r}, which this encoder-decoder would read as a second "
                                f"end-of-text token and fail on: its tokenizer keeps the special tokens added to it "
                                f"({listed(getattr(tokenizer, KEPT_MARKERS), 5)}) whole instead of splitting special "
                                f"tokens written in the text; remove {eos!r} from {them}, or drop the added special "
                                f"tokens.")


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
        kind = feature.dtype if isinstance(feature, datasets.Value) else type(feature).__name__
        if kind in ("string", "large_string", "Json"):
            # a csv cell that is not a number ('n/a') makes the whole column text, a JSON one datasets' mixed-type
            # Json: name the first such row
            for row, value in enumerate(column_values(ds, col)):
                if value is not None and not labels.is_number_text(str(value)):
                    raise UserError(f"--weight_column '{col}': training row {row} holds {str(value)[:40]!r}, not a "
                                    f"number; give each training example a weight such as 1 or 0.5.")
        if kind not in ("string", "large_string"):
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
    names = {str(v) for v in set(column_values(ds, label_col)) if isinstance(v, (str, int))}
    if not names or len(names) > labels.MANY_LABELS:
        return
    for row in multi:
        lines = ds[row][col].split("\n")[:-1]
        hit = next((line for line in lines if "," in line and line.rsplit(",", 1)[1].strip().strip('"') in names), None)
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
BLANK_TEXT = r"^[\s\p{Z}\p{Cc}\p{Cf}]*$"  # (RE2) a text of whitespace, separators, control and format characters


def empty_texts(ds, *cols):
    """(count, first row) of the rows whose text in `cols` (in any of them: a pair's two columns) is missing or blank
    (no character but whitespace and invisible ones), counted in Arrow: a column of millions of texts is never
    copied into Python."""
    import pyarrow.compute as pc

    columns = [arrow_column(ds, c) for c in cols]
    count, first = 0, None
    # a slice at a time: trimming copies the texts (+1.45 GB at once for 20k reviews of 5k words)
    for start in range(0, len(columns[0]), EMPTY_TEXTS_SLICE):
        blank = blank_rows([values.slice(start, EMPTY_TEXTS_SLICE) for values in columns])
        n = pc.sum(blank).as_py() or 0
        if n and first is None:
            first = start + pc.index(blank, True).as_py()
        count += n
    return count, first


def blank_rows(parts):
    """Arrow's mask of the rows where any of `parts` (one slice of each text column) is missing or holds nothing but
    spaces and invisible characters (a zero-width space, a BOM, bidi marks): matched in place, no copy of the
    texts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    blank = None
    for part in parts:
        empty = pc.is_null(part)
        if pa.types.is_string(part.type) or pa.types.is_large_string(part.type):
            empty = pc.or_kleene(empty, pc.match_substring_regex(part, BLANK_TEXT)).fill_null(True)
        blank = empty if blank is None else pc.or_(blank, empty)
    return blank


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

    raw.uncut_train = raw[TRAIN] if TRAIN in raw else None  # (labels.unseen_fix: did the cut drop a class?)
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


def check_unknown_tokens(cfg, tokenizer, rows, sample=2000, what="training", reads=None):
    """Refuse a tokenizer that turns most of the `what` text (`rows`: the training split, or with --eval_only
    the evaluation split; `reads`: for another split, the split it was checked on first) into its unknown token:
    in transformers 5
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
        texts = [str(t)[:5000] for t in column_values(rows, col) if t is not None and str(t)[:5000].strip()]  # bounded
        per_text = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        ids = [i for row in per_text for i in row]
        words = sum(len(t.split()) for t in texts)
        text = f"{what} text" + (f" in column '{col}'" if len(columns) > 1 else "")
        dropped = words and len(ids) < UNKNOWN_LIMIT * words  # byte-level BPEs without their files drop the text
        # and in most texts, each on its own: one long row of characters it lacks (5,000 x's) outweighed a hundred
        # texts it reads well, and a fitting tokenizer was refused on small data
        read = [row for row in per_text if row]
        share = sum(i == unk for i in ids) / max(len(ids), 1) if unk is not None else 0.0
        mostly = sum(sum(i == unk for i in row) >= UNKNOWN_LIMIT * len(row) for row in read) if unk is not None else 0
        unknown = ids and share >= UNKNOWN_LIMIT and mostly >= UNKNOWN_LIMIT * len(read)
        if reads and (dropped or unknown):  # the tokenizer read the first split: this text is not of its kind
            into = f"{tokenizer.unk_token!r} or nothing" if unk is not None else "nothing"
            raise UserError(f"the tokenizer of '{where}' reads the {reads} text but turns most of the {text} into "
                            f"{into}, so it would be scored at chance: it is in another language or script than the "
                            f"{reads} data; check the {what} data.")
        from .models import forced_class

        named = forced_class(where, tokenizer) if dropped or unknown else None
        forced = (f"transformers loaded that folder's tokenizer as {type(tokenizer).__name__}, the class it fixes for "
                  f"this model type, not the {named} its tokenizer_config.json names, and that class does not read "
                  f"its files; use the model's own tokenizer (one of that class)") if named else None
        if dropped:
            raise UserError(f"the tokenizer of '{where}' drops most of the {text} ({len(ids)} tokens for {words} "
                            f"words; its vocabulary has {len(tokenizer)} tokens): " + (forced or (
                                "that folder probably holds no tokenizer files of its own; pass --tokenizer_name with "
                                "the model's tokenizer")) + ".")
        if unknown:
            raise UserError(f"the tokenizer of '{where}' turns {share:.0%} of the {text} into its unknown token "
                            f"{tokenizer.unk_token!r} (its vocabulary has {len(tokenizer)} tokens): " + (forced or (
                                "it does not fit this text, or that folder holds no tokenizer files of its own; pass "
                                "--tokenizer_name with the model's tokenizer")) + ".")


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

