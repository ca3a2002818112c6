"""--class_weights: the weights the data step derives, the weighted loss's exact value, the refusals,
and (slow) what they are for: a minority class that an unweighted run never predicts."""

import json
import math
import os
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, evals, run_cli, tiny_args
from loop import data as D
from loop import losses
from loop.config import parse_args
from loop.core import Loop
from loop.errors import UserError


def cfg(*argv, tmp_path):
    return parse_args(list(argv) + ["--output_dir", str(tmp_path / "out")])


def prepared(labels, names, multi_label=False, head_order=False):
    import datasets

    train = datasets.Dataset.from_dict({"labels": labels})
    return D.Data(train=train, eval=train, label_names=names, train_lengths=np.ones(len(labels), dtype=np.int32),
                  multi_label=multi_label, head_order=head_order)


def test_balanced_weights_make_every_class_weigh_the_same(tmp_path):
    spec = cfg("--class_weights", "balanced", tmp_path=tmp_path).class_weight_list()
    w = losses.class_weights(spec, prepared([0] * 30 + [1] * 10 + [3] * 20, ["a", "b", "c", "d"]))
    # n / (k * count): 60 / (4 * 30), 60 / (4 * 10), a class without examples 0, 60 / (4 * 20)
    assert w.dtype == np.float32 and w.tolist() == pytest.approx([0.5, 1.5, 0.0, 0.75])
    counts = np.array([30, 10, 0, 20])
    assert (w * counts)[counts > 0] == pytest.approx([15, 15, 15])  # each present class's total weight


def test_balanced_multi_label_weights_are_negatives_over_positives(tmp_path):
    spec = cfg("--class_weights", "balanced", tmp_path=tmp_path).class_weight_list()
    rows = [[1.0, 0.0, 1.0]] * 2 + [[0.0, 0.0, 1.0]] * 6  # a: 2 of 8; b: never (weight 1); c: always (1)
    w = losses.class_weights(spec, prepared(rows, ["a", "b", "c"], multi_label=True))
    assert w.tolist() == pytest.approx([3.0, 1.0, 1.0])


def test_given_weights_by_position_and_by_name(tmp_path):
    data = prepared([0, 1, 2], ["NEG", "NEU", "POS"])
    by_position = cfg("--class_weights", "1, 2.5,0", tmp_path=tmp_path).class_weight_list()
    assert losses.class_weights(by_position, data).tolist() == [1.0, 2.5, 0.0]
    by_name = cfg("--class_weights", "POS=4,NEG=0.5", tmp_path=tmp_path).class_weight_list()
    assert losses.class_weights(by_name, data).tolist() == [0.5, 1.0, 4.0]  # NEU not named: 1
    with pytest.raises(UserError, match=r"gives 2 weights but there are 3 labels \(NEG, NEU, POS\)"):
        losses.class_weights(cfg("--class_weights", "1,2", tmp_path=tmp_path).class_weight_list(), data)
    with pytest.raises(UserError, match=r"names POSITIVE, not among the labels \(NEG, NEU, POS\)"):
        losses.class_weights(cfg("--class_weights", "POSITIVE=2", tmp_path=tmp_path).class_weight_list(), data)
    # names are matched ignoring case, as labels are elsewhere; one label named twice so is refused
    any_case = cfg("--class_weights", "pos=4,Neg=0.5", tmp_path=tmp_path).class_weight_list()
    assert losses.class_weights(any_case, data).tolist() == [0.5, 1.0, 4.0]
    with pytest.raises(UserError, match=r"names the label 'POS' twice \(POS, pos\)"):
        losses.class_weights(cfg("--class_weights", "POS=4,pos=2", tmp_path=tmp_path).class_weight_list(), data)
    both = prepared([0, 1], ["a", "A"])  # two labels in two cases: the name must be exact
    assert losses.class_weights(cfg("--class_weights", "A=3", tmp_path=tmp_path).class_weight_list(), both).tolist() == [1.0, 3.0]
    with pytest.raises(UserError, match="name 'pos' could be any of the labels Pos, POS; spell it"):
        losses.class_weights(cfg("--class_weights", "pos=3", tmp_path=tmp_path).class_weight_list(),
                             prepared([0, 1, 2], ["Pos", "POS", "neg"]))


@pytest.mark.parametrize("value, says", [
    ("1,x", "'x' is not a weight"),
    ("1,-2", "'-2' is not a weight"),
    ("1,nan", "'nan' is not a weight"),
    ("balanced,2", "'balanced' is not a weight"),
    ("A=1,2", "mixes label=weight pairs and bare weights"),
    ("A=1,A=2", "names a label twice"),
    ("=3,B=1", "'=3' is not a weight"),
    ("1e39,1", "1e+39 is out of range; use 0 or 1e-6..1e6"),  # inf in float32
    ("1e-50,1", "1e-50 is out of range"),  # 0 in float32: the all-zero check would miss it
])
def test_bad_class_weights_are_one_line(value, says, tmp_path):
    with pytest.raises(UserError) as e:
        cfg("--class_weights", value, tmp_path=tmp_path)
    assert says in str(e.value) and "--class_weights" in str(e.value) and "\n" not in str(e.value)


