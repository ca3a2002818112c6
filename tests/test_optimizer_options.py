"""Optimizer and schedule options (Trainer parity): --warmup_steps (whole steps or a fraction),
--adam_beta1/--adam_beta2/--adam_epsilon, --lr_scheduler_kwargs (and the schedules that need them) and
--label_smoothing_factor. The refusals, the learning rates a run actually logs, the optimizer's
hyperparameters and update, the smoothed training loss against an independent computation, and a resume
with a changed option (or from a checkpoint that predates an option)."""

import json
import math
import os
import re
import shutil

import pytest
import torch
import torch.nn.functional as F

from conftest import evals, run_cli, tiny_args, train_logs
from loop import Loop, synthetic
from loop import checkpoint as ckpt
from loop import storage
from loop.config import parse_args
from loop.errors import UserError

LR = 1e-3


def cfg(*argv, tmp_path):
    return parse_args(list(argv) + ["--output_dir", str(tmp_path / "out")])


def refusal(*argv, tmp_path):
    """The one-line message a config is refused with."""
    with pytest.raises(UserError) as e:
        cfg(*argv, tmp_path=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def small(model, data, out, **over):
    """64 training examples in batches of 8 (8 steps an epoch), 32 evaluation examples, a log line every step."""
    base = dict(max_train_samples=64, max_eval_samples=32, per_device_train_batch_size=8, logging_steps=1,
                learning_rate=LR)
    base.update(over)
    return tiny_args(model, data, out, **base)


def lrs(out):
    return {r["step"]: r["learning_rate"] for r in train_logs(out)}


def linear_with_warmup(step, warmup, total):
    """transformers' linear schedule, written out: step / warmup, then down to 0 at `total`."""
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


# ---------------------------------------------------------------- refusals (config time, one line)
@pytest.mark.parametrize("argv, says", [
    (["--warmup_steps", "-1"], [r"--warmup_steps", r"-1", r">= ?0|at least 0|whole number|fraction"]),
    (["--warmup_steps", "2.5"], [r"--warmup_steps", r"2\.5", r"whole number"]),
    (["--warmup_steps", "10", "--warmup_ratio", "0.1"], [r"--warmup_steps", r"--warmup_ratio", r"give one of them"]),
    (["--warmup_steps", "0.2", "--warmup_ratio", "0.1"], [r"--warmup_steps", r"--warmup_ratio", r"give one of them"]),
    (["--lr_scheduler_type", "constant", "--warmup_steps", "5"],
     [r"--warmup_steps", r"constant", r"constant_with_warmup"]),
    (["--lr_scheduler_type", "constant", "--warmup_ratio", "0.1"],
     [r"--warmup_ratio", r"constant", r"constant_with_warmup"]),
    (["--adam_beta1", "1.0"], [r"--adam_beta1", r"\[0, 1\)"]),
    (["--adam_beta1", "-0.1"], [r"--adam_beta1", r"\[0, 1\)|>= ?0"]),
    (["--adam_beta2", "1"], [r"--adam_beta2", r"\[0, 1\)"]),
    (["--adam_epsilon", "0"], [r"--adam_epsilon", r"above 0|> ?0|positive"]),
    (["--adam_epsilon=-1e-8"], [r"--adam_epsilon", r"above 0|> ?0|positive"]),  # (argparse takes -1e-8 for a flag)
    (["--label_smoothing_factor", "1.0"], [r"--label_smoothing_factor", r"\[0, 1\)"]),
    (["--label_smoothing_factor", "-0.1"], [r"--label_smoothing_factor", r"\[0, 1\)|>= ?0"]),
], ids=["warmup-negative", "warmup-not-whole", "warmup-both-steps", "warmup-both-fraction", "constant-warmup-steps",
        "constant-warmup-ratio", "beta1-1", "beta1-negative", "beta2-1", "epsilon-0", "epsilon-negative",
        "smoothing-1", "smoothing-negative"])
def test_bad_optimizer_options_are_refused_in_one_line(argv, says, tmp_path):
    msg = refusal(*argv, tmp_path=tmp_path)
    for pattern in says:
        assert re.search(pattern, msg), (pattern, msg)


@pytest.mark.parametrize("schedule", ["linear", "constant", "constant_with_warmup"])
def test_kwargs_for_a_schedule_that_takes_none_are_refused(schedule, tmp_path):
    msg = refusal("--lr_scheduler_type", schedule, "--lr_scheduler_kwargs", "num_cycles=2", tmp_path=tmp_path)
    assert "--lr_scheduler_kwargs" in msg and "num_cycles" in msg and schedule in msg, msg
    assert "takes none" in msg or "takes no arguments" in msg, msg
    assert "drop --lr_scheduler_kwargs" in msg, msg


@pytest.mark.parametrize("schedule, given, unknown, takes", [
    ("cosine", "power=2", "power", ["num_cycles"]),
    ("polynomial", '{"num_cycles": 1}', "num_cycles", ["lr_end", "power"]),
    ("cosine_with_min_lr", "min_lr_rate=0.1,warmup_lr_rate=0.5", "warmup_lr_rate", ["num_cycles", "min_lr", "min_lr_rate"]),
    ("warmup_stable_decay", "num_decay_steps=3,decay=2", "decay", ["num_decay_steps", "num_stable_steps", "decay_type"]),
])
def test_a_key_the_schedule_does_not_take_is_refused_listing_those_it_takes(schedule, given, unknown, takes, tmp_path):
    msg = refusal("--lr_scheduler_type", schedule, "--lr_scheduler_kwargs", given, tmp_path=tmp_path)
    assert "--lr_scheduler_kwargs" in msg and schedule in msg and unknown in msg, msg
    for key in takes:
        assert key in msg, (key, msg)


@pytest.mark.parametrize("schedule, given, needs", [
    ("cosine_with_min_lr", None, "min_lr"),
    ("cosine_warmup_with_min_lr", None, "min_lr"),
    ("warmup_stable_decay", None, "num_decay_steps"),
    ("cosine_with_min_lr", "num_cycles=1", "min_lr"),  # arguments, but not the one it needs
    ("warmup_stable_decay", "min_lr_ratio=0.1", "num_decay_steps"),
])
def test_a_missing_required_key_is_refused_naming_it(schedule, given, needs, tmp_path):
    argv = ["--lr_scheduler_type", schedule] + (["--lr_scheduler_kwargs", given] if given else [])
    msg = refusal(*argv, tmp_path=tmp_path)
    assert "--lr_scheduler_kwargs" in msg and needs in msg, msg


@pytest.mark.parametrize("schedule, given", [("cosine", "num_cycles=0"), ("cosine_with_restarts", "num_cycles=0"),
                                             ("cosine", "num_cycles=-0.5"), ("cosine_with_min_lr", "num_cycles=0,min_lr_rate=0.1")])
def test_a_cosine_without_cycles_is_refused(schedule, given, tmp_path):
    """num_cycles=0 kept the cosine at --learning_rate for the whole run (cosine_with_restarts: until its last step,
    then 0), and passed the stand-in check: no rate out of range, the peak after the warmup."""
    msg = refusal("--lr_scheduler_type", schedule, "--lr_scheduler_kwargs", given, tmp_path=tmp_path)
    assert "--lr_scheduler_kwargs num_cycles must be a positive number" in msg, msg


@pytest.mark.parametrize("given", ['{"num_cycles": ', "num_cycles", '{"num_cycles" 2}', "=2", '["num_cycles", 2]'])
def test_malformed_kwargs_are_refused(given, tmp_path):
    msg = refusal("--lr_scheduler_type", "cosine", "--lr_scheduler_kwargs", given, tmp_path=tmp_path)
    assert "--lr_scheduler_kwargs" in msg and "num_cycles=2" in msg, msg  # the example of a right spelling


def test_a_refusal_on_the_command_line_is_one_error_line_and_exit_2(tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "out")
    proc = run_cli(small(tiny_model, tiny_data, out, warmup_steps=2.5), how="python", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "--warmup_steps" in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(os.path.join(out, "metrics.jsonl"))


# ---------------------------------------------------------------- --lr_scheduler_kwargs: one spelling per meaning
def test_json_pairs_and_yaml_mapping_give_one_canonical_text(tmp_path):
    """A resume compares the option's text: every spelling of the same arguments must give the same one."""
    yaml_flow = tmp_path / "flow.yaml"
    yaml_flow.write_text("lr_scheduler_type: cosine_with_min_lr\nlr_scheduler_kwargs: {num_cycles: 0.5, min_lr_rate: 0.1}\n")
    yaml_block = tmp_path / "block.yaml"
    yaml_block.write_text("lr_scheduler_type: cosine_with_min_lr\nlr_scheduler_kwargs:\n  min_lr_rate: 0.1\n"
                          "  num_cycles: 0.5\n")
    spellings = [
        cfg("--lr_scheduler_type", "cosine_with_min_lr", "--lr_scheduler_kwargs",
            '{"num_cycles": 0.5, "min_lr_rate": 0.1}', tmp_path=tmp_path),
        cfg("--lr_scheduler_type", "cosine_with_min_lr", "--lr_scheduler_kwargs", '{"min_lr_rate":0.1,"num_cycles":0.5}',
            tmp_path=tmp_path),
        cfg("--lr_scheduler_type", "cosine_with_min_lr", "--lr_scheduler_kwargs", "num_cycles=0.5,min_lr_rate=0.1",
            tmp_path=tmp_path),
        cfg("--lr_scheduler_type", "cosine_with_min_lr", "--lr_scheduler_kwargs", " min_lr_rate = 0.1 , num_cycles=0.5 ",
            tmp_path=tmp_path),
        cfg("--config", str(yaml_flow), tmp_path=tmp_path),
        cfg("--config", str(yaml_block), tmp_path=tmp_path),
    ]
    texts = {c.lr_scheduler_kwargs for c in spellings}
    assert len(texts) == 1, texts
    text = texts.pop()
    assert isinstance(text, str) and json.loads(text) == {"min_lr_rate": 0.1, "num_cycles": 0.5}
    assert text.index("min_lr_rate") < text.index("num_cycles")  # sorted keys
    assert {json.dumps(c.to_dict()["lr_scheduler_kwargs"]) for c in spellings} == {json.dumps(text)}  # what a checkpoint records


def test_pair_values_are_read_as_json_else_as_text(tmp_path):
    c = cfg("--lr_scheduler_type", "warmup_stable_decay", "--lr_scheduler_kwargs",
            "num_decay_steps=3,decay_type=linear,min_lr_ratio=0.05", tmp_path=tmp_path)
    kwargs = json.loads(c.lr_scheduler_kwargs)
    assert kwargs == {"num_decay_steps": 3, "decay_type": "linear", "min_lr_ratio": 0.05}
    assert type(kwargs["num_decay_steps"]) is int and type(kwargs["min_lr_ratio"]) is float
    # nothing given: nothing recorded
    assert cfg("--lr_scheduler_type", "cosine", tmp_path=tmp_path).lr_scheduler_kwargs in (None, "")


def test_kwargs_reach_the_schedule(tmp_path):
    """cosine_with_restarts with num_cycles=2 (and 2 warmup steps): its learning rates, written out."""
    c = cfg("--lr_scheduler_type", "cosine_with_restarts", "--lr_scheduler_kwargs", '{"num_cycles": 2}',
            "--warmup_steps", "2", "--learning_rate", str(LR), tmp_path=tmp_path)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=LR)
    scheduler = Loop(c).build_scheduler(optimizer, 12)
    got = []
    for _ in range(12):
        optimizer.step()
        scheduler.step()
        got.append(scheduler.get_last_lr()[0])

    def expected(s, warmup=2, total=12, cycles=2):
        if s < warmup:
            return s / warmup
        progress = (s - warmup) / (total - warmup)
        return 0.0 if progress >= 1 else 0.5 * (1 + math.cos(math.pi * ((cycles * progress) % 1.0)))

    assert got == pytest.approx([LR * expected(s) for s in range(1, 13)], rel=1e-9, abs=1e-15)
    # the restart halfway (step 7: back to the full rate after 0.1 * LR at step 6): 2 cycles, not 1 (0.5 * LR)
    assert got[5] < 0.1 * LR and got[6] == pytest.approx(LR)


# ---------------------------------------------------------------- --warmup_steps
def test_num_warmup_steps(tmp_path):
    def warmup(*argv, total):
        return cfg(*argv, tmp_path=tmp_path).num_warmup_steps(total)

    assert warmup("--warmup_steps", "4", total=100) == 4
    assert warmup("--warmup_steps", "4.0", total=100) == 4  # a whole number written as a float
    assert warmup("--warmup_steps", "1", total=100) == warmup("--warmup_steps", "1.0", total=100) == 1  # not 100%
    assert warmup("--warmup_steps", "4", total=3) == 4  # more than the run: kept (the run warns)
    assert warmup("--warmup_steps", "0.25", total=10) == 3  # ceil(2.5): rounded up, as Trainer does
    assert warmup("--warmup_steps", "0.25", total=100) == 25
    assert warmup("--warmup_steps", "0.999", total=10) == 10
    assert warmup("--warmup_steps", "0.05", total=10) == 1  # Trainer: math.ceil(10 * 0.05)
    assert warmup("--warmup_steps", "0", total=100) == 0
    assert warmup(total=100) == 0
    assert warmup("--warmup_ratio", "0.1", total=55) == 5  # --warmup_ratio: rounded down, as the loop always did
    assert warmup("--warmup_ratio", "0.25", total=10) == 2
    for fraction in (0.05, 0.1, 0.3, 0.5):
        for total in (7, 38, 100, 1001):
            assert warmup("--warmup_steps", str(fraction), total=total) == math.ceil(fraction * total)
            assert warmup("--warmup_ratio", str(fraction), total=total) == int(fraction * total)
    # the product's floating-point noise (0.29 x 100 = 28.999999999999996, 0.07 x 100 = 7.000000000000001) is
    # not a step: the exact product is whole (audit58 b2: 28 and 8 warmup steps of 100)
    assert warmup("--warmup_ratio", "0.29", total=100) == 29
    assert warmup("--warmup_ratio", "0.57", total=100) == 57
    assert warmup("--warmup_steps", "0.07", total=100) == 7
    assert warmup("--warmup_steps", "0.14", total=100) == 14


def test_whole_warmup_steps_schedule_in_a_run(tiny_model, tiny_data, tmp_path):
    """--warmup_steps 4, linear, 10 steps: the logged rate rises step / 4 * lr, then falls linearly to 0."""
    out = str(tmp_path / "out")
    Loop(parse_args(small(tiny_model, tiny_data, out, warmup_steps=4, max_steps=10))).fit()
    got = lrs(out)
    assert sorted(got) == list(range(1, 11))
    assert [got[s] for s in range(1, 11)] == pytest.approx([LR * linear_with_warmup(s, 4, 10) for s in range(1, 11)],
                                                           rel=1e-9, abs=1e-15)
    assert got[4] == pytest.approx(LR) and got[1] == pytest.approx(LR / 4)


def test_fractional_warmup_steps_and_warmup_ratio(tiny_model, tiny_data, tmp_path):
    """Of 10 steps, --warmup_steps 0.25 warms up ceil(2.5) = 3 steps (Trainer's rounding), --warmup_ratio
    0.25 int(2.5) = 2 (the loop's, unchanged: resumed runs keep their schedule)."""
    for flag, warmup in (("warmup_steps", 3), ("warmup_ratio", 2)):
        out = str(tmp_path / flag)
        Loop(parse_args(small(tiny_model, tiny_data, out, max_steps=10, **{flag: 0.25}))).fit()
        got = lrs(out)
        assert [got[s] for s in range(1, 11)] == pytest.approx(
            [LR * linear_with_warmup(s, warmup, 10) for s in range(1, 11)], rel=1e-9, abs=1e-15), flag


def test_a_warmup_longer_than_the_run_warns_and_goes_on(tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "out")
    with pytest.warns(UserWarning, match="never reaches --learning_rate") as caught:
        Loop(parse_args(small(tiny_model, tiny_data, out, warmup_steps=20, max_steps=6))).fit()
    warned = [str(w.message) for w in caught if "never reaches --learning_rate" in str(w.message)]
    assert len(warned) == 1 and "20" in warned[0] and "6" in warned[0], warned  # the warmup and the run's steps
    got = lrs(out)
    assert [got[s] for s in range(1, 7)] == pytest.approx([LR * s / 20 for s in range(1, 7)], rel=1e-9)
    assert evals(out)[-1]["step"] == 6  # the run went on to its end


def test_a_polynomial_schedule_whose_warmup_is_the_whole_run_trains_to_its_end(tiny_model, tiny_data, tmp_path):
    """--lr_scheduler_type polynomial with --warmup_steps equal to the run's steps died at the last step with a
    ZeroDivisionError traceback (its decay divides by the steps after the warmup), before any evaluation or best/
    (audit63 u1); it trains as the warmup says, to its end."""
    out = str(tmp_path / "out")
    with pytest.warns(UserWarning, match="is as long as this run's 4 optimizer steps"):
        Loop(parse_args(small(tiny_model, tiny_data, out, warmup_steps=4, max_steps=4,
                              lr_scheduler_type="polynomial"))).fit()
    got = lrs(out)
    assert [got[s] for s in range(1, 5)] == pytest.approx([LR * s / 4 for s in range(1, 5)], rel=1e-9)
    assert evals(out)[-1]["step"] == 4 and os.path.isfile(os.path.join(out, "best", "model.safetensors"))


def test_warmup_stable_decay_longer_than_the_run_is_refused_at_setup(tiny_model, tiny_data, tmp_path):
    """num_decay_steps 6 + 4 warmup steps > the run's 8 steps: only setup knows the run's length."""
    out = str(tmp_path / "out")
    args = small(tiny_model, tiny_data, out, max_steps=8, warmup_steps=4, lr_scheduler_type="warmup_stable_decay",
                 lr_scheduler_kwargs="num_decay_steps=6")
    parse_args(args)  # the config alone is fine
    proc = run_cli(args, how="python", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "--lr_scheduler_kwargs" in errors[0] and "num_decay_steps" in errors[0], errors
    assert not os.path.exists(os.path.join(out, "metrics.jsonl"))


@pytest.mark.parametrize("warmup, kwargs", [
    ("4", "num_decay_steps=5"),  # 9 > 8
    ("0.5", "num_decay_steps=5"),  # a fractional warmup: 4 of the 8 steps, + 5
    ("4", '{"num_decay_steps": 6.0}'),  # a whole number written as a float is the same length
], ids=["steps", "fraction", "float-decay"])
def test_warmup_stable_decay_too_long_in_any_spelling(warmup, kwargs, tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(UserError) as e:
        Loop(parse_args(small(tiny_model, tiny_data, out, max_steps=8, warmup_steps=warmup,
                              lr_scheduler_type="warmup_stable_decay", lr_scheduler_kwargs=kwargs))).fit()
    assert "--lr_scheduler_kwargs" in str(e.value) and "num_decay_steps" in str(e.value), str(e.value)


def test_warmup_stable_decay_that_fits_warms_up_then_decays(tiny_model, tiny_data, tmp_path):
    """4 + 4 = 8 steps: warmup to lr, then the decay (cosine by default, to 0 at the last step)."""
    ok = str(tmp_path / "ok")
    Loop(parse_args(small(tiny_model, tiny_data, ok, max_steps=8, warmup_steps=4,
                          lr_scheduler_type="warmup_stable_decay", lr_scheduler_kwargs="num_decay_steps=4"))).fit()
    got = lrs(ok)
    assert [got[s] for s in range(1, 5)] == pytest.approx([LR * s / 4 for s in range(1, 5)], rel=1e-9)
    assert [got[s] for s in range(5, 9)] == pytest.approx(
        [LR * 0.5 * (1 + math.cos(math.pi * (s - 4) / 4)) for s in range(5, 9)], rel=1e-9, abs=1e-15)


def test_cosine_with_min_lr_never_goes_below_its_floor(tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "out")
    Loop(parse_args(small(tiny_model, tiny_data, out, max_steps=12, warmup_steps=2,
                          lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs="min_lr_rate=0.1"))).fit()
    got = lrs(out)
    assert sorted(got) == list(range(1, 13))
    assert min(got.values()) >= 0.1 * LR * (1 - 1e-9), got
    # after the warmup: 0.1 + 0.9 * (half a cosine wave), exactly the floor at the last step
    expected = {s: LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 10))) for s in range(2, 13)}
    assert {s: got[s] for s in expected} == pytest.approx(expected, rel=1e-9)
    assert got[12] == pytest.approx(0.1 * LR, rel=1e-9) and got[1] == pytest.approx(LR / 2, rel=1e-9)


