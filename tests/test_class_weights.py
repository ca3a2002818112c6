"""--class_weights: the weights the data step derives, the weighted loss's exact value, the refusals,
and (slow) what they are for: a minority class that an unweighted run never predicts."""

import json
import os
import random
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, evals, read_jsonl, run_cli, tiny_args
from loop import data as D
from loop import losses
from loop.config import parse_args
from loop.core import Loop
from loop.errors import UserError
from loop.splits import WEIGHT


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
    # the unnamed ones weigh 1: accepted, with a warning when one class alone is left in the loss (audit63 u8)
    with pytest.warns(UserWarning, match=r"--class_weights gives weight 0 to every class the training data has but "
                                         r"'POS' \(NEG\): the model learns to predict 'POS' for every text"):
        assert weights("NEG=0").tolist() == [0.0, 1.0, 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert weights("NEG=0.5").tolist() == [0.5, 1.0, 1.0]  # two classes in the loss: no warning
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


@pytest.mark.parametrize("variant, warned", [pytest.param("focal", True, marks=pytest.mark.slow),  # ~14 s
                                             ("inherited", True), ("weighted", False)])
def test_an_override_that_may_ignore_the_weights_is_warned_about(variant, warned, tiny_model, tiny_data, tmp_path):
    script = tmp_path / "variant.py"
    script.write_text(FOCAL.format(root=ROOT))
    out = str(tmp_path / "out")
    proc = run_cli([variant] + tiny_args(tiny_model, tiny_data, out, max_steps=1, class_weights="balanced",
                                         max_train_samples=32, max_eval_samples=16),
                   script=str(script), how="python")
    said = "overrides compute_loss: --class_weights apply only if it uses self.class_weights" in proc.stderr + proc.stdout
    assert said == warned, proc.stderr[-2000:]


# ---------------------------------------------------------------- --weight_column: a weight per example
class Training:
    """A stand-in model that is training (compute_loss weighs examples only then)."""
    training = True

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, **batch):
        return Outputs(self.logits)


def loss_with(example_weights, logits, labels, class_weights=None, multi_label=False, regression=False):
    loop = Loop.__new__(Loop)
    loop.class_weights = None if class_weights is None else torch.tensor(class_weights)
    loop.data = prepared([], ["a", "b", "c"], multi_label=multi_label)
    loop.data.regression = regression
    loop.example_weights = None if example_weights is None else torch.tensor(example_weights)
    loss, _ = loop.compute_loss(Training(logits), {"labels": labels})
    return loss


def test_example_weights_give_the_weighted_mean_of_each_examples_loss():
    g = torch.Generator().manual_seed(3)
    logits, labels = torch.randn(5, 3, generator=g), torch.tensor([0, 1, 2, 1, 0])
    v = [1.0, 0.0, 2.5, 0.5, 1.0]
    ce = [-torch.log_softmax(logits[i], -1)[labels[i]].item() for i in range(5)]
    assert loss_with(v, logits, labels).item() == pytest.approx(sum(a * b for a, b in zip(v, ce)) / sum(v), rel=1e-6)
    w = [0.5, 2.0, 1.25]  # times the class weights
    vw = [v[i] * w[y] for i, y in enumerate(labels.tolist())]
    assert loss_with(v, logits, labels, class_weights=w).item() == pytest.approx(
        sum(a * b for a, b in zip(vw, ce)) / sum(vw), rel=1e-6)
    assert loss_with([1.0] * 5, logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert loss_with([0.0, 0.0], logits[:2], labels[:2]).item() == 0.0  # a micro-batch of weight 0 alone: 0, not NaN
    targets = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 1], [1, 1, 1], [0, 0, 1]], dtype=torch.float32)
    per_row = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1)
    assert loss_with(v, logits, targets, multi_label=True).item() == pytest.approx(
        (per_row * torch.tensor(v)).sum().item() / sum(v), rel=1e-6)
    numbers = torch.tensor([0.5, -1.0, 2.0, 0.0, 3.0])
    squared = (logits[:, 0] - numbers) ** 2
    assert loss_with(v, logits, numbers, regression=True).item() == pytest.approx(
        (squared * torch.tensor(v)).sum().item() / sum(v), rel=1e-6)
    # the loss of a batch scored twice (R-Drop) needs its weights twice: said in one line otherwise
    loop = Loop.__new__(Loop)
    loop.class_weights, loop.data, loop.example_weights = None, prepared([], ["a", "b", "c"]), torch.tensor(v)
    with pytest.raises(UserError, match=r"got 10 rows of logits for the micro-batch's 5 --weight_column weights; "
                                        r"pass example_weights="):
        loop.weighted_loss(torch.cat([logits, logits]), torch.cat([labels, labels]))
    twice = loop.weighted_loss(torch.cat([logits, logits]), torch.cat([labels, labels]), torch.tensor(v + v))
    assert twice.item() == pytest.approx(loss_with(v, logits, labels).item(), rel=1e-6)


