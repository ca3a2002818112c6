"""Labels: the label column's values -> ids 0..n-1 (names), multi-hot rows (lists of names) or float
targets (regression), and the checks that each split's labels, and a trained model's head, agree.

Owns: reading label names, ClassLabel ids, integer ids, booleans and 0/1 columns; the order of the
ids (the data's own, --label_names', or a trained head's rows); --eval_only's reading of a model's
labels from the record its run left; refusing, in one sentence, labels that cannot be right (a
typo'd near-duplicate, a class missing from a split, a text column named as the label). Called by
`data.prepare` after loading and before tokenizing; like every data check, it depends only on the
data and the config, so every rank reaches the same verdict.
"""

import math
import re
import unicodedata
import warnings

import numpy as np

from .errors import UserError, is_main_rank, listed
from .splits import EVAL, SPLIT_FLAGS, SPLIT_WORDS, TEST, TRAIN, column, column_values, extra_name, say

MAX_UNUSED_LABELS = 1000  # integer label ids above this (and above twice the ids seen) need --label_names


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
                info["names_in_data"] = any(isinstance(v, str) for row in column_values(raw[source], col)
                                            for v in (row if isinstance(row, list) else [row]))  # (refused below)
        return encode_multi_labels(cfg, raw, kinds, head_labels, info, given, source)

    class_names = list(train_feat.names) if isinstance(train_feat, datasets.ClassLabel) else None
    if given and class_names is None and kinds[source] == "str":
        kinds = number_texts_as_ids(cfg, raw, kinds, given, source)
    if info is not None and cfg.eval_only:  # (check_model_labels' advice)
        info["names_in_data"] = class_names is None and kinds[source] == "str"  # the texts of the labels themselves
    if info is not None and class_names is not None:
        info["class_names"] = list(train_feat.names)
    names, to_id, reading, class_names = source_classes(cfg, raw[source], kinds[source], given, source, class_names)
    if len(names) < 2:
        cut = TRAIN in getattr(raw, "subset_cut", ()) and source == TRAIN  # (data.limit: --max_train_samples)
        raise UserError(f"the {SPLIT_WORDS[source]} data has a single label ('{names[0]}'); a classifier needs at least "
                        f"two: check the data and --label_column"
                        + (f", and --max_train_samples {cfg.max_train_samples}, which took a subset of it." if cut
                           else "."))
    if info is not None:  # how the labels were read, for best_metrics.json (label_reading)
        info["label_ids"], info["id_names"] = ("texts", None) if reading is None else ("positions", reading)
    row = head_order(names, head_labels)  # id -> the trained head's row for that name, or None
    if row is not None:
        if info is not None:
            info["head_order"] = True
        names = [names[i] for i in sorted(range(len(names)), key=row.__getitem__)]
        say(f"data: label ids follow the model's trained head: {', '.join(names)}")
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
        if split != source and {kinds[split], kinds[source]} == {"int", "str"} and class_names is None \
                and not isinstance(ds.features[col], datasets.ClassLabel):
            # the same numbers, as text in one file and as integers in another (a CSV reads "1" as 1)
            ds, kinds[split] = numbers_spelled_alike(ds, col, split, kinds[split], names if to_id is not None else None)
        if kinds[split] != kinds[source] and not (isinstance(ds.features[col], datasets.ClassLabel) and kinds[source] == "int"):
            raise UserError(f"the {SPLIT_WORDS[split]} labels are {kind_words(ds, col, kinds[split])} but the "
                            f"{SPLIT_WORDS[source]} labels are {kind_words(raw[source], col, kinds[source])}; use "
                            f"the same kind in every file.")
        if to_id is not None:
            unseen = sorted(set(column_values(ds, col)) - set(to_id))
            if unseen:
                raise UserError(f"{SPLIT_WORDS[split]} labels {listed(unseen)} were never seen in training (known: {listed(names)}); "
                                f"{unseen_fix(cfg, raw, 'fix the data or --label_names', unseen, names)}.")
            encoded = [to_id[v] for v in column_values(ds, col)]
        else:
            ds = class_ids_by_name(ds, col, split, class_names, given)
            ids = checked_ids(ds, col, split, source, len(names))
            if split == source:
                train_ids = ids
            elif source == TRAIN and train_ids is not None and ids - train_ids:
                raise UserError(f"{SPLIT_WORDS[split]} labels {sorted(ids - train_ids)[:5]} were never seen in training; "
                                f"{unseen_fix(cfg, raw, 'fix the data', ids - train_ids)}.")
            renumber = int if row is None else (lambda v: row[int(v)])
            encoded = [renumber(v) for v in column_values(ds, col)]
        raw[split] = with_class_ids(ds, encoded, names)
    return names