# ---------------------------------------------------------------- AdamW's betas and epsilon
def test_betas_and_epsilon_reach_adamw(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    optimizer = Loop(cfg("--adam_beta1", "0.8", "--adam_beta2", "0.95", "--adam_epsilon", "1e-6",
                         tmp_path=tmp_path)).build_optimizer(model)
    assert isinstance(optimizer, torch.optim.AdamW) and len(optimizer.param_groups) == 2  # decay and no_decay
    for group in optimizer.param_groups:
        assert tuple(group["betas"]) == (0.8, 0.95) and group["eps"] == 1e-6
    # the defaults are torch's own: a run without the flags is the run it was before them
    default = Loop(cfg(tmp_path=tmp_path)).build_optimizer(model)
    torch_default = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]).defaults
    for group in default.param_groups:
        assert tuple(group["betas"]) == tuple(torch_default["betas"]) and group["eps"] == torch_default["eps"]


@pytest.mark.parametrize("model_type,sizes", [
    ("llama", dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)),
    ("gemma", dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                   intermediate_size=32)),
    ("t5", dict(d_model=16, num_layers=2, num_heads=2, d_ff=32, d_kv=8)),
    ("bert", dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)),
])
def test_no_weight_decay_on_any_bias_or_norm(model_type, sizes, tmp_path):
    """Trainer's rule (get_decay_parameter_names) by name as well as by class: Llama's and Gemma's final `norm`
    and T5's `layer_norm`s (RMS norms of their own classes) were decayed."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from loop import models

    config = AutoConfig.for_model(model_type, vocab_size=100, pad_token_id=0, num_labels=2, **sizes)
    model = AutoModelForSequenceClassification.from_config(config)
    decay, no_decay = models.param_groups(model, 0.01)
    assert (decay["name"], decay["weight_decay"], no_decay["name"], no_decay["weight_decay"]) == (
        "decay", 0.01, "no_decay", 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert undecayed == {n for n in names.values() if "bias" in n or "norm" in n.lower()}  # every norm and bias, no more
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)


def test_adamw_updates_with_the_given_betas_and_epsilon(tmp_path):
    """Two steps of the loop's optimizer on one weight against Adam's update written out (no weight decay)."""
    b1, b2, eps, lr = 0.5, 0.6, 1e-3, 0.1
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    optimizer = Loop(cfg("--adam_beta1", str(b1), "--adam_beta2", str(b2), "--adam_epsilon", str(eps),
                         "--learning_rate", str(lr), "--weight_decay", "0", tmp_path=tmp_path)).build_optimizer(model)
    want = adam(1.0, (1.0, -0.5), lr, b1, b2, eps)
    for t, g in enumerate((1.0, -0.5)):
        model.weight.grad = torch.full((1, 1), g)
        optimizer.step()
        assert model.weight.item() == pytest.approx(want[t], rel=1e-6), t
    # torch's default betas and epsilon land elsewhere: the test tells them apart
    assert abs(adam(1.0, (1.0, -0.5), lr, 0.9, 0.999, 1e-8)[1] - want[1]) > 1e-3


def adam(w, grads, lr, b1, b2, eps):
    """Adam's weights after each of `grads`, written out (bias-corrected moments, no weight decay)."""
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        w -= lr * (m / (1 - b1 ** t)) / (math.sqrt(v / (1 - b2 ** t)) + eps)
        out.append(w)
    return out


