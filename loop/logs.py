"""Logging: metrics.jsonl, the trackers, console messages and the running training loss.

Owns: where a record goes (one JSON line in `output_dir/metrics.jsonl`, the accelerate trackers
named by --report_to, a `[loop] key=value` console line), console messages and warnings (main
process only), and the training loss summed on the device between logging steps. Does not own:
what is logged or when (the loop decides), nor truncating the log on resume (`checkpoint.py`,
which knows how many lines a checkpoint covers).

(Named `logs`, not `logging`, so it never shadows the standard library module.)
"""

import json
import os
import warnings

import torch

from .errors import UserError

METRICS_FILE = "metrics.jsonl"
NONFINITE_PATIENCE = 3  # consecutive NaN/inf losses before we give up


class RunLog:
    """Where the loop's records and messages go. Every rank holds one; only the main one writes."""

    def __init__(self, cfg, accelerator):
        self.cfg, self.accelerator = cfg, accelerator
        self.path = os.path.join(cfg.output_dir, METRICS_FILE)
        self.trackers = cfg.report_to != "none"

    def start_trackers(self):
        """Open the --report_to trackers with the run's config as hyperparameters."""
        if self.trackers:
            config = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in self.cfg.to_dict().items()}
            self.accelerator.init_trackers("loop", config=config)

    def record(self, record):
        """One JSON line in metrics.jsonl, a console line and the trackers (main process only)."""
        acc = self.accelerator
        if acc.is_main_process:
            try:
                os.makedirs(self.cfg.output_dir, exist_ok=True)
                line = (json.dumps(record) + "\n").encode()
                with open(self.path, "ab", buffering=0) as f:
                    start = f.seek(0, os.SEEK_END)
                    try:
                        if f.write(line) != len(line):
                            raise OSError(28, "No space left on device")
                    except OSError:
                        os.ftruncate(f.fileno(), start)  # no half line: the log stays valid JSON lines
                        raise
            except OSError as e:
                raise UserError(f"could not append to '{self.path}' ({e.strerror or e}); free space or fix "
                                f"permissions in --output_dir (the lines written so far are intact).") from e
            self.print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        if self.trackers:
            acc.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def count_lines(self):
        """Lines of metrics.jsonl written so far (saved in a checkpoint, to cut the log back on resume)."""
        if not os.path.isfile(self.path):
            return 0
        with open(self.path) as f:
            return sum(1 for _ in f)

    def print(self, msg):
        self.accelerator.print(f"[loop] {msg}", flush=True)

    def warn(self, msg, stacklevel=3):
        if self.accelerator.is_main_process:
            warnings.warn(msg, stacklevel=stacklevel)


class LossMeter:
    """The training loss since the last log line, summed on the device: no host sync per step.

    Also counts consecutive non-finite losses, so a diverged run stops with the step named.
    """

    def __init__(self, device):
        z = lambda: torch.zeros((), device=device, dtype=torch.float32)  # noqa: E731
        self.sum, self.n = z(), z()
        self.bad_run = z()  # consecutive non-finite losses
        self.bad_max = z()  # longest such run since the last log

    def add(self, loss):
        finite = torch.isfinite(loss)
        self.sum += torch.where(finite, loss.float(), 0.0)
        self.n += finite.float()
        self.bad_run = torch.where(finite, 0.0, self.bad_run + 1)
        self.bad_max = torch.maximum(self.bad_max, self.bad_run)

    def take(self, accelerator, step):
        """Mean loss over all ranks since the last call, then reset (the one host sync per log line)."""
        stats = accelerator.reduce(torch.stack([self.sum, self.n, self.bad_max]), reduction="sum")
        loss_sum, n, bad = stats.tolist()
        self.sum.zero_(), self.n.zero_(), self.bad_max.zero_()
        if bad >= NONFINITE_PATIENCE:
            raise UserError(f"the training loss was NaN or infinite for {int(bad)} consecutive batches by step "
                            f"{step}; lower --learning_rate or use bf16 instead of fp16 "
                            f"(no checkpoint was saved from these weights).")
        return loss_sum / max(n, 1)

    def state(self, accelerator):
        """[sum, count] over all ranks, for a checkpoint: a resumed run logs the same loss."""
        return accelerator.reduce(torch.stack([self.sum, self.n]), reduction="sum").tolist()

    def load(self, state, accelerator):
        if state and accelerator.is_main_process:  # the sums are over all ranks: add them once
            self.sum.fill_(state[0])
            self.n.fill_(state[1])
