"""The training loss's options, class weights (--class_weights) and label smoothing
(--label_smoothing_factor): what they are for the prepared data, how the loss applies them, and what
the run says about them.

Owns: the weights per label id (`class_weights`: balanced, given by position or by name, and the
refusals of weights that leave nothing to learn), which data label smoothing applies to
(`label_smoothing`), the loss (`weighted`), the start-up line and the warning for a compute_loss
override that may not apply them. Does not own parsing the options (`config.TrainConfig`) or when
the loss is computed (`core.Loop`).
"""

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError, is_main_rank, listed
from .splits import WEIGHT, column


def class_weights(spec, data):
    """--class_weights (`TrainConfig.class_weight_list()`) for the prepared training split, as a float32
    array with one weight per label id, or None. 'balanced': n / (k * count) per class (a class no
    training example has weighs 0; it never appears in the loss); multi-label: negatives / positives per
    label, the pos_weight of binary cross-entropy (1 for a label that is never or always present).
    Given weights are pos_weights for multi-label data too. Refused: weights that leave nothing to learn
    (0 for every class the training data has; multi-label: for every label)."""
    if spec is None:
        return None
    names = list(data.label_names)
    if data.regression:
        raise UserError("--class_weights weighs classes, and a regression has none; drop --class_weights.")
    if data.multi_label:
        rows = np.asarray(column(data.train, "labels"), dtype=np.float64).reshape(len(data.train), -1)
        pos = rows.sum(0)
        neg = len(rows) - pos
        counts = pos
    else:
        counts = np.bincount(np.asarray(column(data.train, "labels"), dtype=np.int64),
                             minlength=len(names)).astype(np.float64)
    if spec == "balanced":
        if data.multi_label:
            return np.where((pos > 0) & (neg > 0), neg / np.maximum(pos, 1), 1.0).astype(np.float32)
        return np.where(counts > 0, counts.sum() / (len(names) * np.maximum(counts, 1)), 0.0).astype(np.float32)
    if spec[0][0] is None:  # weights in label id order
        if len(spec) != len(names):
            raise UserError(f"--class_weights gives {len(spec)} weights but there are {len(names)} labels "
                            f"({listed(names)}); give one per label in that order, or label=weight pairs.")
        if data.head_order:  # the ids follow the trained head's rows, not the order the user wrote
            raise UserError(f"--class_weights '{','.join(f'{w:g}' for _, w in spec)}' is in label id order, but the "
                            f"ids follow the model's trained head ({listed(names)}); give label=weight pairs "
                            f"instead ({','.join(f'{n}=…' for n in names[:2])}).")
        weights = np.asarray([w for _, w in spec], dtype=np.float32)
    else:
        given = {}
        for name, w in spec:
            label = label_named(name, names)
            if label is None:
                unknown = [n for n, _ in spec if label_named(n, names) is None]
                twins = [n for n in names if n.casefold() == name.casefold()]
                if len(twins) > 1:  # 'Pos' with both 'pos' and 'POS' among the labels
                    raise UserError(f"--class_weights name '{name}' could be any of the labels {', '.join(twins)}; "
                                    f"spell it as the label is spelled.")
                raise UserError(f"--class_weights names {listed(unknown)}, not among the labels ({listed(names)}); "
                                f"use those names.")
            if label in given:
                raise UserError(f"--class_weights names the label '{label}' twice ({', '.join(n for n, _ in spec if label_named(n, names) == label)}); "
                                f"give it one weight.")
            given[label] = w
        weights = np.asarray([given.get(n, 1.0) for n in names], dtype=np.float32)
    if data.multi_label and not weights.any():
        raise UserError("--class_weights gives every label's positive examples weight 0: the model would learn to "
                        "predict no label at all; give the labels weights > 0.")
    present = [n for n, c in zip(names, counts) if c > 0]
    if not data.multi_label and not weights[counts > 0].any():
        raise UserError(f"--class_weights gives weight 0 to every class the training data has ({listed(present)}): "
                        f"the loss would be 0 and nothing learned; give one of them a weight > 0.")
    kept = [n for n, c, w in zip(names, counts, weights) if c > 0 and w > 0]
    if not data.multi_label and len(kept) == 1 < len(present) and is_main_rank():  # its examples alone in the loss
        warnings.warn(f"--class_weights gives weight 0 to every class the training data has but '{kept[0]}' "
                      f"({listed([n for n in present if n != kept[0]])}): the model learns to predict '{kept[0]}' for "
                      f"every text; give another class a weight > 0 unless that is meant.", stacklevel=2)
    return weights


def label_named(name, names):
    """The label `name` means: itself, else the one label spelled so in another case (labels are matched
    ignoring case elsewhere too: a trained head's, a ClassLabel's); None when there is none or several."""
    if name in names:
        return name
    same = [n for n in names if n.casefold() == name.casefold()]
    return same[0] if len(same) == 1 else None


def label_smoothing(factor, data):
    """--label_smoothing_factor for the prepared data: refused in one line where there are no classes
    to spread the target over (a regression) or no single target (multi-label)."""
    if not factor:
        return 0.0
    if data.regression or data.multi_label:
        what = "a regression has no classes" if data.regression else \
            "multi-label data has a 0/1 target per label, not one class"
        raise UserError(f"--label_smoothing_factor smooths the target class of single-label classification, and "
                        f"{what}; drop --label_smoothing_factor.")
    return float(factor)


