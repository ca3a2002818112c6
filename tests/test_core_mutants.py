"""Tests written by a mutation audit of loop/core.py and loop/logs.py (audit64 m5): each one fails on a small change
of the code that a user would see (a wrong number in metrics.jsonl or the closing line, a tie that moves best/, the
first stop reason replaced) and passes on the code as it is. Most are in-process and take well under a second."""

import os
import time
from types import SimpleNamespace

import pytest

from conftest import read_jsonl, tiny_args

from loop import Loop, parse_args
from loop.core import TrainState
from loop.logs import LossMeter, PlainProgress, RunLog, Tracked, _duration


def _acc(processes=1):
    return SimpleNamespace(is_main_process=True, is_local_main_process=True, num_processes=processes,
                           mixed_precision="no", device="cpu",
                           reduce=lambda t, reduction="sum": t)  # one process: the sum is its own


def test_a_tie_with_the_best_evaluation_does_not_move_best(tmp_path):
    """An evaluation that equals the best so far is no improvement, in either direction (best/ and best_step stay on
    the earlier one, and early stopping counts it; mutant: >= / <=)."""
    higher = Loop(parse_args(["--output_dir", str(tmp_path), "--metric", "accuracy"]))
    assert higher.improved(0.5, None) and higher.improved(0.6, 0.5)
    assert not higher.improved(0.5, 0.5) and not higher.improved(0.4, 0.5)
    lower = Loop(parse_args(["--output_dir", str(tmp_path), "--metric", "loss"]))
    assert lower.improved(0.4, 0.5) and not lower.improved(0.5, 0.5) and not lower.improved(0.6, 0.5)


def test_the_first_stop_requested_is_the_one_kept(tmp_path):
    """Two requests before an evaluation: the first one's reason is the run's (mutant: the last one replaced it)."""
    loop = Loop(parse_args(["--output_dir", str(tmp_path)]))
    loop.request_stop("first reason")
    loop.request_stop("second reason")
    assert loop.stop_requested == "first reason"


def test_a_mid_epoch_epoch_is_rounded_to_four_places_and_an_epochs_end_is_whole():
    """The "epoch" of a record: 0.3333 after one of three batches, not 0.333333...; 1 at the end (mutant: no round)."""
    state = TrainState()
    state.batches_done = 1
    assert state.epoch_at(3) == 0.3333
    state.epoch, state.batches_done = 1, 2
    assert state.epoch_at(4) == 1.5
    state.batches_done = 4
    assert state.epoch_at(4) == 2 and isinstance(state.epoch_at(4), int)
    state.epoch, state.batches_done = 0, 0
    assert state.epoch_at(4) == 0 and isinstance(state.epoch_at(4), int)


def test_the_progress_total_of_max_steps_last_epoch_counts_only_the_batches_it_trains():
    """--max_steps 7 with 5 steps an epoch of 10 micro-batches (accumulation 2): epoch 1 trains 10, epoch 2 only
    4 (mutant: every epoch's bar said 10, and a run cut at --max_steps ended its bar at 40%)."""
    fake = SimpleNamespace(train_dataloader=[0] * 10, cfg=SimpleNamespace(gradient_accumulation_steps=2),
                           max_steps=7, steps_per_epoch=5)
    assert Loop.epoch_batches(fake, 0) == 10
    assert Loop.epoch_batches(fake, 1) == 4


def test_the_training_lines_learning_rate_is_the_highest_of_the_groups(tmp_path):
    """Per-group learning rates (layer-wise decay puts the head's highest, last or first): the line's learning_rate
    is the peak, whatever the groups' order (mutant: the last group's)."""
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), _acc())
    meter = LossMeter("cpu")
    meter.add(__import__("torch").tensor(0.5))
    state = TrainState()
    state.global_step, state.batches_done = 3, 3
    loop = SimpleNamespace(state=state, train_dataloader=[0] * 6, loss_meter=meter, tracked=Tracked(),
                           lr_scheduler=SimpleNamespace(get_last_lr=lambda: [5e-5, 1e-5]))
    record = runlog.training_record(loop)
    assert record == {"step": 3, "epoch": 0.5, "loss": 0.5, "learning_rate": 5e-5}


