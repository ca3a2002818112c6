"""Research variants in examples/: each runs end to end through the real CLI and its override
has an observable effect. Unit-level checks run in-process on a tiny random model."""

import importlib.util
import json
import math
import os
import random
import re
import runpy
import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, evals, read_jsonl, run_cli, tiny_args, train_logs

import loop
from loop import synthetic


def example(name):
    """Import examples/<name>.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name, tiny_model, tiny_data, out, how="python", nproc=1, expect_best=True, check=True, **over):
    over = {"max_train_samples": 128, "max_eval_samples": 64, "num_train_epochs": 1, **over}
    proc = run_cli(tiny_args(tiny_model, tiny_data, out, **over), nproc=nproc, script=f"examples/{name}.py", how=how,
                   check=check)
    if not expect_best:
        return proc
    assert os.path.isfile(os.path.join(out, "best", "model.safetensors")), proc.stdout[-2000:]
    assert os.path.isfile(os.path.join(out, "best", "best_metrics.json"))
    return proc


def config(tiny_model, tiny_data, tmp_path, config_cls, **over):
    argv = tiny_args(tiny_model, tiny_data, str(tmp_path / "out"), **over)
    return loop.parse_args(argv, config_cls)


def tiny_classifier(tiny_model):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(tiny_model, num_labels=2))


def tiny_batch(n=4, length=12):
    g = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(5, 60, (n, length), generator=g),
            "attention_mask": torch.ones(n, length, dtype=torch.long),
            "labels": torch.tensor([0, 1] * (n // 2))}


# ---------------------------------------------------------------- R-Drop
def test_rdrop_loss_is_the_papers_halved(tiny_model, tiny_data, tmp_path):
    """Liang et al. (2021), Eq. 3 and the official fairseq criterion, per example: CE1 + CE2 + alpha/2 (KL12 + KL21);
    the example's loss is half of it (the scale of one cross-entropy), with the paper's alpha."""
    import types

    class TwoPasses(torch.nn.Module):  # the doubled batch's logits, far apart: a KL the check can see
        def forward(self, input_ids, attention_mask):
            g = torch.Generator().manual_seed(0)
            return types.SimpleNamespace(logits=3 * torch.randn(len(input_ids), 3, generator=g))

    m = example("rdrop")
    model = TwoPasses().train()
    batch = {**tiny_batch(), "labels": torch.tensor([0, 1, 2, 1])}
    for alpha in (0.0, 0.5, 2.0):
        rdrop = m.RDropLoop(config(tiny_model, tiny_data, tmp_path, m.RDropConfig, rdrop_alpha=alpha))
        loss, outputs = rdrop.compute_loss(model, batch)
        l1, l2 = outputs.logits.float().chunk(2)  # the doubled batch's two passes, written out by hand
        y = batch["labels"]
        p1, p2 = l1.softmax(-1), l2.softmax(-1)
        kl12 = (p1 * (p1.log() - p2.log())).sum(-1)  # KL(p1 || p2) per example
        kl21 = (p2 * (p2.log() - p1.log())).sum(-1)
        paper = (F.cross_entropy(l1, y, reduction="none") + F.cross_entropy(l2, y, reduction="none")
                 + alpha / 2 * (kl12 + kl21)).mean()
        assert kl12.mean().item() > 0.5
        assert 2 * loss.item() == pytest.approx(paper.item(), rel=1e-5)
        assert rdrop.last_kl.item() == pytest.approx(((kl12 + kl21) / 2).mean().item(), rel=1e-5)
    model = tiny_classifier(tiny_model).eval()  # evaluation mode: one ordinary pass, no KL
    batch = tiny_batch()
    loss, outputs = rdrop.compute_loss(model, batch)
    assert loss.item() == pytest.approx(F.cross_entropy(outputs.logits, batch["labels"]).item(), rel=1e-5)


@pytest.mark.parametrize("name,kind", [("rdrop", "regression"), ("rdrop", "multi-label"),
                                       ("label_smoothing", "regression"), ("label_smoothing", "multi-label")])
def test_softmax_examples_refuse_regression_and_multi_label(name, kind, tiny_model, tmp_path):
    """R-Drop's KL and label smoothing are defined over one softmax: on a regression R-Drop's KL was 0 (plain MSE
    trained under its name) and on multi-hot targets label smoothing trained a softmax against them."""
    rng = random.Random(0)
    rows = [{"text": r["text"], "label": (rng.uniform(-1, 1) if kind == "regression" else
                                          [x for x in ("A", "B") if rng.random() < 0.5])}
            for r in synthetic.make_rows(40, seed=1)]
    synthetic.write_jsonl(rows, tmp_path / "train.jsonl")
    synthetic.write_jsonl(rows[:16], tmp_path / "validation.jsonl")
    extra = {"problem_type": "regression"} if kind == "regression" else {}
    out = str(tmp_path / "out")
    proc = run_example(name, tiny_model, str(tmp_path), out, expect_best=False, check=False, **extra)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert f"examples/{name}.py" in line or "label smoothing" in line
    assert ("a regression" if kind == "regression" else "multi-label") in line and "loop/train.py" in line
    assert not os.path.exists(os.path.join(out, "best"))


def test_rdrop_end_to_end(tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "out")
    run_example("rdrop", tiny_model, tiny_data, out, rdrop_alpha=1.0)
    kls = [r["rdrop_kl"] for r in read_jsonl(os.path.join(out, "metrics.jsonl")) if "rdrop_kl" in r]
    assert len(kls) == len(train_logs(out)) >= 2  # one KL line per training-loss line
    assert all(math.isfinite(k) and k > 0 for k in kls)
    assert len(evals(out)) == 1


@pytest.mark.slow
def test_rdrop_two_processes(tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "out")
    proc = run_example("rdrop", tiny_model, tiny_data, out, nproc=2, how="fork")
    assert "2 process(es)" in proc.stdout
    kls = [r["rdrop_kl"] for r in read_jsonl(os.path.join(out, "metrics.jsonl")) if "rdrop_kl" in r]
    assert kls and all(k > 0 for k in kls)
    assert evals(out)[-1]["eval_samples"] == 64  # every evaluation example scored once across both ranks


# ---------------------------------------------------------------- FGM
def test_fgm_end_to_end_with_accumulation(tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "out")
    run_example("fgm", tiny_model, tiny_data, out, gradient_accumulation_steps=2, per_device_train_batch_size=8,
                max_train_samples=400, num_train_epochs=3, logging_steps=5, fgm_epsilon=0.05)
    logs = train_logs(out)
    assert len(logs) >= 4 and all(math.isfinite(r["fgm_adv_loss"]) for r in logs)
    assert logs[-1]["loss"] < logs[0]["loss"] and evals(out)[-1]["eval_accuracy"] > 0.6
    # the perturbation goes up the loss (on average: each pass draws its own dropout)
    assert sum(r["fgm_adv_loss"] for r in logs) > sum(r["loss"] for r in logs)


def test_fgm_refuses_lora(tiny_pretrained, tiny_data, tmp_path):
    """--lora_r freezes the word embeddings: no gradient to perturb along (it died with a TypeError)."""
    pytest.importorskip("peft")
    proc = run_example("fgm", tiny_pretrained, tiny_data, str(tmp_path / "out"), expect_best=False, check=False,
                       lora_r=4, from_scratch=None)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert [x for x in proc.stderr.splitlines() if x.startswith("error:")] == [
        "error: examples/fgm.py perturbs the word embeddings along their gradient, and --lora_r freezes them (no "
        "gradient); drop --lora_r."]


@pytest.mark.slow
def test_fgm_two_processes_equal_one_with_accumulation(tiny_model, tiny_data, tmp_path):
    """2 processes x batch 8 and 1 process x batch 8 x accumulation 2 take the same steps: each
    micro-batch's perturbation comes from its own gradient (the clean pass under no_sync), and the
    replicas stay equal (restored from a copy). Dropout off, so only summation order differs."""
    from safetensors.torch import load_file

    common = dict(max_train_samples=32, max_eval_samples=16, per_device_train_batch_size=8, group_by_length="false",
                  learning_rate=1e-3, fgm_epsilon=0.5,
                  config_overrides="dropout=0.0,attention_dropout=0.0,seq_classif_dropout=0.0")
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    run_example("fgm", tiny_model, tiny_data, one, gradient_accumulation_steps=2, **common)
    run_example("fgm", tiny_model, tiny_data, two, nproc=2, how="fork", **common)
    a, b = (load_file(os.path.join(d, "best", "model.safetensors")) for d in (one, two))
    assert [r["step"] for r in train_logs(one)] == [r["step"] for r in train_logs(two)] == [2]
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff < 1e-5, diff


# ---------------------------------------------------------------- LLRD
def test_llrd_param_groups_decay_by_layer(tiny_model, tiny_data, tmp_path):
    m = example("llrd")
    cfg = config(tiny_model, tiny_data, tmp_path, m.LLRDConfig, learning_rate=1e-3, llrd_decay=0.5)
    model = tiny_classifier(tiny_model)  # 2 transformer layers
    opt = m.LLRDLoop(cfg).build_optimizer(model)
    lrs = {}
    for g in opt.param_groups:
        lrs.setdefault(g["name"], set()).add(g["lr"])
    assert all(len(v) == 1 for v in lrs.values())  # a name's groups (decay / no decay) share one rate
    assert {k: v.pop() for k, v in lrs.items()} == pytest.approx(
        {"head": 1e-3, "layer_1": 5e-4, "layer_0": 2.5e-4, "embeddings": 1.25e-4})
    grouped = [p for g in opt.param_groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == sum(1 for p in model.parameters() if p.requires_grad)
    assert opt.param_groups[0]["name"] == "head"  # the logged learning_rate is the peak one
    by_id = {id(p): n for n, p in model.named_parameters()}
    for g in opt.param_groups:  # no weight decay on biases and norms, as in the base loop
        names = [by_id[id(p)] for p in g["params"]]
        assert all(("bias" in n or "norm" in n.lower()) == (g["weight_decay"] == 0.0) for n in names)


def family(model_type, **sizes):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.for_model(model_type, vocab_size=100, pad_token_id=0, num_labels=2, **sizes)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config)


def llrd_rates(m, model, cfg):
    """{parameter name: its rate} of the example's optimizer (each parameter in exactly one group)."""
    names = {id(p): n for n, p in model.named_parameters()}
    rates = {}
    for g in m.LLRDLoop(cfg).build_optimizer(model).param_groups:
        for p in g["params"]:
            assert names[id(p)] not in rates
            rates[names[id(p)]] = g["lr"]
    assert set(rates) == set(names.values())
    return rates


