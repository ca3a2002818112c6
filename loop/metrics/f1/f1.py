"""f1 as a local `evaluate` module, so it works offline (same call as the Hub's `f1`).

`compute(predictions=..., references=...)` returns {"f1": value}. Binary by default (class 1
positive); `average='macro'` for more than two classes. The arithmetic
and the class are in `loop/scores.py`.
"""
from loop import scores

F1 = scores.score_metric("f1", "F1: harmonic mean of precision and recall, 2TP / (2TP + FP + FN).")
