"""What the loop checks of a variant's overrides: the contract of the methods a research variant overrides, each
slip one line naming the method and the fix, not a TypeError from inside accelerator.backward, torch or the
log's running mean, minutes (or an epoch) into a run.

Owns: compute_loss's (loss, outputs) (`loss_and_outputs`), training_step's loss (`checked_step_loss`) and whether
any step had a gradient (`GradientWatch`), evaluation_step's (logits, labels) and evaluation_loss's one loss per
example (`checked_evaluation_step`, `checked_evaluation_loss`), and a variant whose __init__ skipped Loop's
(`check_initialised`). Does not own: the hooks' signatures (`callbacks.check_hook_signatures`), compute_metrics'
names (`scores.prefixed`), a log record's values (`logs`), or what a variant's options may be (`config`).
"""

import torch

from .errors import UserError


def check_initialised(loop):
    """A variant whose __init__ never called Loop's has none of the run's parts (an AttributeError in fit())."""
    if "state" not in vars(loop):
        raise UserError(f"{type(loop).__name__}.__init__ did not call Loop's: call "
                        f"super().__init__(cfg, callbacks) in it, before the attributes of your own.")


def loss_and_outputs(result):
    """compute_loss's (loss, outputs), the loss a 0-d tensor. What else an override may return by a slip (a bare
    loss, Lightning's dict, the model's outputs, loss.item(), a loss per example) is one clear error, not a
    TypeError from inside accelerator.backward or the log's running mean."""
    if isinstance(result, (tuple, list)) and len(result) == 2 and torch.is_tensor(result[0]):
        loss = result[0]
        if loss.dim() == 0:
            return result
        if loss.numel() == 1:  # shape [1]: backward takes it, the running mean would not
            return loss.reshape(()), result[1]
        raise UserError(f"compute_loss returned a loss of shape {list(loss.shape)}; return one number, the "
                        f"micro-batch's loss (e.g. its mean: `loss.mean()`).")
    if torch.is_tensor(result):
        fix = "e.g. `return loss, outputs`"
    elif isinstance(result, dict):  # (a ModelOutput is one)
        fix = "e.g. `return outputs.loss, outputs`, not a dict"
    elif isinstance(result, (tuple, list)) and len(result) == 2:
        fix = f"the loss a tensor, not a {type(result[0]).__name__} (`loss.item()` cuts it from its gradient)"
    else:
        fix = "two values"
    shown = "a tensor" if torch.is_tensor(result) else f"a {type(result).__name__}" + (
        f" of {len(result)}" if isinstance(result, (tuple, list)) else "")
    raise UserError(f"compute_loss returned {shown}; return (loss, outputs), {fix}.")


def check_gradient(loss):
    """A loss with no gradient (detached, or computed under torch.no_grad()): one line, not torch's "element 0 of
    tensors does not require grad" from inside backward."""
    if not loss.requires_grad and torch.is_grad_enabled():
        raise UserError("compute_loss returned a loss with no gradient (detached, or computed under "
                        "torch.no_grad()); return the loss the model's forward pass built.")


class GradientWatch:
    """Whether the optimizer steps find gradients: AdamW skips a parameter without one, so a training_step override
    that never called backward trained nothing and exited 0. A step without any gradient (a batch the override
    skipped) is not taken (Loop.optimizer_step); a run none of whose steps had one is refused at the epoch's end."""

    def __init__(self):
        self.missing = 0  # optimizer steps of this process's run that found no gradient
        self.first_step = 0  # the step this process's run started from (fit, after a resume)
        self.probe = None  # the parameter that had a gradient at the last step: looked at first

    def found(self, model, kind):
        """Whether a trainable parameter has a gradient now (counted when none has). True without trainable
        parameters, and under DeepSpeed and FSDP, which keep the gradients themselves (FSDP1 leaves a rank whose
        shard of the trainable parameters is empty none: the ranks would disagree, and one skip a collective the
        others make). A frozen body's hundreds of parameters are not looked at each step: the probe first."""
        if self.probe is not None and self.probe.grad is not None or kind in ("DEEPSPEED", "FSDP"):
            return True
        self.probe = next((p for p in model.parameters() if p.requires_grad and p.grad is not None), None)
        if self.probe is not None or not any(p.requires_grad for p in model.parameters()):
            return True
        self.missing += 1
        return False

    def check_learned(self, global_step):
        """At an epoch's end: refuse a run none of whose optimizer steps since this process started (`first_step`)
        found a gradient."""
        if self.missing and self.missing == global_step - self.first_step:
            steps = "the one optimizer step" if self.missing == 1 else f"any of the {self.missing} optimizer steps"
            raise UserError(f"no trainable parameter had a gradient in {steps} so far: a training_step override must "
                            f"call self.backward(loss) (the loss the model's forward pass built).")


def checked_step_loss(loss):
    """training_step's loss, checked before the running mean reads it: a 0-d tensor (shape [1] taken as one)."""
    if torch.is_tensor(loss) and loss.numel() == 1:
        return loss if loss.dim() == 0 else loss.reshape(())
    shown = f"a loss of shape {list(loss.shape)}" if torch.is_tensor(loss) else f"a {type(loss).__name__}"
    raise UserError(f"training_step returned {shown}; return the micro-batch's loss as a one-number tensor, "
                    f"detached (`return loss.detach()`), after calling self.backward(loss).")


def checked_evaluation_step(step):
    """evaluation_step's (logits, labels): anything else (the logits alone, a dict) is one line, not an unpacking
    error at the first evaluation."""
    if isinstance(step, (tuple, list)) and len(step) == 2 and all(torch.is_tensor(t) for t in step):
        return step
    shown = "a tensor" if torch.is_tensor(step) else f"a {type(step).__name__}" + (
        f" of {len(step)}" if isinstance(step, (tuple, list)) else "")
    raise UserError(f"evaluation_step returned {shown}; return (logits, labels), two tensors.")


def checked_evaluation_loss(loss, rows):
    """evaluation_loss's one loss per example, for a batch of `rows`. A mean was a TypeError, or in two processes a
    mean of the processes' means as eval_loss, silently (gather_for_metrics makes a row of a 0-d loss). A loss per
    example and output ([B, 1] of a regression, [B, L] per label) is each example's mean."""
    if not torch.is_tensor(loss) or loss.dim() == 0 or len(loss) != rows:
        shown = f"shape {list(loss.shape)}" if torch.is_tensor(loss) else f"a {type(loss).__name__}"
        raise UserError(f"evaluation_loss returned {shown}; return one loss per example, shape "
                        f"[{rows}] (e.g. cross_entropy(..., reduction='none')).")
    return loss.reshape(rows, -1).mean(-1) if loss.dim() > 1 else loss