def test_llrd_embeddings_lowest_and_decoder_above_encoder(tiny_model, tiny_data, tmp_path):
    """GPT-2's wte/wpe and T5's/BART's shared embeddings (not named "embed") got the head's full rate; an
    encoder-decoder's decoder layer j got encoder layer j's rate; ALBERT (no numbered layers) was left undecayed."""
    m = example("llrd")
    cfg = config(tiny_model, tiny_data, tmp_path, m.LLRDConfig, learning_rate=1.0, llrd_decay=0.5)
    gpt2 = llrd_rates(m, family("gpt2", n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0), cfg)
    assert gpt2["transformer.wte.weight"] == gpt2["transformer.wpe.weight"] == 0.5 ** 3
    assert gpt2["transformer.h.0.attn.c_attn.weight"] == 0.5 ** 2 and gpt2["transformer.h.1.mlp.c_fc.weight"] == 0.5
    assert gpt2["score.weight"] == gpt2["transformer.ln_f.weight"] == 1.0
    t5 = llrd_rates(m, family("t5", d_model=16, num_layers=2, num_decoder_layers=3, num_heads=2, d_ff=32, d_kv=8), cfg)
    assert t5["transformer.shared.weight"] == 0.5 ** 6  # 2 + 3 layers below the head
    assert t5["transformer.encoder.block.0.layer.0.SelfAttention.q.weight"] == 0.5 ** 5
    assert t5["transformer.encoder.block.1.layer.1.DenseReluDense.wi.weight"] == 0.5 ** 4
    assert t5["transformer.decoder.block.0.layer.1.EncDecAttention.q.weight"] == 0.5 ** 3
    assert t5["transformer.decoder.block.2.layer.0.SelfAttention.q.weight"] == 0.5
    assert t5["transformer.encoder.final_layer_norm.weight"] == 0.5 ** 4  # the encoder's top, not the head
    assert t5["transformer.decoder.final_layer_norm.weight"] == 1.0
    assert t5["classification_head.out_proj.weight"] == 1.0
    bart = llrd_rates(m, family("bart", d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                                decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32), cfg)
    assert bart["model.shared.weight"] == bart["model.encoder.embed_positions.weight"] == 0.5 ** 5
    assert bart["model.encoder.layers.1.fc1.weight"] == 0.5 ** 3 and bart["model.decoder.layers.0.fc1.weight"] == 0.5 ** 2
    opt = llrd_rates(m, family("opt", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, ffn_dim=32,
                               word_embed_proj_dim=16), cfg)  # a decoder-only model named model.decoder.*: one stack
    assert opt["model.decoder.layers.0.fc1.weight"] == 0.5 ** 2 and opt["model.decoder.embed_tokens.weight"] == 0.5 ** 3
    albert = family("albert", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                    embedding_size=8)
    with pytest.raises(loop.UserError, match="found no numbered transformer layers in AlbertForSequenceClassification"):
        m.LLRDLoop(cfg).build_optimizer(albert)


@pytest.mark.slow
def test_llrd_end_to_end(tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "out")
    # (one process forked from the zygote: the EMA test runs an example through accelerate launch)
    run_example("llrd", tiny_model, tiny_data, out, learning_rate=2e-3, llrd_decay=0.8)
    (record,) = [r for r in read_jsonl(os.path.join(out, "metrics.jsonl")) if "llrd_lr" in r]
    assert record["llrd_lr"] == pytest.approx({"head": 2e-3, "layer_1": 1.6e-3, "layer_0": 1.28e-3, "embeddings": 1.024e-3})


# ---------------------------------------------------------------- label smoothing
def test_label_smoothing_changes_loss_for_same_logits(tiny_model, tiny_data, tmp_path):
    m = example("label_smoothing")
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5], [-3.0, 3.0]])
    labels = torch.tensor([0, 1, 0])

    class Fixed(torch.nn.Module):  # a "model" that returns the same logits whatever the input
        def forward(self, input_ids, attention_mask, labels=None):
            assert labels is None  # the example computes the loss itself
            return type("Out", (), {"logits": logits})()

    batch = {"input_ids": torch.zeros(3, 4, dtype=torch.long), "attention_mask": torch.ones(3, 4), "labels": labels}
    eps = 0.2
    ls = m.LabelSmoothingLoop(config(tiny_model, tiny_data, tmp_path, m.LabelSmoothingConfig, label_smoothing=eps))
    loss, outputs = ls.compute_loss(Fixed(), batch)
    plain = F.cross_entropy(logits, labels)
    logp = logits.log_softmax(-1)
    expected = ((1 - eps) * -logp.gather(1, labels[:, None]).squeeze(1) + eps * -logp.mean(-1)).mean()
    assert outputs.logits is logits
    assert loss.item() != pytest.approx(plain.item(), rel=1e-3)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_label_smoothing_option_from_yaml_and_validated(tiny_model, tiny_data, tmp_path):
    m = example("label_smoothing")
    path = tmp_path / "ls.yaml"
    path.write_text("label_smoothing: 0.3\nnum_train_epochs: 1\n")
    argv = ["--config", str(path)] + tiny_args(tiny_model, tiny_data, str(tmp_path / "out"), num_train_epochs=None)
    assert loop.parse_args(argv, m.LabelSmoothingConfig).label_smoothing == 0.3
    with pytest.raises(loop.UserError, match="label_smoothing"):
        config(tiny_model, tiny_data, tmp_path, m.LabelSmoothingConfig, label_smoothing=1.5)


