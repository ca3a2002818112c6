"""Audit74: a stop signal that lands in a DataLoader worker before the loop's worker_init_fn ran (chaos F1), a run
out of open files anywhere (review rev3 F3), and the advice for label ids 1..K (a fresh user's F1)."""

import errno
import os
import signal
import warnings

import pytest

from loop.errors import UserError


def _signalled_early(worker_id):
    """A worker_init_fn like the loop's, but SIGTERM (the job's, sent to every process) arrives first."""
    from loop.preemption import ignore_stop_signals_in_worker

    os.kill(os.getpid(), signal.SIGTERM)
    ignore_stop_signals_in_worker(worker_id)


def _start_method():
    import multiprocessing

    return multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]


@pytest.mark.skipif(_start_method() not in ("fork", "spawn"), reason="forkserver's workers keep torch's window")
def test_a_stop_signal_before_the_workers_own_handler_is_held_then_dropped():
    """torch's worker loop sets its own SIGTERM handler (death unless the parent sent it) before it calls the
    worker_init_fn that ignores stop signals: a SIGTERM to the whole job in that window (SLURM's, torchrun's killpg)
    killed the worker, and the rank crashed with "DataLoader worker ... is killed by signal: Terminated", no
    checkpoint (chaos F1). The loop's workers start with the stop signals held; the worker_init_fn drops them."""
    from torch.utils.data import DataLoader

    from loop.loaders import worker_context

    held = DataLoader(list(range(40)), batch_size=4, num_workers=2, worker_init_fn=_signalled_early,
                      multiprocessing_context=worker_context(), timeout=60)
    assert sum(int(b.sum()) for b in held) == sum(range(40))
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert signal.SIGTERM not in before  # this process's block ended with the start
    bare = DataLoader(list(range(40)), batch_size=4, num_workers=2, worker_init_fn=_signalled_early, timeout=60)
    with pytest.raises(RuntimeError, match="DataLoader worker"):  # what the window did
        sum(int(b.sum()) for b in bare)


def test_the_loops_loaders_start_their_workers_with_the_signals_held(monkeypatch):
    """dataloaders() and the held-out loaders built like evaluation's take worker_context (none without workers,
    which torch refuses a context for)."""
    from accelerate import Accelerator

    from loop import loaders
    from loop.config import TrainConfig
    from test_loaders_mutants import _data

    train, evaluation, _, _ = loaders.dataloaders(TrainConfig(dataloader_num_workers=2), _data(), None, 16,
                                                  Accelerator(cpu=True))
    test = loaders.held_out_dataloader(TrainConfig(), _data().eval, like=evaluation)
    held = {"fork": getattr(loaders, "HeldForkContext", None), "spawn": loaders.HeldSpawnContext}.get(_start_method())
    for dl in (train, evaluation, test):
        assert held is None or isinstance(dl.multiprocessing_context, held)
        assert dl.multiprocessing_context.get_start_method() == _start_method()
    none, _, _, _ = loaders.dataloaders(TrainConfig(dataloader_num_workers=0), _data(), None, 16, Accelerator(cpu=True))
    assert none.multiprocessing_context is None


def test_ratings_one_to_five_are_told_to_subtract_one_not_to_name_them():
    """Star ratings 1..5 leave id 0 untrained: the warning said "or name the ids with --label_names", and five names
    were refused (ids 1-5 are outside 0..4) while six kept the dead class (a fresh user's F1)."""
    from loop.config import TrainConfig
    from loop.labels import encode_labels
    from test_labels_mutants import splits

    def warned(train):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            encode_labels(TrainConfig(), splits(train, [train[0]]))
        return [str(w.message) for w in caught if "unused" in str(w.message)]

    assert warned([1, 2, 3, 4, 5, 5]) == [
        "training label ids 1-5 leave id(s) 0 unused: the model gets 6 classes, 1 of them never trained (and "
        "f1/precision/recall become averages over classes); renumber the labels 0..4 (here: subtract 1 from each) "
        "(--label_names names ids from 0: it cannot leave one out)."]
    assert "subtract" not in warned([0, 2, 2])[0]  # not a shifted range: no one number to subtract


