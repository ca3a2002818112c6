"""A held-out test split (--test_file, --test_split, --max_test_samples): never used to pick best/,
scored with best/'s weights each time best/ is written (test_* in best/best_metrics.json and one
metrics.jsonl record after the evaluation that improved), without changing training by a bit.

The test scores are checked against an independent evaluation of best/ (transformers alone, in this
process), so a mislabelled, duplicated or dropped test example shows as a different number."""

import json
import os

import pytest

from conftest import evals, read_jsonl, run_cli, synthetic, tiny_args, train_logs
from test_errors import fails

CLASSES = ["NEGATIVE", "POSITIVE"]


# ---------------------------------------------------------------- helpers
def held_out_records(out):
    """metrics.jsonl's test records, in file order."""
    return [r for r in read_jsonl(os.path.join(out, "metrics.jsonl")) if "test_samples" in r]


def best_metrics(out):
    with open(os.path.join(out, "best", "best_metrics.json")) as f:
        return json.load(f)


def improving_steps(records, metric="eval_accuracy", higher=True):
    """Steps of the evaluations that beat every earlier one (strictly): those that write best/."""
    steps, best = [], None
    for r in records:
        v = r[metric]
        if best is None or (v > best if higher else v < best):
            steps.append(r["step"])
            best = v
    return steps


def score_best(out, rows, max_length=64):
    """best/ scored on `rows` ({"text", "label": a class name}) by transformers alone: float32, eval
    mode, truncated to the run's --max_length, predictions named through config.id2label. Returns
    (accuracy, mean cross-entropy, f1 of POSITIVE)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = os.path.join(out, "best")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    enc = tok([r["text"] for r in rows], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits.float()
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    predicted = [id2label[i] for i in logits.argmax(-1).tolist()]
    truth = [r["label"] for r in rows]
    correct = sum(p == t for p, t in zip(predicted, truth))
    labels = torch.tensor([model.config.label2id[t] for t in truth])
    loss = F.cross_entropy(logits, labels).item()
    tp = sum(p == t == "POSITIVE" for p, t in zip(predicted, truth))
    fp = sum(p == "POSITIVE" != t for p, t in zip(predicted, truth))
    fn = sum(t == "POSITIVE" != p for p, t in zip(predicted, truth))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return correct / len(rows), loss, f1


def write_classlabel_parquet(rows, names, path):
    """Rows with string labels as a parquet whose label column is a ClassLabel listing `names` in that order."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    ds = datasets.Dataset.from_list([{"text": r["text"], "label": names.index(r["label"])} for r in rows],
                                    features=features)
    ds.to_parquet(str(path))
    return str(path)


def dataset_folder(d, **splits):
    """A folder datasets.load_dataset reads as a dataset: one `<split>.jsonl` per keyword (rows)."""
    d.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        synthetic.write_jsonl(rows, d / f"{name}.jsonl")
    return str(d)


# ---------------------------------------------------------------- one run with a test file, one without
TEST_ROWS = synthetic.make_rows(45, seed=7)  # odd: a flipped labelling cannot land on the same accuracy


@pytest.fixture(scope="module")
def pair(tiny_model, tiny_data, tmp_path_factory):
    """The same run (600 training rows, 2 epochs of 38 steps, evaluated every 10 steps and at epoch ends,
    dropout on, f1 logged too) with and without --test_file. The test file is a parquet whose ClassLabel
    lists the classes the other way round (its id 0 is POSITIVE), where training has string labels.
    ~6 s a run."""
    root = tmp_path_factory.mktemp("split_runs")
    test_file = write_classlabel_parquet(TEST_ROWS, ["POSITIVE", "NEGATIVE"], root / "heldout.parquet")
    common = dict(eval_steps=10, max_eval_samples=100, metrics="accuracy,f1")
    with_test, without = str(root / "with_test"), str(root / "without")
    p_with = run_cli(tiny_args(tiny_model, tiny_data, with_test, test_file=test_file, **common), how="python")
    p_without = run_cli(tiny_args(tiny_model, tiny_data, without, **common), how="python")
    return {"with": with_test, "without": without, "proc_with": p_with, "proc_without": p_without}