def test_weights_that_leave_nothing_to_learn_are_refused(tmp_path):
    data = prepared([0, 0, 1, 1], ["NEG", "POS", "NEU"])  # NEU: no training example
    weights = lambda v: losses.class_weights(cfg("--class_weights", v, tmp_path=tmp_path).class_weight_list(), data)  # noqa: E731
    assert weights("NEG=0").tolist() == [0.0, 1.0, 1.0]  # the unnamed ones weigh 1: accepted
    for value in ("0,0,1", "NEG=0,POS=0", "0,0,0"):  # 0 for every class the training data has
        with pytest.raises(UserError, match=r"weight 0 to every class the training data has \(NEG, POS\)"):
            weights(value)
    multi = prepared([[1.0, 0.0], [0.0, 1.0]], ["a", "b"], multi_label=True)
    with pytest.raises(UserError, match="every label's positive examples weight 0"):
        losses.class_weights(cfg("--class_weights", "0,0", tmp_path=tmp_path).class_weight_list(), multi)


def test_bare_weights_are_refused_when_a_trained_head_orders_the_ids(tmp_path):
    data = prepared([0, 1], ["NEGATIVE", "POSITIVE"], head_order=True)
    with pytest.raises(UserError, match=r"ids follow the model's trained head \(NEGATIVE, POSITIVE\); give "
                                        r"label=weight pairs"):
        losses.class_weights(cfg("--class_weights", "1,4", tmp_path=tmp_path).class_weight_list(), data)
    by_name = cfg("--class_weights", "POSITIVE=4", tmp_path=tmp_path).class_weight_list()
    assert losses.class_weights(by_name, data).tolist() == [1.0, 4.0]


def test_one_spelling_per_meaning(tmp_path):
    """A resume compares the option's text: '1, 4', '1.0,4' and a YAML list mean the same weights."""
    spellings = {cfg("--class_weights", v, tmp_path=tmp_path).class_weights for v in ("1, 4", "1.0,4", "1,4.0")}
    assert spellings == {"1.0,4.0"}
    assert cfg("--class_weights", " POS=2 ", tmp_path=tmp_path).class_weights == "POS=2.0"


def test_regression_has_no_classes_to_weigh(tmp_path):
    for value in ("balanced", "1,2"):
        with pytest.raises(UserError, match="a regression has none"):
            cfg("--problem_type", "regression", "--class_weights", value, tmp_path=tmp_path)


def test_yaml_list_or_mapping_of_weights(tmp_path):
    for i, text in enumerate(("class_weights: [NEGATIVE=1, POSITIVE=3]\n", "class_weights: {NEGATIVE: 1, POSITIVE: 3}\n",
                              "class_weights:\n  NEGATIVE: 1\n  POSITIVE: 3.0\n")):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(text)
        assert cfg("--config", str(path), tmp_path=tmp_path).class_weight_list() == [("NEGATIVE", 1.0), ("POSITIVE", 3.0)]
    path = tmp_path / "other.yaml"
    path.write_text("label_names: {NEGATIVE: 1}\n")  # other comma lists take no mapping
    with pytest.raises(UserError, match="sets label_names to a mapping"):
        cfg("--config", str(path), tmp_path=tmp_path)


class Outputs:
    def __init__(self, logits):
        self.logits, self.loss = logits, torch.tensor(float("nan"))  # the model's own loss must not be used


def loss_of(weights, logits, labels, multi_label=False):
    loop = Loop.__new__(Loop)  # just the methods: compute_loss needs class_weights and the data's kind
    loop.class_weights = torch.tensor(weights)
    loop.data = prepared([], ["a", "b", "c"], multi_label=multi_label)
    loss, _ = loop.compute_loss(lambda **batch: Outputs(logits), {"labels": labels})
    return loss


