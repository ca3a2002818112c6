"""Classification scores in numpy: the shipped metrics the loop computes (`Shipped`: accuracy, f1,
precision, recall, matthews_correlation), shared with the local `evaluate` modules in `loop/metrics/`,
and the multi-label and regression scores, and --eval_only's per-label report (`report`).

Owns a split's scores as the loop gathers them (`gather`, `Gathered`), the arithmetic (per-class counts from
bincounts, never a K x K matrix; the confusion matrix's non-zero cells; per-class precision/recall/F1
with zero for undefined ratios as scikit-learn's zero_division=0, Matthews correlation), the local modules'
`MetricInfo` and classes (`metric_info`, `score_metric`), and making and computing a run's metrics (`load_metrics`:
Shipped, or an evaluate module from the Hub or a local script, whose code runs: `check_metric_code` gates it;
`compute_all`).
Does not own which metrics a run logs or how best/ is chosen (the config and the loop).
scikit-learn is not a dependency, so nothing here imports it.
"""

import os

import numpy as np

LOCAL_METRICS = os.path.join(os.path.dirname(__file__), "metrics")


AVERAGES = ("macro", "weighted", "micro")
# f1_macro, precision_weighted, recall_micro, ...: the shipped f1/precision/recall with an average named
AVERAGED = tuple(f"{m}_{a}" for m in ("f1", "precision", "recall") for a in AVERAGES)


def averaged(name):
    """('f1', 'macro') for 'f1_macro' (and the other AVERAGED names), else None."""
    return tuple(name.rsplit("_", 1)) if name in AVERAGED else None


def is_shipped(name):
    """A metric the package computes offline: a folder of loop/metrics/, or an AVERAGED name. Only a plain name: a
    path (os.path.join keeps an absolute one whole) is a metric script's folder, loaded and run by evaluate."""
    plain = name not in ("", ".", "..") and "/" not in name and os.sep not in name
    return plain and os.path.isdir(os.path.join(LOCAL_METRICS, name)) or averaged(name) is not None


def from_hub(names, skip=()):
    """True when some of `names` (but `skip`) is not shipped with the package: it loads an evaluate module (from
    the Hub, or a local script)."""
    return any(not is_shipped(n) and n not in skip for n in names)


# evaluate's own modules on the Hub, maintained by Hugging Face: what a bare name (roc_auc) loads
EVALUATE_ORGS = ("evaluate-metric", "evaluate-comparison", "evaluate-measurement")


def metric_code(name):
    """Whose Python code `evaluate.load(name)` runs, resolved as evaluate resolves it: ("script", its path) for a
    local script (a .py path, or a folder holding <folder name>.py; a bare name is one when such a folder is in the
    working directory), ("evaluate", 'evaluate-metric/NAME') for evaluate's own modules (a bare name), ("hub",
    'user/name') for anyone's module on the Hub. Not for a shipped metric (no module is loaded)."""
    parts = [p for p in name.replace(os.sep, "/").split("/") if p] or [name]
    # evaluate's own rule: the last part, .py added unless it has it, is the script's name, at `name` itself or
    # inside it ('metrics/evil.py/' runs metrics/evil.py/evil.py: read as .../evil.py.py, it passed unchecked)
    filename = parts[-1] if parts[-1].endswith(".py") else parts[-1] + ".py"
    if name.endswith(filename):
        return "script", os.path.abspath(name)
    if os.path.isfile(os.path.join(name, filename)):
        return "script", os.path.abspath(os.path.join(name, filename))
    slashes = name.replace(os.sep, "/").count("/")  # (evaluate counts them, empty parts too: 'roc_auc/' is a Hub id)
    if slashes == 0 and not os.path.isabs(name):
        return "evaluate", f"evaluate-metric/{name}"
    if slashes == 1 and not os.path.isabs(name) and not name.startswith("."):
        return ("evaluate" if parts[0] in EVALUATE_ORGS else "hub"), name
    return "script", os.path.abspath(name)  # a path evaluate will not find: nothing runs, loading fails