def test_the_loss_meter_and_tracked_numbers_start_afresh_at_each_line():
    """Each training line holds the mean since the line before: the sums and counts reset when taken (mutants: a
    running mean over the whole run, a count never reset, a sum for the mean), and a vector value adds its mean."""
    import torch

    acc = _acc()
    meter = LossMeter("cpu")
    for v in (1.0, 3.0):
        meter.add(torch.tensor(v))
    assert meter.take(acc, 2) == 2.0
    meter.add(torch.tensor(5.0))
    assert meter.take(acc, 3) == 5.0
    meter.add(torch.tensor(float("nan")))
    loss = meter.take(acc, 4)
    assert loss != loss  # every loss since the last line NaN: NaN, not a loss of 0
    tracked = Tracked()
    tracked.add("kl", torch.tensor(1.0))
    tracked.add("kl", torch.tensor([2.0, 4.0]))  # its mean, 3
    assert tracked.take(acc) == {"kl": 2.0}
    tracked.add("kl", torch.tensor(6.0))
    assert tracked.take(acc) == {"kl": 6.0}
    assert tracked.take(acc) == {}  # nothing since: no number, not a stale one


def test_three_nonfinite_losses_in_a_row_stop_the_run_and_two_do_not():
    """NONFINITE_PATIENCE (3) consecutive NaN losses stop the run at the next line; two, then a finite one, do not
    (mutants: > patience, a run of bad losses never reset by a good one)."""
    import torch

    from loop.errors import UserError

    acc = _acc()
    meter = LossMeter("cpu")
    for v in (float("nan"), float("nan"), 1.0, float("nan"), float("nan"), 1.0):
        meter.add(torch.tensor(v))
    assert meter.take(acc, 6) == 1.0
    for v in (1.0, float("nan"), float("nan"), float("nan")):
        meter.add(torch.tensor(v))
    with pytest.raises(UserError, match="3 or more consecutive batches by step 10"):
        meter.take(acc, 10)


def _summary_loop(state, best=None, extra=None, test=False):
    ckpt = SimpleNamespace(best_reset=None, describe_best=lambda s: "eval_accuracy 0.9 at step 2",
                           best_where=lambda s: "best/ holds it", best_metrics=lambda: best)
    return SimpleNamespace(state=state, checkpointer=ckpt, train_sampler=None,
                           data=SimpleNamespace(extra_eval=extra or {}), test_dataloader=[0] if test else None)


def test_the_closing_line_counts_every_process_and_best_s_held_out_scores(tmp_path, capsys):
    """The closing lines: samples/s over all processes (this one's rows times their number, over the training time;
    mutant: this process's alone, half the rate on two GPUs); the held-out and extra sets' scores of best/'s
    weights, when best_metrics.json is best/'s step's, also when the run went on past it (mutants: compared with the
    last step, or not compared)."""
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), _acc(processes=2))
    runlog.train_seconds, runlog.train_batches, runlog.train_samples = 2.0, 5, 40
    state = TrainState()
    state.best_metric, state.best_step, state.global_step = 0.9, 2, 4
    best = {"step": 2, "test_accuracy": 0.75, "test_samples": 8, "eval_ood_accuracy": 0.5, "eval_ood_samples": 4}
    runlog.summary(_summary_loop(state, best, extra={"ood": [0] * 4}, test=True))
    out = capsys.readouterr().out
    assert "training 40.0 samples/s" in out, out
    assert "held-out test, best/'s weights: test_accuracy=0.7500 (8 examples)" in out, out
    assert "evaluation set 'ood', best/'s weights: eval_ood_accuracy=0.5000 (4 examples)" in out, out
    best["step"] = 4  # best_metrics.json of another step than best/'s: no scores said to be best/'s
    runlog.summary(_summary_loop(state, best, extra={"ood": [0] * 4}))
    out = capsys.readouterr().out
    assert "best/'s weights" not in out, out


