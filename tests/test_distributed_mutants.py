"""Mutation tests of loop/distributed.py and loop/trained.py (audit65 m9): exact loss shares and log weights of an
epoch's last window, older checkpoints' warning, a variant's repeated batches, DDP / optimizer parameter checks,
DeepSpeed's own numbers, launcher checks, and what --eval_only takes from a trained run's record (columns, label
reading, the carved split). Single-process, stubs only: each test runs in well under a second."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from loop import UserError, distributed, trained


# ---- distributed: shares and weights -------------------------------------------------------------------------

class Sizes:
    """A loop sampler's batch sizes (and weight sums) in the order accelerate hands them out."""

    def __init__(self, sizes, sums=None, divides=True):
        self.sizes, self.sums, self.divides = np.array(sizes), sums, divides

    def batch_sizes(self):
        return self.sizes

    def batch_sums(self, weights):
        return np.array(self.sums if self.sums is not None else self.sizes, dtype=float)

    def divides_among_processes(self):
        return self.divides


def stub_loop(n, ga, sampler, procs=1, rank=0, weights=None):
    return SimpleNamespace(train_dataloader=[None] * n, train_sampler=sampler, row_weights=weights,
                           cfg=SimpleNamespace(gradient_accumulation_steps=ga),
                           accelerator=SimpleNamespace(num_processes=procs, process_index=rank),
                           state=SimpleNamespace(batches_done=0))


def shares(loop):
    out = []
    for done in range(len(loop.train_dataloader)):
        loop.state.batches_done = done
        out.append(tuple(round(x, 12) for x in distributed.loss_shares(loop)))
    return out


@pytest.mark.parametrize("n, ga, want", [(6, 4, (6, 4)), (8, 4, (8, 4)), (1, 4, (1, 0)), (5, 1, (5, 4)),
                                         (7, 3, (7, 6)), (4, 4, (4, 0))])
def test_last_window_is_the_first_micro_batch_of_the_epochs_last_step(n, ga, want):
    """mutants: (n - 1) // ga -> n // ga, * ga dropped, n - 1 -> n."""
    assert distributed.last_window(stub_loop(n, ga, None)) == want


def test_a_short_batch_of_2_beside_4_is_a_third_of_its_step_and_logged_so():
    """loss_shares: one process, accumulation 2, batches 4 4 4 2: the last step's 4 gets 2 x 4/6, its 2 gets 2 x 2/6
    (1/3 of the step, not 1/2); logged as 1 x 2 x r/R alike; steps before it are 1. mutants: mine/total swapped,
    the window's k off by one, `done < start` flipped, the logged factor's k -> ga."""
    got = shares(stub_loop(4, 2, Sizes([4, 4, 4, 2])))
    assert got == [(1.0, 1.0), (1.0, 1.0), (round(4 / 3, 12), round(4 / 3, 12)), (round(2 / 3, 12), round(2 / 3, 12))]


def test_a_window_of_one_short_batch_after_full_steps_takes_the_whole_step():
    """accumulation 4, 5 batches (8 8 8 8 3): the last step is one micro-batch alone, counted 4 x 3/3 = 4 in backward
    (accelerate divides it by 4), logged as 1 x 1 = 1."""
    assert shares(stub_loop(5, 4, Sizes([8, 8, 8, 8, 3])))[-1] == (4.0, 1.0)


def test_two_processes_split_a_last_round_3_and_2_as_1_2_and_0_8():
    """P = 2, N = 1: a last round of 5 split 3 + 2: rank 0 gets 2 x 3/5 = 1.2, rank 1 2 x 2/5 = 0.8 (the docstring's
    numbers); a round of 4 + 4 before it 1 each. mutants: process_index dropped from the index, procs factor."""
    sampler = Sizes([4, 4, 3, 2])
    assert shares(stub_loop(2, 1, sampler, procs=2, rank=0)) == [(1.0, 1.0), (1.2, 1.2)]
    assert shares(stub_loop(2, 1, sampler, procs=2, rank=1)) == [(1.0, 1.0), (0.8, 0.8)]


def test_a_sampler_that_does_not_divide_among_processes_keeps_only_the_short_window_factor():
    """procs 2 and a sampler whose last round accelerate fills: only N / k of the short window (3 batches, ga 2: the
    last gets 2), whatever the sizes say. mutant: the divides_among_processes test dropped or inverted."""
    sampler = Sizes([4, 4, 4, 4, 4, 1], divides=False)
    assert shares(stub_loop(3, 2, sampler, procs=2)) == [(1.0, 1.0), (1.0, 1.0), (2.0, 1.0)]


def test_sizes_of_another_count_than_the_batches_keep_only_the_short_window_factor():
    """batch_sizes of 3 for 5 micro-batches on one process (a variant's loader of another length): N / k only.
    mutant: `len(sizes) != n * procs` dropped."""
    assert shares(stub_loop(5, 2, Sizes([4, 4, 4])))[-1] == (2.0, 1.0)


def test_with_row_weights_every_step_counts_by_its_share_of_the_weight():
    """--class_weights: each micro-batch counts by its share of its step's weight, in every step, not only the last:
    weights 1 and 3 in the first step of accumulation 2 -> 2 x 1/4 and 2 x 3/4. A step whose weights are all 0 gives
    (0, 0), not a division by zero. mutants: `and weights is None` dropped, the total <= 0 branch."""
    loop = stub_loop(4, 2, Sizes([4, 4, 4, 4], sums=[1.0, 3.0, 0.0, 0.0]), weights=object())
    assert shares(loop) == [(0.5, 0.5), (1.5, 1.5), (0.0, 0.0), (0.0, 0.0)]


