"""Trackers across a preemption: a resumed run continues the same wandb run (offline mode, the real
wandb package), also after a restart without trackers, in the project WANDB_PROJECT names, under
--run_name (default: the output_dir's name); a run started from another output_dir's checkpoint, or a
new run over the same output_dir, is a new wandb run."""

import glob
import json
import os

import pytest

from conftest import run_cli, tiny_args

pytest.importorskip("wandb")  # (a test dependency: pip install -e ".[test]")


def wandb_runs(root):
    """{run id: [offline run folders]} under WANDB_DIR `root`, in start order."""
    runs = {}
    for folder in sorted(glob.glob(os.path.join(root, "wandb", "offline-run-*"))):
        runs.setdefault(folder.rsplit("-", 1)[1], []).append(folder)
    return runs


def run_bytes(folder):
    (path,) = glob.glob(os.path.join(folder, "run-*.wandb"))
    with open(path, "rb") as f:
        return f.read()


def recorded_id(out, step):
    with open(os.path.join(out, "checkpoints", f"step_{step}", "loop_state.json")) as f:
        return json.load(f)["tracker_run_id"]


@pytest.mark.slow  # five runs, four with wandb offline: ~30 s
def test_a_resumed_run_continues_its_wandb_run(tiny_model, tiny_data, tmp_path):
    root, out = str(tmp_path / "wandb_root"), str(tmp_path / "wbout-z9")
    os.makedirs(root)
    wandb_env = dict(WANDB_MODE="offline", WANDB_DIR=root, WANDB_PROJECT="proj-x7", WANDB_SILENT="true")
    common = dict(num_train_epochs=2, max_train_samples=160, checkpointing_steps="epoch", report_to="wandb")
    # the first run a process of its own, wandb's exit handlers in a real interpreter's exit; the others forks
    run_cli(tiny_args(tiny_model, tiny_data, out, **common), how="python", fresh=True, **wandb_env)
    (first,) = wandb_runs(root)
    assert recorded_id(out, 10) == recorded_id(out, 20) == first
    data = run_bytes(wandb_runs(root)[first][0])
    assert b"proj-x7" in data and b"wbout-z9" in data  # the project and the run's name (the output_dir's)

    # preempted after step 10: the restart logs into the same run
    run_cli(tiny_args(tiny_model, tiny_data, out, resume_from_checkpoint=os.path.join(out, "checkpoints", "step_10"),
                      run_name="renamed-k2", **common), how="python", **wandb_env)
    runs = wandb_runs(root)
    assert list(runs) == [first] and len(runs[first]) == 2, runs
    assert recorded_id(out, 20) == first
    assert b"renamed-k2" in run_bytes(runs[first][1])
    # a restart without trackers (--report_to may change on resume) keeps the id for the next one
    step_10 = os.path.join(out, "checkpoints", "step_10")
    run_cli(tiny_args(tiny_model, tiny_data, out, resume_from_checkpoint=step_10, **dict(common, report_to="none")),
            how="python", **wandb_env)
    assert recorded_id(out, 20) == first and list(wandb_runs(root)) == [first]

    # a copy started from this run's checkpoint in another output_dir is a run of its own
    copy = str(tmp_path / "copy")
    run_cli(tiny_args(tiny_model, tiny_data, copy, resume_from_checkpoint=step_10, **common), how="python", **wandb_env)
    assert recorded_id(copy, 20) != first and set(wandb_runs(root)) == {first, recorded_id(copy, 20)}

    # a new run over the same output_dir: a new wandb run
    run_cli(tiny_args(tiny_model, tiny_data, out, overwrite_output_dir="true", **common), how="python", **wandb_env)
    runs = wandb_runs(root)
    assert len(runs) == 3 and recorded_id(out, 20) in runs and recorded_id(out, 20) != first, runs


@pytest.mark.slow  # one run, ~15 s: wandb's start and finish take most of it
def test_wandb_files_go_into_the_output_dir_unless_wandb_dir_says(tiny_model, tiny_data, tmp_path):
    """wandb wrote its wandb/ (offline runs to `wandb sync`, debug logs) into whatever folder the run started from, so
    runs started there shared one, away from the runs they belong to; TensorBoard's were already in --output_dir.
    They go into <output_dir>/wandb/ now (WANDB_DIR, when set, still wins: the test above). The tracker config and
    the opening line name loop's version (audit42 F4, F5)."""
    import loop

    out = str(tmp_path / "out")
    proc = run_cli(tiny_args(tiny_model, tiny_data, out, max_steps=2, max_train_samples=32, report_to="wandb"),
                   how="python", WANDB_MODE="offline", WANDB_DIR="", WANDB_SILENT="true")
    (run,) = glob.glob(os.path.join(out, "wandb", "offline-run-*"))
    assert b"loop_version" in run_bytes(run) and loop.__version__.encode() in run_bytes(run)
    assert f"; loop {loop.__version__}" in proc.stdout, proc.stdout


