"""loop: a readable Accelerate training loop for text classification.

    from loop import Loop, TrainConfig, parse_args
    Loop(parse_args(["--config", "configs/smoke.yaml"])).fit()
"""

import os as _os
import sys as _sys

# (loop-train, loop-predict and `python -m loop...` import this first; loop/train.py, loop/predict.py and
# loop/accelerate_launch.py check before their own path setup)
try:
    _os.getcwd()
except FileNotFoundError:  # a shell in a folder deleted since (every relative path, and transformers' import, fail)
    _GONE = "the current folder no longer exists; cd into one that does and run again."
    if _os.path.basename(_sys.argv[0] if _sys.argv else "") in ("loop-train", "loop-predict", "-m"):  # a command
        print(f"error: {_GONE}", file=_sys.stderr)
        _sys.exit(2)
    raise ImportError(f"loop: {_GONE}") from None  # (a library import does not end the process: a notebook's)

from .callbacks import Callback, EarlyStopping  # noqa: E402
from .config import TrainConfig, parse_args  # noqa: E402
from .core import Loop, TrainState  # noqa: E402
from .errors import EXIT_PREEMPTED, EXIT_USER_ERROR, Preempted, UserError  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ["Callback", "EarlyStopping", "Loop", "TrainConfig", "TrainState", "parse_args", "UserError",
           "Preempted", "EXIT_PREEMPTED", "EXIT_USER_ERROR", "main"]


def main(argv=None, loop_cls=None, config_cls=None, callbacks=None):
    """Command-line entry point: parse flags, run `loop_cls(cfg).fit()` (which is `.validate()` with
    --eval_only), map errors to exit codes.

    Examples and research variants call `main(loop_cls=MyLoop, config_cls=MyConfig, callbacks=[...])`.
    """
    from .errors import run_cli

    def run(args):
        cfg = parse_args(args, config_cls or TrainConfig)
        # (callbacks only when given: a variant's __init__(self, cfg) takes none)
        (loop_cls or Loop)(cfg, **({"callbacks": callbacks} if callbacks is not None else {})).fit()

    run_cli(run, argv)