def test_test_file_scores_best_with_labels_mapped_by_name(pair):
    """best_metrics.json's test_* are best/'s scores on the test file, computed independently; the
    reversed ClassLabel is read by name; a test record follows every evaluation that wrote best/, and
    only those."""
    out = pair["with"]
    best = best_metrics(out)
    for key in ("test_accuracy", "test_f1", "test_loss", "test_samples", "eval_accuracy", "eval_f1", "eval_samples"):
        assert key in best, (key, best)
    assert best["test_samples"] == len(TEST_ROWS)
    accuracy, loss, f1 = score_best(out, TEST_ROWS)
    assert accuracy > 0.7, f"the model learned little ({accuracy}): the label mapping would go unnoticed"
    assert best["test_accuracy"] == accuracy, (best["test_accuracy"], accuracy)
    assert best["test_loss"] == pytest.approx(loss, rel=1e-4, abs=1e-6)
    assert best["test_f1"] == pytest.approx(f1, abs=1e-9)
    assert best["eval_samples"] == 100  # the evaluation split picks best/, not the test file

    # metrics.jsonl: one test record right after each evaluation that improved eval_accuracy
    records = read_jsonl(os.path.join(out, "metrics.jsonl"))
    ev, tests = evals(out), held_out_records(out)
    assert not any("test_samples" in e for e in ev) and not any("eval_samples" in t for t in tests)
    improved = improving_steps(ev)
    assert [t["step"] for t in tests] == improved, ([t["step"] for t in tests], improved, ev)
    assert len(improved) < len(ev), "every evaluation improved: nothing shows that the others are not tested"
    for t in tests:
        i = records.index(t)
        before = records[i - 1]
        assert "eval_samples" in before and (before["step"], before["epoch"]) == (t["step"], t["epoch"]), (before, t)
        assert set(t) >= {"step", "epoch", "test_accuracy", "test_f1", "test_loss", "test_samples"}, t
        assert t["test_samples"] == len(TEST_ROWS)
        assert 0 <= t["test_accuracy"] <= 1
    last = tests[-1]
    assert (last["step"], last["epoch"]) == (best["step"], best["epoch"])
    assert {k: v for k, v in last.items() if k.startswith("test_")} == \
           {k: v for k, v in best.items() if k.startswith("test_")}

    # the closing summary reports it
    tail = pair["proc_with"].stdout.strip().splitlines()[-4:]
    assert any("test" in line and (f"{accuracy:.4f}" in line or f"{accuracy:.4g}" in line) for line in tail), tail


def test_scoring_the_test_split_changes_nothing_in_training(pair):
    """Bit for bit: every evaluation, the training log and best/'s weights are those of the run without
    --test_file (dropout on, the test split scored mid-epoch between training steps); and without test
    data there is no test_* anywhere."""
    import torch
    from safetensors.torch import load_file

    a, b = pair["with"], pair["without"]
    ev_a, ev_b = evals(a), evals(b)
    assert len(ev_a) == len(ev_b) == 9
    for x, y in zip(ev_a, ev_b):
        assert {k: v for k, v in x.items() if k in ("step", "epoch") or k.startswith("eval_")} == \
               {k: v for k, v in y.items() if k in ("step", "epoch") or k.startswith("eval_")}, (x, y)
    assert [(r["step"], r["loss"], r["learning_rate"]) for r in train_logs(a)] == \
           [(r["step"], r["loss"], r["learning_rate"]) for r in train_logs(b)]
    wa, wb = (load_file(os.path.join(d, "best", "model.safetensors")) for d in (a, b))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])]
    ba, bb = best_metrics(a), best_metrics(b)
    assert {k: v for k, v in ba.items() if not k.startswith("test_")} == bb

    # without test data: nothing of it
    assert held_out_records(b) == []
    assert not [k for k in bb if k.startswith("test")], bb
    assert "test_accuracy" not in pair["proc_without"].stdout and "test accuracy" not in pair["proc_without"].stdout
    assert len(read_jsonl(os.path.join(b, "metrics.jsonl"))) == len(ev_b) + len(train_logs(b))


