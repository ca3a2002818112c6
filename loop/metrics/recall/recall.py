"""recall as a local `evaluate` module, so it works offline (same call as the Hub's `recall`).

`compute(predictions=..., references=...)` returns {"recall": value}. Binary by default (class 1
positive); `average='macro'` for more than two classes. The arithmetic
and the class are in `loop/scores.py`.
"""
from loop import scores

Recall = scores.score_metric("recall", "Recall: TP / (TP + FN).")