# ---------------------------------------------------------------- early stopping (a callback, no subclass)
def test_early_stopping_callback_counts_evaluations_without_improvement(tmp_path):
    lp = loop.Loop(loop.parse_args(["--metric", "accuracy", "--output_dir", str(tmp_path)]))  # nothing set up
    es = loop.EarlyStopping(patience=2)
    for i, acc in enumerate([0.5, 0.6, 0.6, 0.55]):  # equal counts as no improvement
        assert lp.stop_requested is None, f"stopped early, at evaluation {i}"
        es.on_evaluate(lp, {"eval_accuracy": acc})
    assert lp.stop_requested and es.bad_evals == 2


def test_label_smoothing_end_to_end_with_early_stopping(tiny_model, tiny_data, tmp_path):
    # A variant plus a callback. lr 1e-9: the weights (and so the accuracy) cannot change, so every
    # evaluation after the first is no better, and patience 1 stops after the second of 4 epochs.
    out = str(tmp_path / "out")
    flags = dict(label_smoothing=0.1, learning_rate=1e-9, num_train_epochs=4, early_stopping_patience=1,
                 max_train_samples=64, checkpointing_steps="epoch")
    proc = run_example("label_smoothing", tiny_model, tiny_data, out, **flags)
    rows = evals(out)
    assert [r["epoch"] for r in rows] == [1, 2] and train_logs(out)
    assert rows[0]["eval_accuracy"] == rows[1]["eval_accuracy"]
    assert "early stopping" in proc.stdout + proc.stderr
    assert json.load(open(os.path.join(out, "best", "best_metrics.json")))["epoch"] == 1
    # The checkpoint saved as it stopped resumes as a finished run (a requeue, `auto`): nothing trains on
    # (it trained the remaining epochs and stopped again, two evaluations later, before).
    with open(os.path.join(out, "metrics.jsonl"), "rb") as f:
        log = f.read()
    proc = run_example("label_smoothing", tiny_model, tiny_data, out, resume_from_checkpoint="latest", **flags)
    assert "the run had stopped at step 8 (early stopping" in proc.stdout and "nothing left to train" in proc.stdout
    with open(os.path.join(out, "metrics.jsonl"), "rb") as f:
        assert f.read() == log


# ---------------------------------------------------------------- EMA
@pytest.mark.slow
def test_ema_evaluates_and_saves_ema_weights_and_survives_resume(tiny_model, tiny_data, tmp_path):
    from safetensors.torch import load_file

    out = str(tmp_path / "out")
    common = dict(num_train_epochs=2, ema_decay=0.9, checkpointing_steps="epoch", max_train_samples=96)
    run_example("ema", tiny_model, tiny_data, out, how="accelerate", **common)  # 6 steps per epoch
    rows = evals(out)
    assert len(rows) == 2 and all(r["ema_updates"] == 6 * (i + 1) for i, r in enumerate(rows))
    assert all(r["eval_raw_loss"] != r["eval_loss"] for r in rows)  # two different sets of weights evaluated

    # best/ holds the EMA weights of its epoch (from that epoch's checkpoint), not the raw ones
    best_epoch = json.load(open(os.path.join(out, "best", "best_metrics.json")))["epoch"]
    ckpt = os.path.join(out, "checkpoints", f"step_{6 * best_epoch}")
    saved = [torch.load(os.path.join(ckpt, f), weights_only=False) for f in sorted(os.listdir(ckpt))
             if f.startswith("custom_checkpoint_")]
    (ema,) = [s for s in saved if isinstance(s, dict) and "shadow" in s]
    assert ema["updates"] == 6 * best_epoch
    best, raw = load_file(os.path.join(out, "best", "model.safetensors")), load_file(os.path.join(ckpt, "model.safetensors"))
    assert set(ema["shadow"]) <= set(best)
    for name, tensor in ema["shadow"].items():
        torch.testing.assert_close(best[name], tensor)
    assert any(not torch.equal(raw[n], t) for n, t in ema["shadow"].items())

    # resume from the first epoch's checkpoint: the EMA continues (6 restored + 6 new updates)
    out2 = str(tmp_path / "resumed")
    run_example("ema", tiny_model, tiny_data, out2, resume_from_checkpoint=os.path.join(out, "checkpoints", "step_6"),
                expect_best=False, **common)  # best/ comes from `out` (copied at the resume) or epoch 2
    first, resumed = evals(out2)  # the first epoch's record, copied with the checkpoint's log
    assert first == rows[0] and resumed["ema_updates"] == 12
    # and it is the same average the uninterrupted run had (a fresh EMA would start from the epoch-1 weights)
    assert resumed["eval_loss"] == pytest.approx(rows[1]["eval_loss"], rel=1e-5)
    assert resumed["eval_raw_loss"] == pytest.approx(rows[1]["eval_raw_loss"], rel=1e-5)

    # its raw weights' scores are eval_raw_*: an extra evaluation set cannot take that name
    proc = run_example("ema", tiny_model, tiny_data, str(tmp_path / "raw"), check=False, expect_best=False,
                       extra_eval_files=f"raw={os.path.join(tiny_data, 'validation.jsonl')}")
    assert proc.returncode == 2 and "EMALoop logs eval_raw_* itself" in proc.stderr, proc.stderr[-2000:]


# ---------------------------------------------------------------- distillation
def test_distill_loss_is_the_hinton_mix_in_the_students_label_order(tiny_model, tiny_data, tmp_path, monkeypatch,
                                                                     capsys):
    """(1 - a) CE + a T^2 KL(teacher || student) at temperature T, exactly; a teacher that numbers the
    labels the other way round is read in the student's order; evaluation is the plain loss."""
    m = example("distill")
    cfg = config(tiny_model, tiny_data, tmp_path, m.DistillConfig, teacher=str(tmp_path), distill_alpha=0.3,
                 distill_temperature=2.0)
    student, teacher = tiny_classifier(tiny_model).eval(), tiny_classifier(tiny_model)  # eval: no dropout
    with torch.no_grad():
        teacher.classifier.weight.normal_()  # another model than the student
    from accelerate import Accelerator
    from test_torch_dtype import reset_accelerate

    lp = m.DistillLoop(cfg)
    reset_accelerate()  # an earlier test's bf16 state in this worker would autocast the teacher here
    lp.accelerator = Accelerator(cpu=True)  # its autocast (none here) wraps the teacher's forward
    lp.teacher, lp.teacher_order = teacher.eval(), torch.tensor([1, 0])  # its label 0 is the student's 1
    lp.teacher_inputs = ["input_ids", "attention_mask"]
    batch = tiny_batch()
    student.training = True  # compute_loss's training branch, dropout still off in the layers
    loss, outputs = lp.compute_loss(student, batch)
    s, t = outputs.logits, teacher(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, [1, 0]]
    kl = (F.softmax(t / 2, -1) * (F.log_softmax(t / 2, -1) - F.log_softmax(s / 2, -1))).sum(-1).mean() * 4
    want = 0.7 * F.cross_entropy(s, batch["labels"]) + 0.3 * kl
    assert kl.item() > 0 and loss.item() == pytest.approx(want.item(), rel=1e-5)
    student.training = False
    loss, outputs = lp.compute_loss(student, batch)
    assert loss.item() == pytest.approx(F.cross_entropy(outputs.logits, batch["labels"]).item(), rel=1e-5)
    with pytest.raises(loop.UserError, match="--teacher is required"):
        config(tiny_model, tiny_data, tmp_path, m.DistillConfig)
    missing = str(tmp_path / "teacher" / "best")  # a folder not there: refused before any data work
    with pytest.raises(loop.UserError, match=rf"--teacher '{re.escape(missing)}' is not a folder .* pass the teacher"):
        config(tiny_model, tiny_data, tmp_path, m.DistillConfig, teacher=missing)
    # 'teacher/best' is a valid Hub name: offline and not in the cache it cannot load, refused now (was after the
    # data work); online, a folder 'teacher' here gets a warning (a Hub org may share a local folder's name)
    os.makedirs(tmp_path / "teacher")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(loop.UserError, match=r"--teacher 'teacher/best' is not a folder \(though 'teacher' is a "
                                             r"folder here\), and as a Hub name it is not in the cache while "
                                             r"HF_HUB_OFFLINE is set"):
        config(tiny_model, tiny_data, tmp_path, m.DistillConfig, teacher="teacher/best")
    with pytest.raises(loop.UserError, match=r"--teacher './best' is not a folder \(nor a Hub name"):
        config(tiny_model, tiny_data, tmp_path, m.DistillConfig, teacher="./best")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    capsys.readouterr()
    assert config(tiny_model, tiny_data, tmp_path, m.DistillConfig, teacher="teacher/best").teacher == "teacher/best"
    assert "--teacher 'teacher/best' is not a folder (though 'teacher' is a folder here): reading it as a Hub model " \
           "name." in capsys.readouterr().err
    for decay in (1.0, 1.5):  # examples/ema.py: 1 never moves, above 1 the warm-up's cap hid it
        with pytest.raises(loop.UserError, match=r"--ema_decay must be in \[0, 1\)"):
            config(tiny_model, tiny_data, tmp_path, example("ema").EMAConfig, ema_decay=decay)
    config(tiny_model, tiny_data, tmp_path, m.DistillConfig, eval_only="true", from_scratch=None)  # none to score


