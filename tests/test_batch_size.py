"""--auto_find_batch_size: the search for a per-device batch that fits, halving it and doubling the
accumulation, so an optimizer step keeps its examples.

Out-of-memory errors are mostly injected (this machine has no GPU to fill; one test meets a real one of
torch's CPU allocator under an address-space limit): a variant's compute_loss raises
the error CUDA gives when a micro-batch holds more rows than a set limit, as a real device would for
a batch too large. What is checked is what the search does with it: the batch it settles on, that
training then matches a run given that batch and accumulation from the start (bit for bit: the trial
pass leaves no trace in the weights or the random numbers), the resume, and the refusals."""

import os
import re
from types import SimpleNamespace

import pytest
import torch

from conftest import evals, tiny_args

from loop import Loop, UserError, memory, parse_args


class Limited(Loop):
    """A device that holds at most `limit` rows of a micro-batch (None: any)."""
    limit = None
    tried = None

    def compute_loss(self, model, batch):
        rows = len(batch["input_ids"])
        if model.training:
            self.tried = (self.tried or []) + [rows]
        if self.limit is not None and rows > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (a batch of {rows} rows)")
        return super().compute_loss(model, batch)


def weights(loop):
    return {k: v.detach().clone() for k, v in loop.model.named_parameters()}


def run(cls, args, limit=None):
    loop = type("L", (cls,), {"limit": limit})(parse_args(args))
    loop.fit()
    return loop


@pytest.mark.slow  # ~8 s: two runs
def test_a_batch_that_does_not_fit_is_halved_and_the_run_matches_one_given_that_batch(tiny_model, tiny_data,
                                                                                       tmp_path, capsys):
    common = dict(max_train_samples=96, num_train_epochs=1, max_eval_samples=32)
    found = run(Limited, tiny_args(tiny_model, tiny_data, str(tmp_path / "auto"), per_device_train_batch_size=24,
                                   auto_find_batch_size="true", **common), limit=8)
    said = capsys.readouterr().out
    assert "--auto_find_batch_size: a batch of 24 x" in said and "CUDA out of memory" in said
    assert "training with 6 per device x 4 accumulation steps (the same 24 examples" in said, said
    # 24 did not fit, nor 12 (halved); 6 did: the largest divisor of 24 at most half of 12
    assert found.tried[:3] == [24, 12, 6] and set(found.tried[3:]) <= {6}
    assert (found.cfg.per_device_train_batch_size, found.cfg.gradient_accumulation_steps) == (6, 4)
    given = run(Loop, tiny_args(tiny_model, tiny_data, str(tmp_path / "given"), per_device_train_batch_size=6,
                                gradient_accumulation_steps=4, **common))
    a, b = weights(found), weights(given)
    assert all(torch.equal(a[k], b[k]) for k in a), "the search left a trace in the run"
    assert evals(str(tmp_path / "auto")) == evals(str(tmp_path / "given"))


def test_a_batch_that_fits_changes_nothing(tiny_model, tiny_data, tmp_path, capsys):
    common = dict(max_train_samples=64, num_train_epochs=1, max_eval_samples=32)
    auto = run(Limited, tiny_args(tiny_model, tiny_data, str(tmp_path / "auto"), auto_find_batch_size="true", **common))
    assert "--auto_find_batch_size: a batch of 16 x" in capsys.readouterr().out
    plain = run(Loop, tiny_args(tiny_model, tiny_data, str(tmp_path / "plain"), **common))
    a, b = weights(auto), weights(plain)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the trial's dropout did not move the run's random numbers


class LimitedEval(Loop):
    """A device that holds at most `eval_limit` rows of an evaluation batch (training is unlimited)."""
    eval_limit = None

    def evaluation_step(self, batch):
        rows = len(batch["input_ids"])
        self.scored_rows = (getattr(self, "scored_rows", None) or []) + [rows]
        if self.eval_limit is not None and rows > self.eval_limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 3.00 GiB (an evaluation of {rows})")
        return super().evaluation_step(batch)