def test_row_weights_without_batch_sums_weigh_by_batch_sizes():
    """A sampler with batch_sizes but no batch_sums under row weights: its sizes weigh (4 and 2 of ga 2)."""
    class NoSums:
        def batch_sizes(self):
            return np.array([4, 2])

    sampler = NoSums()
    assert shares(stub_loop(2, 2, sampler, weights=object())) == [(round(4 / 3, 12),) * 2, (round(2 / 3, 12),) * 2]


@pytest.mark.parametrize("n, ga, want", [(6, 4, [1, 1, 1, 1, 2, 2]), (8, 4, [1] * 8), (5, 4, [1, 1, 1, 1, 4]),
                                         (3, 1, [1, 1, 1])])
def test_log_weight_is_n_over_k_in_a_short_last_window_only(n, ga, want):
    """log_weight: N / k for the micro-batches of an epoch's last window of k < N, else 1. mutants: `k < ga` ->
    `k <= ga`, `>= start` -> `> start`, ga / k -> k / ga."""
    loop = stub_loop(n, ga, None)
    got = []
    for done in range(n):
        loop.state.batches_done = done
        got.append(distributed.log_weight(loop))
    assert got == want


def test_older_weighting_warns_only_when_the_last_window_mixes_sizes():
    """A checkpoint of before 2026-12-03: a warning naming the last window's sizes when they differ; None when they do
    not, for one process without accumulation, or a sampler without batch_sizes. mutants: `ga == 1 and procs == 1`
    -> `or`, `<= 1` -> `< 1`, the window's start."""
    mixed = distributed.older_weighting(stub_loop(4, 2, Sizes([4, 4, 4, 2])))
    assert mixed and "(4, 2 rows)" in mixed
    assert distributed.older_weighting(stub_loop(4, 2, Sizes([4, 4, 2, 2]))) is None  # 2, 2 in the last step
    assert distributed.older_weighting(stub_loop(4, 1, Sizes([4, 4, 4, 2]))) is None  # one process, no accumulation
    assert distributed.older_weighting(stub_loop(4, 2, object())) is None
    two = distributed.older_weighting(stub_loop(2, 1, Sizes([4, 4, 3, 2]), procs=2))  # a 3 + 2 round, no accumulation
    assert two and "(3, 2 rows)" in two


class Shard:
    def __init__(self, inner, procs=2, even=True, batch_size=None, drop_last=False):
        self.batch_sampler, self.num_processes, self.even_batches = inner, procs, even
        self.batch_size, self.drop_last = batch_size, drop_last


def test_repeats_warning_counts_the_batches_accelerate_fills():
    """A variant's batch sampler of 5 batches on 2 processes: 1 batch repeated; 6: none; one process or
    even_batches off: none. With a batch size and examples: 2 x 2 rounds of 4 = 16 places for 13 examples -> 3
    repeated. mutants: `procs - batches % procs`, `% procs == 0`, `extra <= 0`, the ceil division."""
    assert "fills the epoch's last round with 1 batch(es)" in distributed.repeats_warning(Shard([[0]] * 5))
    assert "with 3 batch(es)" in distributed.repeats_warning(Shard([[0]] * 5, procs=4))
    assert distributed.repeats_warning(Shard([[0]] * 6)) is None
    assert distributed.repeats_warning(Shard([[0]] * 5, procs=1)) is None
    assert distributed.repeats_warning(Shard([[0]] * 5, even=False)) is None

    class Inner(list):
        sampler = list(range(13))

    said = distributed.repeats_warning(Shard(Inner([[0]] * 4), batch_size=4))
    assert said and "with 3 example(s)" in said and "13 in 4 batches of 4" in said
    Inner.sampler = list(range(16))
    assert distributed.repeats_warning(Shard(Inner([[0]] * 4), batch_size=4)) is None
    Inner.sampler = list(range(13))  # drop_last: the batch count rule (4 batches on 2: none)
    assert distributed.repeats_warning(Shard(Inner([[0]] * 4), batch_size=4, drop_last=True)) is None


# ---- distributed: parameter checks ---------------------------------------------------------------------------

def model_with_frozen():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].requires_grad_(False)
    return model


def test_check_ddp_parameters_refuses_a_parameter_unfrozen_after_wrapping():
    """mutants: `registered is None` return dropped/inverted, `id(p) not in registered` -> `in`, the raise dropped."""
    model = model_with_frozen()
    registered = {id(p) for p in model.parameters() if p.requires_grad}
    distributed.check_ddp_parameters(model, registered)  # nothing new
    distributed.check_ddp_parameters(model, None)
    model[0].requires_grad_(True)
    with pytest.raises(UserError, match=r"2 parameter\(s\) became trainable after DDP wrapped the model \(0.weight"):
        distributed.check_ddp_parameters(model, registered)
    with pytest.raises(UserError, match="the optimizer did not hold them"):
        distributed.check_ddp_parameters(model, registered, unfreezes_later=True)
    distributed.check_ddp_parameters(model, None)  # no DDP: nothing to check
    # fragments the unfrozen names do not hold: said so, not "set unfreezes_later" (advice taken; helper var F2)
    line = (r"^2 parameter\(s\) became trainable after DDP wrapped the model \(0.weight, 0.bias\), and their names "
            r"hold none of unfreezes_later's fragments \('1\.'\), so the optimizer was built without them: add a "
            r"fragment their names hold to unfreezes_later, or set it to True\.$")
    with pytest.raises(UserError, match=line):
        distributed.check_ddp_parameters(model, registered, unfreezes_later=("1.",))
    with pytest.raises(UserError, match="the optimizer did not hold them"):  # a fragment they hold
        distributed.check_ddp_parameters(model, registered, unfreezes_later=("0.",))