def unseen_fix(cfg, raw, fix, unseen, known=()):
    """The advice for evaluation labels training never saw (`unseen`, as the data writes them): `fix`, or, where
    --max_train_samples took a subset of training data that holds one of them (raw.subset_cut and uncut_train,
    data.limit), that subset; where one is a training label (of `known`) but for case, surrounding spaces, Unicode
    form or invisible characters, that twin first."""
    twin = label_twin(unseen, known)
    if twin:
        fix = (f"{twin[0]!r} differs from the training label {twin[1]!r} only in case, surrounding spaces, Unicode "
               f"form or invisible characters: write the labels as the training data does")
    uncut = getattr(raw, "uncut_train", None)
    if TRAIN in getattr(raw, "subset_cut", ()) and uncut is not None:
        try:
            values = {str(v) for row in column_values(uncut, cfg.label_column)
                      for v in (row if isinstance(row, list) else [row])}
        except (KeyError, ValueError, TypeError):  # (labels in several 0/1 columns: nothing to compare)
            values = set()
        if values & {str(v) for v in unseen}:
            return (f"--max_train_samples {cfg.max_train_samples} took a subset of the training data without them: "
                    f"raise it (or cut the evaluation data alike), or {fix}")
    return fix


def label_twin(unknown, names):
    """(the first of the labels `unknown`, the one of `names` it is but for case, surrounding spaces, Unicode form
    or invisible characters), or None."""
    twins = {_label_key(n): n for n in names if isinstance(n, str)}
    return next(((u, twins[_label_key(u)]) for u in unknown if isinstance(u, str) and _label_key(u) in twins), None)


def twin_fix(unknown, names):
    """Where a label outside --label_names is one of `names` but for case, surrounding spaces, Unicode form or
    invisible characters ('POSITIVE ' beside --label_names' POSITIVE, which drops surrounding spaces, so it cannot
    be added): the fix (and the others' when some have no twin), else ''."""
    twin = label_twin(unknown, names)
    if not twin:
        return ""
    others = [u for u in unknown if not label_twin([u], names)]
    return (f"{twin[0]!r} differs from {twin[1]!r} of --label_names only in case, surrounding spaces, Unicode form "
            f"or invisible characters (--label_names drops surrounding spaces): write the labels alike in the data "
            f"and --label_names (e.g. strip the data's)" + ("; add the others or fix the data" if others else ""))


