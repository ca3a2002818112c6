"""matthews_correlation as a local `evaluate` module, so it works offline (same call as the Hub's `matthews_correlation`).

`compute(predictions=..., references=...)` returns {"matthews_correlation": value}. Works for two or more
classes. The arithmetic
and the class are in `loop/scores.py`.
"""
from loop import scores

MatthewsCorrelation = scores.score_metric("matthews_correlation", "Matthews correlation coefficient: balanced even on imbalanced classes, in [-1, 1].")