def test_row_weights_are_the_class_weight_times_the_example_weight_and_none_for_multi_label_pos_weights():
    """audit61 mutant: losses.row_weights (what distributed.loss_shares weighs micro-batches by) gives each single-label
    row its class's weight times its --weight_column value; multi-label class weights are pos_weight inside each
    row's loss, no row weight (None alone, the example weights alone beside them); a regression has no class weight."""
    import datasets

    from loop.splits import WEIGHT

    w = torch.tensor([0.5, 2.0, 4.0])
    single = datasets.Dataset.from_dict({"labels": [2, 0, 1, 2], WEIGHT: [1.0, 3.0, 0.5, 0.0]})
    assert losses.row_weights(single, w, False).tolist() == [4.0, 0.5, 2.0, 4.0]
    assert losses.row_weights(single, w, True).tolist() == [4.0, 1.5, 1.0, 0.0]
    assert losses.row_weights(single, None, False) is None
    multi = datasets.Dataset.from_dict({"labels": [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], WEIGHT: [2.0, 0.25]})
    assert losses.row_weights(multi, w, False, multi_label=True) is None
    assert losses.row_weights(multi, w, True, multi_label=True).tolist() == [2.0, 0.25]
    numbers = datasets.Dataset.from_dict({"labels": [0.5, 1.5], WEIGHT: [1.0, 2.0]})
    assert losses.row_weights(numbers, w, True, regression=True).tolist() == [1.0, 2.0]


def test_example_weights_summing_below_one_still_give_their_weighted_mean():
    """audit61 mutant: the weighted mean divides by the weights' sum however small it is (only an all-zero batch is
    kept from 0/0): weights 0.1 and 0.2 give (0.1 ce0 + 0.2 ce1) / 0.3, and scaling every weight leaves it alone."""
    g = torch.Generator().manual_seed(4)
    logits, labels = torch.randn(2, 3, generator=g), torch.tensor([2, 0])
    ce = [-torch.log_softmax(logits[i], -1)[labels[i]].item() for i in range(2)]
    want = (0.1 * ce[0] + 0.2 * ce[1]) / 0.3
    assert loss_with([0.1, 0.2], logits, labels).item() == pytest.approx(want, rel=1e-5)
    assert loss_with([1e-3, 2e-3], logits, labels).item() == pytest.approx(want, rel=1e-5)
    assert loss_with([0.5, 1.0], logits, labels, class_weights=[0.4, 1.0, 0.2]).item() == pytest.approx(
        (0.5 * 0.2 * ce[0] + 1.0 * 0.4 * ce[1]) / (0.5 * 0.2 + 1.0 * 0.4), rel=1e-5)


