"""A research variant's slips, each one clear line (audit67 x): what an override of compute_loss, training_step,
evaluation_step, evaluation_loss, compute_metrics, a hook, checkpoint_objects or __init__ may return or forget by
mistake was a traceback from deep inside accelerate, torch or the log (often after an epoch of training), or in two
processes a wrong eval_loss, silently. In-process runs of 16 rows on the tiny model."""

import pytest
import torch.nn.functional as F

from conftest import tiny_args
from loop import Callback, Loop, UserError, parse_args


def args_for(tiny_model, tiny_data, tmp_path, **over):
    return parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / "out"), **{
        "max_train_samples": 16, "max_eval_samples": 8, "max_steps": 1, **over}))


def refused(loop_cls, cfg, callbacks=None):
    with pytest.raises(UserError) as e:
        loop_cls(cfg, callbacks=callbacks).fit()
    return str(e.value)


def test_what_compute_loss_returns_by_a_slip_is_one_line(tiny_model, tiny_data, tmp_path):
    """Lightning's dict, the model's outputs, loss.item(), a loss per example, a detached loss: a TypeError inside
    accelerator.backward, torch's "grad can be implicitly created only for scalar outputs", and so on. A loss of
    shape [1] trains (backward took it; the running mean failed on it)."""
    returns = {
        "dict": (lambda out, y: {"loss": out.loss, "logits": out.logits},
                 "compute_loss returned a dict; return (loss, outputs), e.g. `return outputs.loss, outputs`, not a "
                 "dict."),
        "outputs": (lambda out, y: out, "compute_loss returned a SequenceClassifierOutput; return (loss, outputs), "
                                        "e.g. `return outputs.loss, outputs`, not a dict."),
        "float": (lambda out, y: (out.loss.item(), out),
                  "compute_loss returned a tuple of 2; return (loss, outputs), the loss a tensor, not a float "
                  "(`loss.item()` cuts it from its gradient)."),
        "triple": (lambda out, y: (out.loss, out, 1), "compute_loss returned a tuple of 3; return (loss, outputs), "
                                                      "two values."),
        "vector": (lambda out, y: (F.cross_entropy(out.logits, y, reduction="none"), out),
                   "compute_loss returned a loss of shape [16]; return one number, the micro-batch's loss (e.g. its "
                   "mean: `loss.mean()`)."),
        "detached": (lambda out, y: (out.loss.detach(), out),
                     "compute_loss returned a loss with no gradient (detached, or computed under torch.no_grad()); "
                     "return the loss the model's forward pass built."),
    }
    for i, (name, (give, said)) in enumerate(returns.items()):
        class Slip(Loop):
            def compute_loss(self, model, batch):
                out = model(**batch)
                return give(out, batch["labels"])

        cfg = args_for(tiny_model, tiny_data, tmp_path / name, per_device_train_batch_size=16)
        assert refused(Slip, cfg) == said, name

    class OneElement(Loop):
        def compute_loss(self, model, batch):
            out = model(**batch)
            return out.loss.reshape(1), out

    metrics = OneElement(args_for(tiny_model, tiny_data, tmp_path / "one")).fit()
    assert metrics["eval_samples"] == 8


def test_what_training_step_returns_by_a_slip_and_a_step_without_backward_are_one_line(tiny_model, tiny_data,
                                                                                       tmp_path):
    """training_step returning None, a float or a vector: torch's isfinite() or a broadcast error in the running mean.
    One that never calls backward trained nothing and exited 0 (AdamW skips a parameter without a gradient)."""
    for name, give, said in (("none", lambda loss: None, "training_step returned a NoneType;"),
                             ("float", lambda loss: loss.item(), "training_step returned a float;"),
                             ("vector", lambda loss: loss.detach().repeat(3), "training_step returned a loss of "
                                                                              "shape [3];")):
        class Slip(Loop):
            def training_step(self, batch):
                return give(super().training_step(batch))

        line = refused(Slip, args_for(tiny_model, tiny_data, tmp_path / name))
        assert line.startswith(said) and "return the micro-batch's loss as a one-number tensor" in line, line

    class NoBackward(Loop):
        def training_step(self, batch):
            loss, _ = self.compute_loss(self.model, batch)
            return loss.detach()

    assert refused(NoBackward, args_for(tiny_model, tiny_data, tmp_path / "nobackward", max_steps=3,
                                        per_device_train_batch_size=8)) == (
        "no trainable parameter had a gradient in any of the 2 optimizer steps so far: a training_step override must "
        "call self.backward(loss) (the loss the model's forward pass built).")  # (the first epoch's end)

    class SkipsFirst(Loop):  # a batch it skips (a filter, a NaN guard) is no missing backward (review r F4)
        def training_step(self, batch):
            if self.state.global_step == 0:
                return self.compute_loss(self.model, batch)[0].detach() * 0
            return super().training_step(batch)

    metrics = SkipsFirst(args_for(tiny_model, tiny_data, tmp_path / "skips", max_steps=2,
                                  per_device_train_batch_size=8, eval_steps=1)).fit()  # (evaluated after the skip)
    assert metrics["eval_samples"] == 8