@pytest.mark.parametrize("rows, processes, ga, said", [
    (100, 1, 2, "of 8 examples (4 per device x 1 process(es) x 2 accumulation steps)"),
    (100, 2, 1, "of 8 examples (4 per device x 2 process(es) x 1 accumulation steps)"),
    (100, 1, 1, "per epoch of 4 examples, "),
])
def test_the_opening_line_says_a_steps_examples_with_accumulation(tmp_path, capsys, rows, processes, ga, said):
    """'N optimizer steps per epoch of 8 examples (4 per device x 1 process(es) x 2 accumulation steps)': a step's
    examples count the accumulation (mutants: left out of the number, the split said only with several processes)."""
    cfg = parse_args(["--output_dir", str(tmp_path), "--per_device_train_batch_size", "4",
                      "--gradient_accumulation_steps", str(ga)])
    log = RunLog(cfg, _acc(processes))
    log.examples_and_labels = lambda loop: "1 evaluation examples"
    log.optimization_line = lambda loop: "optimizer: AdamW"
    loop = SimpleNamespace(data=SimpleNamespace(train=range(rows), label_names=["a", "b", "c"]),
                           steps_per_epoch=12, max_steps=12, regression=False, multi_label=False)
    log.describe_run(loop)
    assert said in capsys.readouterr().out


def test_a_resumed_progress_lines_rate_and_eta_count_only_the_batches_since_the_start():
    """Resumed at batch 100 of 200, a 10 s evaluation after 2 s: the line 5 s of training later (6 batches) says
    6 / 5 = 1.2 batches/s and 94 / 1.2 s left, not (106 / 5) 21.2 batches/s (mutant: the resumed batches counted),
    nor 6 / 15 (mutant: the evaluation's pause kept in the rate); 60 s is 1m00s."""
    now = [0.0]
    lines = []
    bar = PlainProgress(200, initial=100, desc="epoch 2", every=5, clock=lambda: now[0], out=lines.append)
    now[0] = 2.0
    bar.clear()
    now[0] = 12.0  # a 10 s evaluation
    bar.unpause()
    for _ in range(10):
        now[0] += 0.5
        bar.update(1)
    assert lines == ["epoch 2: 106/200 batches (53%), 1.2 batches/s, eta 1m18s"], lines
    assert _duration(60) == "1m00s" and _duration(59.4) == "59s" and _duration(3600) == "1h00m"


class TimedEpochs(Loop):
    """A loop that keeps the time its train_loop()s took, as a clock outside the loop sees it: `inside`."""
    inside = 0.0

    def train_loop(self, epoch):
        started = time.perf_counter()
        super().train_loop(epoch)
        self.inside += time.perf_counter() - started


def test_evaluation_time_is_not_training_time_in_the_closing_rate(tiny_model, tiny_data, tmp_path):
    """Mid-epoch evaluations (--eval_steps) inside the epoch's loop, each scoring the held-out test split for its new
    best/: their time is taken out of train_seconds, which the closing samples/s divides by (mutants: the epoch's
    whole time counted, the evaluations' or the test split's time not added to eval_seconds)."""
    class SlowEvaluation(TimedEpochs):
        def improved(self, value, best):
            return True  # every evaluation writes best/ and scores the test split

        def score(self, dataloader, dataset, prefix):  # the evaluation split's and the test split's
            time.sleep(0.4)
            return super().score(dataloader, dataset, prefix)

    run = SlowEvaluation(parse_args(tiny_args(tiny_model, str(tiny_data), str(tmp_path / "out"), num_train_epochs=1,
                                              max_train_samples=48, per_device_train_batch_size=8, max_eval_samples=8,
                                              max_length=32, eval_steps=2, max_test_samples=8,
                                              test_file=str(tiny_data / "validation.jsonl"))))
    run.fit()
    inside = 2  # the evaluations of steps 2 and 4 of 6 (step 6's is fit()'s, after the loop)
    assert run.runlog.eval_seconds >= 3 * 0.8
    assert run.runlog.train_seconds <= run.inside - inside * 0.8 + 0.05, (run.runlog.train_seconds, run.inside)