def source_classes(cfg, ds, kind, given, source, class_names):
    """The classes the `source` split defines: (names in id order, {name: id} for labels that are texts else None,
    the name of each id as the data holds it (None for texts: an id means nothing to the run; label_reading),
    the ClassLabel's names each new id stands for (None unless a ClassLabel)). `kind`: the split's label kind;
    `class_names`: its ClassLabel's names, or None."""
    col = cfg.label_column
    if class_names is not None:
        names = given or class_names
        if given:
            if len(given) != len(class_names):
                raise UserError(f"--label_names has {len(given)} names but the label column has {len(class_names)} "
                                f"classes ({', '.join(class_names)}).")
            class_names = rename_class_labels(class_names, given)  # for each new id, the ClassLabel name it stands for
        # (the ClassLabel's ids, as the data holds them: each one's name, --label_names applied)
        return names, None, [names[class_names.index(n)] for n in ds.features[col].names], class_names
    if kind == "str":
        seen = sorted(set(column_values(ds, col)))
        if not given:  # labels listed in --label_names are meant
            check_near_duplicate_labels(seen)
            check_label_column(col, len(seen), len(ds))
        names = given or seen
        unknown = sorted(set(seen) - set(names))
        if unknown:
            why = ("; numbers written as text are read as ids (the text '0' is id 0) only when --label_names names "
                   "none of them" if all(_is_int_text(v) for v in seen) else "")
            raise UserError(f"{SPLIT_WORDS[source]} labels {listed(unknown)} are not in --label_names "
                            f"({listed(names)}); {twin_fix(unknown, names) or 'add them or fix the data'}{why}"
                            f"{comma_hint(unknown)}.")
        warn_unused_names(cfg, names, [n for n in names if n not in set(seen)], source)
        return names, {n: i for i, n in enumerate(names)}, None, None
    # integer ids
    ids = {int(v) for v in column_values(ds, col)}
    names = id_label_names(ids, given, source)
    n = len(names)
    unused = sorted(set(range(n)) - ids)
    if given:
        warn_unused_names(cfg, names, [names[i] for i in unused], source)
    elif unused and is_main_rank():
        # ratings 1..5 (a fresh user's F1): --label_names was the advice, and it refused five names for ids 1-5
        lo = min(ids)
        shift = f" (here: subtract {lo} from each)" if ids == set(range(lo, lo + len(ids))) else ""
        warnings.warn(f"{SPLIT_WORDS[source]} label ids {_ranges(sorted(ids))} leave id(s) {_ranges(unused)} unused: the model "
                      f"gets {n} classes, {len(unused)} of them never trained (and f1/precision/recall become "
                      f"averages over classes); renumber the labels 0..{len(ids) - 1}{shift} (--label_names names "
                      f"ids from 0: it cannot leave one out).", stacklevel=3)
    return names, None, list(names), None


def class_ids_by_name(ds, col, split, class_names, given):
    """A split whose labels are a ClassLabel, its ids renumbered by name to the run's classes: its ids mean its own
    names, and another file's ClassLabel may list them in another order (`class_names`: the training ClassLabel's,
    or None); beside plain ids named by --label_names (`given`), matched to those names."""
    import datasets

    own = ds.features[col].names if isinstance(ds.features[col], datasets.ClassLabel) else None
    by_name = class_id_map(own, class_names, split) if own is not None and class_names is not None else None
    if own is not None and class_names is None and given and not numbered_names(own):
        # plain ids named by --label_names, beside a ClassLabel that names its own ids: by name too (its
        # 0 may be another class than the ids' 0; taken as ids, every label was flipped, silently); names
        # none of which --label_names has rename by position, as over a training ClassLabel (IMDb's neg, pos
        # as NEGATIVE, POSITIVE), said once; a mix is refused
        folded = {g.casefold() for g in given}
        if len(own) == len(given) and not any(n.casefold() in folded for n in own):
            say(f"data: the {SPLIT_WORDS[split]} label column's classes {', '.join(own)} are taken as "
                f"{', '.join(given)} (by position)")
        else:
            by_name = class_id_map(own, given, split)
    if own is not None and class_names is None and not given and not numbered_names(own):
        # its ids mean its names, the training ids mean nothing: taken as the same ids, a ClassLabel that lists
        # POSITIVE first scored every row as the other class, silently (accuracy 0.06 for 0.94)
        raise UserError(f"the {SPLIT_WORDS[split]} label column names its classes ({listed(own)}), but the training "
                        f"labels are plain ids, so which id is which class is unknown; say it with --label_names: "
                        f"the names of ids 0, 1, ... in order.")
    if by_name is None:
        return ds
    return _map_labels(ds, col, by_name.__getitem__, datasets.Value("int64"), split)


def checked_ids(ds, col, split, source, n):
    """The set of a split's integer labels, each an id of the run's `n` classes; the Hub's -1 (an unlabelled row)
    outside the `source` split and any other id outside 0..n-1 refused in one line that says what to do."""
    ids = {int(v) for v in column_values(ds, col)}
    if -1 in ids and split != source:  # the Hub's unlabelled rows (GLUE's test splits are all -1)
        raise UserError(f"{len(ds) if ids == {-1} else 'some'} {SPLIT_WORDS[split]} rows have the label -1, "
                        f"which the Hub uses for unlabelled rows (GLUE's test splits), so they cannot be scored; "
                        + ("hold out a labelled split or file, or drop --test_split / --test_file."
                           if split == TEST else
                           f"drop {extra_name(split)} from --extra_eval_splits / --extra_eval_files."
                           if extra_name(split) is not None else "evaluate on a labelled split (--eval_split) or "
                           "carve one (--validation_split_percentage 10)."))
    bad = sorted(i for i in ids if not 0 <= i < n)
    if bad:
        raise UserError(f"{SPLIT_WORDS[split]} labels {bad[:5]} are outside 0..{n - 1}; the model has {n} labels.")
    return ids


