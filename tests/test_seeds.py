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
