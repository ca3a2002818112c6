"""Tests written by a mutation audit of loop/contract.py, schedules.due and loop/option_hints.py (audit68 mut): each
one fails on a small change of the code that a user would see (a variant's slip that became a traceback instead of
its one line, a step taken without gradients, an evaluation or checkpoint at the wrong step, a hint that names the
wrong option or a pattern that does not match the files) and passes on the code as it is. All are direct calls, no
training run: well under a second each."""

import pytest
import torch

from loop import UserError
from loop.contract import GradientWatch, checked_evaluation_loss, checked_evaluation_step, checked_step_loss


def refusal(fn, *args):
    with pytest.raises(UserError) as e:
        fn(*args)
    return str(e.value)


def test_a_training_step_loss_of_one_element_is_read_as_one_number():
    """training_step returning a loss of shape [1] trains: it is read as a 0-d number (mutants: returned as [1],
    which the running mean's 0-d sum cannot take, a RuntimeError at the first step)."""
    loss = checked_step_loss(torch.tensor([2.5]))
    assert loss.shape == () and loss.item() == 2.5
    plain = torch.tensor(1.5)
    assert checked_step_loss(plain) is plain


def test_what_evaluation_step_returns_other_than_two_tensors_is_one_line():
    """(logits, labels, extra), (logits, None) or a dict: the one line, not a 'too many values to unpack' or a
    NoneType error inside the gathering (mutants: len >= 2, any() for all(), no tensor check, 'a dict of 2')."""
    logits, labels = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
    fix = "; return (logits, labels), two tensors."
    assert refusal(checked_evaluation_step, (logits, labels, logits)) == "evaluation_step returned a tuple of 3" + fix
    assert refusal(checked_evaluation_step, (logits, None)) == "evaluation_step returned a tuple of 2" + fix
    assert refusal(checked_evaluation_step, {"logits": logits, "labels": labels}) == (
        "evaluation_step returned a dict" + fix)
    pair = [logits, labels]
    assert checked_evaluation_step(pair) is pair


def test_evaluation_loss_is_one_loss_per_example_and_each_examples_mean():
    """A loss for fewer rows than the batch, or loss.item(), is the one line (mutants: a shorter one gathered as if
    whole, an AttributeError on the float); a loss per example and output ([B, L]) is each example's mean, one row
    per example (mutants: kept [B, L], reshaped [L, B] or averaged over the examples: with two processes
    gather_for_metrics drops the duplicated examples by row, so eval_loss came out wrong)."""
    fix = "; return one loss per example, shape [4] (e.g. cross_entropy(..., reduction='none'))."
    assert refusal(checked_evaluation_loss, torch.zeros(3), 4) == "evaluation_loss returned shape [3]" + fix
    assert refusal(checked_evaluation_loss, 0.5, 4) == "evaluation_loss returned a float" + fix
    per_output = checked_evaluation_loss(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), 2)
    assert per_output.tolist() == [2.0, 5.0]
    assert checked_evaluation_loss(torch.tensor([[[1.0, 3.0]], [[5.0, 7.0]]]), 2).tolist() == [2.0, 6.0]


def test_a_step_finds_gradients_only_when_a_trainable_parameter_has_one():
    """A step whose micro-batches all skipped backward is not taken (fp16's scaler fails on a step without
    gradients), also after steps that had one (mutants: the probe parameter trusted without its gradient, False
    returned as True). DeepSpeed and FSDP keep the gradients themselves: always found, or FSDP1's ranks would
    disagree (mutants: FSDP left out, 'or' read as 'and'). A model with nothing trainable (all frozen until a hook
    unfreezes them) is no missing backward (mutant: counted, the run refused at its first epoch's end)."""
    model = torch.nn.Linear(2, 1)
    watch = GradientWatch()
    assert watch.found(model, "NO") is False and watch.missing == 1
    model(torch.ones(1, 2)).sum().backward()
    assert watch.found(model, "NO") is True and watch.missing == 1
    model.zero_grad(set_to_none=True)  # (as optimizer_step leaves them)
    assert watch.found(model, "NO") is False and watch.missing == 2
    for kind in ("FSDP", "DEEPSPEED"):
        assert watch.found(model, kind) is True
    assert watch.missing == 2
    model.requires_grad_(False)
    frozen = GradientWatch()
    assert frozen.found(model, "NO") is True and frozen.missing == 0


def test_no_step_yet_is_not_a_run_without_backward():
    """check_learned at the end of an epoch that trained no step in this process (nothing of it left after a
    resume) refuses nothing (mutant: "had a gradient in any of the 0 optimizer steps"); one step of two without a
    gradient is a skipped batch, not a refusal; every step without one is."""
    watch = GradientWatch()
    watch.first_step = 4
    watch.check_learned(4)
    watch.missing = 1
    watch.check_learned(6)
    assert refusal(watch.check_learned, 5).startswith(
        "no trainable parameter had a gradient in the one optimizer step so far: a training_step override must ")