def test_checkpoint_time_is_not_training_time_in_the_closing_rate(tiny_model, tiny_data, tmp_path):
    """audit64 m5 F1: checkpoints saved inside the epoch's loop (--checkpointing_steps 2: steps 2 and 4 of 6) counted
    as training time, so the closing samples/s depended on where a save fell (22.8 samples/s with saves of 1 s at
    steps 2 and 4, 664.9 with the one save after the epoch)."""
    class SlowSave(TimedEpochs):
        def save_checkpoint(self):
            time.sleep(0.4)
            return super().save_checkpoint()

    run = SlowSave(parse_args(tiny_args(tiny_model, str(tiny_data), str(tmp_path / "out"), num_train_epochs=1,
                                        max_train_samples=48, per_device_train_batch_size=8, max_eval_samples=8,
                                        max_length=32, checkpointing_steps=2)))
    run.fit()
    assert run.runlog.train_seconds <= run.inside - 2 * 0.4 + 0.05, (run.runlog.train_seconds, run.inside)


def test_a_checkpoint_inside_an_epoch_is_out_of_the_plain_progress_rate(tmp_path, monkeypatch):
    """Review r3 R3: a checkpoint without an evaluation did not pause the plain progress lines (a log in a file): 10
    batches in 1 s, a 10 s checkpoint, one batch more read as 0.991 batches/s, eta 1m30s. What the evaluation's own
    eval_seconds does not hold goes to paused_seconds, out of train_seconds."""
    from loop import logs
    from loop.logs import PlainProgress, RunLog

    now, lines = [0.0], []
    bar = PlainProgress(100, desc="epoch 1", every=0.5, clock=lambda: now[0], out=lines.append)
    for _ in range(10):
        now[0] += 0.1
        bar.update()
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), _Accelerator())
    monkeypatch.setattr(logs.time, "perf_counter", lambda: now[0])
    with runlog.not_training(bar):
        now[0] += 10.0  # writing a checkpoint, of which an evaluation's 4 s are in eval_seconds
        runlog.eval_seconds += 4.0
    now[0] += 1.0
    bar.update()
    assert lines[-1] == "epoch 1: 11/100 batches (11%), 5.5 batches/s, eta 16s", lines
    assert runlog.paused_seconds == 6.0 and runlog.outside_training() == 10.0


class _Accelerator:
    is_main_process = is_local_main_process = True
    num_processes = 1


def test_best_step_and_epoch_are_the_best_evaluations(tiny_model, tiny_data, tmp_path):
    """best_step is the optimizer step of the evaluation best/ holds: an --eval_steps evaluation in mid-epoch, its
    epoch a fraction (mutant: one step off); on_evaluate sees best/ as this evaluation left it (mutant: on_evaluate
    called before save_best, the first one saw no best)."""
    class FirstIsBest(Loop):
        seen = []

        def improved(self, value, best):
            return best is None

        def on_evaluate(self, metrics):
            self.seen.append(self.state.best_step)

    out = tmp_path / "out"
    run = FirstIsBest(parse_args(tiny_args(tiny_model, str(tiny_data), str(out), num_train_epochs=1,
                                           max_train_samples=48, per_device_train_batch_size=8, max_eval_samples=8,
                                           max_length=32, eval_steps=2)))
    run.fit()
    assert (run.state.best_step, run.state.best_epoch) == (2, 0.3333)
    assert run.seen == [2, 2, 2], run.seen
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl") if "eval_loss" in r] == [2, 4, 6]


