"""--seed and --data_seed: the starting weights follow --seed alone, the batches --data_seed alone.

Seed studies (Dodge et al. 2020) vary one source of randomness with the other held fixed; a flag that
also moved the other would make them measure both. Each run is the real command line with a variant
that records the starting weights' hash and every training batch it is given.
"""

import hashlib
import json
import os

import pytest

from conftest import ROOT, run_cli, tiny_args

SPY = f'''
import hashlib, json, os, sys
sys.path.insert(0, {ROOT!r})
import loop


class Spy(loop.Loop):
    def on_train_start(self):
        h = hashlib.sha1()
        for p in self.accelerator.unwrap_model(self.model).parameters():
            h.update(p.detach().cpu().numpy().tobytes())
        self.seen = {{"weights": h.hexdigest(), "batches": []}}

    def training_step(self, batch):
        # the batch's rows by content: its token ids and labels, row by row
        self.seen["batches"].append([[*ids, label] for ids, label in
                                     zip(batch["input_ids"].tolist(), batch["labels"].tolist())])
        return super().training_step(batch)

    def on_train_end(self):
        with open(os.path.join(self.cfg.output_dir, "seen.json"), "w") as f:
            json.dump(self.seen, f)


if __name__ == "__main__":
    loop.main(loop_cls=Spy)
'''


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.slow  # five runs
def test_seed_moves_the_weights_and_data_seed_the_batches(tiny_model, tiny_data, tmp_path):
    script = tmp_path / "spy.py"
    script.write_text(SPY)

    def run(name, **seeds):
        out = str(tmp_path / name)
        # one epoch of a subset: --max_train_samples draws with the data seed
        run_cli(tiny_args(tiny_model, tiny_data, out, num_train_epochs=1, max_train_samples=200,
                          **seeds), how="python", script=str(script))
        with open(os.path.join(out, "seen.json")) as f:
            return json.load(f), sha(os.path.join(out, "best", "model.safetensors"))

    a, a_best = run("a", seed=1, data_seed=7)
    b, _ = run("b", seed=2, data_seed=7)   # other weights, the same data
    c, _ = run("c", seed=1, data_seed=8)   # the same weights, other data
    d, d_best = run("d", seed=7, checkpointing_steps="epoch")  # data seed from --seed
    e, e_best = run("e", seed=7, data_seed=7)

    assert len(a["batches"]) == 13  # 200 rows in batches of 16
    assert a["batches"] == b["batches"] and a["weights"] != b["weights"]
    assert a["weights"] == c["weights"] and a["batches"] != c["batches"]
    def rows(seen):  # the epoch's rows, in any order: the subset
        return sorted(map(str, sum(seen["batches"], [])))

    assert rows(a) != rows(c), "another --data_seed should draw another subset, not only reorder it"
    # without --data_seed the data follows --seed: data_seed 7 draws what seed 7 alone did
    assert d["batches"] == a["batches"]
    assert d == e and d_best == e_best, "--data_seed equal to --seed must train exactly as leaving it out"
    assert a_best != d_best

    # a resume may spell the same data seed either way; another one is another trajectory
    base = tiny_args(tiny_model, tiny_data, str(tmp_path / "d"), num_train_epochs=1, max_train_samples=200, seed=7,
                     checkpointing_steps="epoch", resume_from_checkpoint="latest")
    proc = run_cli(base + ["--data_seed", "7"], how="python", script=str(script))
    assert "resumed from" in proc.stdout
    proc = run_cli(base + ["--data_seed", "8"], how="python", script=str(script), check=False)
    assert proc.returncode == 2 and "--data_seed not given → 8" in proc.stderr, proc.stderr[-2000:]


