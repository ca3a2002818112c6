"""The loop used from Python, as a notebook or a sweep uses it (helper nb, audit72): what a run leaves for the next
code in the process, and what the caller's own state does to a run."""

import os
import re
import signal
import sys
import time
import types

import pytest
import torch

from conftest import tiny_args


def test_a_stop_signal_is_not_swallowed_by_a_sweeps_except_exception(tiny_model, tiny_data, tmp_path):
    """A sweep wraps each trial in `except Exception` (a failed trial must not end it); Preempted was an Exception,
    so each Ctrl-C only ended one trial and the sweep went on to the next (nb F1). It is a BaseException now, as
    KeyboardInterrupt is; the checkpoint it names is there to resume from."""
    from loop import Loop, Preempted, parse_args

    class Interrupt:
        def on_step_end(self, loop):
            if loop.state.global_step == 2:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the kernel

    trials = []
    with pytest.raises(Preempted) as stopped:
        for lr in ("1e-3", "3e-3"):
            try:
                out = str(tmp_path / lr)
                Loop(parse_args(tiny_args(tiny_model, tiny_data, out, learning_rate=lr)), callbacks=[Interrupt()]).fit()
            except Exception as e:  # noqa: BLE001 (the sweep's own handler)
                trials.append(repr(e))
            trials.append(lr)
    assert trials == [] and not isinstance(stopped.value, Exception)
    assert os.path.isfile(os.path.join(stopped.value.checkpoint, "loop_state.json"))
    assert not os.path.exists(tmp_path / "3e-3")  # the sweep stopped: no second trial


def test_fit_trains_inside_a_callers_no_grad_or_inference_mode_block(tiny_model, tiny_data, tmp_path):
    """A notebook cell under torch.no_grad() (left from evaluation code) or inference_mode(): fit() failed at the
    first backward with torch's "element 0 of tensors does not require grad" after all of setup (nb F7). It trains,
    and the caller's mode is as it was after."""
    from loop import Loop, parse_args

    for name, block in (("no_grad", torch.no_grad), ("inference_mode", torch.inference_mode)):
        loop = Loop(parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / name))))
        with block():
            metrics = loop.fit()
            assert not torch.is_grad_enabled()
        assert metrics["eval_accuracy"] > 0.6  # (chance is 0.5: it learned)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_done_in_counts_a_run_from_python_from_its_start_and_a_command_from_the_import(
        tiny_model, tiny_data, tmp_path, monkeypatch, capsys):
    """The closing "done in Ns" counted from loop's import for every run of the process: a notebook imported at 9:00
    that trained at 11:00 said 7200 s, and a sweep's third run the three runs' sum (nb F6). A command's run that is
    the process's first still counts its imports (part of its wait); any other run counts from its fit(): a run from
    Python, a loop.main() after another run, or one in a notebook's kernel (rev2 F1)."""
    import loop
    from loop import Loop, logs, parse_args

    def done_in():
        return float(re.findall(r"\[loop\] done in ([0-9.]+)s", capsys.readouterr().out)[-1])

    def fresh_process():  # imported long ago, no run yet
        monkeypatch.setattr(logs, "_IMPORTED", time.perf_counter() - 5000)
        monkeypatch.setattr(logs, "_first_run", True)

    def args(name):
        return tiny_args(tiny_model, tiny_data, str(tmp_path / name), num_train_epochs=1)

    fresh_process()
    Loop(parse_args(args("a"))).fit()
    assert done_in() < 1000
    loop.main(args("b"))  # a command after a run from Python
    assert done_in() < 1000
    fresh_process()
    loop.main(args("c"))  # the command line's run
    assert done_in() > 5000
    loop.main(args("d"))  # a second in one process
    assert done_in() < 1000
    fresh_process()
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setattr(sys, "argv", ["/x/ipykernel_launcher.py", "-f", "/x/kernel-1.json"])
    loop.main(args("e"))  # the README's variant example pasted into a notebook cell
    assert done_in() < 1000
    fresh_process()
    monkeypatch.setattr(sys, "argv", ["loop/train.py"])  # `%run loop/train.py ...` in that kernel (rev4 F2)
    loop.main(args("f"))
    assert done_in() < 1000