def test_what_two_epochs_write_at_each_step_and_where_the_state_ends(tiny_model, tiny_data, tmp_path):
    """Two epochs of 3 steps, --logging_steps 2 --eval_steps 2 --checkpointing_steps epoch: each step's records in
    order, the evaluations' epochs, a checkpoint at each epoch's end (mutant: epoch_end not passed, none saved), and
    the state a checkpoint at the end holds: the next epoch, at its batch 0 (mutant: the epoch just trained, which a
    resume trains again), with each evaluation counted (mutant: none counted, --eval_on_start's resume evaluates
    step 0 again); no step's gradients are left for the next one (mutant: zero_grad left out, each step stepped on
    the sum of every gradient so far, and the loss still fell)."""
    class Saves(Loop):
        saves, epoch_ends = [], []

        def on_epoch_end(self):
            self.epoch_ends.append((self.state.global_step, self.state.evaluations))

        def on_step_end(self):  # each step's gradients gone after its optimizer step, not added to the next one's
            assert all(p.grad is None for p in self.model.parameters()), self.state.global_step

        def save_checkpoint(self, *a, **k):
            self.saves.append((self.state.global_step, self.state.epoch, self.state.batches_done))
            return super().save_checkpoint(*a, **k)

    out = tmp_path / "out"
    run = Saves(parse_args(tiny_args(tiny_model, str(tiny_data), str(out), num_train_epochs=2, max_train_samples=24,
                                     per_device_train_batch_size=8, max_eval_samples=8, max_length=32,
                                     logging_steps=2, eval_steps=2, checkpointing_steps="epoch")))
    run.fit()
    records = read_jsonl(out / "metrics.jsonl")
    kinds = [(r["step"], r["epoch"], "eval" if "eval_loss" in r else "train") for r in records]
    assert kinds == [(2, 0.6667, "train"), (2, 0.6667, "eval"), (3, 1, "train"), (3, 1, "eval"),
                     (4, 1.3333, "train"), (4, 1.3333, "eval"), (6, 2, "train"), (6, 2, "eval")], kinds
    assert run.saves == [(3, 1, 0), (6, 2, 0)], run.saves
    assert run.epoch_ends == [(3, 1), (6, 3)], run.epoch_ends  # on_epoch_end before the epoch's evaluation
    assert (run.state.epoch, run.state.batches_done, run.state.global_step, run.state.evaluations) == (2, 0, 6, 4)


class RowsAsLoss(Loop):
    """Each micro-batch's loss is its number of rows (the model's loss times 0 keeps the graph): what a log line
    says is then known exactly."""

    def compute_loss(self, model, batch):
        loss, outputs = super().compute_loss(model, batch)
        return loss * 0 + float(batch["labels"].shape[0]), outputs


@pytest.mark.parametrize("rows, logging_steps, losses", [
    (44, 1, [8.0, 8.0, 80 / 12]),  # micro-batches 8 8 | 8 8 | 8 4: the last step's mean is its examples' mean
    (36, 3, [20 / 3]),  # 8 8 | 8 8 | 4: a line over three steps counts each step alike, the short one too
])
def test_the_logged_loss_is_each_steps_example_mean_and_each_step_counts_alike(tiny_model, tiny_data, tmp_path, rows,
                                                                               logging_steps, losses):
    """--gradient_accumulation_steps 2, batches of 8: a step of 8 + 4 examples logs their example mean (8 x 8 + 4 x 4)
    / 12, not (8 + 4) / 2 (mutant: training_step's logged share left out); a line over steps 8 | 8 | 4 logs
    (8 + 8 + 4) / 3, each step alike (mutants: the short window's log weight left out, 7.2; weighed in the sum but
    not in the count, 8)."""
    out = tmp_path / "out"
    run = RowsAsLoss(parse_args(tiny_args(tiny_model, str(tiny_data), str(out), num_train_epochs=1,
                                          max_train_samples=rows, per_device_train_batch_size=8, max_eval_samples=8,
                                          max_length=32, gradient_accumulation_steps=2, logging_steps=logging_steps)))
    run.fit()
    logged = [r["loss"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert logged == pytest.approx(losses, rel=1e-5), logged


def test_a_record_goes_to_the_trackers_at_its_step_without_the_step_as_a_number(tmp_path, capsys):
    """The trackers get each record's numbers at its step, "step" itself not among them (mutant: a 'step' curve in
    TensorBoard and wandb beside the metrics); metrics.jsonl and the console get the whole record."""
    calls = []
    acc = _acc()
    acc.log = lambda values, step: calls.append((values, step))
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path), "--report_to", "tensorboard"]), acc)
    runlog.record({"step": 3, "epoch": 0.5, "loss": 0.25})
    assert calls == [({"epoch": 0.5, "loss": 0.25}, 3)], calls
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"step": 3, "epoch": 0.5, "loss": 0.25}]
    assert "[loop] step=3 epoch=0.5 loss=0.25" in capsys.readouterr().out