def test_a_run_without_backward_is_refused_after_a_resume_too(tiny_model, tiny_data, tmp_path):
    """(review r3 R3-3) the refusal compared this process's steps without a gradient with the run's global step: a
    broken run stopped (preempted) before its first epoch's end and resumed trained on to the end, nothing learnt."""
    import os
    import signal

    from loop.errors import Preempted

    class Stop(Callback):
        def on_step_end(self, loop):
            if loop.state.global_step == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # a preemption: a checkpoint, then Preempted

    class NoBackward(Loop):
        def training_step(self, batch):
            return self.compute_loss(self.model, batch)[0].detach()

    over = {"max_steps": None, "per_device_train_batch_size": 8}  # two epochs of two steps
    with pytest.raises(Preempted):
        NoBackward(args_for(tiny_model, tiny_data, tmp_path, **over), callbacks=[Stop()]).fit()
    line = refused(NoBackward, args_for(tiny_model, tiny_data, tmp_path, resume_from_checkpoint="latest", **over))
    assert line.startswith("no trainable parameter had a gradient in the one optimizer step so far"), line


def test_evaluation_slips_are_one_line(tiny_model, tiny_data, tmp_path):
    """evaluation_loss returning the batch's mean (a TypeError in one process, in two a mean of the processes'
    means as eval_loss, silently), evaluation_step returning the logits alone, compute_metrics a float."""
    class MeanLoss(Loop):
        def evaluation_loss(self, logits, labels):
            return F.cross_entropy(logits, labels)

    assert refused(MeanLoss, args_for(tiny_model, tiny_data, tmp_path / "mean")) == (
        "evaluation_loss returned shape []; return one loss per example, shape [8] (e.g. cross_entropy(..., "
        "reduction='none')).")

    class PerOutput(Loop):  # [B, 1] (a regression's mse with reduction='none'): each example's loss (review r F1)
        def evaluation_loss(self, logits, labels):
            return super().evaluation_loss(logits, labels)[:, None].expand(-1, 3)

    plain = Loop(args_for(tiny_model, tiny_data, tmp_path / "plainloss")).fit()
    shaped = PerOutput(args_for(tiny_model, tiny_data, tmp_path / "perout")).fit()
    assert shaped["eval_loss"] == pytest.approx(plain["eval_loss"], rel=1e-6) and plain["eval_loss"] > 0

    class LogitsOnly(Loop):
        def evaluation_step(self, batch):
            return super().evaluation_step(batch)[0]

    assert refused(LogitsOnly, args_for(tiny_model, tiny_data, tmp_path / "logits")) == (
        "evaluation_step returned a tensor; return (logits, labels), two tensors.")

    class FloatMetrics(Loop):
        def compute_metrics(self, predictions, references, logits=None):
            return float((predictions == references).float().mean())

    assert refused(FloatMetrics, args_for(tiny_model, tiny_data, tmp_path / "float")) == (
        "compute_metrics gave a float, not a dict; return {name: value}, e.g. {'accuracy': 0.9}.")


def test_setup_slips_are_refused_before_any_training(tiny_model, tiny_data, tmp_path):
    """A hook that cannot take what the loop passes (on_evaluate(self, m)) failed at the first evaluation; an object
    without state_dict from checkpoint_objects at the first save; a forgotten super().__init__ was an AttributeError.
    Each is refused before the first step (no checkpoint, no metrics line)."""
    class Hook(Loop):
        def on_evaluate(self, m):
            pass

    cfg = args_for(tiny_model, tiny_data, tmp_path / "hook")
    assert refused(Hook, cfg) == ("Hook.on_evaluate(m) cannot take what the loop passes it; define it as "
                                  "on_evaluate(self, metrics).")

    class Saver(Callback):
        def on_save(self, loop):
            pass

    assert refused(Loop, args_for(tiny_model, tiny_data, tmp_path / "cb"), callbacks=[Saver()]) == (
        "Saver.on_save(loop) cannot take what the loop passes it; define it as on_save(self, loop, path).")

    class Plain(Loop):
        def checkpoint_objects(self):
            return [{"step": 0}]

    out = tmp_path / "plain"
    line = refused(Plain, args_for(tiny_model, tiny_data, out))
    assert line.startswith("checkpoint_objects() returned dict {'step': 0}, which has no state_dict() and "), line
    assert not (out / "out" / "metrics.jsonl").exists()

    class NoSuper(Loop):
        def __init__(self, cfg, callbacks=None):
            self.cfg = cfg

    assert refused(NoSuper, args_for(tiny_model, tiny_data, tmp_path / "nosuper")) == (
        "NoSuper.__init__ did not call Loop's: call super().__init__(cfg, callbacks) in it, before the attributes of "
        "your own.")


def test_main_passes_callbacks_only_when_given(tiny_model, tiny_data, tmp_path):
    """loop.main always passed callbacks=, so a variant written as __init__(self, cfg) failed with a TypeError."""
    import loop

    seen = []

    class OwnInit(Loop):
        def __init__(self, cfg):
            super().__init__(cfg)
            seen.append(type(self).__name__)

        def fit(self):
            return None

    loop.main(tiny_args(tiny_model, tiny_data, str(tmp_path / "out")), loop_cls=OwnInit)
    assert seen == ["OwnInit"]
