"""Rules a mutation audit (audit55, 2026-12-04: 80 single-point bugs, 20 of them passing the quick suite) found
that nothing pinned: each test here fails on one of those bugs. Small, exact, in-process checks of the functions
themselves; the end-to-end behaviour behind each is said in its docstring."""

import gc
import json
import subprocess
import sys
import weakref
from types import SimpleNamespace

import pytest
import torch

from conftest import ROOT, env
from loop import UserError


def test_a_variant_samplers_last_short_window_still_takes_a_whole_step():
    """distributed.loss_shares: a sampler of a variant's own (no batch_sizes) with 6 micro-batches and accumulation 4:
    the last optimizer step has 2 micro-batches, each of which must count N / k = 2 in its backward, so the step's
    gradient is their mean, not half of it (Trainer's correction); logged as themselves."""
    from loop.distributed import loss_shares

    class OwnSampler:  # no batch_sizes: only the window's length is known
        pass

    loop = SimpleNamespace(train_dataloader=[None] * 6, train_sampler=OwnSampler(),
                           cfg=SimpleNamespace(gradient_accumulation_steps=4),
                           accelerator=SimpleNamespace(num_processes=1, process_index=0),
                           state=SimpleNamespace(batches_done=0))
    shares = []
    for done in range(6):
        loop.state.batches_done = done
        shares.append(loss_shares(loop))
    assert shares == [(1.0, 1.0)] * 4 + [(2.0, 1.0)] * 2


@pytest.mark.parametrize("name", ["f1", "precision", "recall"])
def test_binary_scores_of_a_split_without_the_positive_class_are_zero(name):
    """A small evaluation split whose references and predictions are all class 0: f1, precision and recall of the
    positive class are 0 (sklearn's zero_division), not an IndexError that ends the run."""
    from loop.scores import Shipped

    assert Shipped(name).compute(predictions=[0, 0, 0], references=[0, 0, 0]) == {name: 0.0}


class OneRank:
    """accelerator.reduce / num_processes / device as one process gives them."""
    num_processes, device, is_main_process = 1, "cpu", True

    def reduce(self, t, reduction):
        assert reduction == "sum"
        return t


def test_nonfinite_losses_that_are_not_consecutive_never_stop_the_run():
    """logs.LossMeter stops a run after NONFINITE_PATIENCE consecutive non-finite losses; a finite loss between
    them starts the count again (an fp16 run's occasional overflow is no divergence)."""
    from loop.logs import NONFINITE_PATIENCE, LossMeter

    meter = LossMeter("cpu")
    for loss in [float("nan"), 1.0] * (NONFINITE_PATIENCE + 1):
        meter.add(torch.tensor(loss))
    assert meter.take(OneRank(), step=8) == pytest.approx(1.0)  # the finite losses' mean


def test_a_tracked_number_is_logged_as_its_mean_since_the_last_line():
    """Loop.track(name, value): the next training line holds the values' mean, not their sum."""
    from loop.logs import Tracked

    t = Tracked()
    t.add("width", 2.0)
    t.add("width", torch.tensor([4.0, 4.0]))  # a tensor counts as its mean
    assert t.take(OneRank()) == {"width": pytest.approx(3.0)}
    assert t.take(OneRank()) == {}  # nothing since