def weighted(logits, labels, weights, multi_label=False, smoothing=0.0, example_weights=None, regression=False):
    """The training loss with class weights, label smoothing and example weights, in fp32: each example's
    cross-entropy (against the smoothed target when `smoothing` > 0: 1 - eps + eps/K on its class, eps/K on
    each other, PyTorch's `label_smoothing=`), then a weighted mean, sum(v * ce) / sum(v) over the
    micro-batch with v = w[y] (the class weight) times the example's weight (0, not NaN, for a batch whose
    weights are all 0); multi-label: binary cross-entropy with pos_weight, mean over labels, then over
    examples (weighted by `example_weights`); regression: the squared error of the one output. `weights`,
    `example_weights` None and no smoothing: the plain cross-entropy, BCE or MSE."""
    logits, w, v = logits.float(), weights, example_weights
    if v is not None and len(v) != len(logits):  # a loss over the batch twice (R-Drop) needs its weights twice
        raise UserError(f"weighted_loss got {len(logits)} rows of logits for the micro-batch's {len(v)} "
                        f"--weight_column weights; pass example_weights= with one weight per row (e.g. "
                        f"torch.cat([w, w]) for the batch twice).")
    if multi_label and v is None:
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=w)
    if not (multi_label or regression) and w is None and v is None:
        return F.cross_entropy(logits, labels, label_smoothing=smoothing)
    losses = per_example(logits, labels, multi_label, regression, pos_weight=w if multi_label else None,
                         smoothing=smoothing)
    if w is not None and not (multi_label or regression):
        v = w[labels] if v is None else w[labels] * v.float()
    if v is None:
        return losses.mean()
    v = v.float()
    return (losses * v).sum() / v.sum().clamp_min(torch.finfo(torch.float32).tiny)


def per_example(logits, labels, multi_label=False, regression=False, pos_weight=None, smoothing=0.0):
    """Each example's loss, the models' own: cross-entropy (against smoothed targets with `smoothing`),
    multi-label binary cross-entropy (with `pos_weight`) averaged over the labels, regression's squared error
    of the one output. weighted() and the loop's evaluation_loss() share it."""
    if regression:
        return F.mse_loss(logits[:, 0], labels.to(logits.dtype), reduction="none")
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=pos_weight,
                                                  reduction="none").mean(-1)
    return F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)


def describe(weights, names, multi_label=False):
    """The start-up line naming each label's weight."""
    what = "positive-example weights" if multi_label else "class weights"
    return f"{what} in the training loss: " + ", ".join(f"{n} {w:.4g}" for n, w in zip(names, weights.tolist()))


def set_up(loop, base):
    """The loop's training-loss options beside its class weights (Loop.setup, once they are built):
    loop.label_smoothing, a warning when an override of compute_loss may not apply them, and loop.row_weights,
    each training row's weight in its optimizer step. `base`: the class whose compute_loss applies them."""
    cfg = loop.cfg
    loop.label_smoothing = label_smoothing(cfg.label_smoothing_factor, loop.data)
    unapplied = unapplied_warning(type(loop), base, loop.class_weights is not None, loop.label_smoothing,
                                  bool(cfg.weight_column))
    if unapplied:
        loop.warn(unapplied)
    # Only the loop's own loss is known to be each micro-batch's weighted mean, which the step's shares by weight
    # make the step's: an override's (its own weighting, an unweighted term beside super()'s) keeps micro-batches
    # counted by their examples, as before 2026-12-05; scaling it by the weights' shares could weigh twice.
    if _loss_owner(type(loop)) is base:
        loop.row_weights = row_weights(loop.data.train, loop.class_weights, bool(cfg.weight_column),
                                       loop.multi_label, loop.regression)


def _loss_owner(loop_cls):
    """The class in `loop_cls`'s MRO whose compute_loss it trains."""
    return next(c for c in loop_cls.__mro__ if "compute_loss" in vars(c))


def row_weights(train, class_weights, example_weights, multi_label=False, regression=False):
    """Each training row's weight in the loss as a float64 numpy array (its label's class weight times its
    --weight_column value), or None when rows weigh alike. Multi-label class weights are pos_weight inside each
    row's loss, not a row weight. distributed.loss_shares weighs each micro-batch in its optimizer step by these."""
    v = None
    if class_weights is not None and not (multi_label or regression):
        v = class_weights.detach().cpu().double().numpy()[column(train, "labels").astype(np.int64)]
    if example_weights:
        w = column(train, WEIGHT).astype(np.float64)
        v = w if v is None else v * w
    return v


def unapplied_warning(loop_cls, base, weights, smoothing, example_weights=False):
    """A warning when --class_weights (`weights` true) or --label_smoothing_factor (`smoothing` true) is on
    and `loop_cls` overrides compute_loss (`base` is the class whose compute_loss applies them) in a class
    that does not declare `uses_class_weights = True`, or --weight_column (`example_weights` true) is on and
    it does not declare `uses_example_weights = True` (a variant written before --weight_column applied the
    class weights alone); else None."""
    owner = _loss_owner(loop_cls)
    if owner is base:
        return None
    declared = vars(owner)
    options = [name for name, on, flag in (("--class_weights", weights, "uses_class_weights"),
                                           ("--label_smoothing_factor", smoothing, "uses_class_weights"),
                                           ("--weight_column", example_weights, "uses_example_weights"))
               if on and not declared.get(flag, False)]
    if not options:
        return None
    what = " and ".join(options)
    verb = "applies" if len(options) == 1 and options != ["--class_weights"] else "apply"
    uses = "self.class_weights or self.weighted_loss()" if options == ["--class_weights"] else "self.weighted_loss()"
    flags = " and ".join(dict.fromkeys("uses_example_weights" if o == "--weight_column" else "uses_class_weights"
                                       for o in options))
    covers = ("; that flag covers --label_smoothing_factor too" if "--label_smoothing_factor" in options
              and "--class_weights" not in options else "")
    return (f"{owner.__name__} overrides compute_loss: {what} {verb} only if it uses {uses} (then set "
            f"{' = True and '.join(flags.split(' and '))} = True in it{covers}).")