@pytest.mark.slow  # memory-limited trials, ~14 s
def test_an_evaluation_batch_that_does_not_fit_is_halved_for_the_test_split_too(tiny_model, tiny_data, tmp_path,
                                                                                capsys):
    """Without the search the run would fail at its first evaluation; with it, the evaluation (and the test
    split, batched like it) runs 64 -> 32 -> 16 -> 8 rows and scores what a run given 8 scores. A resumed
    run searches again (the evaluation batch is not part of a checkpoint's recipe)."""
    from loop import synthetic

    synthetic.write_jsonl(synthetic.make_rows(60, seed=3), tmp_path / "test.jsonl")
    common = dict(max_train_samples=64, num_train_epochs=1, max_eval_samples=100, per_device_eval_batch_size=64,
                  test_file=str(tmp_path / "test.jsonl"), checkpointing_steps=2)
    limited = type("L", (LimitedEval,), {"eval_limit": 10})
    with pytest.raises(UserError, match=r"^out of memory scoring the evaluation split on a batch of 64 x \d+ tokens "
                                        r"\(CUDA out of memory; tried to allocate 3\.00 GiB .*\); lower "
                                        r"--per_device_eval_batch_size \(a resumed run may change it\) or add "
                                        r"--auto_find_batch_size\.$"):
        limited(parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / "plain"), **common))).fit()
    out = str(tmp_path / "auto")
    auto = limited(parse_args(tiny_args(tiny_model, tiny_data, out, auto_find_batch_size="true", **common)))
    auto.fit()
    said = capsys.readouterr().out
    assert "--auto_find_batch_size: a batch of 16 x" in said  # training: fits
    assert "an evaluation batch of 64 x" in said and "does not fit (CUDA out of memory; tried to allocate 3.00 GiB" \
        in said and "evaluating 8 per device" in said, said
    assert auto.scored_rows[:4] == [64, 32, 16, 8] and max(auto.scored_rows[4:]) == 8  # evaluation and test alike
    given = str(tmp_path / "given")
    limited(parse_args(tiny_args(tiny_model, tiny_data, given, **{**common, "per_device_eval_batch_size": 8}))).fit()
    assert evals(out) == evals(given)
    resumed = limited(parse_args(tiny_args(tiny_model, tiny_data, out, auto_find_batch_size="true", **common)
                                 + ["--resume_from_checkpoint", os.path.join(out, "checkpoints", "step_2")]))
    resumed.fit()
    assert resumed.scored_rows[:4] == [64, 32, 16, 8] and "evaluating 8 per device" in capsys.readouterr().out
    # a run without the flag resumes with it: its training batch stays, the evaluation batch is searched
    added = limited(parse_args(tiny_args(tiny_model, tiny_data, given, auto_find_batch_size="true", **common)
                               + ["--resume_from_checkpoint", os.path.join(given, "checkpoints", "step_2")]))
    added.fit()
    assert added.scored_rows[:4] == [64, 32, 16, 8] and evals(given)[-1] == evals(out)[-1]
    # --eval_only searches too (no optimizer beside it)
    scored = limited(parse_args(["--eval_only", "--model_name_or_path", os.path.join(out, "best"), "--validation_file",
                                 os.path.join(tiny_data, "validation.jsonl"), "--max_eval_samples", "100",
                                 "--per_device_eval_batch_size", "64", "--auto_find_batch_size", "true",
                                 "--output_dir", str(tmp_path / "scored")]))
    assert scored.validate()["eval_loss"] == pytest.approx(evals(out)[-1]["eval_loss"], rel=1e-6)
    assert scored.scored_rows[:4] == [64, 32, 16, 8]

    class FixedEval(limited):  # an evaluation loader that ignores the batch the search chose
        def build_dataloaders(self):
            from torch.utils.data import DataLoader

            train, evaluation = super().build_dataloaders()
            return train, DataLoader(evaluation.dataset, batch_size=32, collate_fn=evaluation.collate_fn)

    with pytest.raises(UserError, match=r"chose evaluation batches of 8, but FixedEval.build_dataloaders makes "
                                        r"batches of 32: build them from self.cfg.per_device_eval_batch_size"):
        FixedEval(parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / "fixed"), auto_find_batch_size="true",
                                       **common))).fit()


def test_a_training_batch_out_of_memory_is_one_line(tiny_model, tiny_data, tmp_path):
    with pytest.raises(UserError, match=r"^out of memory in a training step on a batch of 16 x \d+ tokens \(CUDA out "
                                        r"of memory; .*\); add --auto_find_batch_size \(a new run\), or lower "
                                        r"--per_device_train_batch_size and raise --gradient_accumulation_steps by as "
                                        r"much, or add --gradient_checkpointing, or lower --max_length\.$") as e:
        run(Limited, tiny_args(tiny_model, tiny_data, str(tmp_path / "o"), max_train_samples=32), limit=8)
    assert e.value.alone  # one process ran out: it says so itself, whichever rank it is (errors.run_cli)
    # with several processes the line names the one that ran out
    from types import SimpleNamespace

    from loop.memory import out_of_memory

    lp = SimpleNamespace(cfg=SimpleNamespace(gradient_checkpointing=True),
                         accelerator=SimpleNamespace(num_processes=2, process_index=1))
    err = out_of_memory(lp, torch.OutOfMemoryError("CUDA out of memory"), {"input_ids": torch.ones(4, 8)}, "eval")
    assert str(err).startswith("out of memory scoring the evaluation split on a batch of 4 x 8 tokens on process 1 ")
    assert err.alone