def test_weighted_loss_is_the_weighted_mean_of_the_cross_entropies():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(6, 3, generator=g), torch.tensor([0, 1, 1, 2, 0, 2])
    w = [0.5, 2.0, 1.25]
    ce = [-torch.log_softmax(logits[i], -1)[labels[i]].item() for i in range(6)]
    expected = sum(w[y] * c for y, c in zip(labels.tolist(), ce)) / sum(w[y] for y in labels.tolist())
    assert loss_of(w, logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(loss_of(w, logits, labels), F.cross_entropy(logits, labels, weight=torch.tensor(w)))
    # equal weights: the plain mean the model itself would return
    assert loss_of([3.0, 3.0, 3.0], logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    # a micro-batch of weight-0 classes alone: 0, not PyTorch's 0/0 = NaN (which would stop the run)
    only_zero = loss_of([0.0, 1.0, 1.0], logits[:1], labels[:1])
    assert only_zero.item() == 0.0


def test_weighted_loss_without_weights_is_the_plain_loss():
    """A variant's compute_loss may call weighted_loss whether or not --class_weights was given."""
    loop = Loop.__new__(Loop)
    loop.class_weights, loop.data = None, prepared([], ["a", "b", "c"])
    logits, labels = torch.randn(5, 3, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 2, 1, 1, 0])
    assert torch.equal(loop.weighted_loss(logits, labels), F.cross_entropy(logits, labels))
    loop.data = prepared([], ["a", "b", "c"], multi_label=True)
    rows = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=torch.float32)
    assert torch.equal(loop.weighted_loss(logits, rows), F.binary_cross_entropy_with_logits(logits, rows))


def test_weighted_multi_label_loss_uses_pos_weight():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, generator=g)
    targets = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]], dtype=torch.float32)
    w = [3.0, 1.0, 0.5]
    p = torch.sigmoid(logits)
    manual = -(torch.tensor(w) * targets * torch.log(p) + (1 - targets) * torch.log(1 - p)).mean()
    assert loss_of(w, logits, targets, multi_label=True).item() == pytest.approx(manual.item(), rel=1e-5)


# ---------------------------------------------------------------- end to end
def imbalanced_data(d):
    """Synthetic sentiment rows, 10:1 NEGATIVE:POSITIVE in training, balanced in evaluation."""
    rows = [json.loads(line) for line in open(os.path.join(ROOT, "configs", "smoke", "train.jsonl"))]
    neg = [r for r in rows if r["label"] == "NEGATIVE"]
    pos = [r for r in rows if r["label"] == "POSITIVE"]
    train = neg[:600] + pos[:60]
    random.Random(0).shuffle(train)
    for name, part in (("train.jsonl", train), ("validation.jsonl", neg[600:800] + pos[60:260])):
        with open(d / name, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in part)
    return d


@pytest.mark.slow
def test_balanced_weights_teach_the_minority_class(tmp_path):
    """On 10:1 data the unweighted run (3 epochs, tiny model from scratch) still predicts NEGATIVE for
    everything; 'balanced' weights make it find POSITIVE (recall of POSITIVE, the label with id 1)."""
    data = imbalanced_data(tmp_path)
    recall = {}
    for weights in (None, "balanced"):
        out = str(tmp_path / f"out-{weights}")
        proc = run_cli(tiny_args(os.path.join(ROOT, "configs", "smoke", "model"), data, out, num_train_epochs=3,
                                 metrics="accuracy,recall", class_weights=weights), how="python")
        recall[weights] = max(r["eval_recall"] for r in evals(out))
        if weights:
            assert "class weights in the training loss: NEGATIVE 0.55, POSITIVE 5.5" in proc.stdout
    assert recall[None] < 0.2 and recall["balanced"] > 0.6, recall


FOCAL = """
import sys
sys.path.insert(0, {root!r})
import torch.nn.functional as F
import loop


class Focal(loop.Loop):  # an objective of its own that ignores self.class_weights
    def compute_loss(self, model, batch):
        outputs = model(**{{k: v for k, v in batch.items() if k != "labels"}})
        return F.cross_entropy(outputs.logits.float(), batch["labels"]), outputs


class FocalWeighted(Focal):
    uses_class_weights = True  # wrong: the compute_loss it inherits does not use them


class Weighted(loop.Loop):
    uses_class_weights = True

    def compute_loss(self, model, batch):
        outputs = model(**{{k: v for k, v in batch.items() if k != "labels"}})
        return self.weighted_loss(outputs.logits, batch["labels"]), outputs


if __name__ == "__main__":
    loop.main(loop_cls={{"focal": Focal, "inherited": FocalWeighted, "weighted": Weighted}}[sys.argv.pop(1)])
"""


@pytest.mark.parametrize("variant, warned", [("focal", True), ("inherited", True), ("weighted", False)])
def test_an_override_that_may_ignore_the_weights_is_warned_about(variant, warned, tiny_model, tiny_data, tmp_path):
    script = tmp_path / "variant.py"
    script.write_text(FOCAL.format(root=ROOT))
    out = str(tmp_path / "out")
    proc = run_cli([variant] + tiny_args(tiny_model, tiny_data, out, max_steps=1, class_weights="balanced",
                                         max_train_samples=32, max_eval_samples=16),
                   script=str(script), how="python")
    said = f"overrides compute_loss: --class_weights apply only if it uses self.class_weights" in proc.stderr + proc.stdout
    assert said == warned, proc.stderr[-2000:]
