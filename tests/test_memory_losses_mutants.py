"""Tests written by a mutation audit of loop/memory.py and loop/losses.py (audit71 m18): each one fails on a small
change of the code that a user would see (a refusal that no longer refuses, a warning where nothing is wrong, a loss
or a batch size that silently differs, a message that loses the fix) and passes on the code as it is. Most are
in-process and take well under a second."""

import os
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import evals, tiny_args, train_logs

from loop import Loop, memory, synthetic
from loop import data as D
from loop import losses
from loop.config import parse_args
from loop.errors import UserError


def _spec(value, tmp_path):
    return parse_args(["--class_weights", value, "--output_dir", str(tmp_path / "out")]).class_weight_list()


def _data(labels, names, **kw):
    import datasets

    train = datasets.Dataset.from_dict({"labels": labels})
    return D.Data(train=train, eval=train, label_names=names, train_lengths=np.ones(len(labels), dtype=np.int32), **kw)


def test_class_weights_are_refused_for_data_read_as_a_regression(tmp_path):
    """Data the data step read as a regression (float labels) with --class_weights: one line naming the fix, not a
    numpy error from counting float targets as classes (mutant: the regression check in class_weights dropped; the
    config's own check sees only --problem_type regression given)."""
    data = _data([0.5, 1.5, 2.0], ["score"], regression=True)
    for value in ("balanced", "2"):
        with pytest.raises(UserError, match=r"^--class_weights weighs classes, and a regression has none; "
                                            r"drop --class_weights\.$"):
            losses.class_weights(_spec(value, tmp_path), data)