def test_check_optimized_parameters_refuses_an_unfrozen_parameter_the_optimizer_lacks():
    """mutants: `id(p) in frozen` -> `not in`, `not in held` -> `in`, the DeepSpeed / no-frozen return."""
    acc = SimpleNamespace(distributed_type="NO")
    model = model_with_frozen()
    frozen = distributed.frozen_ids(model)
    assert frozen == {id(model[0].weight), id(model[0].bias)}
    head_only = torch.optim.SGD(model[1].parameters(), lr=0.1)  # a head-only optimizer: the variant's choice
    distributed.check_optimized_parameters(acc, model, head_only, frozen)
    model[0].requires_grad_(True)
    with pytest.raises(UserError, match=r"2 parameter\(s\) are trainable but not in the optimizer \(0.weight, 0.bias"):
        distributed.check_optimized_parameters(acc, model, head_only, frozen)
    with pytest.raises(UserError, match=r"not in the optimizer \(0.weight, 0.bias\), and their names hold none of "
                                        r"unfreezes_later's fragments \('layer\.1\.', 'head'\), so the optimizer"):
        distributed.check_optimized_parameters(acc, model, head_only, frozen, unfreezes_later=("layer.1.", "head"))
    distributed.check_optimized_parameters(acc, model, torch.optim.SGD(model.parameters(), lr=0.1), frozen)
    distributed.check_optimized_parameters(SimpleNamespace(distributed_type="DEEPSPEED"), model, head_only, frozen)
    distributed.check_optimized_parameters(acc, model, None, frozen)


def test_scheduled_optimizer_unwraps_only_outside_a_scaler_and_deepspeed():
    inner = object()
    wrapped = SimpleNamespace(optimizer=inner, scaler=None)
    assert distributed.scheduled_optimizer(SimpleNamespace(distributed_type="NO"), wrapped) is inner
    assert distributed.scheduled_optimizer(SimpleNamespace(distributed_type="DEEPSPEED"), wrapped) is wrapped
    scaled = SimpleNamespace(optimizer=inner, scaler=object())
    assert distributed.scheduled_optimizer(SimpleNamespace(distributed_type="NO"), scaled) is scaled


def test_sharder_names_fsdp_and_deepspeed_only():
    assert distributed.sharder(SimpleNamespace(distributed_type="FSDP")) == "FSDP"
    assert distributed.sharder(SimpleNamespace(distributed_type="DEEPSPEED")) == "DeepSpeed"
    assert distributed.sharder(SimpleNamespace(distributed_type="MULTI_GPU")) is None


def test_configure_deepspeed_takes_auto_and_refuses_another_number():
    """mutants: `theirs in ("auto", None)` inverted, float compare -> identity, clash raise dropped."""
    cfg = SimpleNamespace(per_device_train_batch_size=8, gradient_accumulation_steps=2, max_grad_norm=None)
    config = {"gradient_accumulation_steps": "auto", "gradient_clipping": 0}
    acc = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(deepspeed_config=config)))
    distributed.configure_deepspeed(acc, cfg)
    assert config == {"gradient_accumulation_steps": 2, "gradient_clipping": 0, "train_micro_batch_size_per_gpu": 8}
    config.update(gradient_accumulation_steps=4, gradient_clipping=1.0)
    with pytest.raises(UserError, match=r"gradient_accumulation_steps: 4 \(our --gradient_accumulation_steps is 2\); "
                                        r"gradient_clipping: 1.0 \(our --max_grad_norm is 0.0\); set those"):
        distributed.configure_deepspeed(acc, cfg)
    distributed.configure_deepspeed(SimpleNamespace(state=SimpleNamespace()), cfg)  # no DeepSpeed


def test_check_accumulation_refuses_another_count():
    distributed.check_accumulation(SimpleNamespace(gradient_accumulation_steps=2),
                                   SimpleNamespace(gradient_accumulation_steps=2))
    with pytest.raises(UserError, match="gradient_accumulation_steps=4 but --gradient_accumulation_steps is 2"):
        distributed.check_accumulation(SimpleNamespace(gradient_accumulation_steps=4),
                                       SimpleNamespace(gradient_accumulation_steps=2))


def test_check_world_refuses_processes_that_did_not_join_and_a_foreign_accumulation_variable(monkeypatch):
    """mutants: `launched > 1` -> `>= 1`, `num_processes == 1` -> `!= 1`, the accumulation variable's comparison."""
    for k in ("WORLD_SIZE", "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_GRADIENT_ACCUMULATION_STEPS"):
        monkeypatch.delenv(k, raising=False)
    one = SimpleNamespace(num_processes=1, distributed_type="NO", gradient_accumulation_steps=2)
    distributed.check_world(one)
    monkeypatch.setenv("WORLD_SIZE", "1")
    distributed.check_world(one)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="started 2 processes but they did not form one run"):
        distributed.check_world(one)
    distributed.check_world(SimpleNamespace(num_processes=2, distributed_type="MULTI_CPU", gradient_accumulation_steps=2))
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "2")
    distributed.check_world(one)
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "auto")
    distributed.check_world(one)
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")
    with pytest.raises(UserError, match="ACCELERATE_GRADIENT_ACCUMULATION_STEPS=4 is not read"):
        distributed.check_world(one)
    monkeypatch.delenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(UserError, match="asks for FSDP, but accelerate runs NO here"):
        distributed.check_world(one)
    distributed.check_world(SimpleNamespace(num_processes=2, distributed_type="FSDP", gradient_accumulation_steps=2))


