"""Matthews correlation as a local `evaluate` module, so it works offline (same call as the Hub's `matthews_correlation`).

`compute(predictions=..., references=...)` returns {"matthews_correlation": value}. Works for two or more classes.
Computed with numpy from the confusion counts (scikit-learn is not a dependency). evaluate loads
scripts by copying them: keep each import on its own line.
"""
import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Matthews correlation coefficient: balanced even on imbalanced classes, in [-1, 1]."
_CITATION = ""
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted label ids.
    references (list of int): true label ids.
Returns:
    matthews_correlation (float)
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


def mcc(predictions, references):
    """Matthews correlation, multiclass form (Gorodkin 2004): in [-1, 1], 0 when undefined."""
    cm, _ = _confusion(predictions, references)
    t, p = cm.sum(1), cm.sum(0)  # true and predicted counts per class
    c, s = np.trace(cm), cm.sum()
    cov_pt = c * s - t @ p
    denom = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float(cov_pt / denom) if denom > 0 else 0.0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MatthewsCorrelation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        return {"matthews_correlation": mcc(predictions, references)}