@pytest.mark.parametrize("pad_id", [0, None])
def test_distill_teacher_reads_the_students_padding(pad_id, tiny_data, tmp_path):
    """The teacher reads the student's batches, padded with the student's pad token ('</s>', 2, for a Llama): a
    Llama teacher whose config pads with '<unk>' (0) read a padding position of a shorter text as its last token
    (wrong soft targets, silently), and one whose config has no pad id stopped at the first step ('Cannot handle
    batch sizes > 1 if no padding token is defined'). load_teacher gives it the student's pad id (audit67 e1, e2):
    a text scores alone as inside a padded batch."""
    import types

    from accelerate import Accelerator
    from test_models import build_model_dir
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    from loop import models

    base = build_model_dir(str(tmp_path / "models"), "llama")
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_pretrained(
        base, id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    teacher.config.pad_token_id = pad_id
    teacher.save_pretrained(tmp_path / "teacher")
    for name in os.listdir(base):
        if name.startswith("tokenizer"):
            shutil.copy(os.path.join(base, name), tmp_path / "teacher" / name)
    m = example("distill")
    cfg = config(base, tiny_data, tmp_path, m.DistillConfig, teacher=str(tmp_path / "teacher"), max_length=32)
    lp = m.DistillLoop(cfg)
    lp.accelerator, lp.max_length = Accelerator(cpu=True), 32
    lp.tokenizer = models.load_tokenizer(cfg, models.load_config(cfg))
    lp.data = types.SimpleNamespace(label_names=["NEGATIVE", "POSITIVE"], label_ids=None)
    assert lp.tokenizer.pad_token_id == 2  # the student pads with </s>
    teacher, order = lp.load_teacher()
    texts = ["good", "the film was dull and boring with a weak script"]
    batch = DataCollatorWithPadding(lp.tokenizer)([lp.tokenizer(t) for t in texts])
    assert batch["input_ids"][0, -1].item() == 2  # the short text padded with </s>
    with torch.no_grad():
        batched = teacher(**batch).logits
        alone = torch.cat([teacher(**lp.tokenizer(t, return_tensors="pt")).logits for t in texts])
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)
    assert teacher.config.pad_token_id == 2


@pytest.mark.slow  # 6-11 s on 2 cores: the quick loop stays under ~5 min
def test_distill_end_to_end_learns_from_the_teacher_alone(tiny_model, tiny_data, tmp_path):
    """With --distill_alpha 1 the labels are never read in training: a student from scratch that scores
    well above chance learned it from the teacher. best/ holds the student only; a teacher with other
    labels is refused in one line."""
    from safetensors.torch import load_file

    teacher = str(tmp_path / "teacher")
    loop.Loop(loop.parse_args(tiny_args(tiny_model, tiny_data, teacher, num_train_epochs=2))).fit()
    assert evals(teacher)[-1]["eval_accuracy"] > 0.8
    out = str(tmp_path / "student")
    run_example("distill", tiny_model, tiny_data, out, teacher=os.path.join(teacher, "best"), distill_alpha=1.0,
                max_train_samples=600, max_eval_samples=None, num_train_epochs=2)
    logs = train_logs(out)
    assert all(math.isfinite(r["distill_kl"]) for r in logs) and logs[-1]["distill_kl"] < logs[0]["distill_kl"]
    assert evals(out)[-1]["eval_accuracy"] > 0.75  # chance: 0.5
    assert set(load_file(os.path.join(out, "best", "model.safetensors"))) == \
        set(load_file(os.path.join(teacher, "best", "model.safetensors")))  # the same architecture, no teacher.*
    other = tmp_path / "other_teacher"
    shutil.copytree(os.path.join(teacher, "best"), other)
    config = json.load(open(other / "config.json"))
    config.update(id2label={"0": "BAD", "1": "GOOD"}, label2id={"BAD": 0, "GOOD": 1})
    json.dump(config, open(other / "config.json", "w"))
    proc = run_example("distill", tiny_model, tiny_data, str(tmp_path / "other"), teacher=str(other),
                       expect_best=False, check=False)
    assert proc.returncode == 2 and f"the teacher '{other}' predicts ['BAD', 'GOOD'], the data has ['NEGATIVE', " \
        f"'POSITIVE']; distill from a teacher trained on these labels." in proc.stderr, proc.stderr[-2000:]
    # labels that are ids (IMDb's ClassLabel neg, pos): --label_names names them as the teacher does, which the
    # line now says (it named no fix: audit66 N6); following it distills
    ids = tmp_path / "ids"
    ids.mkdir()
    for split in ("train", "validation"):
        rows = [json.loads(line) for line in open(os.path.join(tiny_data, f"{split}.jsonl"))]
        (ids / f"{split}.jsonl").write_text("".join(
            json.dumps({"text": r["text"], "label": ["NEGATIVE", "POSITIVE"].index(r["label"])}) + "\n" for r in rows))
    proc = run_example("distill", tiny_model, str(ids), str(tmp_path / "ids_out"), teacher=str(other),
                       expect_best=False, check=False)
    assert proc.returncode == 2 and f"the teacher '{other}' predicts ['BAD', 'GOOD'], the data has ['LABEL_0', " \
        f"'LABEL_1']; distill from a teacher trained on these labels, or, if they are the same classes, name the " \
        f"data's ids as the teacher does (--label_names BAD,GOOD, in the data's id order)." in proc.stderr, \
        proc.stderr[-2000:]
    run_example("distill", tiny_model, str(ids), str(tmp_path / "ids_out"), teacher=str(other),
                label_names="BAD,GOOD", max_steps=2)
    bare = tmp_path / "bare_teacher"  # weights and config, no tokenizer files: transformers 5 makes an empty one
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(teacher, "best", name), bare / name)
    proc = run_example("distill", tiny_model, tiny_data, str(tmp_path / "bare"), teacher=str(bare),
                       expect_best=False, check=False)
    assert proc.returncode == 2 and f"the teacher '{bare}' holds no tokenizer files" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_distill_resumes_with_its_teacher_by_another_path_and_refuses_another_teacher(tiny_model, tiny_data,
                                                                                     tmp_path, monkeypatch, capsys):
    """--teacher is a folder: named relative from the run's folder, then by an absolute path to a copy (a job that
    stages it to its node's disk), the run resumes and ends as the uninterrupted one; best/training_args.json names
    it by its last part. Another teacher's weights, and a multi-label teacher, are refused in one line (audit65 x1,
    x2)."""
    m = example("distill")
    monkeypatch.chdir(tmp_path)
    common = dict(num_train_epochs=1, max_train_samples=64, max_eval_samples=32, checkpointing_steps=3)

    def distill(out, **over):
        return m.DistillLoop(loop.parse_args(tiny_args(tiny_model, tiny_data, out, **{**common, **over}),
                                             m.DistillConfig)).fit()
    loop.Loop(loop.parse_args(tiny_args(tiny_model, tiny_data, "teacher", **common))).fit()
    distill("whole", teacher="teacher/best")  # 4 steps, checkpoints at 3 and 4
    published = json.load(open(tmp_path / "whole" / "best" / "training_args.json"))
    assert published["options"]["teacher"] == "best"  # not the folder that holds it
    shutil.copytree(tmp_path / "teacher" / "best", tmp_path / "staged" / "best")
    distill(str(tmp_path / "resumed"), teacher=str(tmp_path / "staged" / "best"),
            resume_from_checkpoint=str(tmp_path / "whole" / "checkpoints" / "step_3"))
    assert evals(tmp_path / "resumed") == evals(tmp_path / "whole")
    # the finished run, given its teacher by another path or its copy: nothing to resume (review r R1, r3 F1: the
    # copy trained its last steps again)
    finished = (tmp_path / "whole" / "metrics.jsonl").read_bytes()
    for teacher in (tmp_path / "teacher" / "best", tmp_path / "staged" / "best"):
        capsys.readouterr()
        distill("whole", teacher=str(teacher), resume_from_checkpoint="auto")
        out = capsys.readouterr().out
        assert "the run in 'whole' finished at step 4" in out and "resumed" not in out, out
        assert (tmp_path / "whole" / "metrics.jsonl").read_bytes() == finished

    loop.Loop(loop.parse_args(tiny_args(tiny_model, tiny_data, "other", seed=1, **common))).fit()
    with pytest.raises(loop.UserError, match=r"made with other inputs of DistillLoop \(teacher_sha1: "):
        distill(str(tmp_path / "other_teacher"), teacher="other/best",
                resume_from_checkpoint=str(tmp_path / "whole" / "checkpoints" / "step_3"))
    with pytest.raises(loop.UserError, match=r"made with other inputs of DistillLoop \(teacher_sha1: "):
        distill("whole", teacher="other/best", resume_from_checkpoint="auto")  # (review r2 F1: said "finished")
    # a checkpoint of an older version, without the teacher's hash: the teacher is compared as an option (review r R2)
    shutil.copytree(tmp_path / "whole" / "checkpoints" / "step_3", tmp_path / "older")
    state = json.load(open(tmp_path / "older" / "loop_state.json"))
    del state["inputs"]
    json.dump(state, open(tmp_path / "older" / "loop_state.json", "w"))
    with pytest.raises(loop.UserError, match=r"made with a different config \(--teacher 'teacher/best' → 'other/best'"):
        distill(str(tmp_path / "from_older"), teacher="other/best", resume_from_checkpoint=str(tmp_path / "older"))
    config = json.load(open(tmp_path / "staged" / "best" / "config.json"))
    json.dump({**config, "problem_type": "multi_label_classification"},
              open(tmp_path / "staged" / "best" / "config.json", "w"))
    with pytest.raises(loop.UserError, match=r"the teacher 'staged/best' is a multi-label model; distill from a "
                                             r"single-label classifier"):
        distill("multi", teacher="staged/best")