def test_not_even_one_row_is_one_line(tiny_model, tiny_data, tmp_path):
    loop = type("L", (Limited,), {"limit": 0})(parse_args(tiny_args(
        tiny_model, tiny_data, str(tmp_path / "o"), per_device_train_batch_size=4, auto_find_batch_size="true")))
    with pytest.raises(UserError, match=r"not even one training example of \d+ tokens fits in memory \(CUDA out of "
                                        r"memory; tried to allocate 2\.00 GiB .*\); lower --max_length, or add "
                                        r"--gradient_checkpointing, or train LoRA adapters \(--lora_r\) instead of "
                                        r"every weight\.$"):
        loop.fit()
    assert loop.tried == [4, 2, 1]
    assert not os.path.exists(tmp_path / "o" / "best")


def test_other_errors_are_not_taken_for_memory(tiny_model, tiny_data, tmp_path):
    class Broken(Loop):
        def compute_loss(self, model, batch):
            raise ValueError("a bug in the variant")

    with pytest.raises(ValueError, match="a bug in the variant"):
        Broken(parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / "o"), auto_find_batch_size="true"))).fit()
    assert memory.is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                                                "allocate memory: you tried to allocate 1 bytes"))
    assert memory.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory."))
    assert not memory.is_out_of_memory(RuntimeError("expected scalar type Float but found BFloat16"))
    assert [memory.smaller(r, 24) for r in (24, 12, 6, 3, 1)] == [12, 6, 3, 1, 0]
    assert [memory.smaller(r, 10) for r in (10, 5, 2)] == [5, 2, 1] and memory.smaller(7, 7) == 1


def test_a_resumed_run_keeps_the_checkpoints_batch(tiny_model, tiny_data, tmp_path, capsys):
    """The search is not made again on resume (another device might find another batch, and the skipped
    batches and the schedule are the checkpoint's): the resumed run ends as the uninterrupted one."""
    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tiny_data, out, per_device_train_batch_size=16, auto_find_batch_size="true",
                     max_train_samples=96, num_train_epochs=1, checkpointing_steps=2, max_eval_samples=32)
    full = run(Limited, args, limit=8)
    assert (full.cfg.per_device_train_batch_size, full.cfg.gradient_accumulation_steps) == (8, 2)
    capsys.readouterr()
    resumed = run(Limited, args + ["--resume_from_checkpoint", os.path.join(out, "checkpoints", "step_2")], limit=8)
    assert "resuming with the checkpoint's 8 per device x 2 accumulation steps" in capsys.readouterr().out
    assert resumed.tried and set(resumed.tried) == {8}  # no trial of 16
    a, b = weights(full), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a run asking other examples per step is another run
    step_2 = ["--resume_from_checkpoint", os.path.join(out, "checkpoints", "step_2")]
    with pytest.raises(UserError, match=r"examples per step and process 16 then \(8 x 2, found by "
                                        r"--auto_find_batch_size\), 32 now"):
        run(Limited, tiny_args(tiny_model, tiny_data, out, per_device_train_batch_size=32, auto_find_batch_size="true",
                               max_train_samples=96, num_train_epochs=1, checkpointing_steps=2, max_eval_samples=32)
            + step_2, limit=8)
    # the batch it found, given as flags without the search: the same run
    again = run(Limited, tiny_args(tiny_model, tiny_data, out, per_device_train_batch_size=8, gradient_accumulation_steps=2,
                                   max_train_samples=96, num_train_epochs=1, checkpointing_steps=2, max_eval_samples=32)
                + step_2, limit=8)
    c = weights(again)
    assert all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("kind, name", [("FSDP", "FSDP"), ("DEEPSPEED", "DeepSpeed")])
