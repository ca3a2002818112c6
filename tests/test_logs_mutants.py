"""Tests written by a mutation audit of loop/logs.py (audit71 m20): each one fails on a small change of the run log
that a user would notice (the wrong wandb run continued, the trackers' run named or placed otherwise, a resumed
run's tracked numbers or loss counted once per process, a log that shrank counted as it was) and passes on the code
as it is. They call RunLog, LossMeter and Tracked on stand-ins: milliseconds each."""

import os
from types import SimpleNamespace

import pytest
import torch

from loop import parse_args
from loop.logs import LossMeter, PlainProgress, RunLog, Tracked
from loop.version import __version__


def _acc(main=True, log_with=()):
    """An accelerator stand-in: one process (reduce is the identity); init_trackers' arguments kept."""
    started = []
    acc = SimpleNamespace(is_main_process=main, is_local_main_process=main, num_processes=1, mixed_precision="no",
                          device="cpu", reduce=lambda t, reduction="sum": t, log_with=list(log_with), trackers=[],
                          started=started)
    acc.init_trackers = lambda project, config=None, init_kwargs=None: started.append((project, config, init_kwargs))
    return acc


@pytest.fixture
def no_wandb_env(monkeypatch):
    for name in ("WANDB_RUN_ID", "WANDB_NAME", "WANDB_RESUME", "WANDB_DIR", "WANDB_PROJECT", "WANDB_DISABLED",
                 "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ---------------------------------------------------------------- starting the trackers
def test_wandb_run_id_beats_the_checkpoints_which_beats_a_new_one(tmp_path, no_wandb_env):
    """WANDB_RUN_ID is the user's: it names the run even on a resume whose checkpoint recorded another id (mutant:
    the checkpoint's first); without it the checkpoint's id continues that run, and a new run gets 8 hex digits."""
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), _acc())
    runlog.start_trackers(run_id="fromckpt")
    assert runlog.run_id == "fromckpt"
    no_wandb_env.setenv("WANDB_RUN_ID", "fromenv")
    runlog.start_trackers(run_id="fromckpt")
    assert runlog.run_id == "fromenv"
    no_wandb_env.delenv("WANDB_RUN_ID")
    runlog.start_trackers()
    assert len(runlog.run_id) == 8 and int(runlog.run_id, 16) >= 0


def test_the_trackers_get_the_config_the_loop_version_the_run_name_and_the_purge_step(tmp_path, no_wandb_env):
    """What init_trackers is given: the config with loop_version (which loop made the run), TensorBoard's purge step
    one past the resumed step (that step itself was logged before the checkpoint: hiding it loses a point; mutant:
    resume_step), 0 for a new run, and mlflow's run name --run_name, else WANDB_NAME, else the output_dir's name
    (mutants: the version dropped, WANDB_NAME over --run_name, mlflow unnamed)."""
    out = tmp_path / "my_run"
    acc = _acc(log_with=["tensorboard"])
    runlog = RunLog(parse_args(["--output_dir", str(out), "--report_to", "tensorboard"]), acc)
    runlog.start_trackers(resume_step=7)
    project, config, kwargs = acc.started[-1]
    assert project == "loop" and config["loop_version"] == __version__ and config["output_dir"] == str(out)
    assert kwargs == {"tensorboard": {"purge_step": 8}, "mlflow": {"run_name": "my_run"}}, kwargs
    runlog.start_trackers()
    assert acc.started[-1][2]["tensorboard"] == {"purge_step": 0}
    no_wandb_env.setenv("WANDB_NAME", "env_name")
    runlog.start_trackers()
    assert acc.started[-1][2]["mlflow"] == {"run_name": "env_name"}
    runlog = RunLog(parse_args(["--output_dir", str(out), "--report_to", "tensorboard", "--run_name", "flag"]), acc)
    runlog.start_trackers()
    assert acc.started[-1][2]["mlflow"] == {"run_name": "flag"}


def test_wandb_continues_its_run_in_the_output_dir_unless_the_environment_says(tmp_path, no_wandb_env):
    """wandb's tracker: the run id, resume="allow" (a preempted run's restarts continue one wandb run), its files in
    --output_dir, project "loop"; WANDB_RESUME, WANDB_DIR and WANDB_PROJECT are the user's to override (mutants:
    no resume="allow", no dir)."""
    import accelerate.tracking

    made = []

    class FakeWandB:
        def __init__(self, project, **kwargs):
            made.append((project, kwargs))

    no_wandb_env.setattr(accelerate.tracking, "WandBTracker", FakeWandB)
    out = tmp_path / "out"
    acc = _acc(log_with=["wandb"])
    runlog = RunLog(parse_args(["--output_dir", str(out), "--report_to", "wandb", "--run_name", "r"]), acc)
    runlog.start_trackers(run_id="abcd1234")
    assert made[-1] == ("loop", {"id": "abcd1234", "name": "r", "resume": "allow", "dir": str(out)}), made
    assert isinstance(acc.log_with[0], FakeWandB)
    for name, value in (("WANDB_RESUME", "never"), ("WANDB_DIR", str(tmp_path / "w")), ("WANDB_PROJECT", "p")):
        no_wandb_env.setenv(name, value)
    acc.log_with = ["wandb"]
    runlog.start_trackers(run_id="abcd1234")
    assert made[-1] == ("p", {"id": "abcd1234", "name": "r"}), made