@pytest.mark.parametrize("values, says", [
    (["1", "n/a"], "training row 1 holds 'n/a', not a number"),
    ([[1.0], [2.0]], "not numbers"),
    ([1.0, None], "training row 1 has no weight (1 such row(s))"),
    ([1.0, float("nan"), float("nan")], "training row 1 has no weight (2 such row(s))"),
    ([1.0, -0.5], "training row 1 has the weight -0.5"),
    ([float("inf"), 1.0], "training row 0 has the weight inf"),
    ([0, 0, 0], "is 0 for every training example"),
    ([1.0, 1e39], "training row 1 has the weight 1e+39 (1 such row(s)), above 1e+30, which float32 training cannot "
                  "sum; weights count only relative to each other"),  # was inf in float32: a NaN loss mid-run
    ([1e-50, 0.0], "is 0 for every training example in float32"),
])
def test_bad_example_weights_are_one_line(values, says):
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["a"] * len(values), "w": values})
    with pytest.raises(UserError, match=re_escape(says)):
        D.example_weights(ds, "w")


def re_escape(text):
    import re

    return re.escape(text)


def test_example_weights_become_a_float_column_and_stay_out_of_evaluation(tiny_model, tiny_data, tmp_path):
    import datasets

    texts = datasets.Dataset.from_dict({"text": ["a", "b"], "w": ["1", " 2.5"]})  # numbers written as text: read
    assert D.example_weights(texts, "w")[WEIGHT] == [1.0, 2.5]

    ds = D.example_weights(datasets.Dataset.from_dict({"text": ["a", "b"], "w": [1, 0], "label": [0, 1]}), "w")
    assert ds.column_names == ["text", "label", WEIGHT] and ds[WEIGHT] == [1.0, 0.0]
    with pytest.raises(UserError, match=r"--weight_column 'weight' is not in the training data; its columns are: "
                                        r"'text', 'w', 'label'"):
        D.example_weights(datasets.Dataset.from_dict({"text": ["a"], "w": [1], "label": [0]}), "weight")
    with pytest.raises(UserError, match="--weight_column and --label_column are both 'label'"):
        cfg("--weight_column", "label", tmp_path=tmp_path)
    # a JSON column of numbers and a word: datasets' mixed Json type ('holds Json, not numbers', audit57 c F6)
    (tmp_path / "mixed.jsonl").write_text('{"text": "a", "w": 1}\n{"text": "b", "w": "heavy"}\n')
    with pytest.raises(UserError, match=r"^--weight_column 'w': training row 1 holds 'heavy', not a number; give each "
                                        r"training example a weight such as 1 or 0.5\.$"):
        D.example_weights(D.load_file(str(tmp_path / "mixed.jsonl"), "--train_file"), "w")
    # carved from the weighted training file: the evaluation split carries no weights, the training batches do
    rows = [json.loads(x) for x in open(os.path.join(tiny_data, "train.jsonl"))]
    with open(tmp_path / "weighted.jsonl", "w") as f:
        f.writelines(json.dumps({**r, "w": 1 + i % 3}) + "\n" for i, r in enumerate(rows))
    lp = Loop(parse_args(tiny_args(tiny_model, tmp_path, str(tmp_path / "o"), train_file=str(tmp_path / "weighted.jsonl"),
                                   validation_file=None, validation_split_percentage=20, weight_column="w",
                                   max_steps=1)))
    lp.setup()
    assert WEIGHT in lp.data.train.column_names and WEIGHT not in lp.data.eval.column_names
    batch = next(iter(lp.train_dataloader))
    assert batch[WEIGHT].dtype == torch.float32 and set(batch[WEIGHT].tolist()) <= {1.0, 2.0, 3.0}


def noisy_data(d, flipped=0.4):
    """Synthetic sentiment rows whose labels are flipped on a seeded 40% of the training rows, which
    --weight_column 'clean' gives weight 0; evaluation is clean."""
    from loop import synthetic

    rows = synthetic.make_rows(480, seed=5)
    rng = random.Random(0)
    with open(d / "train.jsonl", "w") as f:
        for r in rows:
            bad = rng.random() < flipped
            label = {"NEGATIVE": "POSITIVE", "POSITIVE": "NEGATIVE"}[r["label"]] if bad else r["label"]
            f.write(json.dumps({"text": r["text"], "label": label, "clean": 0 if bad else 1}) + "\n")
    synthetic.write_jsonl(synthetic.make_rows(200, seed=6), d / "validation.jsonl")
    return d