@pytest.mark.slow
def test_distill_two_processes(tiny_model, tiny_data, tmp_path):
    """Under DDP each rank holds its own frozen teacher beside the wrapped student (never in the
    optimizer or DDP's buckets); every evaluation example is scored once."""
    teacher = str(tmp_path / "teacher")
    loop.Loop(loop.parse_args(tiny_args(tiny_model, tiny_data, teacher, num_train_epochs=1, max_train_samples=128))).fit()
    out = str(tmp_path / "student")
    proc = run_example("distill", tiny_model, tiny_data, out, nproc=2, how="fork",
                       teacher=os.path.join(teacher, "best"))
    assert "2 process(es)" in proc.stdout
    logs = train_logs(out)
    assert logs and all(math.isfinite(r["distill_kl"]) and r["distill_kl"] > 0 for r in logs)
    assert evals(out)[-1]["eval_samples"] == 64


# ---------------------------------------------------------------- the README's "Write your own variant"
def test_readme_variant_example_works(tiny_model, tiny_data, tmp_path):
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    text = text[text.index("## Write your own variant"):]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 15
    (tmp_path / "focal.py").write_text(code)
    ns = runpy.run_path(str(tmp_path / "focal.py"))  # defines the classes; main() runs only as __main__
    model, batch = tiny_classifier(tiny_model).eval(), tiny_batch()
    losses = {}
    for gamma in (0.0, 2.0):
        cfg = config(tiny_model, tiny_data, tmp_path, ns["FocalConfig"], focal_gamma=gamma)
        losses[gamma], outputs = ns["FocalLoop"](cfg).compute_loss(model, batch)
    plain = F.cross_entropy(outputs.logits, batch["labels"])
    assert losses[0.0].item() == pytest.approx(plain.item(), rel=1e-5)  # gamma 0 is cross-entropy
    assert 0 < losses[2.0].item() < plain.item()


def test_own_metric_from_logits_picks_best_and_evaluation_loss_is_overridable(tiny_model, tiny_data, tmp_path):
    """A subclass computes ROC AUC from the logits compute_metrics now receives, lists it in own_metrics
    and picks best/ by it with --metric auc (no module is loaded for it); evaluation_loss decides
    eval_loss. A --metric that compute_metrics never returns is one line naming what it did return."""
    seen = {}

    class AUC(loop.Loop):
        own_metrics = {"auc": True}

        def compute_metrics(self, predictions, references, logits=None):
            out = super().compute_metrics(predictions, references, logits)
            margin = (logits[:, 1] - logits[:, 0]).tolist()
            pos = [m for m, r in zip(margin, references.tolist()) if r == 1]
            neg = [m for m, r in zip(margin, references.tolist()) if r == 0]
            out["auc"] = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
            seen["shape"], seen["metrics"] = tuple(logits.shape), sorted(self.metric)
            seen.setdefault("losses", []).append((F.cross_entropy(logits, references).item(),
                                                  F.cross_entropy(logits, references, label_smoothing=0.5).item()))
            return out

        def evaluation_loss(self, logits, labels):
            return F.cross_entropy(logits, labels, reduction="none", label_smoothing=0.5)

    out = str(tmp_path / "out")
    AUC(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, metric="auc", metrics="accuracy",
               max_train_samples=160, max_eval_samples=64, num_train_epochs=2, output_dir=out)).fit()
    records = evals(out)
    assert (seen["shape"], seen["metrics"]) == ((64, 2), ["accuracy"])
    assert all(0.5 < r["eval_auc"] <= 1.0 for r in records), records
    best = json.load(open(os.path.join(out, "best", "best_metrics.json")))
    assert best["eval_auc"] == max(r["eval_auc"] for r in records)
    for r, (plain, smoothed) in zip(records, seen["losses"]):  # eval_loss is the overridden objective
        assert r["eval_loss"] == pytest.approx(smoothed, rel=1e-5) and abs(smoothed - plain) > 1e-3

    class TwoArguments(loop.Loop):  # an override written before compute_metrics took the logits
        def compute_metrics(self, predictions, references):
            return {**super().compute_metrics(predictions, references), "n_predicted": len(predictions)}

    out = str(tmp_path / "two")
    TwoArguments(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, max_train_samples=32, max_eval_samples=16,
                        num_train_epochs=1, output_dir=out)).fit()
    assert [(r["eval_n_predicted"], 0 <= r["eval_accuracy"] <= 1) for r in evals(out)] == [(16, True)]

    class Forgets(AUC):
        own_metrics = {"auc": True, "brier": False}

    with pytest.raises(loop.UserError, match=r"--metric brier: the evaluation gave no eval_brier \(it gave eval_auc, eval_loss\)"):
        Forgets(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, metric="brier", max_train_samples=32,
                       max_eval_samples=16, num_train_epochs=1, output_dir=str(tmp_path / "forgets"))).fit()