PEEK = f'''
import json, os, sys
sys.path.insert(0, {ROOT!r})
import torch
import loop


class Peek(loop.Loop):
    """Each process's batches and the next random numbers its dropout would draw before each of them (peeked
    under fork_rng: the run's own stream is untouched)."""

    def on_train_start(self):
        self.seen = []

    def training_step(self, batch):
        with torch.random.fork_rng():
            draws = torch.rand(4).tolist()
        self.seen.append({{"rows": batch["input_ids"].tolist(), "draws": draws}})
        return super().training_step(batch)

    def on_train_end(self):
        with open(os.path.join(self.cfg.output_dir, f"seen{{self.accelerator.process_index}}.json"), "w") as f:
            json.dump({{"steps": self.seen, "deterministic": torch.are_deterministic_algorithms_enabled(),
                       "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}}, f)


if __name__ == "__main__":
    loop.main(loop_cls=Peek)
'''


@pytest.mark.slow  # a 2-process run and a 1-process run (~20 s)
def test_each_process_draws_its_own_dropout_on_the_same_batches(tiny_model, tiny_data, tmp_path):
    """Every process drew the same dropout masks (--seed set alike on each and never again, audit43 F2): example i
    of each process's batch masked alike whenever the batches had the same shape. Now process 0 goes on from
    --seed as one process does and the other draws its own, while the batches are those of before: 2 processes x 8
    take the micro-batches of 1 process x 8 x accumulation 2, in turn."""
    script = tmp_path / "peek.py"
    script.write_text(PEEK)
    common = dict(max_train_samples=64, max_eval_samples=16, num_train_epochs=1, per_device_train_batch_size=8)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    run_cli(tiny_args(tiny_model, tiny_data, one, gradient_accumulation_steps=2, **common), how="python",
            script=str(script))
    run_cli(tiny_args(tiny_model, tiny_data, two, **common), nproc=2, how="fork", script=str(script))

    def seen(out, rank=0):
        with open(os.path.join(out, f"seen{rank}.json")) as f:
            return json.load(f)["steps"]

    single, rank0, rank1 = seen(one), seen(two, 0), seen(two, 1)
    assert len(single) == 8 and len(rank0) == len(rank1) == 4
    assert [s["rows"] for s in rank0] == [s["rows"] for s in single[0::2]]  # the data: as before, on every rank
    assert [s["rows"] for s in rank1] == [s["rows"] for s in single[1::2]]
    assert rank0[0]["draws"] == single[0]["draws"]  # process 0 goes on from --seed, as one process does
    assert all(a["draws"] != b["draws"] for a, b in zip(rank0, rank1)), "the processes draw the same dropout masks"


def test_each_process_is_seeded_apart_and_process_0_keeps_its_stream():
    """seed_per_process leaves process 0's generators alone (a 1-process run is what it was) and seeds process k
    from (seed, k), every generator: not from seed + k, the stream another --seed's process 0 starts with."""
    import random
    from types import SimpleNamespace

    import numpy as np
    import torch

    from loop import seeding

    def draws():
        return random.random(), float(np.random.random()), torch.rand(1).item()

    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        seeding.seed_all(42)
        torch.rand(3)  # the stream as setup() left it
        with torch.random.fork_rng():
            state = random.getstate(), np.random.get_state(), torch.get_rng_state()
            expected = draws()
        random.setstate(state[0]), np.random.set_state(state[1]), torch.set_rng_state(state[2])
        seeding.seed_per_process(SimpleNamespace(process_index=0), 42)
        assert draws() == expected
        streams = []
        for index in (1, 2, 1):
            seeding.seed_per_process(SimpleNamespace(process_index=index), 42)
            streams.append(draws())
        seeding.seed_all(43)
        other = draws()  # another --seed's process 0
        assert streams[0] == streams[2]  # the same process, the same stream: each of the three generators seeded
        assert len({streams[0], streams[1], other, expected}) == 4
        assert not any(a == b for s in streams[:2] for a, b in zip(s, other))  # none is --seed 43's
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