# ---------------------------------------------------------------- --label_smoothing_factor
class Recording(Loop):
    """The default loss, with each micro-batch's logits, labels and loss kept, and the evaluation's logits."""

    uses_class_weights = True  # it applies them: super().compute_loss

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps, self.evaluated = [], []

    def build_model(self):
        """A head 100 times larger: confident logits, far from uniform (a fresh head's are near 0, where
        smoothing barely changes the loss and a test could not tell it on from off)."""
        model = super().build_model()
        with torch.no_grad():
            model.classifier.weight.mul_(100)
        return model

    def compute_loss(self, model, batch):
        loss, outputs = super().compute_loss(model, batch)
        self.steps.append((outputs.logits.detach().double(), batch["labels"].clone(), loss.detach().double()))
        return loss, outputs

    def evaluation_step(self, batch):
        logits, labels = super().evaluation_step(batch)
        self.evaluated.append((logits.detach().double(), labels.clone()))
        return logits, labels


class Undeclared(Recording):
    def compute_loss(self, model, batch):  # its own loss, without uses_class_weights = True (one through super()
        outputs = model(**batch)           # or self.weighted_loss() applies them: not warned about)
        return outputs.loss, outputs


def smoothed(logits, labels, eps, weights=None):
    """Cross-entropy against the target 1 - eps + eps/K on the label and eps/K elsewhere, per example
    (written out from log-probabilities), then the mean weighted by the label's weight."""
    logp = torch.log_softmax(logits.double(), -1)
    k = logits.shape[-1]
    per_example = -(1 - eps) * logp.gather(1, labels[:, None]).squeeze(1) - eps / k * logp.sum(-1)
    w = torch.ones(k, dtype=torch.float64) if weights is None else torch.tensor(weights, dtype=torch.float64)
    return ((w[labels] * per_example).sum() / w[labels].sum()).item()


