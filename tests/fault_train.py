"""loop/train.py with deterministic interruptions, for the resume and preemption tests.

The production loop knows nothing of these: this script installs them from outside, through the
public seams (a callback, and the checkpointer's `mark_complete`). Run it exactly like
loop/train.py (python, torchrun, accelerate launch) with one of these variables set:

    LOOP_TEST_SIGNAL_AT_STEP=N[:SIG]  after optimizer step N (its hooks ran), rank 0 sends itself
                                     SIGTERM (or SIG): the real handler runs, the other ranks follow.
    LOOP_TEST_CRASH_AT_STEP=N         after optimizer step N (its hooks ran), every rank kills itself
                                     with SIGKILL, like `kill -9`.
    LOOP_TEST_CRASH_IN_SAVE=N         while checkpoint step_N is being written (model, optimizer and
                                     RNG files written, not yet marked complete): SIGKILL.
    LOOP_TEST_BUG_IN_SAVE=N           while checkpoint step_N is being written, the main process raises a
                                     RuntimeError (a bug of ours or a library's, not the disk).
    LOOP_TEST_SLEEP_AT_STEP=N:S       after optimizer step N, sleep S seconds (a run that holds its lock).
    LOOP_TEST_ECHO_AFTER_STOP=1       once fit() has put the signal handlers back after a stop signal,
                                     the same signal arrives again (a launcher's or SLURM's echo).
    LOOP_TEST_COMPILE_EAGER=1         torch.compile with the eager backend: the same wrappers
                                     (OptimizedModule, `_orig_mod`) as inductor, without its minutes
                                     of compiling on a CPU.
    LOOP_TEST_COUNT_WORKERS=1         after every optimizer step, print how many child processes (the
                                     DataLoaders' workers) this process has.
    LOOP_TEST_FSDP_ON_CPU=1           FSDP2 on CPU processes (gloo). Accelerate turns FSDP on only for
                                     GPUs; torch's FSDP2 itself runs on CPU, so the accelerator is
                                     switched to FSDP before prepare(): the sharded model, sharded
                                     checkpoints, resume and the gathered best/ are the real code paths.
"""

import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.insert(0, ROOT)

import loop  # noqa: E402
from loop import checkpoint, preemption  # noqa: E402


class Faults(loop.Callback):
    def on_step_end(self, lp):
        step = str(lp.state.global_step)
        at, _, name = os.environ.get("LOOP_TEST_SIGNAL_AT_STEP", "").partition(":")
        if at == step and lp.accelerator.is_main_process:
            os.kill(os.getpid(), getattr(signal, name or "SIGTERM"))
        if os.environ.get("LOOP_TEST_CRASH_AT_STEP") == step:
            os.kill(os.getpid(), signal.SIGKILL)
        if os.environ.get("LOOP_TEST_COUNT_WORKERS"):
            import multiprocessing

            print(f"step {step}: {len(multiprocessing.active_children())} worker processes", flush=True)
        at, _, seconds = os.environ.get("LOOP_TEST_SLEEP_AT_STEP", "").partition(":")
        if at == step:
            print(f"sleeping at step {step}", flush=True)  # (a test signals the run once it sees this)
            time.sleep(float(seconds))


class FSDPOnCPU(loop.Loop):
    """The loop with accelerate's FSDP2 plugin on CPU (what `accelerate launch --use_fsdp` gives on GPUs).

    Reaches into accelerate's shared state (both AcceleratorState and PartialState hold the
    distributed type): a test harness only, checked against accelerate 1.15.
    """

    def build_accelerator(self):
        from accelerate.state import PartialState
        from accelerate.utils import DistributedType

        acc = super().build_accelerator()
        acc.state.fsdp_plugin = self.fsdp_plugin()
        acc.state.distributed_type = PartialState().distributed_type = DistributedType.FSDP
        return acc

    @staticmethod
    def fsdp_plugin():
        """The plugin configs/accelerate/fsdp.yaml gives (FSDP2, block-wise wrap, sharded state)."""
        from accelerate.utils import FullyShardedDataParallelPlugin

        return FullyShardedDataParallelPlugin(
            fsdp_version=2, auto_wrap_policy="transformer_based_wrap", state_dict_type="SHARDED_STATE_DICT",
            reshard_after_forward=True)


class FrozenBody(loop.Loop):
    """Gradual unfreezing's start: everything but the classifier frozen in build_model (unfreezes_later)."""

    unfreezes_later = True

    def build_model(self):
        model = super().build_model()
        for name, p in model.named_parameters():
            p.requires_grad = "classifier" in name
        return model


class UnfreezeAtStep(FrozenBody):
    """LOOP_TEST_UNFREEZE_AT_STEP=N: the body unfrozen after step N by a hook (a moment of the variant's own,
    which a resume must restore from the checkpoint)."""

    def on_step_end(self):
        if self.state.global_step == int(os.environ["LOOP_TEST_UNFREEZE_AT_STEP"]):
            self.model.requires_grad_(True)


def crash_in_save(mark_complete):
    def wrapped(self, tmp, info):
        if os.environ.get("LOOP_TEST_CRASH_IN_SAVE") == str(info["state"]["global_step"]):
            os.kill(os.getpid(), signal.SIGKILL)
        if os.environ.get("LOOP_TEST_BUG_IN_SAVE") == str(info["state"]["global_step"]):
            raise RuntimeError("injected bug while saving")
        return mark_complete(self, tmp, info)

    return wrapped


def echo_after_restore(restore):
    def wrapped(self, previous):
        restore(self, previous)
        if os.environ.get("LOOP_TEST_ECHO_AFTER_STOP") and self.signum:
            os.kill(os.getpid(), self.signum)
            time.sleep(0.5)  # let it be delivered (the real echo comes 0.1-1 s after the first signal)

    return wrapped


if __name__ == "__main__":
    if os.environ.get("LOOP_TEST_COMPILE_EAGER") == "1":
        import functools

        import torch

        torch.compile = functools.partial(torch.compile, backend="eager")
    checkpoint.Checkpointer.mark_complete = crash_in_save(checkpoint.Checkpointer.mark_complete)
    preemption.StopSignals.restore = echo_after_restore(preemption.StopSignals.restore)
    fsdp = os.environ.get("LOOP_TEST_FSDP_ON_CPU") == "1"
    cls = FSDPOnCPU if fsdp else None
    if os.environ.get("LOOP_TEST_UNFREEZE_AT_STEP"):
        cls = type("Unfreezing", (UnfreezeAtStep, cls or loop.Loop), {})
    loop.main(loop_cls=cls, callbacks=[Faults()])