def test_what_each_optimizer_step_is_due_and_the_epochs_last_step():
    """A log line every --logging_steps, an evaluation every --eval_steps, a checkpoint every --checkpointing_steps.
    The epoch's (or --max_steps') last step always logs, even off the --logging_steps grid (mutant: an epoch shorter
    than --logging_steps had no training-loss line at all), and neither evaluates nor saves there: fit() evaluates it
    once after the epoch, then checkpoints it (mutants: two evaluation records of one step, early stopping counting
    it twice; a checkpoint without that evaluation). --checkpointing_steps epoch saves no step mid-epoch."""
    from loop.config import TrainConfig
    from loop.schedules import due

    cfg = TrainConfig(output_dir="out", logging_steps=3, eval_steps=4, checkpointing_steps="5")
    schedule = {step: due(cfg, step, last=False) for step in range(1, 13)}
    assert [s for s, (log, _, _) in schedule.items() if log] == [3, 6, 9, 12]
    assert [s for s, (_, evaluate, _) in schedule.items() if evaluate] == [4, 8, 12]
    assert [s for s, (_, _, save) in schedule.items() if save] == [5, 10]
    assert due(cfg, 7, last=True) == (True, False, False)
    assert due(cfg, 60, last=True) == (True, False, False)  # on every grid: still only the log line here
    by_epoch = TrainConfig(output_dir="out", logging_steps=3, checkpointing_steps="epoch")
    assert [due(by_epoch, step, last=False) for step in (3, 4)] == [(True, False, False), (False, False, False)]


def test_a_hint_for_yaml_keys_and_the_built_in_option_is_spelled_for_yaml():
    """In a --config file the built-in option an example's option begins with is named as a key, not a flag
    (mutant: 'use --label_smoothing_factor', a key the file cannot hold); a variant's own option that is also a
    Trainer name, written with hyphens, is told its spelling, not the loop's option for Trainer's (mutants:
    'for batch-size use --per_device_train_batch_size', 'use-cache is a Trainer option with no counterpart')."""
    import dataclasses

    from loop.config import TrainConfig
    from loop.option_hints import option_hint

    assert option_hint("label_smoothing", TrainConfig, yaml=True) == (
        "for label_smoothing use label_smoothing_factor (built in), or run examples/label_smoothing.py, whose option "
        "it is")

    @dataclasses.dataclass
    class Variant(TrainConfig):
        batch_size: int = 8
        use_cache: bool = False

    assert option_hint("batch-size", Variant, yaml=True) == "write batch-size as batch_size"
    assert option_hint("use-cache", Variant, yaml=True) == "write use-cache as use_cache"


def test_a_short_word_of_several_options_names_them_all():
    """--max (three letters) is a word of several options' names: they are named (mutant: words of four letters or
    more only, and --max got no hint at all). Four are shown and '...' says there are more, also when there is one
    more (--train: five; mutant: '...' only past five, and the fifth option was hidden without a sign)."""
    from loop.config import TrainConfig
    from loop.option_hints import option_hint

    assert option_hint("--max", TrainConfig) == ("options with 'max' in their name: --max_length, --max_train_samples, "
                                                 "--max_eval_samples, --max_test_samples, ...")
    assert option_hint("--train", TrainConfig) == ("options with 'train' in their name: --train_split, --train_file, "
                                                   "--max_train_samples, --per_device_train_batch_size, ...")


def test_the_pattern_shown_for_shards_of_different_lengths_matches_each(tmp_path):
    """part-1.csv and part-11.csv: the pattern shown is part-1*.csv, which matches both (mutants: the overlap of the
    common start and end measured on the longest name, or not at all: part-1*1.csv, which misses part-1.csv). Two
    names that share two characters (s-0, s-1) are shards too (mutant: no hint unless they share three). A stray
    file met first as another option's value is looked for again where it follows the file option (mutant: no
    hint), and one after --extra_eval_files is hinted too (mutant: only options that end in _file)."""
    from loop.option_hints import expanded_pattern_hint, shell_pattern

    assert shell_pattern(["d/part-1.csv", "d/part-11.csv"]) == ("d/part-1", ".csv")
    assert shell_pattern(["ab.csv", "abb.csv"]) == ("ab", ".csv")
    files = [str(tmp_path / f"train-{i}.jsonl") for i in range(3)]
    for f in files:
        open(f, "w").close()
    args = ["--validation_file", files[1], "--train_file"] + files
    assert expanded_pattern_hint(files[1], args) == (
        f"--train_file was given 3 files (the shell expands an unquoted pattern); quote the pattern (e.g. "
        f"--train_file '{tmp_path}/train-*.jsonl') so the loop expands it")
    # two files whose names share two characters (s-0, s-1) are shards of one pattern (mutant: three needed)
    shards = [str(tmp_path / f"s-{i}.jsonl") for i in range(2)]
    for f in shards:
        open(f, "w").close()
    assert f"quote the pattern (e.g. --train_file '{tmp_path}/s-*.jsonl')" in expanded_pattern_hint(
        shards[1], ["--train_file"] + shards)
    # --extra_eval_files takes files too: `--extra_eval_files ood/*.jsonl` unquoted (mutant: _file only)
    assert expanded_pattern_hint(files[1], ["--extra_eval_files"] + files).startswith(
        "--extra_eval_files was given 3 files (the shell expands an unquoted pattern)")