def test_wandb_dir_is_checked_only_for_wandb_made_when_missing_and_written_into(tmp_path, monkeypatch):
    """unwritable_wandb_dir: a WANDB_DIR that does not exist yet is made (wandb would make it), one where nothing can
    be written is refused (even if it exists: /proc/self), and without wandb among the trackers it is not looked at
    (audit60 round-2 mutants W2, W3, W4)."""
    from loop.logs import unwritable_wandb_dir

    (tmp_path / "afile").write_text("")
    new = tmp_path / "runs" / "wandb"
    for folder, log_with, refused in ((str(new), ["wandb"], False), ("/proc/self", ["wandb"], True),
                                      (str(tmp_path / "afile" / "wandb"), ["tensorboard"], False),
                                      (str(tmp_path / "afile" / "wandb"), ["wandb"], True)):
        monkeypatch.setenv("WANDB_DIR", folder)
        error = unwritable_wandb_dir(log_with)
        assert (error is not None) == refused, (folder, log_with, error)
        assert not refused or error.startswith(f"WANDB_DIR={folder} cannot be written ("), error
    assert new.is_dir() and os.listdir(new) == []  # the probe leaves nothing


def test_a_wandb_dir_that_cannot_be_written_starts_no_tracker(tiny_model, tiny_data, tmp_path, monkeypatch):
    """The WANDB_DIR refusal comes before any tracker starts: no wandb run begins in a temporary folder beside it
    (audit60 round-2 mutant W1)."""
    import accelerate.tracking

    from loop import Loop, UserError, parse_args

    started = []

    class Recorded:
        def __init__(self, *a, **k):
            started.append(k)
            raise RuntimeError("a wandb run started")

    monkeypatch.setattr(accelerate.tracking, "WandBTracker", Recorded)
    (tmp_path / "afile").write_text("")
    wandb_dir = str(tmp_path / "afile" / "wandb")
    monkeypatch.setenv("WANDB_DIR", wandb_dir)
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = Loop(parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / "out"), max_steps=2, max_train_samples=32,
                                    report_to="wandb")))
    with pytest.raises(UserError, match=f"^WANDB_DIR={wandb_dir} cannot be written"):
        run.fit()
    assert started == []