def test_sharded_models_are_refused(kind, name, tmp_path):
    from accelerate.utils import DistributedType

    cfg = parse_args(["--output_dir", str(tmp_path / "o"), "--auto_find_batch_size"])
    with pytest.raises(UserError, match=f"whole model, which {name} shards"):
        memory.check(cfg, SimpleNamespace(distributed_type=DistributedType[kind]))
    memory.check(cfg, SimpleNamespace(distributed_type=DistributedType.MULTI_GPU))
    cfg.eval_only = True  # --eval_only holds the model whole on each process (an evaluation batch is searched)
    memory.check(cfg, SimpleNamespace(distributed_type=DistributedType[kind]))


VARIANT = """
import os, sys
sys.path.insert(0, {root!r})
import torch
import loop


class Limited(loop.Loop):  # rank 1's device holds 8 rows, rank 0's 16
    def compute_loss(self, model, batch):
        limit = 8 if self.accelerator.process_index == 1 else 16
        if model.training and len(batch["input_ids"]) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().compute_loss(model, batch)


if __name__ == "__main__":
    loop.main(loop_cls=Limited)
"""


@pytest.mark.slow  # two gloo processes
def test_two_processes_take_the_smallest_batch_either_found(tiny_model, tiny_data, tmp_path):
    from conftest import ROOT, run_cli

    script = tmp_path / "variant.py"
    script.write_text(VARIANT.format(root=ROOT))
    out = str(tmp_path / "out")
    proc = run_cli(tiny_args(tiny_model, tiny_data, out, per_device_train_batch_size=16, auto_find_batch_size="true",
                             max_train_samples=96, num_train_epochs=1, max_eval_samples=32),
                   nproc=2, script=str(script), how="fork")
    said = proc.stdout + proc.stderr
    assert said.count("training with 8 per device x 2 accumulation steps") == 1, said[-3000:]
    assert "(on another process)" in said  # rank 0's 16 fitted: rank 1 had it halved
    assert evals(out)[-1]["eval_samples"] == 32


def test_what_the_search_cannot_serve_is_refused_and_a_batch_past_the_data_is_tried_at_its_size(
        tiny_model, tiny_data, tmp_path, capsys):
    with pytest.raises(UserError, match="reduce-overhead \\(CUDA graphs\\) cannot accumulate"):
        parse_args(["--output_dir", str(tmp_path / "x"), "--auto_find_batch_size", "--torch_compile_mode",
                    "reduce-overhead"])

    class Fixed(Limited):  # a sampler that ignores the batch size it is given
        def build_train_sampler(self):
            from loop.loaders import EpochBatchSampler

            return EpochBatchSampler(self.data.train_lengths, 16, self.cfg.seed)

    with pytest.raises(UserError, match="chose 8 rows per batch, but L.build_train_sampler makes batches of 16"):
        run(Fixed, tiny_args(tiny_model, tiny_data, str(tmp_path / "fixed"), auto_find_batch_size="true",
                             max_train_samples=64), limit=8)
    # 4096 asked, 96 rows in all: the trial is of 96 (what a batch can hold), which fits
    big = run(Limited, tiny_args(tiny_model, tiny_data, str(tmp_path / "big"), auto_find_batch_size="true",
                                 per_device_train_batch_size=4096, max_train_samples=96, num_train_epochs=1), limit=100)
    assert big.tried[0] == 96 and big.cfg.per_device_train_batch_size == 4096
    said = capsys.readouterr().out
    assert "a batch of 4096 x 25 tokens fits (tried at 96 rows, all a process gets of the data)" in said, said
    # 96 rows do not fit: the batches of 96 or more (2048 ... 128) would try the same 96 rows; the next is 64
    small = run(Limited, tiny_args(tiny_model, tiny_data, str(tmp_path / "small"), auto_find_batch_size="true",
                                   per_device_train_batch_size=4096, max_train_samples=96, num_train_epochs=1), limit=50)
    assert small.tried[:3] == [96, 64, 32] and small.cfg.per_device_train_batch_size == 32
    assert "(a batch of 96 rows)) (tried at 96 rows, all a process gets of the data); training with 32 per device x " \
           "128 accumulation steps" in capsys.readouterr().out