# ---------------------------------------------------------------- a Hub dataset (a folder) with a test split
def test_hub_folder_test_split_next_to_validation(tiny_model, tmp_path):
    """train/validation/test: --test_split test evaluates on validation and tests on test."""
    rows = {"train": synthetic.make_rows(160, seed=1), "validation": synthetic.make_rows(24, seed=2),
            "test": synthetic.make_rows(17, seed=3)}
    data = dataset_folder(tmp_path / "hub", **rows)
    out = str(tmp_path / "out")
    run_cli(tiny_args(tiny_model, tmp_path, out, train_file=None, validation_file=None, dataset_name=data,
                      test_split="test", num_train_epochs=2), how="python")
    assert [e["eval_samples"] for e in evals(out)] == [24, 24]
    tests = held_out_records(out)
    assert tests and all(t["test_samples"] == 17 for t in tests), tests
    assert [t["step"] for t in tests] == improving_steps(evals(out))
    best = best_metrics(out)
    assert best["eval_samples"] == 24 and best["test_samples"] == 17
    accuracy, loss, _ = score_best(out, rows["test"])
    assert best["test_accuracy"] == accuracy
    assert best["test_loss"] == pytest.approx(loss, rel=1e-4, abs=1e-6)


def test_hub_folder_with_only_train_and_test_needs_a_carved_evaluation(tiny_model, tmp_path):
    """train/test and --test_split test: the evaluation split is not the test split, so without
    --validation_split_percentage it is one error line; with 20 it is carved from train (12 of 60)."""
    data = dataset_folder(tmp_path / "hub", train=synthetic.make_rows(60, seed=1), test=synthetic.make_rows(13, seed=3))
    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tmp_path, out, train_file=None, validation_file=None, dataset_name=data,
                     test_split="test", num_train_epochs=1)
    fails(args, out, "--validation_split_percentage")
    assert not os.path.exists(out)
    run_cli(args + ["--validation_split_percentage", "20"], how="python")
    assert [e["eval_samples"] for e in evals(out)] == [12]
    assert [t["test_samples"] for t in held_out_records(out)] == [13]
    assert best_metrics(out)["test_samples"] == 13


def test_holding_out_validation_does_not_evaluate_on_test(tiny_model, tmp_path):
    """--test_split validation on a train/validation/test folder: evaluation is --eval_split, else a
    carve, never the dataset's test split taken silently (it is the next one a user holds out)."""
    data = dataset_folder(tmp_path / "hub", train=synthetic.make_rows(60, seed=1),
                          validation=synthetic.make_rows(11, seed=2), test=synthetic.make_rows(13, seed=3))
    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tmp_path, out, train_file=None, validation_file=None, dataset_name=data,
                     test_split="validation", num_train_epochs=1)
    fails(args, out, "held-out --test_split 'validation'", "--validation_split_percentage", "--eval_split")
    run_cli(args + ["--eval_split", "test"], how="python")
    assert [e["eval_samples"] for e in evals(out)] == [13] and best_metrics(out)["test_samples"] == 11


def test_an_unlabelled_test_split_is_named(tiny_model, tmp_path):
    """GLUE's test splits on the Hub label every row -1: one line saying so and what to do, not 'labels
    [-1] are outside 0..1'."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=CLASSES)})
    folder = tmp_path / "glue"
    folder.mkdir()
    for split, n, unlabelled in (("train", 40, False), ("validation", 12, False), ("test", 9, True)):
        rows = [{"text": r["text"], "label": -1 if unlabelled else CLASSES.index(r["label"])}
                for r in synthetic.make_rows(n, seed=n)]
        datasets.Dataset.from_list(rows, features=features).to_parquet(str(folder / f"{split}.parquet"))
    out = str(tmp_path / "out")
    fails(tiny_args(tiny_model, tmp_path, out, train_file=None, validation_file=None, dataset_name=str(folder),
                    test_split="test"), out, "9 test rows have the label -1", "unlabelled", "labelled split")
    # STS-B's test split: a regression's targets all -1.0 were scored (test_mse), and picked best/ as --eval_split
    reg = tmp_path / "stsb"
    reg.mkdir()
    for split, n, unlabelled in (("train", 40, False), ("validation", 12, False), ("test", 11, True)):
        rows = [{"text": r["text"], "label": -1.0 if unlabelled else float(i % 5)}
                for i, r in enumerate(synthetic.make_rows(n, seed=n))]
        datasets.Dataset.from_list(rows).to_parquet(str(reg / f"{split}.parquet"))
    for flag in ("test_split", "eval_split"):
        fails(tiny_args(tiny_model, tmp_path, out, train_file=None, validation_file=None, dataset_name=str(reg),
                        problem_type="regression", **{flag: "test"}), out,
              "target is -1", "unlabelled", "labelled split")


def test_offline_advice_keeps_the_test_split_held_out(tmp_path, monkeypatch):
    """The Hub cannot be reached: with --test_split the advice makes the test split a --test_file (as a
    --validation_file it would pick best/) and drops --test_split."""
    from loop import hub
    from loop.config import parse_args
    from loop.errors import UserError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = parse_args(["--dataset_name", "someone/not-cached-anywhere", "--test_split", "test",
                      "--validation_split_percentage", "10", "--output_dir", str(tmp_path / "out")])
    with pytest.raises(UserError) as e:
        hub.check(cfg)
    assert "--test_file test.parquet, without --test_split" in str(e.value), e.value
    assert "--validation_file test.parquet" not in str(e.value)


VARIANT = """
import sys
sys.path.insert(0, {root!r})
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler
import loop