def test_a_phase_of_true_steps_is_refused():
    """audit61 mutant: num_decay_steps / num_stable_steps are whole numbers of optimizer steps; true (a bool, which
    Python counts as the int 1) is refused naming the value, not run as a decay of 1 step."""
    from loop.schedules import kwargs_text

    for name in ("num_decay_steps", "num_stable_steps"):
        given = "num_decay_steps=5," * (name != "num_decay_steps") + f"{name}=true"
        with pytest.raises(UserError, match=rf"^--lr_scheduler_kwargs {name} must be a whole number of optimizer "
                                            rf"steps, got True\.$"):
            kwargs_text("warmup_stable_decay", given, 1e-3)


def test_steps_count_a_last_partial_accumulation_window_as_a_step():
    """audit61 mutant: schedules.steps gives (optimizer steps per epoch, steps in all, epochs): 10 micro-batches under
    accumulation 4 are 3 steps (the last window of 2 steps too), so 2 epochs are 6 steps; --max_steps 7 takes 3
    epochs, the last cut short; 2.2 epochs of 25 steps are 55 (not 56 from float noise)."""
    from types import SimpleNamespace

    from loop.schedules import steps

    run = lambda gas, epochs, max_steps=0: SimpleNamespace(gradient_accumulation_steps=gas, num_train_epochs=epochs,  # noqa: E731
                                                           max_steps=max_steps)
    assert steps(run(4, 2), 10) == (3, 6, 2)
    assert steps(run(4, 2, max_steps=7), 10) == (3, 7, 3)
    assert steps(run(1, 2.2), 25) == (25, 55, 3)
    assert steps(run(3, 1), 3) == (1, 1, 1)