@pytest.mark.slow  # two processes of their own under a memory limit, ~25 s
def test_a_real_out_of_memory_error_on_the_cpu(tmp_path):
    """Not injected: under an address-space limit (tests/memory_limited.py) the longest training example
    (512 tokens) repeated 64 times does not fit, and torch's own allocator fails. With the flag the search
    settles on a smaller batch, names the allocator's error and trains to the end; without it the run ends
    in the one out-of-memory line, exit 2. The limit leaves room for 32 rows and not 64 (about 20 MiB per
    row of 512 tokens in this model; found between 600 and 1,100 MiB of headroom, 850 used)."""
    import random

    from transformers import DistilBertConfig

    from loop import synthetic
    from conftest import run_cli

    model = str(tmp_path / "model")
    tokenizer = synthetic.make_tokenizer(model)
    tokenizer.model_max_length = 1024
    tokenizer.save_pretrained(model)
    DistilBertConfig(vocab_size=len(tokenizer), n_layers=2, dim=64, hidden_dim=128, n_heads=2,
                     max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id).save_pretrained(model)
    rng = random.Random(0)

    def rows(n, seed, long):
        made = synthetic.make_rows(n, seed=seed)
        for r in made[:long]:  # long reviews: the trial batch repeats one; most batches stay short
            words = r["text"].split()
            while len(words) < 1000:
                words += rng.sample(synthetic.NEUTRAL, 4)
            r["text"] = " ".join(words[:1000])
        rng.shuffle(made)
        return made

    synthetic.write_jsonl(rows(64, 1, 2), tmp_path / "train.jsonl")
    synthetic.write_jsonl(rows(16, 2, 1), tmp_path / "validation.jsonl")
    args = ["--model_name_or_path", model, "--from_scratch", "true", "--train_file", tmp_path / "train.jsonl",
            "--validation_file", tmp_path / "validation.jsonl", "--label_names", "NEGATIVE,POSITIVE",
            "--max_length", "512", "--per_device_train_batch_size", "64", "--learning_rate", "1e-3",
            "--num_train_epochs", "1", "--attn_implementation", "eager"]
    limited = dict(MALLOC_ARENA_MAX="2", MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1", LOOP_HEADROOM_MIB="850")

    found = run_cli(args + ["--output_dir", tmp_path / "found", "--auto_find_batch_size", "true"],
                    script="tests/memory_limited.py", how="python", fresh=True, **limited)
    said = found.stdout + found.stderr
    assert "a batch of 64 x 512 tokens does not fit (DefaultCPUAllocator: can't allocate memory" in said, said[-3000:]
    rows_found = int(said.split("; training with ")[1].split(" per device")[0])
    assert rows_found in (32, 16) and f"x {64 // rows_found} accumulation steps" in said
    assert evals(tmp_path / "found")[-1]["eval_samples"] == 16

    plain = run_cli(args + ["--output_dir", tmp_path / "plain"], script="tests/memory_limited.py", how="python",
                    fresh=True, check=False, **limited)
    lines = [line for line in plain.stderr.splitlines() if line.startswith("error:")]
    assert plain.returncode == 2 and len(lines) == 1, plain.stderr[-3000:]
    assert lines[0].startswith("error: out of memory in a training step on a batch of 64 x 512 tokens "
                               "(DefaultCPUAllocator: can't allocate memory") and "add --auto_find_batch_size" in lines[0]


def test_an_out_of_memory_error_is_one_clause_cut_at_a_word():
    """(mutation audit m2: memory.clip was checked only by its first words) CUDA's several sentences become clauses of
    one (a sentence's first word in lower case, a name like GPU kept), cut at a word near 200 characters; torch's
    CPU allocator loses its C++ check; an error without a message is named by its type. A process's share of a
    split, the most rows a trial batch holds, rounds up."""
    cuda = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.20 GiB "
            "is free. Including non-PyTorch memory, this process has 77.90 GiB memory in use. Of the allocated memory "
            "75.10 GiB is allocated by PyTorch, and 1.30 GiB is reserved by PyTorch but unallocated. If reserved but "
            "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid "
            "fragmentation.  See documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html)")
    assert memory.clip(torch.OutOfMemoryError(cuda)) == (
        "CUDA out of memory; tried to allocate 2.00 GiB; GPU 0 has a total capacity of 79.15 GiB of which 1.20 GiB is "
        "free; including non-PyTorch memory, this process has 77.90 GiB memory in use; of the ...")
    assert memory.clip(torch.OutOfMemoryError(cuda), width=60) == "CUDA out of memory; tried to allocate 2.00 GiB; " \
                                                                  "GPU 0 has a ..."
    assert memory.clip(torch.OutOfMemoryError()) == "OutOfMemoryError"
    assert memory.is_out_of_memory(torch.OutOfMemoryError())  # torch's own type, whatever its text names
    assert memory.clip(RuntimeError("CUDA out of memory.")) == "CUDA out of memory"
    assert memory.clip(RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough "
                                    "memory: you tried to allocate 1024 bytes.")) == \
        "DefaultCPUAllocator: not enough memory: you tried to allocate 1024 bytes"
    # a process's share of a split rounds up: 5 rows over 2 processes give one of them 3
    two = SimpleNamespace(accelerator=SimpleNamespace(num_processes=2))
    assert [memory.process_rows(two, range(n)) for n in (4, 5, 1)] == [2, 3, 1]


