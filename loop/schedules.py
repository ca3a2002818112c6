"""The learning-rate schedule: which transformers schedules the loop offers, the checking of their
own arguments (--lr_scheduler_kwargs) before any work, and the schedule of a run (`build`).

Owns: the schedule names, one canonical text of the arguments (a resume compares it), the warmup and
phase checks that need the run's length, turning a schedule error into one line, the run's step counts (`steps`)
and what each optimizer step is due (`due`: a log line, an evaluation, a checkpoint). Does not own the warmup
arithmetic (`config.TrainConfig.num_warmup_steps`) or when the schedule steps (`core.Loop`).
"""

import json
import math
import warnings

from .errors import UserError, short
from .labels import is_number_text

# transformers' SchedulerType values that `get_scheduler(name, optimizer, num_warmup_steps,
# num_training_steps, scheduler_specific_kwargs)` builds (the last three only with --lr_scheduler_kwargs);
# reduce_lr_on_plateau and greedy step on a metric, not on optimizer steps. Listed here rather than read
# from SchedulerType: importing transformers.trainer_utils imports peft when it is installed, 2 of the 5
# seconds every command (--help, a refused flag) took.
SCHEDULERS = ["constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "inverse_sqrt", "linear",
              "polynomial", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay"]
# The schedules that cannot be built without --lr_scheduler_kwargs (min_lr or min_lr_rate; num_decay_steps).
SCHEDULERS_NEEDING_KWARGS = ("cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay")
# Parameters of transformers' schedule functions that the loop passes itself.
SCHEDULE_OWN = ("optimizer", "num_warmup_steps", "num_training_steps", "last_epoch")


def _value(value):
    """A --lr_scheduler_kwargs value: JSON (2, 0.1, true, "text"), a number JSON does not spell (.1, and
    1e-6, which YAML reads as text), else the text itself; a whole float is that integer (2.0 is 2)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = float(text) if is_number_text(text) else text
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"--lr_scheduler_kwargs has the value {value}; give finite numbers.")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def kwargs_text(scheduler, text, learning_rate):
    """--lr_scheduler_kwargs checked against `scheduler`'s function, as one canonical JSON text (sorted
    keys, whole numbers as integers: a resume compares the text) or None. Takes JSON ('{"num_cycles": 2}',
    Trainer's form) or name=value pairs ('num_cycles=2,min_lr_rate=0.1'). The schedule is built on a
    stand-in optimizer at `learning_rate` and its factor read across a run, so a missing argument, a
    mistyped one, or one that would make the learning rate negative, not a number or more than
    --learning_rate is found before any work."""
    text = (text or "").strip()
    if not text and scheduler not in SCHEDULERS_NEEDING_KWARGS + ("polynomial",):
        return None  # (transformers' schedules are not imported: 2 s of every start)
    if text.startswith("{"):
        try:
            kwargs = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"--lr_scheduler_kwargs '{text}' is not valid JSON ({e.msg}); write e.g. "
                            f"'{{\"num_cycles\": 2}}' or num_cycles=2.")
        if not isinstance(kwargs, dict):
            raise UserError(f"--lr_scheduler_kwargs '{text}' must be a JSON object, e.g. '{{\"num_cycles\": 2}}'.")
    else:
        kwargs = {}
        for pair in filter(None, (p.strip() for p in text.split(","))):
            name, eq, value = pair.partition("=")
            if not eq or not name.strip():
                raise UserError(f"--lr_scheduler_kwargs '{text}': '{pair}' is not name=value; write e.g. "
                                f"num_cycles=2,min_lr_rate=0.1 (or JSON).")
            kwargs[name.strip()] = value
    kwargs = {name: _value(value) for name, value in kwargs.items()}
    import inspect

    import torch
    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION, SchedulerType, get_scheduler

    for name in ("num_decay_steps", "num_stable_steps"):  # steps: whole numbers
        value = kwargs.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise UserError(f"--lr_scheduler_kwargs {name} must be a whole number of optimizer steps, got {value!r}.")
    params = inspect.signature(TYPE_TO_SCHEDULER_FUNCTION[SchedulerType(scheduler)]).parameters
    takes = [n for n in params if n not in SCHEDULE_OWN]
    unknown = [n for n in kwargs if n not in takes]
    if unknown:
        listed = f"takes {', '.join(takes)}" if takes else "takes no arguments"
        raise UserError(f"--lr_scheduler_kwargs gives {', '.join(unknown)}, but the {scheduler} schedule {listed}; "
                        f"{'use those' if takes else 'drop --lr_scheduler_kwargs (--lr_scheduler_kwargs= clears one a --config gives)'}.")
    cycles = kwargs.get("num_cycles")  # 0 keeps the cosine at its peak (flat), a negative one is the positive's
    if cycles is not None and (isinstance(cycles, bool) or not isinstance(cycles, (int, float)) or not cycles > 0):
        raise UserError(f"--lr_scheduler_kwargs num_cycles must be a positive number (0.5: one half cosine down to 0; "
                        f"the cosine schedules), got {cycles!r}.")
    # a stand-in run: 10 warmup steps, then at least 1,000 more (the phases of warmup_stable_decay fit in it)
    warmup = 10
    total = warmup + max(1000, sum(kwargs.get(k, 0) for k in ("num_stable_steps", "num_decay_steps")) + 1)
    stand_in = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=learning_rate)
    steps = sorted({0, 1, warmup // 2, warmup, warmup + 1, *range(warmup, total + 1, max(1, (total - warmup) // 64)),
                    total - 1, total})
    why = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Both num_training_steps and num_stable_steps are specified"
            schedule = get_scheduler(scheduler, stand_in, num_warmup_steps=warmup, num_training_steps=total,
                                     scheduler_specific_kwargs=dict(kwargs))
        factors = {step: schedule.lr_lambdas[0](step) for step in steps}
        bad = next((f for f in factors.values() if not (isinstance(f, (int, float)) and 0 <= f <= 1 + 1e-9)), None)
        if bad is not None:
            why = (f"the learning rate would reach {bad * learning_rate:g}, "
                   + ("not a number" if bad != bad else "below 0" if bad < 0 else "above --learning_rate "
                      f"{learning_rate:g}"))
        elif not math.isclose(factors[warmup], 1.0, rel_tol=1e-3):  # every schedule peaks as its warmup ends
            why = f"the learning rate after the warmup would be {factors[warmup] * learning_rate:g}, not the peak"
    except (TypeError, ValueError, ArithmeticError) as e:
        why = " ".join(str(e).split()) or type(e).__name__
        if scheduler in SCHEDULERS_NEEDING_KWARGS and not kwargs:
            needs = {"warmup_stable_decay": "num_decay_steps=N"}.get(scheduler, "min_lr_rate=0.1 (or min_lr=1e-6)")
            raise UserError(f"--lr_scheduler_type {scheduler} needs arguments ({why}); add --lr_scheduler_kwargs "
                            f"{needs}.")
    if why:
        shown = f"--lr_scheduler_kwargs '{text}'" if text else f"the {scheduler} schedule's defaults"
        raise UserError(f"{shown} with --learning_rate {learning_rate:g} gives no usable {scheduler} schedule "
                        f"({why}); check the values.")
    return json.dumps(kwargs, sort_keys=True) if kwargs else None


def build(cfg, optimizer, num_training_steps, warn):
    """--lr_scheduler_type over a run of `num_training_steps` optimizer steps, with its warmup and
    --lr_scheduler_kwargs; `warn(message)` says what the run should know (a warmup longer than the run,
    warmup_stable_decay phases that end early); phases longer than the run are refused."""
    from transformers import get_scheduler

    warmup = cfg.num_warmup_steps(num_training_steps)
    schedule = cfg.schedule_kwargs()
    if warmup >= num_training_steps:  # (step i trains at i / warmup of the rate: the last, at warmup - 1, short of it)
        warn(f"the warmup ({warmup} steps) is {'as long as' if warmup == num_training_steps else 'longer than'} "
             f"this run's {num_training_steps} optimizer steps: the learning rate never reaches --learning_rate "
             f"{cfg.learning_rate:g}.")
    if cfg.lr_scheduler_type == "warmup_stable_decay":  # its phases must fit, or the decay is cut off
        phases = {k: schedule[k] for k in ("num_stable_steps", "num_decay_steps") if k in schedule}
        given = " plus ".join(f"{k}={v}" for k, v in phases.items())
        if warmup + sum(phases.values()) > num_training_steps:
            raise UserError(f"--lr_scheduler_kwargs {given} plus {warmup} warmup steps is more than this run's "
                            f"{num_training_steps} optimizer steps; shorten them (or the warmup).")
        if "num_stable_steps" in phases and warmup + sum(phases.values()) < num_training_steps:
            warn(f"--lr_scheduler_kwargs {given} plus {warmup} warmup steps end before this run's "
                 f"{num_training_steps} optimizer steps: the rest train at the decay's end "
                 f"(min_lr_ratio); leave num_stable_steps out to fill the run.")
    total = num_training_steps
    if cfg.lr_scheduler_type == "polynomial":  # its decay divides by the steps after the warmup: with none, the
        total = max(total, warmup + 1)  # scheduler's step after the last one died (ZeroDivisionError); every trained
        # step is in the warmup then, and trains as it would
    try:
        with warnings.catch_warnings():  # "Both num_training_steps and num_stable_steps are specified"
            warnings.simplefilter("ignore", UserWarning)
            return get_scheduler(cfg.lr_scheduler_type, optimizer, num_warmup_steps=warmup,
                                 num_training_steps=total, scheduler_specific_kwargs=schedule)
    except (TypeError, ValueError, ArithmeticError) as e:  # values kwargs_text could not try (lr groups)
        raise UserError(f"--lr_scheduler_type {cfg.lr_scheduler_type} with --lr_scheduler_kwargs "
                        f"'{cfg.lr_scheduler_kwargs or ''}' cannot schedule this run ({short(e)}); check the "
                        f"values.") from e


def due(cfg, step, last):
    """What follows optimizer step `step`, as (log, evaluate, save): a log line every --logging_steps, an evaluation
    every --eval_steps, a step checkpoint every --checkpointing_steps (each a fraction of the run's steps when below 1:
    TrainConfig.every), and step 1 with --logging_first_step. `last`: the epoch's last step, or --max_steps': it
    always logs, and neither evaluates nor saves here (fit() evaluates it once, after the epoch, then checkpoints it,
    so the checkpoint holds that evaluation)."""
    log = step % cfg.logging_every == 0 or last or (cfg.logging_first_step and step == 1)
    evaluate = bool(cfg.eval_every) and step % cfg.eval_every == 0 and not last
    save = not last and cfg.checkpoint_due(step, epoch_end=False)
    return log, evaluate, save


def steps(cfg, epoch_batches):
    """(optimizer steps per epoch, steps in all, epochs) for `epoch_batches` micro-batches per epoch and process
    (counted after prepare(), so the schedule fits any world size): --max_steps, else --num_train_epochs epochs, a
    fraction (1.5) rounded up as Trainer rounds it, after rounding away float noise (2.2 x 25 is 55.00000000000001);
    as many epochs as that takes, the last one cut short."""
    per_epoch = math.ceil(epoch_batches / cfg.gradient_accumulation_steps)
    total = cfg.max_steps or math.ceil(round(per_epoch * cfg.num_train_epochs, 9))
    return per_epoch, total, math.ceil(total / per_epoch)