def test_polynomial_defaults_are_checked_without_any_kwargs():
    """audit61 mutant: polynomial's own defaults (lr_end 1e-7) are checked against --learning_rate before any work
    even with no --lr_scheduler_kwargs: a rate below lr_end is one line naming the defaults, not a transformers
    ValueError at setup; a usable rate gives no text."""
    from loop.schedules import kwargs_text

    assert kwargs_text("polynomial", "", 1e-3) is None
    with pytest.raises(UserError, match=r"^the polynomial schedule's defaults with --learning_rate 1e-08 gives no "
                                        r"usable polynomial schedule \(lr_end \(1e-07\) must be smaller than "
                                        r"initial lr \(1e-08\)\); check the values\.$"):
        kwargs_text("polynomial", "", 1e-8)


def test_label_smoothing_is_refused_for_multi_label_and_regression_data():
    """audit61 mutant: --label_smoothing_factor is refused in one line naming why where there is no single target
    class to smooth (multi-label: a 0/1 target per label) or no class at all (a regression); single-label data
    gets the factor as a float, and 0 is off."""
    from types import SimpleNamespace

    from loop.losses import label_smoothing

    single = SimpleNamespace(regression=False, multi_label=False)
    assert label_smoothing(0.1, single) == 0.1 and label_smoothing(0, single) == 0.0
    assert label_smoothing(0, SimpleNamespace(regression=False, multi_label=True)) == 0.0
    for data, why in ((SimpleNamespace(regression=False, multi_label=True), "multi-label data has a 0/1 target per "
                                                                            "label, not one class"),
                      (SimpleNamespace(regression=True, multi_label=False), "a regression has no classes")):
        with pytest.raises(UserError, match=rf"^--label_smoothing_factor smooths the target class of single-label "
                                            rf"classification, and {why}; drop --label_smoothing_factor\.$"):
            label_smoothing(0.1, data)


