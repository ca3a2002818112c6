"""precision as a local `evaluate` module, so it works offline (same call as the Hub's `precision`).

`compute(predictions=..., references=...)` returns {"precision": value}. Binary by default (class 1
positive); `average='macro'` for more than two classes. The arithmetic
and the class are in `loop/scores.py`.
"""
from loop import scores

Precision = scores.score_metric("precision", "Precision: TP / (TP + FP).")