def test_parameters_to_unfreeze_later_by_several_name_fragments_are_all_in_the_optimizer():
    """models.param_groups(include_frozen=(fragments)): a frozen parameter whose name holds any one of them is kept
    (AdamW holds it and skips it until it has a gradient), or a variant's later unfreezing trains nothing."""
    from loop.models import param_groups

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2),
                                torch.nn.Linear(2, 2))
    for layer in model[:3]:
        layer.requires_grad_(False)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups(model, 0.01, include_frozen=("0.", "1."))
    held = {names[id(p)] for g in groups for p in g["params"]}
    assert held == {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"}


def test_a_head_only_optimizer_chosen_from_the_start_is_the_variants_choice():
    """distributed.check_optimized_parameters refuses a parameter frozen at the start that is trainable now but not
    in the optimizer (a hook unfroze it: it would never change); one left out of the optimizer from the start while
    trainable is a choice, and passes."""
    from loop.distributed import check_optimized_parameters, frozen_ids

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[1].bias.requires_grad_(False)
    frozen = frozen_ids(model)
    acc = SimpleNamespace(distributed_type="NO")
    head_only = torch.optim.SGD(model[0].parameters(), lr=0.1)  # layer 1's weight trains nowhere: chosen so
    check_optimized_parameters(acc, model, head_only, frozen)
    model[1].bias.requires_grad_(True)  # unfrozen by a hook: refused
    with pytest.raises(UserError, match=r"1 parameter\(s\) are trainable but not in the optimizer \(1\.bias\)"):
        check_optimized_parameters(acc, model, head_only, frozen)


def test_compute_metrics_may_not_return_the_loops_own_samples_or_loss():
    """scores.prefixed: eval_samples and eval_loss are the loop's; a compute_metrics returning either would replace
    them unseen."""
    from loop.scores import prefixed

    assert prefixed({"accuracy": 1.0}, "eval") == {"eval_accuracy": 1.0}
    for key in ("samples", "loss"):
        with pytest.raises(UserError, match=f"returned '{key}', which the loop logs itself \\(eval_{key}\\)"):
            prefixed({"accuracy": 1.0, key: 3}, "eval")


def test_the_training_line_says_the_epoch_done_and_the_peak_learning_rate():
    """RunLog.training_record: the fractional epoch counts the micro-batches done (3 of 10 in epoch 2: 1.3), and the
    learning rate is the highest of the groups' (per-layer rates, examples/llrd.py: the head's, not the embeddings')."""
    from loop.core import TrainState
    from loop.logs import RunLog

    zero = {"take": lambda *a: 0.5}
    state = TrainState()
    state.epoch, state.batches_done, state.global_step = 1, 3, 13
    loop = SimpleNamespace(state=state, train_dataloader=[None] * 10,
                           loss_meter=SimpleNamespace(**zero), tracked=SimpleNamespace(take=lambda acc: {}),
                           lr_scheduler=SimpleNamespace(get_last_lr=lambda: [1e-5, 1e-3, 1e-4]))
    record = RunLog.training_record(SimpleNamespace(accelerator=OneRank()), loop)
    assert record == {"step": 13, "epoch": 1.3, "loss": 0.5, "learning_rate": 1e-3}
    state.batches_done = 10  # the epoch's last step: 2, as its evaluation's record says (was 2.0)
    assert json.dumps(RunLog.training_record(SimpleNamespace(accelerator=OneRank()), loop)["epoch"]) == "2"


def test_the_exit_hook_closes_a_loops_loaders_and_lets_the_loop_go():
    """loaders.close_at_exit: at the interpreter's exit the loop's DataLoaders are closed (a loop driven by its parts
    hung its exit on their workers), and the hook holds the loop weakly (a notebook's finished loop is freed)."""
    from loop.loaders import close_at_exit

    class Loop:
        def close_dataloaders(self):
            pass

    lp = Loop()
    ref = weakref.ref(lp)
    close_at_exit(lp)
    del lp
    gc.collect()
    assert ref() is None
    script = ("from loop.loaders import close_at_exit\n"
              "class Loop:\n"
              "    def close_dataloaders(self):\n"
              "        print('closed at exit', flush=True)\n"
              "lp = Loop()\n"
              "close_at_exit(lp)\n"
              "print('main done', flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["main done", "closed at exit"], proc.stderr[-2000:]


def test_full_determinism_keeps_quiet_when_the_user_set_cublas_workspace(monkeypatch):
    """seeding.full_determinism warns that CUBLAS_WORKSPACE_CONFIG may come too late only when the loop has to set
    it itself after CUDA started; a value the user gave before is kept, and nothing is said."""
    from loop import seeding

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic, \
        torch.backends.cudnn.benchmark
    cfg = SimpleNamespace(full_determinism=True)
    try:
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
        monkeypatch.setenv("FLASH_ATTENTION_DETERMINISTIC", "1")
        assert seeding.full_determinism(cfg) is None
        assert seeding.CUBLAS_DETERMINISTIC != ":16:8"
        monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
        assert "set CUBLAS_WORKSPACE_CONFIG" in seeding.full_determinism(cfg)
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1:]


def test_a_warmup_as_long_as_the_run_is_said_to_never_reach_the_rate():
    """schedules.build: optimizer step i (from 0) trains at i / warmup of --learning_rate, so a warmup of as many
    steps as the run has never trains at the rate (its last step at 9/10 of it): said, as a longer one is; one step
    shorter reaches it and says nothing (audit55 SC4: only a longer one was said)."""
    from loop.config import TrainConfig
    from loop.schedules import build

    for warmup, words in ((11, "longer than"), (10, "as long as"), (9, None)):
        said = []
        opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
        schedule = build(TrainConfig(warmup_steps=warmup, learning_rate=1e-3), opt, 10, said.append)
        rates = []
        for _ in range(10):
            rates.append(opt.param_groups[0]["lr"])  # what this step trains at
            opt.step()
            schedule.step()
        assert (max(rates) == pytest.approx(1e-3)) == (words is None), (warmup, rates)
        if words is None:
            assert said == []
        else:
            assert said == [f"the warmup ({warmup} steps) is {words} this run's 10 optimizer steps: the learning rate "
                            f"never reaches --learning_rate 0.001."]


def test_a_resumed_epochs_skipping_loader_keeps_non_blocking_copies():
    """loaders.skip_batches: accelerate 1.15's skip_first_batches rebuilds the loader without its non-blocking device
    copies (1.16 keeps them); the loop copies the flag over, so a resumed epoch is not slower for blocking copies."""
    from loop.loaders import skip_batches

    rebuilt = SimpleNamespace(_non_blocking=False)  # as accelerate 1.15 returns it
    accelerator = SimpleNamespace(skip_first_batches=lambda loader, n: rebuilt)
    assert skip_batches(accelerator, SimpleNamespace(_non_blocking=True), 3) is rebuilt and rebuilt._non_blocking


def test_the_confusion_report_is_whole_up_to_its_limit_and_cells_past_it():
    """scores.report: up to DENSE_CONFUSION labels the whole K x K matrix ("confusion"), one label more its non-zero
    cells ("confusion_cells"); the counts are the same either way."""
    import numpy as np

    from loop.scores import DENSE_CONFUSION, report

    for k, key in ((DENSE_CONFUSION, "confusion"), (DENSE_CONFUSION + 1, "confusion_cells")):
        refs = np.arange(k)
        logits = np.eye(k)[(refs + 1) % k]  # each example predicted as the next class
        got = report(logits, refs, [f"c{i}" for i in range(k)])
        assert set(got) == {"per_class", key}, (k, set(got))
        if key == "confusion":
            assert np.array_equal(np.array(got[key]), np.roll(np.eye(k, dtype=int), 1, axis=1))  # [true][predicted]
        else:
            assert sorted(map(tuple, got[key])) == [(i, (i + 1) % k, 1) for i in range(k)]


def test_warmup_stable_decay_phases_that_fill_the_run_exactly_say_nothing():
    """schedules.build, warmup_stable_decay: phases ending before the run's last step are said (the rest trains at
    the decay's end); 2 warmup + 5 stable + 3 decay steps of a 10-step run fill it: nothing said (audit55 SC6)."""
    import json

    from loop.config import TrainConfig
    from loop.schedules import build

    for stable, says in ((5, False), (4, True)):
        said = []
        cfg = TrainConfig(warmup_steps=2, lr_scheduler_type="warmup_stable_decay",
                          lr_scheduler_kwargs=json.dumps({"num_stable_steps": stable, "num_decay_steps": 3}))
        build(cfg, torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1e-3), 10, said.append)
        assert bool(said) == says and all("end before this run's 10 optimizer steps" in s for s in said), said