def check_metric_code(names, trust_remote_code, skip=(), metric=None):
    """Refuse, before any work, a metric module whose code is not evaluate's own (a local script, or someone's
    module on the Hub) unless --trust_remote_code: evaluate.load runs it on this machine, and a --config file
    copied from elsewhere can name it without the user typing it. evaluate's own modules (a bare name such as
    roc_auc) load without the flag, as `import evaluate` does: Hugging Face maintains both. `metric`: --metric's
    name (the others came from --metrics)."""
    from .errors import UserError

    for name in names:
        if name in skip or is_shipped(name) or trust_remote_code:
            continue
        kind, where = metric_code(name)
        if kind == "evaluate" or (kind == "script" and not os.path.isfile(where)):
            continue  # (a script that is not there runs nothing: load_metrics says it cannot be loaded)
        flag = "--metric" if name == metric else "--metrics"
        what = "a module on the Hugging Face Hub that is not evaluate's own" if kind == "hub" else \
            "a local metric script" + ("" if where == os.path.abspath(name) else f" ({where})")
        raise UserError(f"{flag} '{name}' is {what}, and loading it runs its Python code on this machine: pass "
                        f"--trust_remote_code if you trust that code (a --config file may have named it), else drop "
                        f"the metric.")


def describe_code(names):
    """The console line naming the metric modules whose code runs (None when none does: all shipped, or a script
    that is not there, which load_metrics refuses)."""
    shown = []
    for name in names:
        kind, where = metric_code(name)
        if kind == "script" and not os.path.isfile(where):
            continue
        shown.append(f"{where} (a local script)" if kind == "script" else
                     f"{where} (evaluate's own module, from the Hub or its cache)" if kind == "evaluate" else
                     f"{where} (a module from the Hub)")
    return f"metrics: loading {', '.join(shown)}: {'its' if len(shown) == 1 else 'their'} Python code runs on this " \
           f"machine" if shown else None


class Shipped:
    """A metric shipped with the package (accuracy, f1, precision, recall, matthews_correlation), with
    its evaluate module's call, `compute(predictions=..., references=..., **options)` -> {name: value},
    and the same arithmetic (the modules in loop/metrics/ call these functions too; tested equal). The
    loop computes them here rather than through `evaluate.load(loop/metrics/<name>)`: importing
    evaluate costs seconds at every start, for no other gain."""

    def __init__(self, name):
        self.name = name

    def compute(self, predictions, references, **options):
        if averaged(self.name):  # f1_macro: f1 with the average its name gives
            which, average = averaged(self.name)
            options["average"] = average
            return {self.name: score(which, predictions, references, **options)}
        if self.name == "accuracy":
            return {"accuracy": accuracy(predictions, references, **options)}
        if self.name == "matthews_correlation":
            return {self.name: mcc(predictions, references, **options)}
        return {self.name: score(self.name, predictions, references, **options)}

    def __repr__(self):
        return f"Shipped({self.name!r})"


def load_metrics(names, accelerator, skip=(), verbose=False, metric=None):
    """{name: metric} for `names` but `skip`: the shipped ones computed here (`Shipped`, offline), others
    evaluate modules (from the Hub, or a local script: `check_metric_code` gated them), named in one line
    first; a name that cannot be loaded is one UserError with a did-you-mean."""
    import difflib

    from .errors import UserError, short
    from .logs import quiet_evaluate

    modules = {}
    line = describe_code([n for n in names if n not in skip and not is_shipped(n)])
    if line and accelerator.is_main_process:  # what runs, named before it does (also when a --config chose it)
        from .logs import say

        say(line)
    with accelerator.main_process_first():
        for name in names:
            if name in skip:
                continue
            if is_shipped(name):
                modules[name] = Shipped(name)
                continue
            try:
                import evaluate

                if not verbose:
                    quiet_evaluate()
                modules[name] = evaluate.load(name, keep_in_memory=True)
            except Exception as e:
                offline = sorted(os.listdir(LOCAL_METRICS)) + list(AVERAGED) + list(REGRESSION_METRICS)
                close = difflib.get_close_matches(name.lower(), offline + ["loss"], n=1, cutoff=0.7)
                hint = f"did you mean '{close[0]}'? " if close else ""
                flag = "--metric" if metric is None or name == metric else "--metrics"  # the option that named it
                raise UserError(f"{flag} '{name}' could not be loaded ({short(e)}); {hint}{', '.join(offline)} and "
                                f"'loss' work offline, other names need the Hugging Face Hub (a metric your "
                                f"compute_metrics returns: list it in the loop's own_metrics).") from e
    return modules


def compute_all(modules, predictions, references, num_labels):
    """{metric: value} from every module; f1/precision/recall average over classes (macro) beyond two."""
    out = {}
    for name, module in modules.items():
        kwargs = {"average": "macro"} if name in ("f1", "precision", "recall") and num_labels > 2 else {}
        out.update(module.compute(predictions=predictions, references=references, **kwargs))
    return out


