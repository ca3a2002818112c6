"""EMA weights: evaluate (and keep as best/) an exponential moving average of the weights.

Polyak & Juditsky, "Acceleration of Stochastic Approximation by Averaging", SIAM J.
Control Optim. 1992 (https://doi.org/10.1137/0330046); the moving-average form as in
Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017
(https://arxiv.org/abs/1703.01780), with the warm-up decay min(decay, (1 + t) / (10 + t))
of TensorFlow's ExponentialMovingAverage.

After every optimizer step, ema = d * ema + (1 - d) * weights (fp32, on the device). At every
evaluation (each epoch's end, and every --eval_steps steps) the raw weights are evaluated first
(logged as eval_raw_*), then the EMA weights are swapped in for the evaluation that counts
(eval_*, which picks best/; `ema_updates` counts the steps averaged) and for writing best/, so
best/ holds EMA weights. Training always continues from the raw weights.

--eval_only scores a saved model (best/, which holds the EMA weights already) as it is: no EMA there.

Resume: the EMA is returned by checkpoint_objects(), so every checkpoint holds it
(custom_checkpoint_N.pkl) and --resume_from_checkpoint restores it. Works with DDP and
mixed precision; FSDP and DeepSpeed ZeRO-3 are refused at the start (their parameters are sharded: each
process would average its own shard, and a checkpoint would hold the main process's alone).

    accelerate launch examples/ema.py --config configs/smoke.yaml --output_dir output/ema-accelerate --ema_decay 0.99
    python examples/ema.py --config configs/smoke.yaml --output_dir output/ema
"""

import contextlib
import os
import sys
from dataclasses import dataclass, field

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import loop  # noqa: E402


@dataclass
class EMAConfig(loop.TrainConfig):
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay per optimizer step (after a short warm-up), "
                                                              "in [0, 1)."})

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.ema_decay < 1:  # 1 would never move; above 1 the warm-up's cap would hide it
            raise loop.UserError(f"--ema_decay must be in [0, 1) (0.999: about the last 1,000 steps), got "
                                 f"{self.ema_decay}.")


class EMA:
    """A moving average of a model's trainable parameters, with state_dict/load_state_dict."""

    def __init__(self, model, decay):
        self.decay, self.updates = decay, 0
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().float().clone() for n, p in self.params.items()}

    @torch.no_grad()
    def update(self):
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for n, p in self.params.items():
            self.shadow[n].lerp_(p.float(), 1 - d)

    @contextlib.contextmanager
    def applied(self):
        """Swap the EMA into the model for the duration of the block, then put the raw weights back."""
        raw = {n: p.detach().clone() for n, p in self.params.items()}
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(self.shadow[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(raw[n])

    def state_dict(self):
        return {"updates": self.updates, "shadow": self.shadow}

    @torch.no_grad()
    def load_state_dict(self, state):
        self.updates = state["updates"]
        for n, t in state["shadow"].items():  # (a --torch_compile run named them _orig_mod.<name> before 2026-12-04)
            self.shadow[n.removeprefix("_orig_mod.")].copy_(t)


class EMALoop(loop.Loop):
    own_eval_names = ("raw",)  # eval_raw_*: the raw weights' scores (no extra evaluation set may be named so)

    def check_options(self):
        super().check_options()
        plugin = self.accelerator.state.deepspeed_plugin
        sharded = "FSDP" if loop.distributed.kind(self.accelerator) == "FSDP" else \
            "DeepSpeed ZeRO-3" if plugin is not None and getattr(plugin, "zero_stage", 0) == 3 else None
        if sharded and not self.cfg.eval_only:
            raise loop.UserError(f"examples/ema.py averages whole parameters, and {sharded} shards them; run it on "
                                 "one process, under DDP or DeepSpeed ZeRO-1/2.")

    def checkpoint_objects(self):
        # Called in setup() after prepare(), before resume(): the EMA is saved and restored with the run.
        # (by the model's own parameter names: a checkpoint of a --torch_compile run may resume uncompiled)
        self.ema = EMA(self.unwrapped_model, self.cfg.ema_decay)
        return [self.ema]

    def on_step_end(self):
        self.ema.update()

    def val_loop(self):
        if self.cfg.eval_only:  # scoring a saved model (best/ holds the EMA weights already): no EMA here
            return super().val_loop()
        raw = super().val_loop()
        with self.ema.applied():
            metrics = super().val_loop()
        metrics.update({"eval_raw_" + k[5:]: v for k, v in raw.items() if not k.endswith("_samples")})
        metrics["ema_updates"] = self.ema.updates
        return metrics

    def save_best(self, metrics):
        with self.ema.applied():
            super().save_best(metrics)


if __name__ == "__main__":
    loop.main(loop_cls=EMALoop, config_cls=EMAConfig)