def test_the_search_keeps_the_accumulation_asked_for(tiny_model, tiny_data, tmp_path, capsys):
    """(mutation audit m2: every search test asked for one micro-batch a step) The accumulation the search sets
    multiplies the one asked for: an optimizer step keeps the examples asked for."""
    # 24 x 2 asked, 8 rows fit: 6 x 8 (48 examples a step, as asked), not 6 x 4
    found = run(Limited, tiny_args(tiny_model, tiny_data, str(tmp_path / "acc"), per_device_train_batch_size=24,
                                   gradient_accumulation_steps=2, auto_find_batch_size="true", max_train_samples=96,
                                   num_train_epochs=1, max_eval_samples=16), limit=8)
    assert "training with 6 per device x 8 accumulation steps (the same 48 examples" in capsys.readouterr().out
    assert (found.cfg.per_device_train_batch_size, found.cfg.gradient_accumulation_steps) == (6, 8)
    # the trials over, a variant's tracked numbers are logged again and self.trial_pass is False for the run
    assert found.trial_pass is False and not found.tracked.paused



class TokenLimited(Loop):
    """A device that holds at most `tokens` tokens of a micro-batch, training or scoring (rows x padded width)."""
    tokens = 8 * 25
    tried = None

    def compute_loss(self, model, batch):
        if model.training:
            self.tried = (self.tried or []) + [tuple(batch["input_ids"].shape)]
            if batch["input_ids"].numel() > self.tokens:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().compute_loss(model, batch)

    def evaluation_step(self, batch):
        if batch["input_ids"].numel() > self.tokens:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
        return super().evaluation_step(batch)


def test_the_trials_are_of_the_longest_example(tiny_model, tiny_data, tmp_path, capsys):
    """(mutation audit m2: every injected limit counted rows, so a trial of any example passed) Memory grows with a
    batch's tokens: the trial batches repeat the longest training (and evaluation) example, so the batch found fits
    the widest batch training and evaluation meet, and the run ends without running out of memory."""
    run_ = TokenLimited(parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / "o"), auto_find_batch_size="true",
                                             max_train_samples=64, max_eval_samples=64, per_device_eval_batch_size=64,
                                             num_train_epochs=1)))
    run_.fit()
    width = run_.tried[0][1]
    assert width == max(run_.data.train_lengths) and run_.tried[0][0] * width > run_.tokens
    assert run_.cfg.per_device_train_batch_size * width <= run_.tokens
    assert run_.cfg.per_device_eval_batch_size < 64  # the longest evaluation example decided it


def test_an_evaluation_batch_past_the_data_is_tried_at_its_size_and_not_even_one_row_is_one_line(
        tiny_model, tiny_data, tmp_path, capsys):
    """(mutation audit m2) An evaluation batch larger than a split is tried at the split's size (no batch of it holds
    more), so a device that holds the whole split keeps the batch asked for; a device that holds no evaluation row
    ends setup in one line."""
    common = dict(max_train_samples=32, max_eval_samples=16, per_device_eval_batch_size=64, num_train_epochs=1,
                  auto_find_batch_size="true")
    fits = type("L", (LimitedEval,), {"eval_limit": 20})(parse_args(tiny_args(tiny_model, tiny_data,
                                                                               str(tmp_path / "fits"), **common)))
    fits.fit()
    said = [line for line in capsys.readouterr().out.splitlines() if "an evaluation batch" in line]
    assert len(said) == 1 and re.search(r"an evaluation batch of 64 x \d+ tokens fits \(tried at 16 rows, all a "
                                        r"process gets of the data\)$", said[0]), said
    assert fits.scored_rows[0] == 16 and fits.cfg.per_device_eval_batch_size == 64
    none = type("L", (LimitedEval,), {"eval_limit": 0})(parse_args(tiny_args(tiny_model, tiny_data,
                                                                              str(tmp_path / "none"), **common)))
    with pytest.raises(UserError, match=r"^--auto_find_batch_size: not even one evaluation example of \d+ tokens fits "
                                        r"in memory \(CUDA out of memory; tried to allocate 3\.00 GiB \(an evaluation "
                                        r"of 1\)\); lower --max_length\.$"):
        none.fit()
