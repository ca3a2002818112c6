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


def unknown_hooks(loop):
    """A warning naming each on_* method of the loop's class or a callback that is no hook (on_batch_end,
    on_epoch_stop): nothing would ever call it. None when there is none."""
    found = [f"{type(owner).__name__}.{name}" for owner in (loop, *loop.callbacks) for name in dir(owner)
             if name.startswith("on_") and name not in HOOKS and callable(getattr(owner, name, None))]
    if not found:
        return None
    return (f"{', '.join(found)} {'is' if len(found) == 1 else 'are'} not among the loop's hooks "
            f"({', '.join(HOOKS)}), so nothing calls {'it' if len(found) == 1 else 'them'}.")


class EarlyStopping(Callback):
    """Stop training after `patience` evaluations without improvement of the loop's metric. With a
    `threshold`, an evaluation that beats the best so far by no more than it counts as none (the best
    still moves to it, as best/ does): Trainer's EarlyStoppingCallback rule."""

    def __init__(self, patience, threshold=0.0):
        self.patience = patience
        self.threshold = threshold
        self.best = None
        self.bad_evals = 0

    def on_evaluate(self, loop, metrics):
        value = metrics[f"eval_{loop.cfg.metric}"]
        higher = loop.higher_is_better()  # --metric loss: lower is better
        previous = self.best
        if previous is None or (value > previous if higher else value < previous):
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