@pytest.mark.parametrize("weights", [None, [1.0, 3.0]], ids=["unweighted", "class-weights"])
def test_smoothed_training_loss_and_plain_eval_loss(weights, tiny_model, tiny_data, tmp_path):
    eps = 0.2
    out = str(tmp_path / "out")
    given = None if weights is None else f"NEGATIVE={weights[0]},POSITIVE={weights[1]}"  # ids: NEGATIVE 0, POSITIVE 1
    loop = Recording(parse_args(small(tiny_model, tiny_data, out, max_steps=3, label_smoothing_factor=eps,
                                      class_weights=given)))
    loop.fit()
    assert len(loop.steps) >= 3
    logged = {r["step"]: r["loss"] for r in train_logs(out)}
    for step, (logits, labels, loss) in zip((1, 2, 3), loop.steps[-3:]):
        expected = smoothed(logits, labels, eps, weights)
        assert loss.item() == pytest.approx(expected, rel=1e-5), step
        assert logged[step] == pytest.approx(expected, rel=1e-5), step  # the loss the run logs, too
        # the test tells smoothing (and how it meets the weights) apart from its neighbours
        assert abs(expected - smoothed(logits, labels, 0.0, weights)) > 1e-3
        if weights is not None:
            naive = F.cross_entropy(logits, labels, weight=torch.tensor(weights, dtype=torch.float64),
                                    label_smoothing=eps).item()  # smoothing terms weighted per class: not ours
            if abs(naive - expected) > 1e-4:
                assert loss.item() != pytest.approx(naive, rel=1e-5)
    # eval_loss: plain cross-entropy over the evaluation examples, neither smoothed nor weighted
    logits = torch.cat([lg for lg, _ in loop.evaluated])
    labels = torch.cat([lb for _, lb in loop.evaluated])
    assert len(labels) == 32
    plain = F.cross_entropy(logits, labels).item()
    eval_loss = evals(out)[-1]["eval_loss"]
    assert eval_loss == pytest.approx(plain, rel=1e-5)
    assert abs(eval_loss - smoothed(logits, labels, eps)) > 1e-3