@pytest.mark.slow  # two trainings of 3 epochs
def test_weight_zero_on_flipped_labels_leaves_them_out(tiny_model, tmp_path):
    """What --weight_column is for: 40% of the training labels flipped. Trained on all rows alike the tiny
    model learns much of the noise; with weight 0 on the flipped rows it learns the clean task."""
    data = noisy_data(tmp_path)
    best = {}
    for column in (None, "clean"):
        out = str(tmp_path / f"out-{column}")
        run_cli(tiny_args(tiny_model, data, out, num_train_epochs=3, weight_column=column), how="python")
        best[column] = max(r["eval_accuracy"] for r in evals(out))
    assert best["clean"] > 0.8 and best["clean"] > best[None] + 0.15, best  # measured: 0.885 and 0.63


def test_an_override_is_warned_that_it_may_ignore_the_example_weights():
    class Own(Loop):
        def compute_loss(self, model, batch):
            return super().compute_loss(model, batch)

    class Declared(Loop):
        uses_example_weights = True

        def compute_loss(self, model, batch):
            return super().compute_loss(model, batch)

    class Older(Loop):  # written for --class_weights alone: it says nothing of example weights
        uses_class_weights = True

        def compute_loss(self, model, batch):
            return super().compute_loss(model, batch)

    said = losses.unapplied_warning(Own, Loop, False, 0.0, True)
    assert said == ("Own overrides compute_loss: --weight_column applies only if it uses self.weighted_loss() (then "
                    "set uses_example_weights = True in it).")
    assert "--class_weights and --weight_column apply" in losses.unapplied_warning(Own, Loop, True, 0.0, True)
    assert "set uses_class_weights = True and uses_example_weights = True" in \
        losses.unapplied_warning(Own, Loop, True, 0.0, True)
    assert losses.unapplied_warning(Declared, Loop, False, 0.0, True) is None
    assert "--weight_column applies" in losses.unapplied_warning(Older, Loop, True, 0.0, True)
    assert losses.unapplied_warning(Older, Loop, True, 0.0, False) is None
    assert losses.unapplied_warning(Loop, Loop, False, 0.0, True) is None
    # smoothing alone: the flag's name speaks of class weights, so the line says it covers smoothing too
    assert losses.unapplied_warning(Own, Loop, False, 0.1, False).endswith(
        "(then set uses_class_weights = True in it; that flag covers --label_smoothing_factor too).")


def test_a_weighted_run_resumes_exactly_and_refuses_other_weights(tiny_model, tiny_data, tmp_path):
    rows = [json.loads(x) for x in open(os.path.join(tiny_data, "train.jsonl"))][:96]

    def write(weights):
        with open(tmp_path / "train.jsonl", "w") as f:
            f.writelines(json.dumps({**r, "w": w}) + "\n" for r, w in zip(rows, weights))

    write([0.25 + (i % 4) for i in range(96)])
    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tmp_path, out, validation_file=os.path.join(tiny_data, "validation.jsonl"),
                     num_train_epochs=1, checkpointing_steps=2, weight_column="w")
    full = Loop(parse_args(args))
    full.fit()
    final = {k: v.detach().clone() for k, v in full.model.named_parameters()}
    step_2 = os.path.join(out, "checkpoints", "step_2")
    resumed = Loop(parse_args(args + ["--resume_from_checkpoint", step_2]))
    resumed.fit()
    for name, p in resumed.model.named_parameters():  # the weights came back with the skipped batches
        assert torch.equal(p.detach(), final[name]), name
    write([1.0] * 96)
    with pytest.raises(UserError, match=r"made on other data \(the training examples' weights \(--weight_column\) "
                                        r"changed\)"):
        Loop(parse_args(args + ["--resume_from_checkpoint", step_2])).fit()