MULTI_LABEL_METRICS = ("accuracy", "f1", "precision", "recall", "matthews_correlation") + AVERAGED


def multi_label(names, predictions, references):
    """{metric: value} for multi-label rows (0/1 per label, one row per example): accuracy is the
    exact match of the whole row (scikit-learn's subset accuracy); f1, precision, recall and
    matthews_correlation are micro-averaged: one binary decision per example and label, pooled (so are
    f1_micro, ...); f1_macro and f1_weighted score each label's decisions, then take the mean, or weigh
    each label by its positive examples (scikit-learn's multi-label averages)."""
    p = np.asarray(predictions, dtype=np.int64).reshape(len(predictions), -1)
    r = np.asarray(references, dtype=np.int64).reshape(len(references), -1)
    if p.shape != r.shape:
        raise ValueError(f"predictions {p.shape} and references {r.shape} differ")
    flat_p, flat_r = p.ravel(), r.ravel()
    out = {}
    for name in names:
        if name == "accuracy":
            out[name] = float((p == r).all(axis=1).mean()) if len(p) else 0.0
        elif name == "matthews_correlation":
            out[name] = mcc(flat_p, flat_r)
        elif name in ("f1", "precision", "recall") or averaged(name) and averaged(name)[1] == "micro":
            out[name] = score(name.split("_")[0], flat_p, flat_r, average="binary", pos_label=1)  # pooled
        elif averaged(name):  # per label (its binary decisions), then the mean, or weighted by its positives
            which, average = averaged(name)
            per_label = np.array([score(which, p[:, j], r[:, j], average="binary", pos_label=1)
                                  for j in range(r.shape[1])])
            support = r.sum(axis=0)
            out[name] = float(per_label.mean()) if average == "macro" else \
                float((per_label * support).sum() / support.sum()) if support.sum() else 0.0
        else:
            raise ValueError(f"metric '{name}' has no multi-label form here")
    return out


REGRESSION_METRICS = ("mse", "rmse", "mae", "r2", "pearson", "spearman")


def regression(names, predictions, references):
    """{metric: value} for a regression (one number per example). mse, rmse, mae: errors; r2: the
    coefficient of determination (1 - residual / total sum of squares; 0 when the targets are all
    equal); pearson: the correlation of predictions and targets; spearman: the correlation of their
    ranks (ties share their mean rank). A correlation with a constant side is undefined: 0 here, so a
    model predicting one value early in training gets a number that can still pick best/."""
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    r = np.asarray(references, dtype=np.float64).reshape(-1)
    if p.shape != r.shape:
        raise ValueError(f"{len(p)} predictions but {len(r)} references")
    err = p - r
    out = {}
    for name in names:
        if name == "mse":
            out[name] = float(np.mean(err ** 2)) if len(p) else 0.0
        elif name == "rmse":
            out[name] = float(np.sqrt(np.mean(err ** 2))) if len(p) else 0.0
        elif name == "mae":
            out[name] = float(np.mean(np.abs(err))) if len(p) else 0.0
        elif name == "r2":
            total = float(np.sum((r - r.mean()) ** 2)) if len(r) else 0.0
            out[name] = 1.0 - float(np.sum(err ** 2)) / total if total > 0 else 0.0
        elif name in ("pearson", "spearman") and not (np.isfinite(p).all() and np.isfinite(r).all()):
            out[name] = float("nan")  # (as scipy: NaN ranked in index order scored Spearman 1, Pearson 0)
        elif name == "pearson":
            out[name] = correlation(p, r)
        elif name == "spearman":
            out[name] = correlation(ranks(p), ranks(r))
        else:
            raise ValueError(f"metric '{name}' has no regression form here; use one of {', '.join(REGRESSION_METRICS)}")
    return out


def correlation(a, b):
    """Pearson's correlation of two float arrays; 0 when either is constant (undefined)."""
    a, b = a - a.mean() if len(a) else a, b - b.mean() if len(b) else b
    denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.clip(np.sum(a * b) / denom, -1.0, 1.0)) if denom > 0 else 0.0