class TokenBudgetEval(loop.Loop):
    # evaluation batched by a batch_sampler (token budgets, say): the DataLoader's batch_size is None
    def build_dataloaders(self):
        train, evaluation = super().build_dataloaders()
        batches = BatchSampler(SequentialSampler(range(len(self.data.eval))), 7, False)
        return train, DataLoader(self.data.eval, batch_sampler=batches, collate_fn=evaluation.collate_fn)


if __name__ == "__main__":
    loop.main(loop_cls=TokenBudgetEval)
"""


def test_a_variants_batch_sampler_evaluation_batches_the_test_split_too(tiny_model, tiny_data, tmp_path):
    from conftest import ROOT

    script = tmp_path / "variant.py"
    script.write_text(VARIANT.format(root=ROOT))
    out = str(tmp_path / "out")
    test_file = write_classlabel_parquet(TEST_ROWS, CLASSES, tmp_path / "heldout.parquet")
    run_cli(tiny_args(tiny_model, tiny_data, out, test_file=test_file, num_train_epochs=1, max_train_samples=64),
            script=str(script), how="python")
    assert best_metrics(out)["test_samples"] == len(TEST_ROWS)
    assert best_metrics(out)["test_accuracy"] == score_best(out, TEST_ROWS)[0]


# ---------------------------------------------------------------- errors and --max_test_samples
def test_test_file_needs_train_file(tiny_model, tiny_data, tmp_path):
    test_file = str(tiny_data / "validation.jsonl")
    out = str(tmp_path / "out")
    fails(tiny_args(tiny_model, tiny_data, out, train_file=None, validation_file=None, test_file=test_file), out,
          "--test_file", "--train_file")


def test_test_split_with_train_file_is_refused(tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "out")
    fails(tiny_args(tiny_model, tiny_data, out, test_split="test"), out, "--test_split", "--train_file")


def test_test_split_the_dataset_lacks_lists_its_splits(tiny_model, tmp_path):
    data = dataset_folder(tmp_path / "hub", train=synthetic.make_rows(40, seed=1),
                          validation=synthetic.make_rows(12, seed=2), test=synthetic.make_rows(9, seed=3))
    out = str(tmp_path / "out")
    line = fails(tiny_args(tiny_model, tmp_path, out, train_file=None, validation_file=None, dataset_name=data,
                           test_split="holdout"), out, "'holdout'", "--test_split")
    listed = line.replace(str(tmp_path), "").split("'holdout'", 1)[1]  # the splits it has, after the name
    for split in ("train", "validation", "test"):
        assert split in listed, line


def test_test_label_never_seen_in_training(tiny_model, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    synthetic.write_jsonl(synthetic.make_rows(40, seed=1), data / "train.jsonl")
    synthetic.write_jsonl(synthetic.make_rows(12, seed=2), data / "validation.jsonl")
    synthetic.write_jsonl(synthetic.make_rows(8, seed=3) + [{"text": "the film was fine", "label": "NEUTRAL"}],
                          data / "heldout.jsonl")
    out = str(tmp_path / "out")
    line = fails(tiny_args(tiny_model, data, out, test_file=data / "heldout.jsonl", num_train_epochs=1), out, "NEUTRAL")
    assert "test" in line.replace(str(tmp_path), ""), line  # said of the test data (not only in a path)


def test_max_test_samples_takes_a_seeded_subset(tiny_model, tiny_data, tmp_path):
    from loop.data import subset_indices

    rows = synthetic.make_rows(30, seed=5)
    test_file = tmp_path / "heldout.jsonl"
    synthetic.write_jsonl(rows, test_file)
    out = str(tmp_path / "out")
    run_cli(tiny_args(tiny_model, tiny_data, out, test_file=test_file, max_test_samples=10, num_train_epochs=1,
                      max_train_samples=128, max_eval_samples=32), how="python")
    tests = held_out_records(out)
    assert tests and all(t["test_samples"] == 10 for t in tests), tests
    best = best_metrics(out)
    assert best["test_samples"] == 10
    kept = [rows[i] for i in subset_indices(len(rows), 10, 42)]  # as --max_eval_samples: --seed 42
    accuracy, loss, _ = score_best(out, kept)
    assert best["test_accuracy"] == accuracy
    assert best["test_loss"] == pytest.approx(loss, rel=1e-4, abs=1e-6)


# ---------------------------------------------------------------- two processes
@pytest.mark.slow  # two processes: ~30 s here
def test_two_processes_score_every_test_example_once(tiny_model, tiny_data, tmp_path):
    """37 test rows over 2 ranks (19 + 18, the last batch padded by one): each scored once, and the
    scores are best/'s on exactly those rows."""
    rows = synthetic.make_rows(37, seed=11)
    test_file = tmp_path / "heldout.jsonl"
    synthetic.write_jsonl(rows, test_file)
    out = str(tmp_path / "out")
    run_cli(tiny_args(tiny_model, tiny_data, out, test_file=test_file, num_train_epochs=1, max_train_samples=128,
                      max_eval_samples=32, per_device_eval_batch_size=8), nproc=2, how="fork", timeout=300)
    tests = held_out_records(out)
    assert tests and all(t["test_samples"] == 37 for t in tests), tests
    assert [t["step"] for t in tests] == improving_steps(evals(out))
    best = best_metrics(out)
    assert best["test_samples"] == 37 and 0 <= best["test_accuracy"] <= 1
    accuracy, loss, _ = score_best(out, rows)
    assert best["test_accuracy"] == accuracy
    assert best["test_loss"] == pytest.approx(loss, rel=1e-4, abs=1e-6)
    # one writer: no record twice
    records = read_jsonl(os.path.join(out, "metrics.jsonl"))
    assert len(records) == len(train_logs(out)) + len(evals(out)) + len(tests)


