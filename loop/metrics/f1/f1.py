"""F1 as a local `evaluate` module, so it works offline (same call as the Hub's `f1`).

`compute(predictions=..., references=..., average='binary'|'macro')` returns {"f1": value}. Binary by default (class 1 positive); `average='macro'` for more than two classes.
Computed with numpy from the confusion counts (scikit-learn is not a dependency). evaluate loads
scripts by copying them: keep each import on its own line.
"""
import datasets
import evaluate
import numpy as np

_DESCRIPTION = "F1: harmonic mean of precision and recall, 2TP / (2TP + FP + FN)."
_CITATION = ""
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted label ids.
    references (list of int): true label ids.
    average (str): 'binary' (default: the class pos_label), 'macro', 'weighted' or 'micro'.
    pos_label (int): the positive class for 'binary' (default 1).
Returns:
    f1 (float)
"""


def _confusion(predictions, references):
    p = np.asarray(predictions, dtype=np.int64)
    r = np.asarray(references, dtype=np.int64)
    if p.shape != r.shape:
        raise ValueError(f"{len(p)} predictions but {len(r)} references")
    labels = np.union1d(p, r)
    n = int(labels.max()) + 1 if labels.size else 1
    return np.bincount(r * n + p, minlength=n * n).reshape(n, n).astype(np.float64), labels


def _ratio(a, b):
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b != 0)


def _per_class(cm):
    """(precision, recall, f1) per class id, 0 where undefined (as scikit-learn's zero_division=0)."""
    tp = np.diag(cm)
    precision = _ratio(tp, cm.sum(0))
    recall = _ratio(tp, cm.sum(1))
    f1 = _ratio(2 * tp, cm.sum(0) + cm.sum(1))
    return {"precision": precision, "recall": recall, "f1": f1}


def score(which, predictions, references, average="binary", pos_label=1):
    cm, labels = _confusion(predictions, references)
    values = _per_class(cm)[which]
    if average == "binary":
        if labels.size > 2:
            raise ValueError(f"average='binary' needs two classes, got {labels.size}; use average='macro'")
        return float(values[pos_label]) if pos_label < len(values) else 0.0
    if average == "macro":  # unweighted mean over the classes present in predictions or references
        return float(values[labels].mean())
    if average == "weighted":
        support = cm.sum(1)[labels]
        return float((values[labels] * support).sum() / max(support.sum(), 1))
    if average == "micro":  # single-label: equals accuracy
        return float(np.trace(cm) / max(cm.sum(), 1))
    raise ValueError(f"unknown average '{average}'; use binary, macro, weighted or micro")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, average="binary", pos_label=1):
        return {"f1": score("f1", predictions, references, average=average, pos_label=pos_label)}