def test_slurm_tasks_of_one_step_without_a_launcher(monkeypatch):
    """mutants: `tasks < 2` -> `<= 2`, the WORLD_SIZE test, isdigit parsing."""
    for k in ("WORLD_SIZE", "SLURM_STEP_NUM_TASKS", "SLURM_PTY_PORT"):
        monkeypatch.delenv(k, raising=False)
    one = SimpleNamespace(num_processes=1)
    assert distributed.slurm_step_tasks() == 0 and distributed.unjoined_slurm_task(one) is None
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert distributed.unjoined_slurm_task(one) is None
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "x2")
    assert distributed.slurm_step_tasks() == 0
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    monkeypatch.setenv("SLURM_JOB_ID", "7"), monkeypatch.setenv("SLURM_STEP_ID", "0"), monkeypatch.setenv("SLURM_PROCID", "1")
    assert distributed.unjoined_slurm_task(one) == {"step": "7.0", "task": "1", "tasks": 2, "pty": False}
    assert distributed.unjoined_slurm_task(SimpleNamespace(num_processes=2)) is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.unjoined_slurm_task(one) is None


def test_raise_if_wrapper_attribute_names_the_attribute():
    with pytest.raises(UserError, match=r"asked the model for 'head'.*self.unwrapped_model.head"):
        distributed.raise_if_wrapper_attribute(AttributeError("'DistributedDataParallel' object has no attribute 'head'"))
    assert distributed.raise_if_wrapper_attribute(AttributeError("'Linear' object has no attribute 'head'")) is None
    assert distributed.raise_if_wrapper_attribute(KeyError("'DistributedDataParallel' object has no attribute 'x'")) is None


