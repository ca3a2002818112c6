"""The data's shared vocabulary: split keys and how messages name them, the loop's own column names,
and fast reads of a column. The data modules (data, labels) and the modules that read a split
(run_start, resume_checks, memory, logs, losses, modelcard, distributed, core) import these from here at load time: it
imports nothing of ours but errors.py, so none of them needs a function-level import to dodge a cycle.
"""

import numpy as np

from .errors import is_main_rank

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


def arrow_column(ds, name):
    """A split's column as Arrow (a ChunkedArray), its rows as the split has them (a subset's too), never copied into
    Python: the table's own column where the split has no indices mapping."""
    return ds.data.column(name) if getattr(ds, "_indices", None) is None else \
        ds.with_format("arrow", columns=[name])[:][name]


def column(ds, name):
    """A split's column as a numpy array (rows of a fixed-length list column as a 2-D array: multi-hot
    labels), read through Arrow: `ds.with_format("numpy")[name]` reads row by row in datasets 5, seconds
    per 25k rows, where this takes milliseconds."""
    import pyarrow as pa

    values = arrow_column(ds, name)
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
    return arrow_column(ds, name).to_pylist()


def say(msg):
    """One short `[loop]` line per data step (main rank), in place of datasets' progress bars."""
    if is_main_rank():
        from .logs import say

        say(msg)