def test_a_stop_reaches_a_pools_parent_as_it_was_raised():
    """Preempted pickled through a multiprocessing pool (a worker's trial stopped): its message doubled ("checkpoint
    saved at stopped by signal; checkpoint saved at ...") and its checkpoint was that sentence (rev2 nit)."""
    import pickle

    from loop import Preempted

    back = pickle.loads(pickle.dumps(Preempted("/runs/a/checkpoints/step_7")))
    assert (str(back), back.checkpoint) == ("stopped by signal; checkpoint saved at /runs/a/checkpoints/step_7",
                                            "/runs/a/checkpoints/step_7")


def test_loop_main_in_a_notebook_does_not_read_the_kernels_arguments(monkeypatch):
    """The README's variant example, `loop.main(loop_cls=...)` under `if __name__ == "__main__":`, pasted into a
    notebook cell (where that is true) read the kernel's own -f kernel.json and stopped with "unrecognized argument
    '-f'" (nb F8); parse_args() already knew a kernel's arguments are not ours."""
    from loop import errors

    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setattr(sys, "argv", ["/x/ipykernel_launcher.py", "-f", "/x/kernel-1.json"])
    seen = []
    errors.run_cli(seen.append)
    monkeypatch.setattr(sys, "argv", ["train.py", "--seed", "3"])  # a script: its own flags
    errors.run_cli(seen.append)
    assert seen == [[], ["--seed", "3"]]


def test_processes_that_did_not_join_are_told_the_notebook_way_in_a_notebook(monkeypatch):
    """notebook_launcher(num_processes=2) on a machine without a GPU and without ACCELERATE_USE_CPU: each process
    runs alone, refused with the torchrun command line as the fix, which a notebook does not run (nb F10)."""
    from types import SimpleNamespace

    from loop import distributed
    from loop.errors import UserError

    monkeypatch.setenv("WORLD_SIZE", "2")
    alone = SimpleNamespace(num_processes=1, distributed_type="NO", gradient_accumulation_steps=1)
    with pytest.raises(UserError, match=r"\(ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 loop/train.py"):
        distributed.check_world(alone)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    with pytest.raises(UserError, match=r"set ACCELERATE_USE_CPU=true \(os.environ\['ACCELERATE_USE_CPU'\] = 'true' "
                                        r"before notebook_launcher\), or start one process\.$"):
        distributed.check_world(alone)


def test_an_earlier_runs_checkpoint_that_cannot_be_removed_stops_the_run_that_replaces_it(
        tiny_model, tiny_data, tmp_path, monkeypatch):
    """--overwrite_output_dir over a run whose checkpoints this user cannot remove (another user's, in a shared
    folder; a read-only mount): they stayed without a word, and `latest` then resumed the run that was replaced
    (helper env F3). Refused in one line naming the folder, before the new run writes anything."""
    from loop import Loop, checkpoint_folders, parse_args
    from loop.errors import UserError

    out = str(tmp_path / "out")
    Loop(parse_args(tiny_args(tiny_model, tiny_data, out, num_train_epochs=1, checkpointing_steps=10))).fit()
    left = os.path.join(out, "checkpoints", "step_10")
    assert os.path.isdir(left)

    def denied(path, ignore_errors=False):
        if not ignore_errors:
            raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(checkpoint_folders.shutil, "rmtree", denied)
    again = tiny_args(tiny_model, tiny_data, out, num_train_epochs=1, overwrite_output_dir="true", seed=3)
    with pytest.raises(UserError) as refused:
        Loop(parse_args(again)).fit()
    assert str(refused.value) == (f"could not remove the earlier run's '{left}' (Permission denied); remove it "
                                  f"yourself (as its owner, where it is writable), or choose another --output_dir.")
    monkeypatch.undo()
    Loop(parse_args(again)).fit()  # removable again: the run replaces it
    assert not os.path.exists(os.path.join(out, "checkpoints"))