def test_a_stop_signal_at_max_steps_resumes_to_no_further_step(tiny_model, tiny_data, tmp_path):
    """A stop signal at --max_steps' step in mid-epoch: the checkpoint is that step's, before its evaluation; the
    resume trains nothing more (mutant: epoch_dataloader let it train one step past --max_steps), evaluates the step
    once and ends."""
    from loop.errors import Preempted

    class SignalAtLast(Loop):
        def stop_signalled(self, at_once=False):
            return not at_once and not self.resumed_from and self.state.global_step == self.max_steps

    out = tmp_path / "out"
    args = tiny_args(tiny_model, str(tiny_data), str(out), num_train_epochs=1, max_train_samples=48,
                     per_device_train_batch_size=8, max_eval_samples=8, max_length=32, max_steps=3, logging_steps=1)
    with pytest.raises(Preempted):
        SignalAtLast(parse_args(args)).fit()
    again = SignalAtLast(parse_args(args + ["--resume_from_checkpoint", "latest"]))
    again.fit()
    assert again.state.global_step == 3
    records = read_jsonl(out / "metrics.jsonl")
    assert [(r["step"], "eval" if "eval_loss" in r else "train") for r in records] == \
        [(1, "train"), (2, "train"), (3, "train"), (3, "eval")], records


def test_the_optimization_line_names_one_rate_or_the_groups_range():
    """'learning rate 2e-05' for one rate; per-group rates (layer-wise decay) say their range (mutant: the highest
    alone, as if every group had it)."""
    from loop.logs import spread

    assert spread([2e-5, 2e-5], "learning rate") == "learning rate 2e-05"
    assert spread([5e-5, 1e-5, 3e-5], "learning rate") == "learning rates 1e-05 to 5e-05"


def test_a_lock_released_removes_the_folders_it_made_and_nothing_else(tmp_path):
    """A failed start leaves no trace of --output_dir runs/a/b: its parents made for it go too (review of audit65
    R4: runs/a stayed), a folder that held something stays, and so do the folders that were there."""
    from loop.lock import RunLock

    (tmp_path / "runs").mkdir()
    lock = RunLock(str(tmp_path / "runs" / "a" / "b"))
    lock.acquire()
    lock.release()
    assert os.listdir(tmp_path / "runs") == []
    lock = RunLock(str(tmp_path / "runs" / "c" / "d"))
    lock.acquire()
    (tmp_path / "runs" / "c" / "d" / "metrics.jsonl").write_text("{}\n")  # the run wrote something
    lock.release()
    assert sorted(os.listdir(tmp_path / "runs" / "c" / "d")) == ["metrics.jsonl"]


def test_make_folders_returns_what_makedirs_made_through_links_and_dot_dots(tmp_path, monkeypatch):
    """The folders a failed start removes again: 'link/../x' is x beside the link's target, as makedirs resolves it
    (normalised, the folders named were beside the link: real/x/out stayed; review r2 F4), and an empty folder
    that was there, reached through a new one's '..', is not among them (it was removed: review r3 F4b)."""
    from loop.storage import make_folders

    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "deep")
    (tmp_path / "kept").mkdir()
    monkeypatch.chdir(tmp_path)
    made = make_folders("link/../x/./out/")
    assert len(made) == 2 and (tmp_path / "real" / "x" / "out").is_dir()
    for p in made:
        os.rmdir(p)
    assert os.listdir(tmp_path / "real") == ["deep"]
    made = make_folders("new/../kept/out")
    assert [os.path.basename(p) for p in made] == ["out", "new"] and (tmp_path / "kept" / "out").is_dir()
    for p in made:
        os.rmdir(p)
    assert sorted(os.listdir(tmp_path)) == ["kept", "link", "real"] and os.listdir(tmp_path / "kept") == []
    with pytest.raises(FileExistsError):
        make_folders("kept")