def test_weights_all_zero_in_the_rows_left_to_train_on_are_refused(tiny_model, tiny_data, tmp_path):
    """The file has one weighted row; the seeded subset of 5 leaves none of it to learn from."""
    rows = [json.loads(x) for x in open(os.path.join(tiny_data, "train.jsonl"))]
    with open(tmp_path / "train.jsonl", "w") as f:
        f.writelines(json.dumps({**r, "w": 1 if i == 0 else 0}) + "\n" for i, r in enumerate(rows))
    args = tiny_args(tiny_model, tmp_path, str(tmp_path / "o"), validation_file=os.path.join(tiny_data, "validation.jsonl"),
                     weight_column="w", max_train_samples=5)
    with pytest.raises(UserError, match=r"--weight_column 'w' is 0 for every training example left after "
                                        r"--max_train_samples"):
        Loop(parse_args(args)).setup()


@pytest.mark.parametrize("weighting", ["class_weights", "weight_column", "both"])
def test_weights_count_over_the_whole_optimizer_step(weighting, tiny_model, tiny_data, tmp_path):
    """Batch 1 x accumulation 8 trains as batch 8 does with weights too: a step's loss is the weighted mean over
    all its examples. Each micro-batch's own weighted mean (w * ce / w at batch 1) left the class weights out of
    the step entirely and turned example weights into 0/1; a short last window (5 of 8) is weighed alike."""
    rows = [json.loads(x) for x in open(os.path.join(tiny_data, "train.jsonl"))][:29]
    with open(tmp_path / "train.jsonl", "w") as f:
        f.writelines(json.dumps({**r, "w": [0.0, 0.5, 1.0, 3.0][i % 4]}) + "\n" for i, r in enumerate(rows))
    weights = {"class_weights": "1,6"} if weighting != "weight_column" else {}
    if weighting != "class_weights":
        weights["weight_column"] = "w"

    def trained(name, batch, accumulation, loop_cls=Loop):
        lp = loop_cls(parse_args(tiny_args(
            tiny_model, tmp_path, str(tmp_path / name), validation_file=os.path.join(tiny_data, "validation.jsonl"),
            num_train_epochs=1, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
            group_by_length="false", learning_rate=1e-2, max_grad_norm=0, logging_steps=1,
            config_overrides="dropout=0.0,attention_dropout=0.0,seq_classif_dropout=0.0", **weights)))
        lp.fit()
        return {k: v.detach().clone() for k, v in lp.unwrapped_model.named_parameters()}, train_losses(lp)

    def train_losses(lp):
        return [r["loss"] for r in read_jsonl(os.path.join(lp.cfg.output_dir, "metrics.jsonl")) if "loss" in r]

    (whole, whole_losses), (split, split_losses) = trained("whole", 8, 1), trained("split", 1, 8)
    assert len(whole_losses) == len(split_losses) == 4
    assert split_losses == pytest.approx(whole_losses, rel=1e-4)
    for name, p in whole.items():  # the key bias: softmax cancels it, its gradient is rounding noise Adam scales up
        assert name.endswith("k_lin.bias") or torch.allclose(split[name], p, atol=2e-5), name

    class OwnMean(Loop):  # a variant's own weighting, not normalised by the weights: its micro-batches count by rows
        uses_class_weights = uses_example_weights = True

        def compute_loss(self, model, batch):
            outputs = model(**{k: v for k, v in batch.items() if k != "labels"})
            v = torch.ones(len(batch["labels"])) if self.class_weights is None else self.class_weights[batch["labels"]]
            v = v if self.example_weights is None else v * self.example_weights
            return (v * F.cross_entropy(outputs.logits.float(), batch["labels"], reduction="none")).mean(), outputs

    # the step shares by weight are for the loop's own loss: scaling this one by them weighed twice (audit58 e2)
    (_, whole_losses), (_, split_losses) = trained("own8", 8, 1, OwnMean), trained("own1", 1, 8, OwnMean)
    assert split_losses == pytest.approx(whole_losses, rel=1e-4)