def test_build_train_sampler_curriculum_and_a_plain_dataloader_override(tiny_model, tiny_data, tmp_path):
    """A curriculum (epoch 1: shortest batches first) is one override of build_train_sampler; the
    loop keeps its DataLoader, collator and resume logic around it. Overriding build_dataloaders
    with plain DataLoaders (no sampler of ours) also trains."""
    import numpy as np
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    class ShortFirst(loop.loaders.EpochBatchSampler):
        def __iter__(self):
            batches = list(super().__iter__())
            if self.epoch == 0:  # a pure function of (seed, epoch): resumable
                full = [b for b in batches if len(b) == self.batch_size]
                full.sort(key=lambda b: int(self.lengths[b].max()))
                batches = full + [b for b in batches if len(b) < self.batch_size]
            return iter(batches)

    class Curriculum(loop.Loop):
        def build_train_sampler(self):
            cfg = self.cfg
            return ShortFirst(self.data.train_lengths, cfg.per_device_train_batch_size, cfg.seed)

        def training_step(self, batch):
            self.widths = getattr(self, "widths", []) + [(self.state.epoch, batch["input_ids"].shape[1])]
            return super().training_step(batch)

    lp = Curriculum(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, max_train_samples=160,
                           max_eval_samples=32, num_train_epochs=2, group_by_length="false"))
    lp.fit()
    first = [w for e, w in lp.widths if e == 0][:-1]  # the short batch comes last
    second = [w for e, w in lp.widths if e == 1][:-1]
    assert first == sorted(first) and second != sorted(second), (first, second)
    assert len(evals(lp.cfg.output_dir)) == 2

    class Plain(loop.Loop):
        def build_dataloaders(self):
            collate = DataCollatorWithPadding(self.tokenizer)
            return (DataLoader(self.data.train, batch_size=16, shuffle=True, collate_fn=collate),
                    DataLoader(self.data.eval, batch_size=16, collate_fn=collate))

    out = str(tmp_path / "plain")
    Plain(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, max_train_samples=64, max_eval_samples=32,
                 num_train_epochs=1, output_dir=out)).fit()
    assert [e["eval_samples"] for e in evals(out)] == [32]
    assert np.isfinite([r["loss"] for r in train_logs(out)]).all()


def test_a_plain_shuffled_dataloader_resumes_on_the_batches_it_left(tiny_model, tiny_data, tmp_path):
    """build_dataloaders returning an ordinary DataLoader(shuffle=True): its order is a function of (seed,
    epoch) (accelerate's seedable sampler), so a resume mid-epoch trains the batches the uninterrupted run
    trained there. Before, a generator given to it started again from its seed: the resumed epoch took the first
    epoch's order and skipped the batches done of that one (some examples twice, others never, silently); and
    one without a generator drew from the global RNG for each iterator: the resumed run's dropout differed."""
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    class Plain(loop.Loop):
        def build_dataloaders(self):
            collate = DataCollatorWithPadding(self.tokenizer)
            return (DataLoader(self.data.train, batch_size=16, shuffle=True, collate_fn=collate),
                    DataLoader(self.data.eval, batch_size=16, collate_fn=collate))

        def training_step(self, batch):  # a batch is known by its rows' token sums
            self.seen = getattr(self, "seen", []) + [sorted(batch["input_ids"].sum(1).tolist())]
            return super().training_step(batch)

    out = str(tmp_path / "out")
    over = dict(max_train_samples=64, max_eval_samples=16, num_train_epochs=3, checkpointing_steps=2, output_dir=out)
    first = Plain(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **over))
    first.fit()
    epochs = [sorted(map(tuple, first.seen[i:i + 4])) for i in (0, 4, 8)]  # 4 batches an epoch
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled every epoch
    again = str(tmp_path / "again")
    shutil.copytree(out, again)
    resumed = Plain(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=again),
                           resume_from_checkpoint=os.path.join(again, "checkpoints", "step_6")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed.fit()  # from the middle of the second epoch
    assert resumed.seen == first.seen[6:]
    assert evals(again) == evals(out) and train_logs(again) == train_logs(out)  # the same dropout too
    assert not [w for w in caught if "has no set_epoch" in str(w.message)]

    class Unseeded(Plain):  # a sampler of its own whose state no checkpoint holds: the resume says so
        def build_dataloaders(self):
            train, evaluation = super().build_dataloaders()
            order = torch.utils.data.SubsetRandomSampler(range(len(self.data.train)),
                                                         generator=torch.Generator().manual_seed(self.cfg.seed))
            return DataLoader(self.data.train, batch_size=16, sampler=order, collate_fn=train.collate_fn), evaluation

    over.update(num_train_epochs=1, output_dir=str(tmp_path / "unseeded"))
    Unseeded(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **over)).fit()
    with pytest.warns(UserWarning, match=r"the training DataLoader's sampler \(SubsetRandomSampler\) has no set_epoch"):
        Unseeded(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, overwrite_output_dir="true"),
                        resume_from_checkpoint=os.path.join(over["output_dir"], "checkpoints", "step_2"))).fit()


def test_a_sampler_whose_order_is_not_its_epochs_alone_is_warned_and_a_seeded_one_is_not(tiny_model, tiny_data,
                                                                                          tmp_path):
    """A curriculum sampler of a variant that shuffles with the global RNG (no seed of its own) gives an order no
    resume can repeat: warned once, at the start, not at a resume hours later that trains other batches
    silently (it has set_epoch, so the resume's check took it for a pure one). Seeded by (seed, epoch): silent."""
    import warnings

    class Curriculum:
        def __init__(self, n, seed=None):
            self.n, self.seed, self.epoch = n, seed, 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __iter__(self):
            g = None if self.seed is None else torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
            return iter([order[i:i + 16] for i in range(0, self.n, 16)])

        def __len__(self):
            return (self.n + 15) // 16

    def run(name, seed):
        class Variant(loop.Loop):
            def build_train_sampler(self):
                return Curriculum(len(self.data.train), seed)

        cfg = config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, max_train_samples=64, max_eval_samples=16,
                     num_train_epochs=2, output_dir=str(tmp_path / name))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Variant(cfg).fit()
        return [str(w.message) for w in caught if "training batch sampler" in str(w.message)]

    unseeded = run("unseeded", None)
    assert unseeded and unseeded[0].startswith("the training batch sampler gave another order when an epoch was "
                                               "read again, so a resume mid-epoch would skip batches of an order")
    assert "make Curriculum's order a function of (seed, epoch) alone" in unseeded[0]
    assert run("seeded", 7) == []

    class SeededAtEachEpoch(Curriculum):  # its generator made by set_epoch, drawn from by each pass: pure too
        def set_epoch(self, epoch):
            self.g = torch.Generator().manual_seed(self.seed * 1000 + epoch)

        def __iter__(self):
            order = torch.randperm(self.n, generator=self.g).tolist()
            return iter([order[i:i + 16] for i in range(0, self.n, 16)])

    from types import SimpleNamespace

    from loop.loaders import check_sampler_order

    sampler = SeededAtEachEpoch(64, 7)
    sampler.set_epoch(1)
    assert check_sampler_order(sampler, 1, SimpleNamespace(num_processes=1)) is None  # the epoch set again, not warned