def test_exit_past_gloo_workers_returns_in_one_process(monkeypatch):
    """One process (no WORLD_SIZE, or 1): nothing is done, the caller goes on (mutant: `<= 1` -> `< 1` would
    look for workers, find none and return too; WORLD_SIZE 2 without gloo threads returns as well). The threads
    are faked: a pytest worker that ran an in-process gloo test has real ones, and os._exit ended that worker."""
    for world in (None, "1", "2"):
        if world is None:
            monkeypatch.delenv("WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("WORLD_SIZE", world)
        # one process returns before it looks (with workers there); two without workers find none
        monkeypatch.setattr(distributed, "_threads_named", lambda name, w=world: [] if w == "2" else ["gloo"])
        assert distributed.exit_past_gloo_workers(3) is None


# ---- trained.py: what --eval_only takes from the record -----------------------------------------------------

class Cfg(SimpleNamespace):
    DEFAULTS = dict(model_name_or_path="run/best", text_column="text", text_pair_column=None, label_column="label",
                    train_file=None, dataset_name=None, validation_file=None, eval_split=None, test_file=None,
                    validation_split_percentage=None, seed=42, data_seed=None, max_eval_samples=None,
                    max_test_samples=None, torch_dtype=None)

    def __init__(self, **given):
        super().__init__(**{**self.DEFAULTS, **given})
        self.given = set(given)

    def was_given(self, name):
        return name in self.given

    @property
    def data_seed_or_seed(self):
        return self.seed if self.data_seed is None else self.data_seed


@pytest.fixture
def record(monkeypatch):
    """best_metrics.json's dict as trained.run_record gives it (set .value); training_args.json via .args."""
    holder = SimpleNamespace(value=None, args=None)
    monkeypatch.setattr(trained, "run_record", lambda cfg: holder.value)
    monkeypatch.setattr(trained, "run_args", lambda cfg: holder.args)
    return holder


def test_columns_are_taken_from_the_record_unless_given(record):
    """mutants: `not cfg.was_given(...)` dropped, `text != cfg.text_column` inverted, the adopted line's counting."""
    record.value = {"text_column": "review", "label_column": "stars", "text_pair_column": None}
    cfg = Cfg()
    said = trained.check_trained_columns(cfg)
    assert (cfg.text_column, cfg.label_column, cfg.text_pair_column) == ("review", "stars", None)
    assert said == ("columns as the model was trained: --text_column review --label_column stars (from its "
                    "best_metrics.json; pass them to read others)")
    cfg = Cfg(text_column="body")
    assert trained.check_trained_columns(cfg) == ("columns as the model was trained: --label_column stars (from its "
                                                  "best_metrics.json; pass it to read others)")
    assert cfg.text_column == "body"
    cfg = Cfg(text_column="review", label_column="stars")
    assert trained.check_trained_columns(cfg) is None
    record.value = None
    assert trained.check_trained_columns(Cfg()) is None


def test_a_label_column_named_as_a_given_text_column_is_not_taken(record):
    record.value = {"text_column": "a", "label_column": "b"}
    cfg = Cfg(text_column="b")
    trained.check_trained_columns(cfg)
    assert cfg.label_column == "label"


def test_a_pair_model_is_scored_on_pairs_and_a_single_text_model_on_single_texts(record):
    """mutants: the pair refusals' conditions (`not cfg.text_pair_column`, the swapped tuple, `in record`)."""
    record.value = {"text_column": "q", "text_pair_column": "p"}
    cfg = Cfg()
    assert "--text_column q --text_pair_column p" in trained.check_trained_columns(cfg)
    assert (cfg.text_column, cfg.text_pair_column) == ("q", "p")
    with pytest.raises(UserError, match="given the other way round"):
        trained.check_trained_columns(Cfg(text_column="p", text_pair_column="q"))
    cfg = Cfg(text_pair_column="q2", text_column="p2")
    assert trained.check_trained_columns(cfg) is None  # other columns of the user's data: read as given
    # a pair column named as the given text column is not taken: then the model's pairs are refused
    with pytest.raises(UserError, match="was trained on text pairs"):
        trained.check_trained_columns(Cfg(text_column="p"))
    record.value = {"text_column": "text", "text_pair_column": None}
    with pytest.raises(UserError, match="was trained on single texts"):
        trained.check_trained_columns(Cfg(text_pair_column="other"))
    record.value = {"text_column": "text"}  # an older record without the key: left to the user
    assert trained.check_trained_columns(Cfg(text_pair_column="other")) is None


def test_trained_label_reading(record):
    """mutants: the `read == "texts"` branch, the all-strings checks, class_names' length check."""
    assert trained.trained_label_reading(Cfg()) is None
    record.value = {"label_ids": "texts", "label_names": ["a"]}
    assert trained.trained_label_reading(Cfg()) == {"label_ids": "texts"}
    record.value = {"label_ids": "positions", "label_names": ["neg", "pos"], "class_names": ["n", "p"]}
    assert trained.trained_label_reading(Cfg()) == {"label_ids": "positions", "label_names": ["neg", "pos"],
                                                    "class_names": ["n", "p"]}
    record.value = {"label_ids": "positions", "label_names": ["neg", "pos"], "class_names": ["n"]}
    assert trained.trained_label_reading(Cfg()) == {"label_ids": "positions", "label_names": ["neg", "pos"]}
    record.value = {"label_ids": "positions", "label_names": ["neg", 1]}
    assert trained.trained_label_reading(Cfg()) is None
    record.value = {"label_ids": "other", "label_names": ["neg", "pos"]}
    assert trained.trained_label_reading(Cfg()) is None


def test_a_carve_takes_the_runs_percentage_seed_and_max_eval_samples(record):
    """mutants: `carves` (train_file and not validation_file), `pct is None` inversion, the seed adoption's
    `!= seed`, `seed_option` choice, max_eval_samples taken though given."""
    record.value = {"split": {"seed": 7, "validation_split_percentage": 10.0, "max_eval_samples": 50}}
    cfg = Cfg(train_file="t.jsonl")
    said = trained.check_trained_split(cfg)
    assert (cfg.validation_split_percentage, cfg.max_eval_samples, cfg.seed, cfg.data_seed) == (10.0, 50, 7, None)
    assert said == ("evaluation rows drawn as the run drew them: --validation_split_percentage 10 --max_eval_samples 50 "
                    "--seed 7 (from its best_metrics.json; pass them to draw others)")
    record.value["split"]["seed_option"] = "data_seed"
    cfg = Cfg(train_file="t.jsonl", max_eval_samples=20)
    trained.check_trained_split(cfg)
    assert (cfg.max_eval_samples, cfg.data_seed, cfg.seed) == (20, 7, 42)
    # evaluation data given: nothing is carved, nothing taken
    cfg = Cfg(train_file="t.jsonl", validation_file="v.jsonl")
    assert trained.check_trained_split(cfg) is None
    assert (cfg.validation_split_percentage, cfg.seed) == (None, 42)
    # the same seed as recorded: nothing to say
    record.value = {"split": {"seed": 42, "validation_split_percentage": 10.0}}
    cfg = Cfg(train_file="t.jsonl", validation_split_percentage=10.0)
    assert trained.check_trained_split(cfg) is None


def test_a_carve_with_another_percentage_or_seed_is_refused(record):
    record.value = {"split": {"seed": 7, "validation_split_percentage": 10.0}}
    with pytest.raises(UserError, match=r"evaluated on 10% carved .* --validation_split_percentage 20 carves"):
        trained.check_trained_split(Cfg(train_file="t.jsonl", validation_split_percentage=20.0))
    with pytest.raises(UserError, match="carved with seed 7 .* --seed 3 carves another"):
        trained.check_trained_split(Cfg(train_file="t.jsonl", seed=3))
    with pytest.raises(UserError, match="carved with seed 7 .* --data_seed 3 carves another"):
        trained.check_trained_split(Cfg(train_file="t.jsonl", seed=7, data_seed=3))
    cfg = Cfg(train_file="t.jsonl", seed=7)  # the run's own seed given: carved with it
    trained.check_trained_split(cfg)
    assert cfg.validation_split_percentage == 10.0


def test_an_older_record_only_notes_a_carve_without_a_seed(record):
    record.value = {}
    assert "does not record the seed" in trained.check_trained_split(Cfg(train_file="t.jsonl",
                                                                         validation_split_percentage=5))
    assert trained.check_trained_split(Cfg(train_file="t.jsonl", validation_split_percentage=5, seed=1)) is None
    assert trained.check_trained_split(Cfg(train_file="t.jsonl")) is None
    record.value = None
    assert trained.check_trained_split(Cfg(train_file="t.jsonl", validation_split_percentage=5)) is None


def test_a_run_scored_on_its_own_file_warns_of_a_carve(record, monkeypatch):
    record.value = {"split": {"seed": 7}}
    with pytest.warns(UserWarning, match="not carved from its training data"):
        trained.check_trained_split(Cfg(train_file="t.jsonl", validation_split_percentage=5, seed=7))


def test_the_runs_subset_of_the_same_validation_file_is_drawn(record, monkeypatch):
    """same_files_as_run true: --max_eval_samples and the seed taken; another file (false): nothing.
    mutants: `not cfg.was_given(option)`, the `same_files_as_run` test dropped, the flag/option pairs swapped."""
    record.value = {"split": {"seed": 7, "max_eval_samples": 200, "max_test_samples": 100}}
    same = {"validation_file": True, "test_file": False}
    monkeypatch.setattr(trained, "same_files_as_run", lambda cfg, flag: same[flag])
    cfg = Cfg(validation_file="v.jsonl", test_file="t.jsonl")
    said = trained.check_trained_split(cfg)
    assert (cfg.max_eval_samples, cfg.max_test_samples, cfg.seed) == (200, None, 7)
    assert said.startswith("evaluation rows drawn as the run drew them: --max_eval_samples 200 --seed 7")
    cfg = Cfg(validation_file="v.jsonl", max_eval_samples=10)
    trained.check_trained_split(cfg)
    assert (cfg.max_eval_samples, cfg.seed) == (10, 7)
    same["validation_file"] = False
    cfg = Cfg(validation_file="v.jsonl")
    assert trained.check_trained_split(cfg) is None and cfg.seed == 42


def test_same_files_as_run_compares_the_sha256_of_the_files(record, tmp_path):
    from loop.storage import file_digest

    path = tmp_path / "v.jsonl"
    path.write_text('{"text": "a", "label": 0}\n')
    record.args = {"data_files": {"validation_file": {str(path): {"sha256": file_digest(str(path))}}}}
    assert trained.same_files_as_run(Cfg(validation_file=str(path)), "validation_file") is True
    record.args = {"data_files": {"validation_file": {str(path): {"sha256": "0" * 64}}}}
    assert trained.same_files_as_run(Cfg(validation_file=str(path)), "validation_file") is False
    record.args = None
    assert trained.same_files_as_run(Cfg(validation_file=str(path)), "validation_file") is False


def test_trained_dtype_takes_bfloat16_from_the_record_unless_given(record):
    """mutants: `was_given` test dropped, usable's values, other_half_autocast ignored."""
    cpu = SimpleNamespace(device=torch.device("cpu"), mixed_precision="no")
    record.args = {"options": {"torch_dtype": "bfloat16"}}
    cfg = Cfg()
    assert trained.trained_dtype(cfg, cpu).startswith("--torch_dtype bfloat16 as the model was trained")
    assert cfg.torch_dtype == "bfloat16"
    cfg = Cfg(torch_dtype="float32")
    assert trained.trained_dtype(cfg, cpu) is None and cfg.torch_dtype == "float32"
    record.args = {"options": {"torch_dtype": "float16"}}
    cfg = Cfg()
    assert trained.trained_dtype(cfg, cpu) is None and cfg.torch_dtype is None  # float16 on a CPU: not usable
    record.args = {"options": {"torch_dtype": "bfloat16"}}
    assert trained.trained_dtype(Cfg(), SimpleNamespace(device=torch.device("cpu"), mixed_precision="fp16")) is None
    record.args = {"options": {}}
    assert trained.trained_dtype(Cfg(), cpu) is None


def test_check_scored_split_warns_when_the_carve_differs(record, monkeypatch):
    """mutants: the `carved` test, the (pct, seed, max) comparison inverted, `now == sha1` inverted."""
    record.value = {"split": {"seed": 7, "validation_split_percentage": 10.0, "max_eval_samples": None,
                              "eval_examples_sha1": "abc", "eval_examples": 3}}
    monkeypatch.setattr(trained, "examples_sha1", lambda rows: "abc" if rows == [1, 2, 3] else "def")
    cfg = Cfg(validation_split_percentage=10.0, seed=7)
    assert trained.check_scored_split(cfg, SimpleNamespace(carved=True, eval=[1, 2, 3])) is None
    said = trained.check_scored_split(cfg, SimpleNamespace(carved=True, eval=[1, 2, 4]))
    assert said and "(3 examples, other texts or labels;" in said
    assert "(3 then, 2 now;" in trained.check_scored_split(cfg, SimpleNamespace(carved=True, eval=[1, 2]))
    assert trained.check_scored_split(cfg, SimpleNamespace(carved=False, eval=[1, 2, 4])) is None
    assert trained.check_scored_split(Cfg(validation_split_percentage=10.0, seed=8),
                                      SimpleNamespace(carved=True, eval=[1, 2, 4])) is None
    assert trained.check_scored_split(Cfg(validation_split_percentage=10.0, seed=7, max_length=16),
                                      SimpleNamespace(carved=True, eval=[1, 2, 4])) is None


# ---- distributed: precision, trial batch, dynamo, DDP's early return ---------------------------------------

def test_check_precision_refuses_an_unknown_name_and_fp16_without_autocast(monkeypatch):
    """mutants: ("fp16", "bf16") -> ("fp16",), the `device == "cpu"` part of the bf16 emulation warning."""
    cpu = dict(device=torch.device("cpu"), distributed_type="NO")
    with pytest.raises(UserError, match="mixed precision 'BF16' is not one of no, fp16, bf16, fp8"):
        distributed.check_precision(SimpleNamespace(mixed_precision="BF16", **cpu))
    for mp in ("fp16", "bf16"):
        with pytest.raises(UserError, match=f"{mp} mixed precision does nothing on cpu"):
            distributed.check_precision(SimpleNamespace(mixed_precision=mp, native_amp=False, **cpu))
    monkeypatch.setattr(distributed, "cpu_has_bf16", lambda: False)
    assert "emulated" in distributed.check_precision(SimpleNamespace(mixed_precision="bf16", native_amp=True, **cpu))
    gpu = SimpleNamespace(mixed_precision="bf16", native_amp=True, device=torch.device("meta"), distributed_type="NO")
    assert distributed.check_precision(gpu) is None  # not a CPU: no emulation warning
    assert distributed.check_precision(SimpleNamespace(mixed_precision="no", **cpu)) is None


def test_trial_batch_is_two_rows_cut_to_64_tokens_without_the_weights():
    """mutants: the 64-token cut, the weight column left in the batch."""
    from loop.splits import WEIGHT

    rows = [{"input_ids": list(range(100)), "attention_mask": [1] * 100, "labels": 0, WEIGHT: 2.0},
            {"input_ids": [5, 6], "attention_mask": [1, 1], "labels": 1, WEIGHT: 1.0},
            {"input_ids": [7], "attention_mask": [1], "labels": 1, WEIGHT: 1.0}]
    collate = lambda batch: {k: [r[k] for r in batch] for k in batch[0]}  # noqa: E731
    loop = SimpleNamespace(data=SimpleNamespace(train=rows), train_dataloader=SimpleNamespace(collate_fn=collate))
    batch = distributed.trial_batch(loop)
    assert WEIGHT not in batch and batch["labels"] == [0, 1]
    assert batch["input_ids"][0] == list(range(63)) + [99] and batch["input_ids"][1] == [5, 6]
    assert len(batch["attention_mask"][0]) == 64
    assert distributed.trial_batch(SimpleNamespace(data=SimpleNamespace(train=[]), train_dataloader=loop.train_dataloader)) is None


def test_take_over_dynamo_turns_inductor_into_torch_compile_and_refuses_another_backend():
    """mutant: the refusal of another backend dropped."""
    from accelerate.utils import DynamoBackend

    def acc(backend, mode=None):
        return SimpleNamespace(state=SimpleNamespace(dynamo_plugin=SimpleNamespace(backend=backend, mode=mode)))

    cfg = SimpleNamespace(torch_compile=False, torch_compile_mode=None, check_compile_mode=lambda: None)
    assert distributed.take_over_dynamo(cfg, acc(DynamoBackend.NO)) is None and cfg.torch_compile is False
    a = acc(DynamoBackend.INDUCTOR, "max-autotune")
    assert "runs as --torch_compile" in distributed.take_over_dynamo(cfg, a)
    assert (cfg.torch_compile, cfg.torch_compile_mode, a.state.dynamo_plugin.backend) == (True, "max-autotune",
                                                                                        DynamoBackend.NO)
    with pytest.raises(UserError, match="dynamo backend 'eager'"):
        distributed.take_over_dynamo(cfg, acc(DynamoBackend.EAGER))


def test_configure_ddp_leaves_one_process_alone():
    """mutant: `num_processes < 2` -> `< 1` (one process would run the trial and reduce)."""
    loop = SimpleNamespace(accelerator=SimpleNamespace(num_processes=1, distributed_type="MULTI_CPU"), cfg=None)
    assert distributed.configure_ddp(loop, None) is None
    assert not hasattr(loop, "frozen_for_later")


def test_repeats_warning_rounds_the_rounds_up_and_says_nothing_for_one_process():
    """5 batches of 4 (17 examples) on 2 processes: 3 rounds of 2 x 4 = 24 places, 7 examples repeated (the ceil
    division; floor would count 16 places and say nothing); one process never repeats, a short last batch or not.
    mutants: -(-b // p) -> b // p, `procs < 2` -> `procs < 1`."""
    class Inner(list):
        sampler = list(range(17))

    said = distributed.repeats_warning(Shard(Inner([[0]] * 5), batch_size=4))
    assert said and "with 7 example(s)" in said
    Inner.sampler = list(range(13))
    assert distributed.repeats_warning(Shard(Inner([[0]] * 4), procs=1, batch_size=4)) is None


def test_a_parameter_left_out_of_the_optimizer_from_the_start_is_the_variants_choice():
    """check_optimized_parameters refuses only parameters frozen at the start: a trainable layer the optimizer never
    held (a variant's choice) beside a frozen one passes. mutant: `id(p) in frozen` dropped."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].requires_grad_(False)
    frozen = distributed.frozen_ids(model)
    distributed.check_optimized_parameters(SimpleNamespace(distributed_type="NO"), model,
                                           torch.optim.SGD(model[2].parameters(), lr=0.1), frozen)


def test_check_unfreezable_refuses_an_optimizer_without_the_frozen_parameters_only_with_unfreezes_later():
    """mutant: `not loop.unfreezes_later` dropped."""
    model = model_with_frozen()
    loop = SimpleNamespace(unfreezes_later=False, accelerator=SimpleNamespace(distributed_type="NO"), model=model,
                           optimizer=torch.optim.SGD(model[1].parameters(), lr=0.1))
    distributed.check_unfreezable(loop)
    loop.unfreezes_later = True
    with pytest.raises(UserError, match=r"holds none of the 2 frozen parameter\(s\) \(0.weight, 0.bias\)"):
        distributed.check_unfreezable(loop)
    loop.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    distributed.check_unfreezable(loop)


def test_configure_deepspeed_takes_null_and_compares_numbers_as_numbers():
    """A DeepSpeed config's null takes our value; "8" and 2.0 equal our 8 and 2. mutants: `in ("auto", None)` ->
    `== "auto"`, float() comparison -> plain."""
    cfg = SimpleNamespace(per_device_train_batch_size=8, gradient_accumulation_steps=2, max_grad_norm=1.0)
    config = {"train_micro_batch_size_per_gpu": "8", "gradient_accumulation_steps": 2.0, "gradient_clipping": None}
    distributed.configure_deepspeed(
        SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(deepspeed_config=config))), cfg)
    assert config["gradient_clipping"] == 1.0 and config["train_micro_batch_size_per_gpu"] == "8"


def test_slurm_step_tasks_reads_ascii_digits_only(monkeypatch):
    """mutant: isascii() dropped (int("²") raises)."""
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "\u00b2")
    assert distributed.slurm_step_tasks() == 0


def ddp_loop(monkeypatch, trial_on, others_on, find_unused=None, unfreezes_later=False):
    model = model_with_frozen()
    said = []
    acc = SimpleNamespace(num_processes=2, distributed_type="MULTI_CPU", device="cpu", ddp_handler=None,
                          reduce=lambda t, reduction: t + int(others_on))
    loop = SimpleNamespace(accelerator=acc, cfg=SimpleNamespace(ddp_find_unused_parameters=find_unused),
                           unfreezes_later=unfreezes_later, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                           print=said.append)
    monkeypatch.setattr(distributed, "ddp_trial", lambda loop, model: (trial_on, "its trial"))
    return loop, model, said


def test_configure_ddp_turns_find_unused_on_when_another_rank_asks(monkeypatch):
    """Every rank builds DDP alike: on here when another rank's trial said on. mutant: `and not on` -> `and on`."""
    loop, model, said = ddp_loop(monkeypatch, trial_on=False, others_on=True)
    distributed.configure_ddp(loop, model)
    assert loop.accelerator.ddp_handler.find_unused_parameters is True
    assert said == ["DDP: find_unused_parameters on: another process asked for it"]
    loop, model, said = ddp_loop(monkeypatch, trial_on=False, others_on=False)
    distributed.configure_ddp(loop, model)
    assert loop.accelerator.ddp_handler is None and said == []
    assert loop.ddp_registered == {id(model[1].weight), id(model[1].bias)} and loop.frozen_for_later == []


def test_configure_ddp_refuses_find_unused_false_with_unfreezes_later(monkeypatch):
    """mutant: `is False` -> `is None`."""
    loop, model, said = ddp_loop(monkeypatch, trial_on=True, others_on=False, find_unused=False, unfreezes_later=True)
    with pytest.raises(UserError, match="drop --ddp_find_unused_parameters false"):
        distributed.configure_ddp(loop, model)
    loop, model, said = ddp_loop(monkeypatch, trial_on=True, others_on=False, unfreezes_later=True)
    distributed.configure_ddp(loop, model)
    assert said == ["DDP: find_unused_parameters on: its trial"] and len(loop.frozen_for_later) == 2


def test_a_max_test_samples_subset_alone_is_drawn_with_the_runs_seed(record, monkeypatch):
    """mutant: `or cfg.max_test_samples` dropped from what draws rows."""
    record.value = {"split": {"seed": 7}}
    monkeypatch.setattr(trained, "same_files_as_run", lambda cfg, flag: False)
    cfg = Cfg(validation_file="v.jsonl", test_file="t.jsonl", max_test_samples=100)
    assert trained.check_trained_split(cfg).endswith("--seed 7 (from its best_metrics.json; pass it to draw others)")


def test_same_files_as_run_needs_every_file(record, tmp_path):
    """mutant: a subset of the run's files counted as the same."""
    from loop.storage import file_digest

    path = tmp_path / "v.jsonl"
    path.write_text('{"text": "a", "label": 0}\n')
    record.args = {"data_files": {"validation_file": {str(path): {"sha256": file_digest(str(path))},
                                                      "other": {"sha256": "0" * 64}}}}
    assert trained.same_files_as_run(Cfg(validation_file=str(path)), "validation_file") is False


def test_check_scored_split_compares_the_data_seed(record, monkeypatch):
    """mutant: cfg.seed in place of data_seed_or_seed."""
    record.value = {"split": {"seed": 7, "validation_split_percentage": 10.0, "max_eval_samples": None,
                              "eval_examples_sha1": "abc", "eval_examples": 3}}
    monkeypatch.setattr(trained, "examples_sha1", lambda rows: "def")
    cfg = Cfg(validation_split_percentage=10.0, seed=42, data_seed=7)
    assert trained.check_scored_split(cfg, SimpleNamespace(carved=True, eval=[1, 2, 4]))