def ranks(x):
    """1-based ranks of `x`, ties given the mean of the ranks they span (scipy's rankdata 'average')."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # each run of equal values [start, end) gets the mean rank (start + end + 1) / 2
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    out = np.empty(len(x), dtype=np.float64)
    for s, e in zip(starts, ends):
        out[order[s:e]] = (s + e + 1) / 2.0
    return out


def metric_info(description, inputs_description):
    """The `evaluate.MetricInfo` of a metric over integer label ids."""
    import datasets
    import evaluate

    return evaluate.MetricInfo(
        description=description, citation="", inputs_description=inputs_description,
        features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
    )


def _class_ids(predictions, references, num_labels=0):
    """(predictions, references) as int64 arrays of one shape, and the number of classes: at least num_labels."""
    p = np.asarray(predictions, dtype=np.int64)
    r = np.asarray(references, dtype=np.int64)
    if p.shape != r.shape:
        raise ValueError(f"{len(p)} predictions but {len(r)} references")
    return p, r, max(int(max(p.max(), r.max())) + 1 if p.size else 1, num_labels)


def counts(predictions, references, num_labels=0):
    """Per-class counts of single-label predictions: (true positives, predicted, true) as float64 arrays of at
    least `num_labels` entries, and the label ids present in either. Three bincounts give every average and
    Matthews correlation: no K x K confusion matrix (30k classes would make it 7 GB)."""
    p, r, n = _class_ids(predictions, references, num_labels)
    predicted, true = np.bincount(p, minlength=n), np.bincount(r, minlength=n)
    tp = np.bincount(r[p == r], minlength=n)
    labels = np.flatnonzero(predicted + true)
    return tp.astype(np.float64), predicted.astype(np.float64), true.astype(np.float64), labels


def confusion_cells(predictions, references, num_labels=0):
    """The non-zero cells of the confusion matrix as [true, predicted, count] rows (int64), in the order of
    the true then the predicted id: as many as the distinct pairs, at most one per example."""
    p, r, n = _class_ids(predictions, references, num_labels)
    cells, count = np.unique(r * n + p, return_counts=True)
    return np.stack([cells // n, cells % n, count], axis=1)


def _ratio(a, b):
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b != 0)


def per_class(tp, predicted, true):
    """{precision, recall, f1} per class id from `counts`, 0 where undefined."""
    return {"precision": _ratio(tp, predicted), "recall": _ratio(tp, true), "f1": _ratio(2 * tp, predicted + true)}


def decide(logits, references, multi_label=False, regression=False):
    """(predictions, references) from gathered fp32 logits, as compute_metrics takes them: class ids
    (argmax); multi-label rows of 0/1 per label (a label applies where its sigmoid passes 0.5, its
    logit 0) against the references rounded to 0/1; regression: the one output itself."""
    if multi_label:
        return (logits > 0).long(), references.round().long()
    if regression:
        return logits[:, 0], references
    return logits.argmax(-1), references


def score_split(loop, dataloader, dataset, prefix):
    """Loop.score: every example of `dataset` scored once on all ranks (gather), then loop.compute_metrics and
    the mean loss, without gradients; returns {prefix}_* metrics and keeps (logits, predictions, references) in
    loop.scored."""
    import torch

    from .logs import plain

    loop.model.eval()
    # the whole split's logits (N x K fp32) are kept only for what reads them: an override of compute_metrics
    # that takes them, and --eval_only's files (loop.scored); else each batch's predictions, labels and losses
    takes_logits = _takes_logits(loop.compute_metrics)
    with torch.no_grad():
        gathered = gather(loop, dataloader, len(dataset), prefix, keep_logits=takes_logits or loop.cfg.eval_only)
        loop.model.train()
        logits, predictions, refs = gathered["logits"], gathered["predictions"], gathered["references"]
        # An override written before compute_metrics took the logits (predictions, references) still works.
        extra = {"logits": logits} if takes_logits else {}
        metrics = prefixed(plain(loop.compute_metrics(predictions, refs, **extra), "compute_metrics"), prefix)
    metrics[f"{prefix}_loss"] = gathered["losses"].mean().item()
    metrics[f"{prefix}_samples"] = len(refs)
    loop.scored[prefix] = (logits, predictions, refs)  # on the CPU already; validate() writes them out
    return metrics


def _takes_logits(compute_metrics):
    """True when the (bound) `compute_metrics` is an override that takes the logits (a keyword `logits`, or
    **kwargs). Loop's own reads none: its metrics take class ids."""
    import inspect

    from .core import Loop

    if getattr(compute_metrics, "__func__", None) is Loop.compute_metrics:
        return False
    params = inspect.signature(compute_metrics).parameters.values()
    return any(p.name == "logits" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def gather(loop, dataloader, rows, prefix, keep_logits):
    """Loop.score's pass over one split: every batch through loop.evaluation_step and loop.evaluation_loss, gathered
    from all processes into a Gathered of `rows` examples; a count other than `rows` is refused."""
    import torch

    from .contract import checked_evaluation_loss, checked_evaluation_step
    from .distributed import raise_if_wrapper_attribute
    from .memory import raise_if_out_of_memory

    gathered = Gathered(rows, keep_logits, loop.multi_label, loop.regression)
    for batch in loop.runlog.progress(dataloader, desc=prefix):
        try:
            step = loop.evaluation_step(batch)
        except Exception as e:
            raise_if_out_of_memory(loop, e, batch, prefix)
            raise_if_wrapper_attribute(e)
            raise
        logits, labels = checked_evaluation_step(step)
        # bf16/fp16 logits would round the metric; a copy, since CUDA graphs (reduce-overhead)
        # reuse the memory of their outputs at the next batch
        logits = logits.to(torch.float32, copy=True)
        loss = checked_evaluation_loss(loop.evaluation_loss(logits, labels), len(logits))
        # gather_for_metrics drops the samples that even_batches duplicated on the last batch
        gathered.add(*loop.accelerator.gather_for_metrics((logits, labels, loss)))
    if len(gathered) != rows:
        raise RuntimeError(f"{prefix} scored {len(gathered)} examples, expected {rows}")
    return gathered


class Gathered:
    """One split's scores as gather() collects them, batch by batch: each batch goes to the CPU at once (on a
    GPU a list of every batch's logits would stay in device memory), and is written into tensors of the split's
    size (no list of batches that torch.cat then copies whole). Kept: the predictions and references (`decide`,
    per batch: the same as on the whole split), the per-example losses, and the fp32 logits only when
    `keep_logits` (something reads them: at 10k classes they are 40 KB an example, 20 GB for 500k examples)."""

    def __init__(self, rows, keep_logits, multi_label=False, regression=False):
        self.rows, self.keep_logits, self.kind = rows, keep_logits, (multi_label, regression)
        self.filled = {name: [None, 0] for name in ("logits", "predictions", "references", "losses")}

    def add(self, logits, labels, losses):
        logits, labels, losses = logits.cpu(), labels.cpu(), losses.cpu()
        predictions, references = decide(logits, labels, *self.kind)
        for name, batch in (("logits", logits if self.keep_logits else None), ("predictions", predictions),
                            ("references", references), ("losses", losses)):
            if batch is not None:
                self._fill(name, batch)

    def _fill(self, name, batch):
        import torch

        data, n = self.filled[name]
        if data is None:
            data = torch.empty((max(self.rows, len(batch)), *batch.shape[1:]), dtype=batch.dtype)
        elif n + len(batch) > len(data):  # more rows than the split has (score() refuses the count): kept all the same
            data = torch.cat([data, torch.empty((max(len(data), len(batch)), *data.shape[1:]), dtype=data.dtype)])
        data[n:n + len(batch)] = batch
        self.filled[name] = [data, n + len(batch)]

    def __getitem__(self, name):
        """The rows of "logits" (None unless kept), "predictions", "references" or "losses" gathered so far."""
        data, n = self.filled[name]
        return None if data is None else data[:n]

    def __len__(self):
        return self.filled["references"][1]


DENSE_CONFUSION = 100  # up to this many labels report() writes the whole confusion matrix, beyond it its cells


def report(logits, references, names, multi_label=False):
    """--eval_only's per-class view of scored examples (fp32 `logits`, class ids or multi-hot rows as
    `references`): {"per_class": {name: precision, recall, f1, support}} and, single-label, the confusion
    counts over every label in id order: up to DENSE_CONFUSION labels "confusion", the whole matrix
    (counts[true][predicted]); beyond, "confusion_cells", its non-zero cells as [true id, predicted id, count]
    (`confusion_cells`: their counts sum to the examples; a K x K matrix at 10k labels is a 900 MB file).
    Multi-label: each label's own decisions (a label predicted where its logit is above 0), support = its
    positive examples."""
    logits, refs = np.asarray(logits), np.asarray(references)
    k = len(names)
    if multi_label:
        pred, true = logits > 0, refs.round() > 0
        tp, fp, fn = (pred & true).sum(0), (pred & ~true).sum(0), (~pred & true).sum(0)
        values = {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}
        support, out = true.sum(0), {}
    else:
        predictions = logits.argmax(-1)
        tp, predicted, support, _ = counts(predictions, refs, num_labels=k)
        values, cells = per_class(tp, predicted, support), confusion_cells(predictions, refs, num_labels=k)
        if len(support) <= DENSE_CONFUSION:
            dense = np.zeros((len(support), len(support)), dtype=np.int64)
            dense[cells[:, 0], cells[:, 1]] = cells[:, 2]
            out = {"confusion": dense.tolist()}
        else:
            out = {"confusion_cells": cells.tolist()}
    out["per_class"] = {n: {**{m: round(float(v[i]), 6) for m, v in values.items()}, "support": int(support[i])}
                        for i, n in enumerate(names)}
    return out


def score(which, predictions, references, average="binary", pos_label=1):
    """precision, recall or f1 with scikit-learn's averages: binary, macro, weighted, micro."""
    tp, predicted, true, labels = counts(predictions, references)
    values = per_class(tp, predicted, true)[which]
    if average == "binary":
        if labels.size > 2:
            raise ValueError(f"average='binary' needs two classes, got {labels.size}; use average='macro'")
        if labels.size == 2 and pos_label not in labels:  # scikit-learn's (and the Hub module's) refusal, not a 0
            raise ValueError(f"pos_label={pos_label} is not a valid label: it should be one of {labels.tolist()}")
        return float(values[pos_label]) if pos_label < len(values) else 0.0
    if average == "macro":  # unweighted mean over the classes present in predictions or references
        return float(values[labels].mean())
    if average == "weighted":
        support = true[labels]
        return float((values[labels] * support).sum() / max(support.sum(), 1))
    if average == "micro":  # single-label: equals accuracy
        return float(tp.sum() / max(true.sum(), 1))
    raise ValueError(f"unknown average '{average}'; use binary, macro, weighted or micro")


def accuracy(predictions, references, normalize=True, sample_weight=None):
    """The fraction (normalize, default) or the count (weighted by sample_weight) of predictions equal to
    their references; scikit-learn's and the Hub's accuracy."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    weights = sample_weight if sample_weight is not None else [1.0] * len(predictions)
    correct = sum(w for p, r, w in zip(predictions, references, weights) if p == r)
    total = sum(weights)
    return float(correct / total) if normalize else float(correct)


def mcc(predictions, references):
    """Matthews correlation, multiclass form (Gorodkin 2004): in [-1, 1], 0 when undefined."""
    tp, p, t, _ = counts(predictions, references)  # true positives, predicted and true counts per class
    c, s = tp.sum(), t.sum()
    cov_pt = c * s - t @ p
    denom = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float(cov_pt / denom) if denom > 0 else 0.0


_ARGS = """
Args:
    predictions (list of int): predicted label ids.
    references (list of int): true label ids.{extra}
Returns:
    {name} (float)
"""
_AVERAGE_ARGS = """
    average (str): 'binary' (default: the class pos_label), 'macro', 'weighted' or 'micro'.
    pos_label (int): the positive class for 'binary' (default 1)."""


def score_metric(name, description):
    """The `evaluate.Metric` class of a local module: 'f1', 'precision', 'recall' or 'matthews_correlation'.

    Same call as the Hub's module of that name. evaluate takes the first Metric class it finds in the
    script, so a script holds just `X = scores.score_metric(...)`.
    """
    import evaluate

    if name == "matthews_correlation":
        doc = _ARGS.format(extra="", name=name)

        def _compute(self, predictions, references):
            return {name: mcc(predictions, references)}
    else:
        doc = _ARGS.format(extra=_AVERAGE_ARGS, name=name)

        def _compute(self, predictions, references, average="binary", pos_label=1):
            return {name: score(name, predictions, references, average=average, pos_label=pos_label)}

    def _info(self):
        return metric_info(description, doc)

    cls_name = "".join(part.title() for part in name.split("_"))
    return type(cls_name, (evaluate.Metric,), {"_info": _info, "_compute": _compute, "__doc__": description + doc})


def prefixed(computed, prefix):
    """compute_metrics' {name: value} as {prefix}_name; 'loss' and 'samples' are refused in one line: the loop
    logs {prefix}_loss and {prefix}_samples itself, and would overwrite them unseen."""
    from .errors import UserError

    taken = sorted({"loss", "samples"} & set(computed))
    if taken:
        raise UserError(f"compute_metrics returned {' and '.join(map(repr, taken))}, which the loop logs itself "
                        f"({', '.join(f'{prefix}_{k}' for k in taken)}); give yours another name.")
    return {f"{prefix}_{k}": v for k, v in computed.items()}