def test_unfreezing_parameters_the_optimizer_lacks_is_refused_in_one_process(tiny_model, tiny_data, tmp_path):
    """Gradual unfreezing. With unfreezes_later the default optimizer holds the frozen parameters (was: the
    trainable ones only, so the variant had to build its own or flip requires_grad around it): the body stays
    as it was through epoch 1 and trains from epoch 2. Unfrozen without unfreezes_later, the body got gradients
    and never changed, silently, in one process (under DDP it was refused): refused at the epoch that unfreezes
    it, naming the fix. unfreezes_later with an optimizer over the trainable ones only is refused before any
    training (was: at the unfreezing epoch, after its checkpoints were written)."""
    from fault_train import FrozenBody

    class Unfreeze(FrozenBody):  # the classifier alone trains in epoch 1
        def on_train_start(self):
            self.seen = [self.embeddings()]

        def on_epoch_start(self):
            if self.state.epoch == 1:
                self.model.requires_grad_(True)

        def embeddings(self):
            return self.unwrapped_model.get_input_embeddings().weight.detach().clone()

        def on_evaluate(self, metrics):  # at each epoch's end
            self.seen = getattr(self, "seen", []) + [self.embeddings()]

    over = dict(max_train_samples=32, max_eval_samples=16, num_train_epochs=2)
    lp = Unfreeze(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=str(tmp_path / "u"))))
    lp.fit()
    assert torch.equal(lp.seen[0], lp.seen[1]) and not torch.equal(lp.seen[1], lp.seen[2])
    held = {id(p) for g in lp.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in held for p in lp.model.parameters())

    class Partly(Unfreeze):  # only the last block will be unfrozen: only it joins the optimizer
        unfreezes_later = ("transformer.layer.1.",)

        def on_epoch_start(self):
            if self.state.epoch == 1:
                for name, p in self.model.named_parameters():
                    p.requires_grad |= "transformer.layer.1." in name

    lp = Partly(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=str(tmp_path / "p"))))
    lp.fit()
    held = {id(p) for g in lp.optimizer.param_groups for p in g["params"]}
    assert {n for n, p in lp.model.named_parameters() if id(p) in held} == \
        {n for n, p in lp.model.named_parameters() if "classifier" in n or "transformer.layer.1." in n}
    assert torch.equal(lp.seen[1], lp.seen[2])  # the embeddings stayed frozen

    class Misspelt(Partly):
        unfreezes_later = ("transformer.layers.1.",)

    with pytest.raises(loop.UserError, match=r"unfreezes_later is set, but the optimizer holds none of the"):
        Misspelt(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=str(tmp_path / "m"))))\
            .fit()

    class Undeclared(Unfreeze):
        unfreezes_later = False

    with pytest.raises(loop.UserError, match=r"parameter\(s\) are trainable but not in the optimizer \(.*\), so they "
                                             r"would never change: set unfreezes_later = True on the Loop subclass"):
        Undeclared(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **over)).fit()

    class TrainableOnly(Unfreeze):
        def build_optimizer(self, model):
            return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=self.cfg.learning_rate)

    out = str(tmp_path / "only")
    with pytest.raises(loop.UserError, match=r"unfreezes_later is set, but the optimizer holds none of the \d+ frozen "
                                             r"parameter\(s\) \(distilbert\.embeddings"):
        TrainableOnly(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=out))).fit()
    assert not os.path.exists(os.path.join(out, "metrics.jsonl"))  # before any training

    class HeadOnly(loop.Loop):  # trainable parameters left out of the optimizer from the start: its choice
        def build_optimizer(self, model):
            return torch.optim.AdamW([p for n, p in model.named_parameters() if "classifier" in n], lr=1e-3)

        def on_evaluate(self, metrics):
            self.seen = getattr(self, "seen", []) + [self.accelerator.unwrap_model(self.model)
                                                     .get_input_embeddings().weight.detach().clone()]

    lp = HeadOnly(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=str(tmp_path / "h"))))
    lp.fit()
    assert torch.equal(lp.seen[0], lp.seen[1])


def test_a_head_wrapped_by_build_model_is_warned_of_at_the_start(tiny_model, tiny_data, tmp_path):
    """A variant that wraps the classifier in a head of its own renames its weights (classifier.out.weight): best/
    then loads in pipeline() with a new random head, which nothing said until predict.py refused it. Warned at
    the start now, naming the weights; a head that keeps the names (its class swapped) is not warned of and its
    best/ loads back whole."""
    from transformers import AutoModelForSequenceClassification

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.out, self.drop = inner, torch.nn.Dropout(0.1)

        def forward(self, x):
            return self.out(self.drop(x))

    class Wrapping(loop.Loop):
        def build_model(self):
            model = super().build_model()
            model.classifier = Wrapped(model.classifier)
            return model

    class Swapped(loop.Loop):  # the same head, its names kept
        def build_model(self):
            model = super().build_model()
            model.classifier.__class__ = type("Head", (torch.nn.Linear,), {})
            return model

    over = dict(max_train_samples=32, max_eval_samples=16, num_train_epochs=1)
    with pytest.warns(UserWarning, match=r"build_model renamed or removed weights that "
                                         r"DistilBertForSequenceClassification.from_pretrained loads \(classifier.bias, "
                                         r"classifier.weight are not in the model\): best/ would load"):
        Wrapping(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=str(tmp_path / "w"))))\
            .fit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Swapped(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=str(tmp_path / "s")))).fit()
    assert not [w for w in caught if "renamed or removed" in str(w.message)]
    _, info = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "s" / "best"), output_loading_info=True)
    assert not info["missing_keys"]


def test_an_unfreezing_a_hook_decided_survives_a_resume(tiny_model, tiny_data, tmp_path, capsys, monkeypatch):
    """A variant unfreezes the body at a moment of its own (step 3, as a plateau rule would): a checkpoint
    records which parameters train, and a resume from step 4 restores that before the hooks (was: the rebuilt
    model stayed frozen to the end, silently, and ended elsewhere). Resumed equals uninterrupted, bit for bit."""
    from fault_train import UnfreezeAtStep as StepUnfreeze

    monkeypatch.setenv("LOOP_TEST_UNFREEZE_AT_STEP", "3")
    over = dict(max_train_samples=64, max_eval_samples=16, num_train_epochs=2, checkpointing_steps=2,
                config_overrides="dropout=0.0,attention_dropout=0.0,seq_classif_dropout=0.0")
    out, again = str(tmp_path / "whole"), str(tmp_path / "again")
    whole = StepUnfreeze(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=out)))
    whole.fit()
    shutil.copytree(out, again)
    capsys.readouterr()
    resumed = StepUnfreeze(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=again),
                                  resume_from_checkpoint=os.path.join(again, "checkpoints", "step_4")))
    resumed.fit()
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert evals(again) == evals(out)
    assert "trainable parameters as at the checkpoint: 36 unfrozen (a hook had changed them during the run)" in \
        capsys.readouterr().out


def test_the_optimizer_line_describes_what_trains(tiny_model, tiny_data, tmp_path, capsys):
    """The start-up 'optimizer:' line: the loop's own as its flags say; a variant's optimizer and scheduler as they
    are (it printed the flags' linear schedule and warmup for a StepLR, and --learning_rate for SGD's own rate)."""
    over = dict(max_train_samples=32, max_eval_samples=16, num_train_epochs=1, learning_rate=1e-3, warmup_steps=1)
    loop.Loop(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **over)).fit()
    line = next(x for x in capsys.readouterr().out.splitlines() if "optimizer:" in x)
    assert line.endswith("optimizer: AdamW, learning rate 0.001, betas (0.9, 0.999), eps 1e-08, weight decay 0.01; "
                         "linear schedule, 1 warmup steps of 2"), line

    class Steps(loop.Loop):
        def build_optimizer(self, model):  # the head at 10x the body's rate
            head = [p for n, p in model.named_parameters() if "classifier" in n]
            body = [p for n, p in model.named_parameters() if "classifier" not in n]
            return torch.optim.SGD([{"params": body}, {"params": head, "lr": 0.5}], lr=0.05, weight_decay=0.001)

        def build_scheduler(self, optimizer, num_training_steps):
            return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)

    Steps(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=str(tmp_path / "s")))).fit()
    line = next(x for x in capsys.readouterr().out.splitlines() if "optimizer:" in x)
    assert line.endswith("optimizer: SGD, learning rates 0.05 to 0.5, weight decay 0.001; StepLR (build_scheduler) "
                         "over 2 steps"), line

    class Ada(loop.Loop):  # Adafactor's relative step: its schedule's initial_lr 0 is no learning rate
        def build_optimizer(self, model):
            from transformers.optimization import Adafactor

            return Adafactor(model.parameters(), lr=None, relative_step=True, scale_parameter=True, warmup_init=True)

        def build_scheduler(self, optimizer, num_training_steps):
            from transformers.optimization import AdafactorSchedule

            return AdafactorSchedule(optimizer)

    Ada(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=str(tmp_path / "a")))).fit()
    line = next(x for x in capsys.readouterr().out.splitlines() if "optimizer:" in x)
    assert line.endswith("optimizer: Adafactor, relative step size (no learning rate), eps (1e-30, 0.001), weight decay 0; "
                         "AdafactorSchedule (build_scheduler) over 2 steps"), line