def test_full_determinism_turns_deterministic_kernels_on(tiny_model, tiny_data, tmp_path, monkeypatch):
    """--full_determinism was refused as a Trainer option with no counterpart (audit43 F4), so a GPU run could not
    ask for deterministic kernels. It switches them on before the accelerator starts CUDA (cuBLAS reads its
    variable then), keeps a CUBLAS_WORKSPACE_CONFIG the user gave, and warns where CUDA was in use before."""
    import torch

    from loop import Loop, parse_args, seeding

    for name in ("CUBLAS_WORKSPACE_CONFIG", "FLASH_ATTENTION_DETERMINISTIC"):
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)  # (unset now, and as it was after the test)
    cudnn = torch.backends.cudnn
    before = torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark
    try:
        Loop(parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / "plain")))).start()
        assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        cudnn.benchmark = True  # (as a script may have left it)
        lp = Loop(parse_args(tiny_args(tiny_model, tiny_data, str(tmp_path / "out"), full_determinism="true")))
        lp.start()
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert cudnn.deterministic and not cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and os.environ["FLASH_ATTENTION_DETERMINISTIC"] == "1"
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the other deterministic setting, given: kept
        assert seeding.full_determinism(lp.cfg) is None and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
        monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # a notebook that used the GPU already
        assert "set CUBLAS_WORKSPACE_CONFIG=:4096:8 before Python starts" in seeding.full_determinism(lp.cfg)
    finally:
        torch.use_deterministic_algorithms(before[0])
        cudnn.deterministic, cudnn.benchmark = before[1:]


@pytest.mark.slow  # three runs (~15 s)
def test_a_run_with_full_determinism_trains_and_repeats_bit_for_bit(tiny_model, tiny_data, tmp_path):
    """The whole command line with --full_determinism (every operation of training and evaluation has a
    deterministic version on the CPU): it trains with the switch on, twice to the same weights, which on a CPU are
    those of a run without it."""
    script = tmp_path / "peek.py"
    script.write_text(PEEK)

    def run(name, *flags):
        out = str(tmp_path / name)
        run_cli(tiny_args(tiny_model, tiny_data, out, max_train_samples=64, max_eval_samples=16, num_train_epochs=1)
                + list(flags), how="python", script=str(script))
        with open(os.path.join(out, "seen0.json")) as f:
            return json.load(f), sha(os.path.join(out, "best", "model.safetensors"))

    (a, a_best), (b, b_best), (c, c_best) = run("a", "--full_determinism"), run("b", "--full_determinism"), run("c")
    assert a["deterministic"] and a["cublas"] == ":4096:8" and not c["deterministic"]
    assert a == b and a_best == b_best
    assert a["steps"] == c["steps"] and a_best == c_best


def test_a_subset_keeps_file_order():
    """--max_*_samples subsets are 'kept in file order' (README, Representative subsets): the batches a seed
    gives depend on it."""
    from loop.data import subset_indices

    idx = subset_indices(1000, 50, 42)
    assert idx == sorted(idx) and len(set(idx)) == 50


def test_the_carve_is_drawn_with_data_seed_not_seed():
    """--validation_split_percentage's split is drawn with --data_seed, else --seed (README, Representative
    subsets; best_metrics.json records data_seed as the split's seed, and --eval_only draws it again with it)."""
    import datasets

    from loop import data as D
    from loop.config import TrainConfig
    from loop.splits import EVAL, TRAIN

    ds = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(200)], "labels": [i % 2 for i in range(200)]})
    ds = ds.cast_column("labels", datasets.ClassLabel(names=["NEGATIVE", "POSITIVE"]))

    def carved(**seeds):
        cfg = TrainConfig(validation_split_percentage=10, **seeds)
        return D.carve_validation(cfg, datasets.DatasetDict({TRAIN: ds}))[EVAL]["text"]

    assert carved(seed=1, data_seed=7) == carved(seed=2, data_seed=7) != carved(seed=1, data_seed=8)