def test_training_data_of_one_class_is_not_warned_about(tmp_path):
    """The 'one class alone is left in the loss' warning is for weights that zero the other classes the data has;
    training data that has only one class (the others have no example) gets no such warning (mutant: `1 <
    len(present)` dropped warned that every class but 'a' weighs 0 — naming none)."""
    data = _data([0, 0, 0], ["a", "b", "c"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert losses.class_weights(_spec("a=2", tmp_path), data).tolist() == [2.0, 1.0, 1.0]
        assert losses.class_weights(_spec("balanced", tmp_path), data).tolist() == pytest.approx([1 / 3, 0.0, 0.0])


def test_multi_label_pos_weights_stay_with_example_weights():
    """Multi-label --class_weights (pos_weight) beside --weight_column: the per-example losses keep the pos_weight
    (mutant: pos_weight=None on the weighted path trained as if --class_weights were not given). Equal example weights
    give the loss without them; weights 2 and 0 give the first example's own loss."""
    import torch.nn.functional as F

    logits = torch.tensor([[0.3, -1.2, 0.8], [-0.5, 0.4, 1.5]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    w = torch.tensor([3.0, 0.5, 2.0])
    plain = losses.weighted(logits, labels, w, multi_label=True)
    assert plain.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, labels, pos_weight=w).item())
    ones = losses.weighted(logits, labels, w, multi_label=True, example_weights=torch.ones(2))
    assert ones.item() == pytest.approx(plain.item(), rel=1e-6)
    first = F.binary_cross_entropy_with_logits(logits[:1], labels[:1], pos_weight=w).item()
    assert losses.weighted(logits, labels, w, multi_label=True, example_weights=torch.tensor([2.0, 0.0])).item() == \
        pytest.approx(first, rel=1e-6)


def test_a_regression_through_weighted_loss_is_the_mean_squared_error():
    """A variant that calls self.weighted_loss() on regression data without weights gets the model's own loss, the
    mean squared error (mutant: the sum, a loss and gradients as many times larger as the batch has rows); with
    example weights, their weighted mean of the squared errors."""
    import torch.nn.functional as F

    logits = torch.tensor([[0.5], [2.0], [-1.0], [3.0]])
    labels = torch.tensor([1.0, 1.0, 0.0, 3.5])
    mse = F.mse_loss(logits[:, 0], labels).item()
    assert losses.weighted(logits, labels, None, regression=True).item() == pytest.approx(mse)
    v = torch.tensor([1.0, 0.0, 3.0, 0.0])
    assert losses.weighted(logits, labels, None, example_weights=v, regression=True).item() == \
        pytest.approx((0.25 + 3 * 1.0) / 4)


def test_the_start_up_line_names_what_the_weights_are_with_four_digits():
    """The start-up line says multi-label weights are positive-example weights (pos_weight, not a class's weight in
    the loss) and gives each to four significant digits (mutants: 'class weights' for both; two digits)."""
    w = np.array([1 / 3, 2.5, 0.0], dtype=np.float32)
    assert losses.describe(w, ["neg", "pos", "neu"]) == "class weights in the training loss: neg 0.3333, pos 2.5, neu 0"
    assert losses.describe(w[:2], ["a", "b"], multi_label=True) == \
        "positive-example weights in the training loss: a 0.3333, b 2.5"


def test_the_unapplied_warning_names_the_flag_that_silences_it():
    """An override of compute_loss is told which class flag declares that it applies each option: label smoothing's
    is uses_class_weights (mutant: the warning told the user to set 'uses_label_smoothing', which nothing reads, so
    the warning stayed)."""
    class Sub(Loop):
        def compute_loss(self, model, batch):
            return super().compute_loss(model, batch)

    head = "Sub overrides compute_loss: "
    assert losses.unapplied_warning(Sub, Loop, False, 0.1) == head + (
        "--label_smoothing_factor applies only if it uses self.weighted_loss() (then set uses_class_weights = True in "
        "it; that flag covers --label_smoothing_factor too).")
    assert losses.unapplied_warning(Sub, Loop, True, 0.1, True) == head + (
        "--class_weights and --label_smoothing_factor and --weight_column apply only if it uses self.weighted_loss() "
        "(then set uses_class_weights = True and uses_example_weights = True in it).")
    Sub.uses_class_weights = True  # the flag it names silences it
    assert losses.unapplied_warning(Sub, Loop, True, 0.1) is None


# ---------------------------------------------------------------- loop/memory.py (--auto_find_batch_size)
class Rows(Loop):
    """A device that holds at most `limit` rows of a training micro-batch; compute_loss tracks each batch's rows
    (before it runs out) and counts the backward passes through its loss; evaluation_step notes whether gradients
    are on and the model is in training mode."""
    limit = None

    def compute_loss(self, model, batch):
        rows = len(batch["input_ids"])
        self.track("rows", float(rows))
        if self.limit is not None and model.training and rows > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (a batch of {rows} rows)")
        loss, outputs = super().compute_loss(model, batch)
        if self.trial_pass:
            self.backwards = getattr(self, "backwards", 0)
            loss.register_hook(lambda g: setattr(self, "backwards", self.backwards + 1))
        return loss, outputs

    def evaluation_step(self, batch):
        self.eval_modes = getattr(self, "eval_modes", []) + [(torch.is_grad_enabled(), self.model.training)]
        return super().evaluation_step(batch)


def test_the_trials_leave_no_tracked_number_run_a_backward_pass_and_evaluate_as_evaluation_does(
        tiny_model, tiny_data, tmp_path):
    """The trial passes are not training steps: a number a variant tracks in compute_loss is not logged from them
    (mutant: tracked.paused left off, the first log line averaged the failed trials' 24 and 12 rows in); the training
    trial is a forward and a backward pass (mutant: no backward, the gradients' memory untried); the evaluation trial
    runs as evaluation does, without gradients and in eval mode (mutants: no torch.no_grad(); model.train())."""
    out = str(tmp_path / "o")
    loop = type("L", (Rows,), {"limit": 8})(parse_args(tiny_args(
        tiny_model, tiny_data, out, per_device_train_batch_size=24, auto_find_batch_size="true", max_train_samples=48,
        num_train_epochs=1, logging_steps=1, max_eval_samples=16)))
    loop.fit()
    assert (loop.cfg.per_device_train_batch_size, loop.cfg.gradient_accumulation_steps) == (6, 4)
    assert [r["rows"] for r in train_logs(out)] == [6.0, 6.0]
    assert loop.backwards == 1  # the one trial that fitted (6 rows) went through backward
    assert loop.eval_modes and all(m == (False, False) for m in loop.eval_modes), loop.eval_modes


class Keys(Rows):
    """Rows that notes the batch keys compute_loss sees, in the trials and in training."""
    keys = None
    uses_example_weights = True  # (no --weight_column warning: this test is of the batch keys alone)

    def compute_loss(self, model, batch):
        self.keys = (self.keys or []) + [(self.trial_pass, tuple(sorted(batch)))]
        return super().compute_loss(model, batch)


def test_a_trial_batch_holds_what_a_training_batch_holds_with_a_weight_column(tiny_model, tiny_data, tmp_path,
                                                                              capsys):
    """--weight_column with --auto_find_batch_size: compute_loss sees the trial batch without the weight column, as it
    sees a training batch (the loop pops it: not a model input), so a variant that passes the batch on whole, or
    a model without **kwargs, meets no unexpected key (mutant: the trial kept the weight column in the batch)."""
    rows = [dict(r, w=1.0 + i % 3) for i, r in enumerate(synthetic.make_rows(48, seed=5))]
    synthetic.write_jsonl(rows, tmp_path / "train.jsonl")
    loop = type("L", (Keys,), {"limit": 8})(parse_args(tiny_args(
        tiny_model, tiny_data, str(tmp_path / "o"), train_file=str(tmp_path / "train.jsonl"), weight_column="w",
        per_device_train_batch_size=16, auto_find_batch_size="true", num_train_epochs=1, max_eval_samples=16)))
    loop.fit()
    assert (loop.cfg.per_device_train_batch_size, loop.cfg.gradient_accumulation_steps) == (8, 2)
    assert "training with 8 per device x 2 accumulation steps" in capsys.readouterr().out
    trial = {keys for in_trial, keys in loop.keys if in_trial}
    training = {keys for in_trial, keys in loop.keys if not in_trial}
    assert len(trial) == 1 and trial == training, loop.keys


class Tokens(Loop):
    """A device that holds at most `tokens` tokens of an evaluation batch (rows x padded width)."""
    tokens = 16 * 25

    def evaluation_step(self, batch):
        if batch["input_ids"].numel() > self.tokens:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 3.00 GiB (an evaluation of "
                                         f"{tuple(batch['input_ids'].shape)})")
        return super().evaluation_step(batch)


def _long_rows(n, seed):
    made = synthetic.make_rows(n, seed=seed)
    for r in made:
        r["text"] = " ".join([r["text"]] * 6)  # past --max_length 64: 64 tokens a row
    return made


@pytest.mark.parametrize("where", ["test_file", "extra_eval_files"])
def test_the_evaluation_search_tries_the_test_split_and_the_extra_sets(where, tiny_model, tiny_data, tmp_path, capsys):
    """The evaluation batch is searched on every split evaluation scores: a test split or an extra evaluation set
    whose examples are longer than the evaluation split's decides it, and its DataLoader is rebuilt for it, so the
    run ends without running out of memory (mutants: data.test or the extra sets left out of scored_splits; the extra
    sets' DataLoaders not rebuilt). The first failure named is the batch asked for (mutant: a later one's)."""
    synthetic.write_jsonl(_long_rows(12, 7), tmp_path / "long.jsonl")
    value = str(tmp_path / "long.jsonl") if where == "test_file" else f"long={tmp_path / 'long.jsonl'}"
    out = str(tmp_path / "o")
    loop = Tokens(parse_args(tiny_args(tiny_model, tiny_data, out, auto_find_batch_size="true", max_train_samples=16,
                                       num_train_epochs=1, max_eval_samples=16, per_device_eval_batch_size=16,
                                       **{where: value})))
    loop.fit()
    said = capsys.readouterr().out
    assert "an evaluation batch of 16 x 64 tokens does not fit (CUDA out of memory; tried to allocate 3.00 GiB (an " \
           "evaluation of (12, 64))); evaluating 4 per device" in said, said
    assert loop.cfg.per_device_eval_batch_size == 4 and evals(out)[-1]["eval_samples"] == 16


def test_tried_at_is_said_only_when_the_data_is_smaller_than_the_batch():
    """'(tried at N rows, all a process gets of the data)' only where a process gets fewer rows than the batch
    (mutant: also where it gets exactly as many, which was tried in full)."""
    one = SimpleNamespace(accelerator=SimpleNamespace(num_processes=1))
    assert memory.tried_at(one, 16, [range(16)]) == ""
    assert memory.tried_at(one, 16, [range(10), range(12)]) == " (tried at 12 rows, all a process gets of the data)"


def test_the_longest_row_of_a_variants_list_split():
    """A variant's split that is a list of rows: its longest example is found row by row (mutant: the shortest)."""
    rows = [{"input_ids": [1, 2], "labels": 0}, {"input_ids": [1, 2, 3, 4], "labels": 1},
            {"input_ids": [5], "labels": 0}]
    assert memory.longest_row(rows) == rows[1]
    import datasets

    assert memory.longest_row(datasets.Dataset.from_list(rows))["input_ids"] == [1, 2, 3, 4]


def test_the_trials_hold_room_for_the_optimizer_beside_them(tiny_model, tiny_data, tmp_path, monkeypatch):
    """Beside each trial batch the search holds two tensors the size of each trainable weight (AdamW's moments), in
    the evaluation trial too while a run trains; --eval_only holds none (mutants: no reserve in trial(); 0 slots for
    training; the evaluation's slots of an --eval_only run given to a training run)."""
    seen = []
    real_empty_like, real_trial, real_eval_trial = torch.empty_like, memory.trial, memory.eval_trial

    def counted(kind, fn):
        def wrapper(loop, *args):
            made = []
            monkeypatch.setattr(torch, "empty_like", lambda *a, **k: made.append(1) or real_empty_like(*a, **k))
            try:
                return fn(loop, *args)
            finally:
                monkeypatch.setattr(torch, "empty_like", real_empty_like)
                weights = sum(1 for p in loop.model.parameters() if p.requires_grad)
                seen.append((kind, args[-1], len(made) / weights))
        return wrapper

    monkeypatch.setattr(memory, "trial", counted("train", real_trial))
    monkeypatch.setattr(memory, "eval_trial", counted("eval", real_eval_trial))
    out = str(tmp_path / "o")
    Loop(parse_args(tiny_args(tiny_model, tiny_data, out, auto_find_batch_size="true", max_train_samples=16,
                              num_train_epochs=1, max_eval_samples=16))).fit()
    assert seen == [("train", 2, 2.0), ("eval", 2, 2.0)], seen
    seen.clear()
    scored = Loop(parse_args(["--eval_only", "--model_name_or_path", os.path.join(out, "best"), "--validation_file",
                              os.path.join(tiny_data, "validation.jsonl"), "--max_eval_samples", "16",
                              "--auto_find_batch_size", "true", "--output_dir", str(tmp_path / "scored")]))
    scored.validate()
    assert seen == [("eval", 0, 0.0)], seen