@pytest.mark.parametrize("error", [
    OSError(errno.EMFILE, "Too many open files"),
    RuntimeError("Too many open files. Communication with the workers is no longer possible. Please increase the "
                 "limit using `ulimit -n` in the shell or change the sharing strategy by calling "
                 "`torch.multiprocessing.set_sharing_strategy('file_system')` at the beginning of your code"),
], ids=["EMFILE", "torch"])
def test_a_run_out_of_open_files_anywhere_says_so_in_one_line(monkeypatch, capsys, tmp_path, error):
    """A hard `ulimit -n` that workers outgrow mid-run ended in a traceback (review rev3 F3): it is one line naming
    the limit and the fix, exit 2; an unrelated OSError keeps its traceback."""
    import resource

    from loop.errors import run_cli

    monkeypatch.setenv("LOOP_PID_DIR", str(tmp_path))

    def fail(argv):
        raise error

    with pytest.raises(SystemExit) as e:
        run_cli(fail, [])
    assert e.value.code == 2
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert capsys.readouterr().err == (
        f"error: this process ran out of open files (`ulimit -n`: {limit}): raise that limit, or use fewer DataLoader "
        f"workers where it has them (--dataloader_num_workers), each of which holds a few open here.\n")

    def missing(argv):
        raise FileNotFoundError(errno.ENOENT, "No such file")

    with pytest.raises(FileNotFoundError):
        run_cli(missing, [])


def test_latest_in_a_run_killed_before_its_first_checkpoint_names_the_way_to_start_over(tmp_path):
    """A run killed before its first checkpoint, then resumed with `latest`: "start without it" was the advice, and
    that start was refused (the folder holds a run: pass --overwrite_output_dir), and the message named a
    checkpoints/ folder that did not exist (chaos N1)."""
    from loop.checkpoint_folders import resolve_resume

    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(UserError) as fresh:
        resolve_resume("latest", str(out))
    assert str(fresh.value) == (f"--resume_from_checkpoint latest found no complete checkpoint in '{out}' (it has no "
                                f"checkpoints/ folder); start without it or pass a path.")
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    (out / "checkpoints").mkdir()
    with pytest.raises(UserError) as killed:
        resolve_resume("latest", str(out))
    assert str(killed.value) == (
        f"--resume_from_checkpoint latest found no complete checkpoint in '{out}/checkpoints'; start the run over with "
        f"--overwrite_output_dir (without --resume_from_checkpoint), or pass --resume_from_checkpoint auto, which "
        f"starts it over where there is no checkpoint.")
    (out / "best").mkdir()  # auto refuses such a run, or finds it finished: only the one way (review rev2 F2)
    with pytest.raises(UserError) as kept:
        resolve_resume("latest", str(out))
    assert str(kept.value) == (
        f"--resume_from_checkpoint latest found no complete checkpoint in '{out}/checkpoints'; start the run over with "
        f"--overwrite_output_dir (without --resume_from_checkpoint).")


def test_every_group_of_label_spellings_is_named_at_once():
    """A spreadsheet's labels 'Negative', 'negative ', 'Positive', 'positive': the refusal named one group, and the
    run after fixing it named the next (a fresh user's F3)."""
    from loop.config import TrainConfig
    from loop.labels import encode_labels
    from test_labels_mutants import splits

    with pytest.raises(UserError) as refused:
        encode_labels(TrainConfig(), splits(["Negative", "negative ", "Positive", "positive", "neutral"], ["neutral"]))
    assert str(refused.value) == (
        "training labels 'Negative' and 'negative '; 'Positive' and 'positive' differ only in case, surrounding spaces, "
        "Unicode form or invisible characters and would become separate classes; fix the data (one spelling for each).")


def test_a_json_object_holding_its_rows_under_a_key_is_named(tmp_path):
    """{"version": 1, "data": [{row}, ...]} (a common Hub and SQuAD shape) loaded as one row, then "--text_column
    'review' is not in the training data; its columns are: 'version', 'data'" (a fresh user's F4)."""
    import json

    from loop.file_checks import check_json_shape

    wrapped = tmp_path / "wrapped_train.json"
    wrapped.write_text(json.dumps({"version": 1, "data": [{"review": "fine", "label": 1}, {"review": "bad",
                                                                                          "label": 0}]}))
    with pytest.raises(UserError) as refused:
        check_json_shape(str(wrapped), "--train_file")
    assert str(refused.value) == (
        f"--train_file {wrapped} is one JSON object holding its rows under 'data', not rows; write that list as the "
        f"file's top-level array, or as JSON lines, one object per line (jq: jq -c '.data[]' wrapped_train.json > "
        f"rows.jsonl).")
    alone = tmp_path / "only.json"  # the rows alone under their key: it was "one JSON object of columns" (rev2 F3)
    alone.write_text(json.dumps({"my-rows": [{"review": "fine", "label": 1}, {"review": "bad", "label": 0}]}))
    with pytest.raises(UserError, match=r"holding its rows under 'my-rows', .*jq -c '\.\[\"my-rows\"\]\[\]' only"):
        check_json_shape(str(alone), "--train_file")
    for name, end in (("one.jsonl", "\n"), ("one.json", "")):  # one row whose field is a list of objects is a row
        row = tmp_path / name
        row.write_text(json.dumps({"text": "fine", "label": 1, "spans": [{"start": 0}]}) + end)
        check_json_shape(str(row), "--train_file")