@pytest.mark.slow  # a run up to its trackers' start: ~10 s
def test_a_wandb_dir_that_cannot_be_written_is_one_line(tiny_model, tiny_data, tmp_path):
    """wandb only warned of a WANDB_DIR it could not write and kept the offline run in /tmp/wandb (often a node's
    own, cleared at the job's end), and the run went on (audit60 u3): refused in one line before any training."""
    (tmp_path / "afile").write_text("")
    wandb_dir = str(tmp_path / "afile" / "wandb")  # below a file: no folder can be made there
    out = str(tmp_path / "out")
    proc = run_cli(tiny_args(tiny_model, tiny_data, out, max_steps=2, max_train_samples=32, report_to="wandb"),
                   how="python", check=False, WANDB_MODE="offline", WANDB_DIR=wandb_dir, WANDB_SILENT="true")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: WANDB_DIR={wandb_dir} cannot be written ("), \
        proc.stderr[-3000:]
    assert not os.path.exists(os.path.join(out, "metrics.jsonl"))


def test_a_wandb_dir_is_not_checked_when_wandb_writes_nothing(tmp_path, monkeypatch):
    """WANDB_MODE=disabled (or WANDB_DISABLED=true): wandb writes no files, so a WANDB_DIR it could not write is no
    reason to stop the run (the check above refused it, where the run used to go on; audit60 r2)."""
    from loop.logs import unwritable_wandb_dir

    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "afile" / "wandb"))
    monkeypatch.delenv("WANDB_DISABLED", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert unwritable_wandb_dir(["wandb"]).startswith(f"WANDB_DIR={tmp_path / 'afile' / 'wandb'} cannot be written")
    assert unwritable_wandb_dir(["tensorboard"]) is None
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert unwritable_wandb_dir(["wandb"]) is None
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DISABLED", "true")
    assert unwritable_wandb_dir(["wandb"]) is None


@pytest.mark.slow  # two TensorBoard runs and three failed starts: ~10 s
def test_a_tracker_that_fails_to_start_leaves_the_folder_as_it_was(tiny_model, tiny_data, tmp_path, monkeypatch):
    """TensorBoard starts before wandb: a wandb that fails to start (not logged in) left a new event file whose purge
    mark hid a finished run's curves, and made a fresh --output_dir with loop/ in it (audit65 e1). The error is one
    line, and the folder is as it was."""
    import accelerate.tracking

    from loop import Loop, UserError, parse_args

    other = tmp_path / "elsewhere" / "events.out.tfevents.1.otherhost.4242.0"  # another run's, sharing the folder
    starts = []

    class NotLoggedIn(accelerate.tracking.WandBTracker):
        def start(self):
            starts.append(1)
            if len(starts) == 2:  # the start into `linked`: another run began meanwhile, and stays (review r2 F2,
                other.write_text("")  # r3 F2b: its hparams subfolder too)
                (other.parent / "999.5").mkdir()
                (other.parent / "999.5" / "hparams.yml").write_text("lr: 1\n")
                (other.parent / "999.5" / other.name).write_text("")
            raise RuntimeError("api_key not configured (no-tty)")

    monkeypatch.setenv("WANDB_MODE", "offline")
    out, linked = tmp_path / "out", tmp_path / "linked"  # (review r R3: its loop/ a link to a folder elsewhere)
    linked.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (linked / "loop").symlink_to(tmp_path / "elsewhere")
    common = dict(max_steps=2, max_train_samples=32, max_eval_samples=16)
    events = {}
    for folder in (out, linked):
        Loop(parse_args(tiny_args(tiny_model, tiny_data, str(folder), report_to="tensorboard", **common))).fit()
        events[folder] = sorted(glob.glob(str(folder / "loop" / "**"), recursive=True))
        assert any("events.out.tfevents" in p for p in events[folder])
    monkeypatch.setattr(accelerate.tracking, "WandBTracker", NotLoggedIn)
    for folder, more in ((out, {"overwrite_output_dir": "true"}), (linked, {"overwrite_output_dir": "true"}),
                         (tmp_path / "fresh" / "a" / "b", {})):  # (R4: every folder it made goes)
        run = Loop(parse_args(tiny_args(tiny_model, tiny_data, str(folder), report_to="tensorboard,wandb", **common,
                                        **more)))
        with pytest.raises(UserError, match="wandb"):
            run.fit()
    for folder in (out, linked):
        assert sorted(p for p in glob.glob(str(folder / "loop" / "**"), recursive=True)
                      if "otherhost" not in p and "999.5" not in p) == events[folder]
    assert other.exists() and sorted(os.listdir(other.parent / "999.5")) == [other.name, "hparams.yml"]
    assert not (tmp_path / "fresh").exists()


def test_a_full_disk_under_the_trackers_files_is_one_line(tiny_model, tiny_data, tmp_path, monkeypatch):
    """TensorBoard's writer thread hit a full disk and its flush raised the OSError in Loop.log: a traceback and
    exit 1, while metrics.jsonl on a full disk is one line, exit 2 (audit66 d1). Now the same kind of line."""
    import accelerate

    from loop import Loop, UserError, parse_args

    def full(self, values, step=None, log_kwargs=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(accelerate.Accelerator, "log", full)
    run = Loop(parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / "out"), report_to="tensorboard",
                                    max_steps=2, max_train_samples=32, max_eval_samples=16, logging_steps=1)))
    with pytest.raises(UserError) as e:
        run.fit()
    run.checkpointer.release()
    assert str(e.value) == ("could not write the trackers' logs ([Errno 28] No space left on device); free space or "
                            "fix permissions in --output_dir (metrics.jsonl holds every line so far).")
    assert [json.loads(line)["step"] for line in open(tmp_path / "out" / "metrics.jsonl")] == [1]

    def remote(self, values, step=None, log_kwargs=None):  # a remote tracker's refusal is not --output_dir's (r2 R3)
        raise RuntimeError("Error while calling W&B API: permission denied (<Response [403]>)")

    monkeypatch.setattr(accelerate.Accelerator, "log", remote)
    run = Loop(parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / "out2"), report_to="tensorboard",
                                    max_steps=2, max_train_samples=32, max_eval_samples=16, logging_steps=1)))
    with pytest.raises(RuntimeError, match="W&B API: permission denied"):
        run.fit()
    run.checkpointer.release()