def test_a_wandb_dir_is_not_checked_when_wandb_disabled_says_so(tmp_path, no_wandb_env):
    """WANDB_DISABLED=true: wandb writes nothing, so an unwritable WANDB_DIR is no error (mutant: only WANDB_MODE
    read)."""
    from loop.logs import unwritable_wandb_dir

    blocker = tmp_path / "file"
    blocker.write_text("")
    no_wandb_env.setenv("WANDB_DIR", str(blocker / "sub"))
    assert "cannot be written" in unwritable_wandb_dir(["wandb"])
    no_wandb_env.setenv("WANDB_DISABLED", "true")
    assert unwritable_wandb_dir(["wandb"]) is None


# ---------------------------------------------------------------- closing them
def test_closing_finishes_every_tracker_even_past_a_failing_one_and_forgets_them(tmp_path):
    """close_trackers finishes each tracker, a failing finish() does not stop the others nor the run (mutant:
    raised), and the accelerator then holds none (mutant: kept, so a second close finishes them again)."""
    finished = []

    class Tracker:
        def __init__(self, name, fails=False):
            self.name, self.fails = name, fails

        def finish(self):
            finished.append(self.name)
            if self.fails:
                raise RuntimeError("wandb's finish failed")

    acc = _acc()
    acc.trackers = [Tracker("wandb", fails=True), Tracker("tensorboard")]
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), acc)
    runlog.close_trackers()
    assert finished == ["wandb", "tensorboard"] and acc.trackers == []
    runlog.close_trackers()
    assert finished == ["wandb", "tensorboard"]


def test_an_earlier_runs_event_files_stay_only_while_tensorboard_is_open_on_them(tmp_path):
    """A new run over an old one: without TensorBoard open, the old run's event files go (mutant: kept, its curves
    beside the new metrics.jsonl); with this run's TensorBoard writer open, they stay (its purge step hides them)."""
    folder = tmp_path / "loop"
    folder.mkdir()
    event = folder / "events.out.tfevents.1.host.2.0"
    event.write_text("")
    acc = _acc()
    acc.trackers = [SimpleNamespace(name="tensorboard")]
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), acc)
    assert runlog.forget_earlier_events() == [] and event.exists()
    acc.trackers = []
    assert runlog.forget_earlier_events() == [] and not event.exists()


# ---------------------------------------------------------------- records
def test_a_records_console_line_rounds_floats_to_four_digits(tmp_path, capsys):
    """The console line shows a float to 4 significant digits and an int whole (mutant: floats printed in full)."""
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), _acc())
    runlog.record({"step": 12345678, "loss": 0.123456789})
    assert "[loop] step=12345678 loss=0.1235\n" in capsys.readouterr().out


def test_other_ranks_write_no_line_and_print_nothing(tmp_path, capsys):
    """Only the main process writes metrics.jsonl and prints (mutant: every rank prints its [loop] lines)."""
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), _acc(main=False))
    runlog.record({"step": 1, "loss": 0.5})
    runlog.print("hello")
    assert capsys.readouterr().out == "" and not (tmp_path / "metrics.jsonl").exists()


# ---------------------------------------------------------------- the loss and tracked numbers
def test_a_weighted_loss_counts_its_weight_in_the_sum_and_the_count():
    """distributed.log_weight: a micro-batch's loss counted `weight` times, in the sum and in the count alike
    (mutants: the weight dropped from either, which skews the mean towards the lighter batches)."""
    acc = _acc()
    meter = LossMeter("cpu")
    meter.add(torch.tensor(1.0), weight=3.0)
    meter.add(torch.tensor(5.0), weight=1.0)
    assert meter.take(acc, 2) == pytest.approx(2.0)  # (3 x 1 + 5) / 4
    meter.add(torch.tensor(2.0), weight=0.5)
    assert meter.take(acc, 3) == pytest.approx(2.0)


def test_a_resumed_loss_and_tracked_sums_are_added_once_over_all_processes():
    """A checkpoint keeps the sums over all processes; a resume loads them on the main process alone, the others
    start from 0 (mutants: each process loads them, so the next line's mean counts them once per process)."""
    other = _acc(main=False)
    meter = LossMeter("cpu")
    meter.load([6.0, 3.0], other)
    assert meter.state(other) == [0.0, 0.0]
    meter.load([6.0, 3.0], _acc())
    assert meter.state(_acc()) == [6.0, 3.0]
    tracked = Tracked()
    tracked.load({"kl": (6.0, 3)}, other)
    assert tracked.state(other) == {"kl": [0.0, 0.0]}
    tracked = Tracked()
    tracked.load({"kl": (6.0, 3)}, _acc())
    assert tracked.take(_acc()) == {"kl": 2.0}