def test_an_override_of_compute_loss_is_warned_about_naming_label_smoothing(tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "out")
    with pytest.warns(UserWarning, match=r"Undeclared overrides compute_loss: --label_smoothing_factor") as caught:
        Undeclared(parse_args(small(tiny_model, tiny_data, out, max_steps=1, label_smoothing_factor=0.1))).fit()
    said = [str(w.message) for w in caught if "overrides compute_loss" in str(w.message)]
    assert len(said) == 1 and "--class_weights" not in said[0], said
    out = str(tmp_path / "both")
    with pytest.warns(UserWarning, match="overrides compute_loss") as caught:
        Undeclared(parse_args(small(tiny_model, tiny_data, out, max_steps=1, label_smoothing_factor=0.1,
                                    class_weights="balanced"))).fit()
    said = [str(w.message) for w in caught if "overrides compute_loss" in str(w.message)]
    assert len(said) == 1 and "--class_weights" in said[0] and "--label_smoothing_factor" in said[0], said


def write_rows(d, rows):
    d.mkdir()
    synthetic.write_jsonl(rows[:32], d / "train.jsonl")
    synthetic.write_jsonl(rows[32:], d / "validation.jsonl")
    return d


@pytest.mark.parametrize("kind", ["multi_label", "regression"])
def test_label_smoothing_is_refused_without_single_label_classes(kind, tiny_model, tmp_path):
    base = synthetic.make_rows(48, seed=3)
    if kind == "multi_label":
        rows = [{"text": r["text"], "label": [r["label"]] + (["GOOD_FILM"] if i % 3 == 0 else [])}
                for i, r in enumerate(base)]
        extra, says = {}, r"multi-label"
    else:
        rows = [{"text": r["text"], "label": 0.1 * i} for i, r in enumerate(base)]
        extra, says = {"problem_type": "regression"}, r"regression"
    data = write_rows(tmp_path / "data", rows)
    out = str(tmp_path / "out")
    with pytest.raises(UserError) as e:
        Loop(parse_args(small(tiny_model, data, out, max_steps=1, label_smoothing_factor=0.1, **extra))).fit()
    msg = str(e.value)
    assert "\n" not in msg and "--label_smoothing_factor" in msg and re.search(says, msg), msg
    assert "drop --label_smoothing_factor" in msg, msg


# ---------------------------------------------------------------- resume
@pytest.fixture(scope="module")
def checkpointed(tiny_model, tiny_data, tmp_path_factory):
    """4 steps with a checkpoint every 2: a cosine schedule with its one argument given as JSON,
    non-default beta1 and epsilon; the rest at their defaults."""
    out = str(tmp_path_factory.mktemp("checkpointed") / "out")
    args = small(tiny_model, tiny_data, out, max_steps=4, checkpointing_steps=2, adam_beta1=0.85, adam_epsilon=1e-7,
                 lr_scheduler_type="cosine", lr_scheduler_kwargs='{"num_cycles": 0.5}')
    loop = Loop(parse_args(args))
    loop.fit()
    return out, args, loop


def copied(checkpointed, tmp_path, **over):
    """A copy of the checkpointed run, and its flags pointed at the copy (with `over` changed)."""
    out, args, _ = checkpointed
    new = str(tmp_path / "run")
    shutil.copytree(out, new)
    args = [new if a == out else a for a in args]
    for flag, value in over.items():
        args[args.index(f"--{flag}") + 1] = value
    return new, args


def test_betas_and_epsilon_reach_the_runs_optimizer(checkpointed):
    _, _, loop = checkpointed
    assert loop.optimizer.param_groups
    for group in loop.optimizer.param_groups:
        assert tuple(group["betas"]) == (0.85, 0.999) and group["eps"] == 1e-7


@pytest.mark.parametrize("flag, value, shown", [
    ("--adam_beta2", "0.99", "--adam_beta2 0.999 → 0.99"),
    ("--adam_beta1", "0.9", "--adam_beta1 0.85 → 0.9"),
    ("--adam_epsilon", "1e-8", "--adam_epsilon 1e-07 → 1e-08"),
    ("--warmup_steps", "1", "--warmup_steps not given → 1"),
    ("--label_smoothing_factor", "0.1", "--label_smoothing_factor 0.0 → 0.1"),
    ("--lr_scheduler_kwargs", "num_cycles=1", "--lr_scheduler_kwargs"),
])
def test_resume_with_a_changed_option_is_refused_naming_it(flag, value, shown, checkpointed, tmp_path):
    out, args = copied(checkpointed, tmp_path)
    with pytest.raises(UserError) as e:
        Loop(parse_args(args + ["--resume_from_checkpoint", "latest", flag, value])).fit()
    msg = str(e.value)
    assert shown in msg and "different config" in msg, msg
    for other in ("adam_beta1", "adam_beta2", "adam_epsilon", "warmup_steps", "lr_scheduler_kwargs",
                  "label_smoothing_factor"):
        assert other == flag[2:] or other not in msg, msg  # unchanged options are not named


@pytest.mark.parametrize("spelling", ["num_cycles=0.5", " num_cycles = 0.5 ", "yaml"])
def test_resume_with_the_same_kwargs_spelled_otherwise_is_accepted(spelling, checkpointed, tmp_path):
    out, args = copied(checkpointed, tmp_path)
    i = args.index("--lr_scheduler_kwargs")
    if spelling == "yaml":
        config = tmp_path / "resume.yaml"
        config.write_text("lr_scheduler_kwargs:\n  num_cycles: 0.5\n")
        args = args[:i] + args[i + 2:] + ["--config", str(config)]
    else:
        args[i + 1] = spelling
    resumed = Loop(parse_args(args + ["--resume_from_checkpoint", "latest"]))
    resumed.fit()
    assert resumed.resumed_from and os.path.basename(resumed.resumed_from) == "step_4"