def test_track_logs_a_mean_per_line_and_resumes_exactly(tiny_model, tiny_data, tmp_path):
    """self.track(name, value): each training log line holds the mean since the previous line. A run
    resumed from a checkpoint between two lines logs the same means as the uninterrupted run (the
    running sums are in the checkpoint)."""
    import shutil

    class Widths(loop.Loop):
        def training_step(self, batch):
            self.track("width", torch.tensor(float(batch["input_ids"].shape[1])))
            return super().training_step(batch)

    out = str(tmp_path / "out")
    over = dict(max_train_samples=160, max_eval_samples=32, num_train_epochs=1, logging_steps=4, checkpointing_steps=2,
                output_dir=out)
    lp = Widths(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **over))
    lp.fit()
    lines = [(r["step"], r["width"]) for r in train_logs(out)]
    assert [s for s, _ in lines] == [4, 8, 10]
    assert len({w for _, w in lines}) > 1  # batches of different lengths: the means differ

    again = str(tmp_path / "again")
    shutil.copytree(out, again)
    Widths(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, **dict(over, output_dir=again),
                  resume_from_checkpoint=os.path.join(again, "checkpoints", "step_6"))).fit()
    assert [(r["step"], r["width"]) for r in train_logs(again)] == lines
    lp.tracked.paused = True  # as during configure_ddp's trial passes through compute_loss
    lp.track("trial", torch.tensor(1.0))
    assert "trial" not in lp.tracked.sums


def test_hooks_run_where_a_variant_needs_them(tiny_model, tiny_data, tmp_path):
    """on_step_end runs before its step's log line (a number it tracks was a line late, and the run's last never
    logged); on_epoch_end runs once per epoch after its last step and before its evaluation (so an average put in
    place there is scored), also at --max_steps' end mid-epoch; an on_* method that is no hook is warned about
    (an on_epoch_end was silently never called); a variant's own self.loss does not break the loss log (it was
    the loss meter: 'take() takes 1 positional argument')."""
    seen = []

    class Variant(loop.Loop):
        def compute_loss(self, model, batch):
            self.loss, outputs = super().compute_loss(model, batch)
            return self.loss, outputs

        def on_step_end(self):
            self.track("step_seen", torch.tensor(float(self.state.global_step)))

        def on_epoch_end(self):
            seen.append(("epoch_end", self.state.epoch, self.state.batches_done, self.state.global_step))

        def on_evaluate(self, metrics):
            seen.append(("evaluate", self.state.global_step))

        def on_batch_end(self):  # (Lightning's name: never called here, warned about)
            raise AssertionError("no hook")

        def on_best_logged(self):  # a helper of the variant's own: no hook name of another library, not warned about
            pass

        @property
        def on_last_batch(self):  # a property is not run by the check (it raised at the start: no dataloader yet)
            return self.state.batches_done == len(self.train_dataloader)

    out = str(tmp_path / "out")
    with pytest.warns(UserWarning, match=r"^Variant\.on_batch_end is a hook of Trainer or Lightning that the loop "
                                         r"does not have, so nothing calls it \(the loop's hooks: on_train_start, "
                                         r"on_epoch_start, on_step_end, on_epoch_end, on_evaluate, on_save, "
                                         r"on_train_end\)\.$") as caught:
        Variant(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, max_train_samples=160, max_eval_samples=16,
                       num_train_epochs=2, logging_steps=4, group_by_length="false", output_dir=out)).fit()
    assert len([w for w in caught if "Trainer or Lightning" in str(w.message)]) == 1  # on_best_logged: not named
    lines = train_logs(out)
    # steps 1-4, 5-8, 9-10 (the epoch's last), 11-12, ...: each line the mean of its own steps
    assert [(r["step"], r["step_seen"]) for r in lines] == [(4, 2.5), (8, 6.5), (10, 9.5), (12, 11.5), (16, 14.5),
                                                            (20, 18.5)]
    assert all(math.isfinite(r["loss"]) for r in lines)
    assert seen == [("epoch_end", 0, 10, 10), ("evaluate", 10), ("epoch_end", 1, 10, 20), ("evaluate", 20)]

    seen.clear()
    Variant(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, max_train_samples=160, max_eval_samples=16,
                   num_train_epochs=2, max_steps=7, output_dir=str(tmp_path / "short"))).fit()
    assert seen == [("epoch_end", 0, 7, 7), ("evaluate", 7)]


def test_write_best_extras_lands_in_best_under_its_checksums(tiny_model, tiny_data, tmp_path):
    """A variant's own file written by write_best_extras is in best/ and in best/checksums.json, so a
    damaged copy is caught like the model's files."""
    class Calibrated(loop.Loop):
        def write_best_extras(self, path):
            assert os.path.basename(path) != "best"  # the temporary folder, published afterwards
            with open(os.path.join(path, "temperature.json"), "w") as f:
                json.dump({"temperature": 1.5, "step": self.state.global_step}, f)

    out = str(tmp_path / "out")
    Calibrated(config(tiny_model, tiny_data, tmp_path, loop.TrainConfig, max_train_samples=32, max_eval_samples=16,
                      num_train_epochs=1, output_dir=out)).fit()
    best = os.path.join(out, "best")
    assert json.load(open(os.path.join(best, "temperature.json"))) == {"temperature": 1.5, "step": 2}
    sums = loop.checkpoint.read_checksums(best)
    assert "temperature.json" in sums and "model.safetensors" in sums
    assert not loop.checkpoint.verify_files(best, sums)
    with open(os.path.join(best, "temperature.json"), "a") as f:
        f.write(" ")
    assert "temperature.json" in loop.checkpoint.verify_files(best, sums)


def test_an_examples_option_given_to_train_py_names_its_example():
    """--rdrop_alpha, --ema_decay, --fgm_epsilon to loop/train.py were pointed at the nearest spelling of the base
    loop's options (--lora_alpha, --weight_decay, --adam_epsilon), which would change the run (audit59 j1): each
    names its example. option_hints.EXAMPLE_OPTIONS is every shipped example's own options, and only those."""
    import dataclasses
    import glob

    from loop.config import TrainConfig
    from loop.option_hints import EXAMPLE_OPTIONS, option_hint

    base = {f.name for f in dataclasses.fields(TrainConfig)}
    own = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*.py"))):
        name = os.path.basename(path)[:-3]
        module = example(name)
        for cls in vars(module).values():
            if isinstance(cls, type) and dataclasses.is_dataclass(cls) and issubclass(cls, TrainConfig):
                own.update({f.name: name for f in dataclasses.fields(cls) if f.name not in base})
    assert own == EXAMPLE_OPTIONS
    assert option_hint("--ema_decay", TrainConfig) == ("--ema_decay is an option of examples/ema.py: run `python "
                                                       "examples/ema.py ...` (or your variant) to use it")
    assert option_hint("rdrop_alpha", TrainConfig, yaml=True).startswith("rdrop_alpha is an option of examples/rdrop.py")
    # one a built-in option begins with: that first (a Trainer user's --label_smoothing means the built-in one)
    assert option_hint("--label_smoothing", TrainConfig) == ("for --label_smoothing use --label_smoothing_factor (built "
                                                             "in), or run examples/label_smoothing.py, whose option it is")