def test_an_error_of_ours_quoting_too_many_open_files_stays_itself(monkeypatch, capsys, tmp_path):
    """A log classifier's validation row labelled "Too many open files": the loop's refusal of that label, which
    quotes it, was turned into "this process ran out of open files" (review rev F1)."""
    from loop.errors import run_cli

    monkeypatch.setenv("LOOP_PID_DIR", str(tmp_path))

    def fail(argv):
        raise UserError("evaluation labels Too many open files were never seen in training.")

    with pytest.raises(SystemExit):
        run_cli(fail, [])
    assert capsys.readouterr().err == "error: evaluation labels Too many open files were never seen in training.\n"


def test_only_the_loops_own_workers_are_stopped_at_exit():
    """stop_stray_workers killed every daemonic child, a user's own "flusher" too, before the user's exit handler
    could stop it and flush (review rev F2): only processes the loop's worker_context started are."""
    import multiprocessing
    import time

    from loop import loaders

    users = multiprocessing.Process(target=time.sleep, args=(60,), daemon=True)
    ours = loaders.worker_context().Process(target=time.sleep, args=(60,), daemon=True)
    users.start()
    ours.start()
    try:
        loaders.stop_stray_workers()
        assert not ours.is_alive() and users.is_alive()
    finally:
        users.kill()
        users.join()


def test_an_error_of_ours_raised_from_running_out_of_open_files_stays_ours(monkeypatch, capsys, tmp_path):
    """A refusal of ours raised from an EMFILE OSError was replaced by the generic line (review rev2 N1)."""
    from loop.errors import run_cli

    monkeypatch.setenv("LOOP_PID_DIR", str(tmp_path))

    def fail(argv):
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as e:
            raise UserError("--train_file 'a.csv' cannot be opened.") from e

    with pytest.raises(SystemExit):
        run_cli(fail, [])
    assert capsys.readouterr().err == "error: --train_file 'a.csv' cannot be opened.\n"


def test_a_variants_data_without_test_or_extra_sets_gets_its_loaders():
    """dataloaders() read data.test and data.extra_eval directly: a variant's own data object without them failed
    with AttributeError once it had workers (review rev2 N3)."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from loop import loaders
    from loop.config import TrainConfig
    from test_loaders_mutants import _data

    full = _data()
    own = SimpleNamespace(train=full.train, eval=full.eval, train_lengths=full.train_lengths)
    train, evaluation, _, _ = loaders.dataloaders(TrainConfig(dataloader_num_workers=1), own, None, 16,
                                                  Accelerator(cpu=True))
    assert train.num_workers == evaluation.num_workers == 1


@pytest.mark.slow  # a forkserver started, ~7 s
@pytest.mark.skipif("forkserver" not in __import__("multiprocessing").get_all_start_methods(), reason="no forkserver")
def test_forkserver_workers_leave_the_servers_later_processes_stoppable():
    """With forkserver (Python 3.14's default), the loop's first worker started the server under the held stop
    signals, and every process the server forked after kept them held: a user's terminate() and Ctrl-C did nothing
    (review rev2 F1). The server is started as it would be; the workers are only marked as the loop's."""
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import multiprocessing, sys, time; sys.path.insert(0, sys.argv[1])\n"
            "from loop import loaders\n"
            "if __name__ == '__main__':\n"
            "    multiprocessing.set_start_method('forkserver')\n"
            "    ctx = loaders.worker_context()\n"
            "    queue = ctx.Queue()  # torch makes its queues before its workers\n"
            "    ours = ctx.Process(target=time.sleep, args=(30,), daemon=True)\n"
            "    ours.start()\n"
            "    users = multiprocessing.Process(target=time.sleep, args=(30,))\n"
            "    users.start()\n"
            "    time.sleep(0.5)\n"
            "    users.terminate()\n"
            "    users.join(10)\n"
            "    loaders.stop_stray_workers()\n"
            "    print(type(ours).__name__, users.exitcode, ours.is_alive())\n")
    proc = subprocess.run([sys.executable, "-c", code, ROOT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["HeldForkServerProcess", "-15", "False"]
