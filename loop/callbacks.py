"""Callbacks: behaviour you switch on without subclassing the loop.

A callback is any object with some of the hook methods below; each receives the loop
(`loop.state`, `loop.cfg`, `loop.model`, ...). Give them with `Loop(cfg, callbacks=[...])`.
A callback with `state_dict`/`load_state_dict` is saved in checkpoints and restored on resume.
"""


class Callback:
    def on_train_start(self, loop): ...
    def on_epoch_start(self, loop): ...
    def on_step_end(self, loop): ...
    def on_epoch_end(self, loop): ...
    def on_evaluate(self, loop, metrics): ...
    def on_save(self, loop, path): ...
    def on_train_end(self, loop): ...


HOOKS = tuple(name for name in vars(Callback) if name.startswith("on_"))


# Hook names of transformers' TrainerCallback and Lightning's Callback/LightningModule that the loop has no
# hook of: a method by one of these names, written by someone who knows those libraries, would never run here.
FOREIGN_HOOKS = {
    "on_init_end", "on_train_begin", "on_epoch_begin", "on_step_begin", "on_substep_end", "on_pre_optimizer_step",
    "on_optimizer_step", "on_log", "on_predict", "on_prediction_step", "on_push_begin", "on_fit_start", "on_fit_end",
    "on_train_epoch_start", "on_train_epoch_end", "on_train_batch_start", "on_train_batch_end",
    "on_validation_start", "on_validation_end", "on_validation_epoch_start", "on_validation_epoch_end",
    "on_validation_batch_start", "on_validation_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad", "on_save_checkpoint", "on_load_checkpoint", "on_batch_start",
    "on_batch_end", "on_exception", "on_sanity_check_start", "on_sanity_check_end", "on_test_start", "on_test_end",
    "on_test_epoch_start", "on_test_epoch_end", "on_test_batch_start", "on_test_batch_end", "on_predict_start",
    "on_predict_end", "on_predict_epoch_start", "on_predict_epoch_end", "on_predict_batch_start",
    "on_predict_batch_end"}


def unknown_hooks(loop):
    """A warning naming each method of the loop's class or a callback named as a Trainer or Lightning hook that
    the loop does not have (on_log, on_train_batch_end): nothing would ever call it. None when there is none.
    Looked up statically: a property is not run."""
    import inspect

    found = [f"{type(owner).__name__}.{name}" for owner in (loop, *loop.callbacks) for name in FOREIGN_HOOKS
             if callable(inspect.getattr_static(owner, name, None)) and written_here(owner, name)]
    if not found:
        return None
    return (f"{', '.join(sorted(found))} {'is a hook' if len(found) == 1 else 'are hooks'} of Trainer or Lightning "
            f"that the loop does not have, so nothing calls {'it' if len(found) == 1 else 'them'} (the loop's "
            f"hooks: {', '.join(HOOKS)}).")


# The base classes whose hooks are no-ops (transformers' TrainerCallback, Lightning's Callback and hook mixins)
NO_OP_BASES = {"TrainerCallback", "Callback", "ModelHooks", "DataHooks", "CheckpointHooks"}


def defined_in(owner, name):
    """The class of `owner` that defines method `name` and the top package of its module ("transformers"), or
    (None, "") when it is set on the object itself or nowhere."""
    if name in getattr(owner, "__dict__", {}):
        return None, ""
    for klass in type(owner).__mro__:
        if name in vars(klass):
            return klass, str(vars(klass).get("__module__") or "").split(".")[0]
    return None, ""


def written_here(owner, name):
    """Whether method `name` of `owner` was written by someone, not inherited as the no-op of a Trainer or Lightning
    base class (a TrainerCallback subclass holds every Trainer hook: only those it or a library class wrote are named,
    transformers' EarlyStoppingCallback's included)."""
    klass, package = defined_in(owner, name)
    return klass is None or not (klass.__name__ in NO_OP_BASES and
                                 package in ("transformers", "lightning", "pytorch_lightning"))


HOOK_ARGUMENTS = {"on_evaluate": ("metrics",), "on_save": ("path",)}  # what Loop.call passes, by name


def check_hook_signatures(loop):
    """Each hook the loop's class or a callback defines must take what the loop passes (on_evaluate: metrics=, on_save:
    path=; a callback's the loop first): `on_evaluate(self, m)` was a TypeError at the first evaluation, after an
    epoch of training. Refused in one line at the start."""
    import inspect

    from .errors import UserError

    for owner in (loop, *loop.callbacks):
        if owner is not loop and any(defined_in(owner, name)[1] == "transformers" for name in HOOKS):
            # a TrainerCallback's own hooks take (args, state, control): none would run here as Trainer runs it
            stopping = " (--early_stopping_patience is EarlyStoppingCallback's rule)" if any(
                k.__name__ == "EarlyStoppingCallback" for k in type(owner).__mro__) else ""
            raise UserError(f"{type(owner).__name__} is a transformers TrainerCallback, whose hooks take Trainer's "
                            f"(args, state, control); the loop calls a callback's hooks as hook(loop): write it as a "
                            f"loop.callbacks.Callback{stopping}.")
        for name in HOOKS:
            hook = getattr(owner, name, None)
            if not callable(hook):
                continue
            names = HOOK_ARGUMENTS.get(name, ())
            try:
                signature = inspect.signature(hook)
            except (TypeError, ValueError):  # a builtin or an object whose signature is not known: as it is
                continue
            args = () if owner is loop else (loop,)
            try:
                signature.bind(*args, **dict.fromkeys(names))
            except TypeError:
                takes = ", ".join(("self",) + (("loop",) if owner is not loop else ()) + names)
                raise UserError(f"{type(owner).__name__}.{name}{signature} cannot take what the loop passes it; "
                                f"define it as {name}({takes}).") from None


def reset_callbacks(callbacks):
    """reset() each callback that has one, as a fit() starts: a callback object reused across runs (a sweep) starts
    afresh, before a resume loads the state its checkpoint holds."""
    for cb in callbacks:
        if callable(getattr(cb, "reset", None)):
            cb.reset()


class EarlyStopping(Callback):
    """Stop training after `patience` evaluations without improvement of the loop's metric. With a
    `threshold`, an evaluation that beats the best so far by no more than it counts as none (the best
    still moves to it, as best/ does): Trainer's EarlyStoppingCallback rule."""

    def __init__(self, patience, threshold=0.0):
        self.patience = patience
        self.threshold = threshold
        self.reset()

    def reset(self):
        """Before a run (Loop.fit): none of an earlier run's evaluations count."""
        self.best = None
        self.bad_evals = 0

    def on_evaluate(self, loop, metrics):
        value = metrics[f"eval_{loop.cfg.metric}"]
        previous = self.best
        # the loop's own rule (--metric's direction, or a variant's improved()): the one best/ follows
        if loop.improved(value, previous):
            self.best = value
            if previous is None or abs(value - previous) > self.threshold:
                self.bad_evals = 0
                return
        self.bad_evals += 1
        if self.bad_evals >= self.patience:
            loop.request_stop(f"early stopping: no improvement of eval_{loop.cfg.metric} in {self.bad_evals} evaluations")

    def state_dict(self):
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state):
        self.best, self.bad_evals = state["best"], state["bad_evals"]