def test_tracked_numbers_pause_in_trial_passes_and_a_quiet_name_is_not_logged_as_zero():
    """Trial passes (paused) add nothing (mutant: they count as training steps); a name tracked before but not since
    the last line is left out of the next one, not logged as 0 (mutant); the loop's own grad_norm may be tracked."""
    acc = _acc()
    tracked = Tracked()
    tracked.add("kl", torch.tensor(2.0))
    tracked.add("grad_norm", torch.tensor(1.5), own=True)
    tracked.paused = True
    tracked.add("kl", torch.tensor(100.0))
    tracked.paused = False
    assert tracked.take(acc) == {"kl": 2.0, "grad_norm": 1.5}
    tracked.add("grad_norm", torch.tensor(0.5), own=True)
    assert tracked.take(acc) == {"grad_norm": 0.5}


# ---------------------------------------------------------------- progress lines
def test_plain_progress_prints_nothing_when_every_is_zero():
    """LOOP_PROGRESS_S=0: no progress lines (mutant: one at every batch)."""
    lines = []
    bar = PlainProgress(total=10, every=0, clock=lambda: 5.0, out=lines.append)
    for _ in range(3):
        bar.update()
    assert lines == []


# ---------------------------------------------------------------- the quiet console
@pytest.mark.parametrize("value, verbose", [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)])
def test_loop_verbose_turns_the_quiet_console_off(tmp_path, monkeypatch, value, verbose):
    """LOOP_VERBOSE unset, empty or 0 keeps the console quiet (the libraries' settings saved to put back at the end);
    any other value is --verbose: nothing quieted, nothing to put back (mutants: the test inverted, the quieting done
    under --verbose)."""
    from loop.logs import restore_libraries

    if value is None:
        monkeypatch.delenv("LOOP_VERBOSE", raising=False)
    else:
        monkeypatch.setenv("LOOP_VERBOSE", value)
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), _acc())
    try:
        assert runlog.verbose is verbose
        assert (runlog.library_settings is None) is verbose
    finally:
        restore_libraries(runlog.library_settings)


def test_a_write_cut_short_leaves_no_half_line_in_the_log(tmp_path, monkeypatch):
    """A full disk mid-line: the append is taken back, so metrics.jsonl stays whole JSON lines a resume can read
    (mutant: the half line kept), and the error says the lines so far are intact."""
    from loop import logs
    from loop.errors import UserError

    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), _acc())
    runlog.record({"step": 1, "loss": 0.5})
    before = (tmp_path / "metrics.jsonl").read_bytes()

    class HalfWrites:
        def __init__(self, f):
            self.f = f

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            return self.f.write(data[: len(data) // 2])

    monkeypatch.setattr(logs, "open", lambda *a, **k: HalfWrites(open(*a, **k)), raising=False)
    with pytest.raises(UserError, match="could not append to .*No space left on device.*lines written so far are "
                                        "intact"):
        runlog.record({"step": 2, "loss": 0.25})
    assert (tmp_path / "metrics.jsonl").read_bytes() == before


def test_the_log_cut_in_place_is_counted_again(tmp_path):
    """A log truncated in place (same file, fewer bytes: a resume's cut that keeps the inode) is counted from its
    start, not from where the last count ended past its end (mutant: the stale count kept, which the next checkpoint
    records, and its resume cuts the log at the wrong line)."""
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), _acc())
    for step in (1, 2, 3):
        runlog.record({"step": step, "loss": 0.5})
    assert runlog.count_lines() == 3
    path = tmp_path / "metrics.jsonl"
    first = len(path.read_bytes().splitlines(keepends=True)[0])
    os.truncate(path, first)
    assert runlog.count_lines() == 1
    runlog.record({"step": 2, "loss": 0.5})
    assert runlog.count_lines() == 2


def test_a_trackers_own_error_is_not_told_as_a_full_disk(tmp_path):
    """acc.log raising something that is not a storage error (a tracker's bug, a remote refusal) keeps its own
    exception and traceback (mutant: every error told as 'free space or fix permissions'); a full disk is one line."""
    import errno

    from loop.errors import UserError

    acc = _acc()
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path), "--report_to", "tensorboard"]), acc)

    def fails(error):
        def log(values, step):
            raise error
        return log

    acc.log = fails(ValueError("wandb: a bad value"))
    with pytest.raises(ValueError, match="a bad value"):
        runlog.record({"step": 1, "loss": 0.5})
    acc.log = fails(OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(UserError, match="could not write the trackers' logs .*free space"):
        runlog.record({"step": 2, "loss": 0.5})


def test_the_scored_class_line_is_for_two_labels_only(tmp_path, capsys):
    """f1/precision/recall score class 1 against class 0 with two labels only; three labels get no such line
    (mutant: a line naming one class of three as 'the' scored one, while f1 is then the macro mean)."""
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path), "--metric", "f1"]), _acc())

    def loop(names):
        return SimpleNamespace(data=SimpleNamespace(label_names=names), regression=False, multi_label=False)

    runlog.say_scored_class(loop(["neg", "pos"]))
    assert "[loop] f1: of the class 'pos' (id 1) against 'neg'" in capsys.readouterr().out
    runlog.say_scored_class(loop(["a", "b", "c"]))
    assert capsys.readouterr().out == ""