NEW_KEYS = ("warmup_steps", "adam_beta2", "label_smoothing_factor")  # at their defaults in the checkpointed run


def without_new_keys(out):
    """Rewrite every checkpoint's recorded config as a version of loop before these options would have."""
    for _, path in ckpt.list_checkpoints(os.path.join(out, "checkpoints")):
        state = ckpt.read_state(path)
        for key in NEW_KEYS:
            del state["config"][key]
        storage.write_json(os.path.join(path, ckpt.STATE_FILE), state)


@pytest.mark.parametrize("flag, value, shown", [
    ("--warmup_steps", "10", r"--warmup_steps \(new\) 10\b"),
    ("--adam_beta2", "0.99", r"--adam_beta2 \(new\) 0\.99\b"),
    ("--label_smoothing_factor", "0.1", r"--label_smoothing_factor \(new\) 0\.1\b"),
])
def test_resume_from_a_checkpoint_older_than_an_option(flag, value, shown, checkpointed, tmp_path):
    """A checkpoint whose config lacks the option: the default is what its run did (accepted); another
    value is a change (refused, naming it)."""
    out, args = copied(checkpointed, tmp_path)
    without_new_keys(out)
    with pytest.raises(UserError) as e:
        Loop(parse_args(args + ["--resume_from_checkpoint", "latest", flag, value])).fit()
    assert re.search(shown, str(e.value)), str(e.value)
    resumed = Loop(parse_args(args + ["--resume_from_checkpoint", "latest"]))
    resumed.fit()
    assert resumed.resumed_from and os.path.basename(resumed.resumed_from) == "step_4"


# ---------------------------------------------------------------- schedules that would not train (from the audit)
@pytest.mark.parametrize("schedule, given, says", [
    ("polynomial", "lr_end=0.01", "lr_end (0.01) must be smaller than initial lr (0.001)"),  # above --learning_rate
    ("polynomial", "lr_end=-0.01", "below 0"),  # gradient ascent
    ("polynomial", "power=-1", "cannot be raised to a negative power"),
    ("inverse_sqrt", "timescale=0", "division by zero"),
    ("inverse_sqrt", "timescale=-5", "math domain error"),
    ("cosine", "num_cycles=nan", "give finite numbers"),  # every rate 0: nothing trained
    ("cosine", '{"num_cycles": NaN}', "give finite numbers"),
    ("cosine", "num_cycles=inf", "give finite numbers"),
    ("cosine_with_min_lr", "min_lr=0.5", "above --learning_rate 0.001"),
    ("cosine_with_min_lr", "min_lr_rate=2", "above --learning_rate 0.001"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None)
def test_a_schedule_that_would_not_train_is_refused_before_any_work(schedule, given, says, tmp_path):
    """The config's check builds the schedule at the run's --learning_rate and reads its rate across a run:
    an error, a rate below 0, not a number or above --learning_rate is one line (it used to be a traceback
    mid-run, or a run at rate 0 or in gradient ascent that exited 0)."""
    msg = refusal("--learning_rate", str(LR), "--lr_scheduler_type", schedule, "--lr_scheduler_kwargs", given,
                  tmp_path=tmp_path)
    assert says in msg and "--lr_scheduler_kwargs" in msg, msg


def test_schedule_values_are_numbers_however_written(tmp_path):
    """1e-6 (text to YAML 1.1), .1 (not JSON) and 2.0 (2) are the numbers they spell: one canonical text,
    so a resume written either way compares equal; --warmup_steps 0 is no warmup, as when not given."""
    (tmp_path / "c.yaml").write_text("lr_scheduler_type: cosine_with_min_lr\n"
                                     "lr_scheduler_kwargs: {min_lr: 1e-6, num_cycles: 2.0}\n")
    texts = {cfg("--config", str(tmp_path / "c.yaml"), tmp_path=tmp_path).lr_scheduler_kwargs,
             cfg("--lr_scheduler_type", "cosine_with_min_lr", "--lr_scheduler_kwargs", "min_lr=.1e-5,num_cycles=2",
                 tmp_path=tmp_path).lr_scheduler_kwargs,
             cfg("--lr_scheduler_type", "cosine_with_min_lr", "--lr_scheduler_kwargs",
                 '{"num_cycles": 2.0, "min_lr": 0.000001}', tmp_path=tmp_path).lr_scheduler_kwargs}
    assert texts == {'{"min_lr": 1e-06, "num_cycles": 2}'}, texts
    assert cfg("--warmup_steps", "0", tmp_path=tmp_path).warmup_steps is None


def test_warmup_stable_decay_phases_that_end_early_are_warned_about(tiny_model, tiny_data, tmp_path):
    """num_stable_steps given and the phases shorter than the run: the rest trains at the decay's end, said
    once; transformers' own warning about num_stable_steps is not shown."""
    out = str(tmp_path / "out")
    with pytest.warns(UserWarning) as caught:
        Loop(parse_args(small(tiny_model, tiny_data, out, max_steps=12, lr_scheduler_type="warmup_stable_decay",
                              lr_scheduler_kwargs="num_stable_steps=3,num_decay_steps=3", warmup_steps=2))).fit()
    said = [str(w.message) for w in caught]
    assert sum("end before this run's 12 optimizer steps" in m for m in said) == 1, said
    assert not any("num_stable_steps are specified" in m for m in said), said
    got = lrs(out)
    assert got[3] == pytest.approx(LR) and all(got[s] == 0 for s in range(9, 13)), got
