"""Accuracy as a local `evaluate` module, so the default metric works offline.

Same inputs and output as the Hub's `accuracy`: `compute(predictions=..., references=...)`
returns {"accuracy": fraction correct}. evaluate loads scripts by copying them: keep each
import on its own line.
"""
import evaluate

from loop import scores

_DESCRIPTION = "Accuracy: the fraction of predictions equal to the references."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted label ids.
    references (list of int): true label ids.
    normalize (bool): return a fraction (True, default) or a count.
    sample_weight (list of float): optional per-example weights.
Returns:
    accuracy (float): fraction (or count) of correct predictions.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return scores.metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        return {"accuracy": scores.accuracy(predictions, references, normalize=normalize, sample_weight=sample_weight)}