@pytest.mark.slow  # 15 s: two runs
def test_a_variant_whose_evaluation_draws_random_numbers_trains_alike_with_held_out_sets(tiny_model, tiny_data,
                                                                                          tmp_path):
    """An evaluation that draws random numbers (MC dropout, a sampled augmentation; on a GPU, kernels that do): the
    test split and an extra evaluation set are scored with the RNG set back afterwards, so the run trains bit for bit
    as one without them (audit32: without that, every CPU test still passed, the loop's own evaluation drawing
    nothing)."""
    import torch

    from loop import Loop, parse_args

    class Drawing(Loop):
        def evaluation_step(self, batch):
            torch.rand(1)  # a draw of this process's generator, as a variant's evaluation may make
            return super().evaluation_step(batch)

    held = tmp_path / "held.jsonl"
    synthetic.write_jsonl(TEST_ROWS, held)
    common = dict(max_steps=6, eval_steps=2, max_train_samples=64, max_eval_samples=16, per_device_train_batch_size=8,
                  logging_steps=1)
    runs = {}
    for name, over in (("plain", {}), ("held", {"test_file": str(held), "extra_eval_files": f"more={held}"})):
        out = str(tmp_path / name)
        Drawing(parse_args(tiny_args(tiny_model, tiny_data, out, **common, **over))).fit()
        runs[name] = [(r["step"], r["loss"]) for r in train_logs(out)]
    assert len(runs["plain"]) == 6 and runs["plain"] == runs["held"], runs