def comma_hint(unknown):
    """For labels missing from --label_names: a label with a comma in it cannot be named there (the option splits at
    commas: 'good, really' became 'good' and 'really'), said rather than listed as missing."""
    if not any("," in str(v) for v in unknown):
        return ""
    return ("; --label_names splits at commas, so a label with a comma in it cannot be named there: leave "
            "--label_names out (the data's own labels are read as they are), or rename that label in the data")


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
    say(f"data: label column '{col}' holds one label per list (one-hot rows or [id]): each is read as its class "
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
    say(f"data: label column '{col}' holds numbers written as text, none of them a name of --label_names: "
        f"read as ids (the text '0' is id 0, {given[0]})")
    return {split: _label_kind(ds, col, split) for split, ds in raw.items()}


def numbers_spelled_alike(ds, col, split, kind, spellings):
    """(ds, kind): a split whose labels are numbers, as integers ("int") where the source split writes them as text
    (`spellings`: its label names, '1', '10', '2'), or as text where the source's are integers (`spellings` None),
    relabelled in the source's kind, so they compare by number (a JSONL of "1"/"10"/"2" beside a CSV, which reads
    them as integers, was refused: 'use the same kind in every file', which a CSV cannot do). Unchanged (ds, kind)
    where they are not numbers on both sides, or two texts spell one number ('1', '01')."""
    import datasets

    if kind == "int" and spellings is not None and all(_is_int_text(n) for n in spellings):
        written = {int(n): n for n in spellings}
        if len(written) == len(spellings):
            return _map_labels(ds, col, lambda v: written.get(int(v), str(v)), datasets.Value("string"), split), "str"
    if kind == "str" and spellings is None:
        values = set(column_values(ds, col))
        if values and all(_is_int_text(v) for v in values) and len({int(v) for v in values}) == len(values):
            return _map_labels(ds, col, int, datasets.Value("int64"), split), "int"
    return ds, kind


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
    moved = [i for i in sorted(ids) if i < len(numbers) and numbers[i] != i]  # (an id past them: refused after)
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


def classes_as_run_read(cfg, ds, model_labels, reading):
    """--eval_only with training data (`ds`, the training split) of the ClassLabel the model's run trained on under
    other names (the default job: IMDb's neg, pos as NEGATIVE, POSITIVE by --label_names): the run's names for the
    classes in id order, as --label_names would give them, said in one line; else None. (Evaluation data alone is
    read so by IdReading.split_as_names; with training data, its classes name the ids, and neg, pos were refused as
    "not the model's labels": docs audit73 D1.)"""
    import datasets

    feature = ds.features[cfg.label_column]
    feature = getattr(feature, "feature", feature)  # a multi-label column's list of a ClassLabel (review rev F3)
    names = recorded_positions(reading, model_labels)
    classes = (reading or {}).get("class_names")
    if cfg.label_list() or names is None or not isinstance(feature, datasets.ClassLabel) \
            or not isinstance(classes, list):
        return None
    own = [str(n).casefold() for n in feature.names]
    if own != [str(n).casefold() for n in classes] or set(own) == {str(n).casefold() for n in model_labels}:
        return None  # other classes (refused by check_model_labels), or the model's own names (matched by name)
    pairs = ", ".join(f"{c} is '{n}'" for c, n in zip(feature.names, names))
    say(f"data: the training label classes are read as the model's training run read them ({pairs}, from its "
        f"best_metrics.json)")
    return names


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
    given = cfg.label_list()
    names = given or model_labels
    if not names or cfg.problem_type == "regression":
        return names
    ids = IdReading(cfg, names, model_labels, reading)
    for split, ds in list(raw.items()):
        raw[split] = ids.split_as_names(split, ds)
    ids.say_how_read()
    return list(names)


class IdReading:
    """eval_only_labels' plan for one model and its run's record: how a split's labels become the model's names
    (split_as_names), and the lines that say how ids were read (say_how_read), once for all the splits."""

    def __init__(self, cfg, names, model_labels, reading):
        self.cfg, self.names, self.given = cfg, names, cfg.label_list()
        given, fold = self.given, self._fold
        self.known = ", ".join(names)
        self.whose = "--label_names" if given else "the model's labels"
        self.spelled = {str(n).casefold(): n for n in names}
        model = [str(n) for n in (model_labels or names)]
        read, recorded = (reading or {}).get("label_ids"), (reading or {}).get("label_names")
        self.run_classes = (reading or {}).get("class_names")  # the ClassLabel the run trained on, where it was one
        if read == "positions" and not (isinstance(recorded, list) and sorted(fold(recorded)) == sorted(fold(model))):
            read = None  # names that are not the model's labels (an edited best/): the record says nothing
        self.read = read
        # ids by position in a list of names: the run's (it trained on ids so named), or for a model that records
        # nothing, the model's labels in id order given as --label_names (what the refusal below offers)
        self.by_position = None
        if read == "positions" and (not given or fold(given) == fold(recorded)) \
                and recorded != [f"LABEL_{i}" for i in range(len(model))]:
            self.by_position = [self.spelled[n.casefold()] for n in fold(recorded)]
        elif read is None and given and fold(given) == fold(model):
            self.by_position = list(given)
        # the model's labels are numbers written as text ("1", "2", "3"; "0", "1", "10", "11", "2", ...: sorted as
        # text) and its run read texts (or records nothing): an integer label means the name of its own number
        numbered = {int(n): n for n in names} if all(_is_int_text(str(n)) for n in names) else {}
        self.numbered = numbered if len(numbered) == len(names) and not given else {}
        if given and read == "texts":
            self.alone = " (--eval_only then matches each id to the model's label of that number)"
        elif given and read == "positions":
            self.alone = (f" (--eval_only then reads each id as the training run did: by the names its "
                          f"best_metrics.json records, {','.join(recorded)})")
        else:
            self.alone = ""
        self.said = {}  # how the splits' ids were read ("by_number", "by_run", "classes") -> the splits
        self.read_ids = set()  # the ids read as the run read them

    @staticmethod
    def _fold(seq):
        return [str(n).casefold() for n in seq]

    def split_as_names(self, split, ds):
        """`ds` with its labels as the model's names (a ClassLabel of the model's names, or ids left for
        encode_labels, as they are), or a UserError that says what does not fit."""
        import datasets

        cfg, names, given, spelled, by_position = self.cfg, self.names, self.given, self.spelled, self.by_position
        col, known = cfg.label_column, self.known
        where, feature = SPLIT_WORDS[split], ds.features[col]
        own = getattr(getattr(feature, "feature", feature), "names", None)  # a ClassLabel's (or a list of them)
        if own is not None and not given and {str(n).casefold() for n in own} != set(spelled):
            if by_position is not None and isinstance(self.run_classes, list) and len(by_position) == len(own) \
                    and self._fold(own) == self._fold(self.run_classes):
                # the ClassLabel the training run read by position (IMDb's neg, pos named NEGATIVE, POSITIVE): as
                # it did
                self.said.setdefault("classes", []).append(where)
                return self._mapped(ds, col, dict(enumerate(by_position)), hasattr(feature, "feature"), split)
            raise UserError(f"the {where} label column's classes ({listed(own)}) are not the model's labels "
                            f"({known}); say which is which with --label_names: for each class, in that order, the "
                            f"model's name for it; or score it with a model trained on these classes.")
        if isinstance(feature, datasets.ClassLabel):
            return ds  # the same names (any case): encode_labels matches them by name; --label_names: by position
        kind = _label_kind(ds, col, split)
        lists = kind == "list"
        values = [v for row in column_values(ds, col) for v in (row if lists else [row])]
        if kind == "str" and values and all(_is_int_text(v) for v in values) \
                and not any(v.casefold() in spelled for v in values):
            # numbers written as text that name none of the labels: ids, as the same numbers written as integers
            check_one_spelling(col, set(values))
            ds = _map_labels(ds, col, int, datasets.Value("int64"), split)
            kind, values = "int", [int(v) for v in values]
        if kind == "list" and values and all(not isinstance(v, str) for v in values):
            kind = "int"  # lists of ids
        if kind == "int":
            ids = sorted({int(v) for v in values})
            if own is None:
                mapping = self._id_names(ids, where)
                if mapping is not None:
                    return self._mapped(ds, col, mapping, lists, split)
                if given:
                    check_numbered_names(given, ids, split, self.alone)
                elif names != [f"LABEL_{i}" for i in range(len(names))]:
                    raise UserError(f"the {where} labels are ids ({listed(ids)}) but the model's labels have names "
                                    f"({known}); say which name each id means with --label_names: the name of the "
                                    f"data's id 0, then of id 1, and so on.")
            bad = [i for i in ids if not 0 <= i < len(names)]
            if bad:
                raise UserError(f"{where} label ids {listed(bad)} are outside 0..{len(names) - 1}, the ids of "
                                f"{self.whose} ({known}); fix the data.")
            return ds  # ids of the model's labels: encode_labels takes them as they are
        unknown = sorted({str(v) for v in values if str(v).casefold() not in spelled})
        if unknown:
            twin = label_twin(unknown, names)
            if given:
                fix = twin_fix(unknown, names) or "fix the data, or --label_names"
            elif twin:  # (case is matched: this is a space, another Unicode form or an invisible character)
                fix = (f"{twin[0]!r} differs from the model's label {twin[1]!r} only in surrounding spaces, Unicode "
                       f"form or invisible characters: write the labels as the model does")
            else:
                fix = "fix the data, or score it with a model trained on them"
            raise UserError(f"{where} labels {listed(unknown)} are not among {self.whose} ({known}); {fix}.")

        def respell(batch):
            return {col: [[spelled[str(v).casefold()] for v in row] if isinstance(row, list) else
                          spelled[str(row).casefold()] for row in batch[col]]}

        return ds.map(respell, batched=True, desc=f"labels ({split})")

    def _id_names(self, ids, where):
        """{id: the model's name it means} for integer labels `ids` (sorted), read by position in the run's names
        (or --label_names that are the model's in id order) or by number; None when neither applies."""
        names, by_position, numbered = self.names, self.by_position, self.numbered
        if by_position is not None:
            bad = [i for i in ids if not 0 <= i < len(by_position)]
            if bad:
                named = "the training run named" if self.read == "positions" else "of --label_names"
                raise UserError(f"{where} label ids {listed(bad)} are outside 0..{len(by_position) - 1}, the ids "
                                f"{named} ({', '.join(by_position)}); fix the data.")
            if self.read == "positions":
                self.said.setdefault("by_run", []).append(where)
                self.read_ids.update(ids)
            return dict(enumerate(by_position))
        if not numbered:
            return None
        missing = [i for i in ids if i not in numbered]
        if missing:
            # ids from 0 beside labels from 1 (stars 0..4 of a model trained on "1".."5") may count the
            # labels by position: --label_names says so unambiguously (check_numbered_names)
            counted = 0 in missing and ids[-1] < len(names)
            raise UserError(f"the {where} label id(s) {listed(missing)} match none of the model's labels "
                            f"({self.known}), which are numbers, and an id means the label of its own number; fix "
                            f"the data" + (f", or if the ids count the model's labels from 0, say so with "
                                           f"--label_names {','.join(names)} (the name of the data's id 0, then "
                                           f"of id 1, and so on)." if counted else "."))
        moved = [i for i in ids if i < len(names) and names[i] != numbered[i]]
        if self.read is None and moved and ids[-1] < len(names):
            # both readings fit these ids, and nothing says how the model's run read its labels: never guess
            i = moved[0]
            raise UserError(f"the {where} label ids ({listed(ids)}) can mean the model's labels of the same "
                            f"number (id {i} is '{numbered[i]}') or its labels at those positions (id {i} is "
                            f"'{names[i]}'), and '{self.cfg.model_name_or_path}' does not record how its training "
                            f"read its labels (best/best_metrics.json of a loop since 2026-12-04 does); say which "
                            f"with --label_names: {','.join(own_number_order(names))} reads each id as its "
                            f"number, {','.join(names)} as a position.")
        self.said.setdefault("by_number", []).append(where)
        return numbered

    @staticmethod
    def _mapped(ds, col, mapping, lists, split):
        """`ds` with each integer label (in a list when `lists`) replaced by mapping[id], a name."""
        import datasets

        if lists:
            return _map_labels(ds, col, lambda row, m=mapping: [m[int(v)] for v in row],
                               datasets.List(datasets.Value("string")), split)
        return _map_labels(ds, col, lambda v, m=mapping: m[int(v)], datasets.Value("string"), split)

    def say_how_read(self):
        """One line for each way ids or classes were read as names, naming the splits read that way."""
        said, names, by_position = self.said, self.names, self.by_position
        if said.get("by_number"):
            # (an example whose position differs from its number, where there is one: what matching by position
            # would have got wrong)
            n = next((n for i, n in enumerate(names) if int(n) != i), names[0])
            say(f"data: the {' and '.join(said['by_number'])} label ids are the model's labels of the same number "
                f"(id {int(n)} is '{n}'), not the labels at those positions")
        if said.get("classes"):
            pairs = ", ".join(f"{c} is '{n}'" for c, n in zip(self.run_classes, by_position))
            say(f"data: the {' and '.join(said['classes'])} label classes are read as the model's training run read "
                f"them ({pairs}, from its best_metrics.json)")
        if said.get("by_run"):
            # (an id whose name is not its own number, where there is one: what reading by number would get wrong)
            i = next((i for i in sorted(self.read_ids) if by_position[i] != str(i)), min(self.read_ids, default=0))
            say(f"data: the {' and '.join(said['by_run'])} label ids are read as the model's training run read its "
                f"own (id {i} is '{by_position[i]}': {','.join(by_position)} in id order, from its best_metrics.json)")


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
        if split == TRAIN and len(ds) and counts.size and counts.min() == len(ds):  # (initial=1: one row only)
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
            raise UserError(f"{SPLIT_WORDS[source]} labels {unknown[:5]} are not in --label_names "
                            f"({', '.join(names)}); {twin_fix(unknown, names) or 'add them or fix the data'}"
                            f"{comma_hint(unknown)}.")
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
        say(f"data: every {SPLIT_WORDS[source]} text has exactly one label: this looks like single-label data "
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
        say(f"data: label columns follow the model's trained head: {', '.join(names)}")
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
            raise UserError(f"{SPLIT_WORDS[split]} labels {unseen[:5]} were never seen in training (known: {', '.join(names)}); "
                            f"{unseen_fix(cfg, raw, 'fix the data or --label_names', unseen, names)}.")
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
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf: refused below in one line
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
        say(f"data: the label column's classes {', '.join(class_names)} are named {', '.join(given)} (by position)")
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
    # every group in the one line: a spreadsheet's 'Negative', 'negative ' took a run per group (a fresh user's F3)
    clashes = [" and ".join(ascii(n) for n in g) for g in groups.values() if len(g) > 1]
    if clashes:
        named = "; ".join(clashes[:5]) + ("; ..." if len(clashes) > 5 else "")
        raise UserError(f"training labels {named} differ only in case, surrounding spaces, Unicode form or invisible "
                        f"characters and would become separate classes; fix the data (one spelling for each).")


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
    the user gave to train on (with --eval_only the model's own labels are the names: nothing trains). Called
    from source_classes: the warning names encode_labels' caller."""
    if unused and cfg.label_list() and not cfg.eval_only and source == TRAIN and is_main_rank():
        warnings.warn(f"--label_names {listed(unused)}: no {SPLIT_WORDS[source]} row has that label, so the model "
                      f"gets {len(names)} classes, {len(unused)} of them never trained (and f1/precision/recall "
                      f"average over them too); leave out the names the data does not hold.", stacklevel=4)


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
    say(f"data: label column '{col}' holds multi-hot rows of {width}: each row's labels are the positions holding 1"
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
