"""--torch_dtype: a LoRA run keeps its frozen body in bfloat16 (half the memory of float32) while the
adapters and the head train in float32 under bf16 autocast; --eval_only scores a model in it.

Runs are in-process (the weights are inspected), on a tiny random Llama from the model matrix, under
accelerate's bf16 mixed precision on the CPU; accelerate's process-wide state is reset around them."""

import json
import os
from types import SimpleNamespace

import pytest
import torch

from conftest import evals, read_jsonl, run_cli, write_data
from test_errors import check_user_error
from test_models import build_model_dir

from loop import Loop, UserError, models, parse_args


def reset_accelerate():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def bf16_env():
    """accelerate's bf16 mixed precision for the module's in-process runs (read when an Accelerator is
    made), with its process-wide state fresh before and after (it refuses a change of precision)."""
    old = os.environ.get("ACCELERATE_MIXED_PRECISION")
    os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"
    reset_accelerate()
    yield
    if old is None:
        os.environ.pop("ACCELERATE_MIXED_PRECISION")
    else:
        os.environ["ACCELERATE_MIXED_PRECISION"] = old
    reset_accelerate()


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("dtype")
    data = write_data(root / "data", 64, 32) if (root / "data").mkdir() is None else None
    return SimpleNamespace(model=build_model_dir(str(root), "llama"), data=data, root=root)


def args(s, out, *extra):
    return ["--model_name_or_path", s.model, "--train_file", str(s.data / "train.jsonl"),
            "--validation_file", str(s.data / "validation.jsonl"), "--max_length", "32", "--learning_rate", "1e-2",
            "--num_train_epochs", "2", "--logging_steps", "1", "--output_dir", out, *extra]


class Recording(Loop):
    def on_train_start(self):
        self.start = {k: v.detach().clone() for k, v in self.model.named_parameters()}


def lora_bf16(s, out, *extra):
    loop = Recording(parse_args(args(s, out, "--lora_r", "4", "--torch_dtype", "bf16", "--checkpointing_steps", "3",
                                     *extra)))
    loop.fit()
    return loop


@pytest.fixture(scope="module")
def trained(setting, bf16_env):
    out = str(setting.root / "out")
    return out, lora_bf16(setting, out)


def test_the_frozen_body_stays_bf16_and_the_trained_weights_are_fp32(trained, capsys):
    out, loop = trained
    assert loop.cfg.torch_dtype == "bfloat16"  # bf16, accelerate's spelling, is one value
    body = {n: p for n, p in loop.model.named_parameters() if not p.requires_grad and ".original_module." not in n}
    trained_params = {n: p for n, p in loop.model.named_parameters() if p.requires_grad}
    assert body and all(p.dtype == torch.bfloat16 for p in body.values()), {n: p.dtype for n, p in body.items()}
    assert any("lora_A" in n for n in trained_params) and any("modules_to_save" in n for n in trained_params)
    assert all(p.dtype == torch.float32 for p in trained_params.values())
    for n, p in body.items():  # frozen means frozen: not a bit moved
        assert torch.equal(p, loop.start[n]), n
    # the optimizer holds the float32 weights only (AdamW's state of a bf16 weight would round every update)
    held = [p for g in loop.optimizer.param_groups for p in g["params"]]
    assert held and all(p.dtype == torch.float32 for p in held)
    losses = [r["loss"] for r in read_jsonl(os.path.join(out, "metrics.jsonl")) if "loss" in r]
    assert len(losses) == 8 and sum(losses[-3:]) < sum(losses[:3]), losses  # it learns
    assert max(r["eval_accuracy"] for r in evals(out)) > 0.5


def test_the_log_gives_the_memory_of_each_kind_of_weight(setting, bf16_env, tmp_path, capsys):
    loop = Loop(parse_args(args(setting, str(tmp_path / "o"), "--lora_r", "4", "--torch_dtype", "bfloat16",
                                "--max_steps", "1")))
    loop.fit()
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "parameters:" in ln)
    frozen = sum(p.numel() * p.element_size() for p in loop.model.parameters() if not p.requires_grad)
    trained = sum(p.numel() * 4 for p in loop.model.parameters() if p.requires_grad)
    assert f"weights in memory: {frozen / 1024:.1f} KiB frozen (bfloat16), {trained / 1024:.1f} KiB trained" in line
    # the same run in float32 says nothing of memory: one dtype throughout
    assert "frozen (" not in models.describe_parameters(loop.model.float())


def test_best_is_the_bf16_body_plus_the_delta_rounded_once(trained, setting):
    """best/'s adapted weights are exactly bf16(body + B·A·scaling), the sum taken in float32: a small
    delta added in bf16 would lose more of itself to a second rounding."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    out, loop = trained
    best = os.path.join(out, "best")
    saved = load_file(os.path.join(best, "model.safetensors"))
    adapter = load_file(os.path.join(best, "adapter", "adapter_model.safetensors"))
    base = AutoModelForSequenceClassification.from_pretrained(setting.model, dtype=torch.bfloat16).state_dict()
    name = "model.layers.0.self_attn.q_proj.weight"
    a = adapter[f"base_model.model.{name[:-len('.weight')]}.lora_A.weight"]
    b = adapter[f"base_model.model.{name[:-len('.weight')]}.lora_B.weight"]
    scaling = loop.cfg.lora_alpha / loop.cfg.lora_r if loop.cfg.lora_alpha else 2.0
    expected = (base[name].float() + (b @ a) * scaling).to(torch.bfloat16)
    assert saved[name].dtype == torch.bfloat16 and torch.equal(saved[name], expected)
    assert not torch.equal(saved[name], base[name])  # the adapter reached best/
    assert saved["score.weight"].dtype == torch.float32  # the head as trained
    metrics = json.load(open(os.path.join(best, "best_metrics.json")))
    scored = Loop(parse_args(["--eval_only", "--model_name_or_path", best, "--validation_file",
                              str(setting.data / "validation.jsonl"), "--output_dir", str(setting.root / "scored"),
                              "--max_length", "32"]))
    again = scored.validate()
    # best/ is the merged model, the run evaluated the unmerged one: the same up to bf16 rounding
    assert abs(again["eval_accuracy"] - metrics["eval_accuracy"]) <= 2 / 32, (again, metrics)


def test_a_bf16_lora_run_resumes_bit_identically(trained, setting):
    out, full = trained
    final = {k: v.detach().clone() for k, v in full.model.named_parameters()}
    resumed = lora_bf16(setting, out, "--resume_from_checkpoint", os.path.join(out, "checkpoints", "step_3"))
    assert resumed.resumed_from.endswith("step_3")
    for name, p in resumed.model.named_parameters():
        assert p.dtype == final[name].dtype and torch.equal(p.detach(), final[name]), name


def test_resuming_in_another_dtype_is_refused(trained, setting):
    out, _ = trained
    loop = Loop(parse_args(args(setting, out, "--lora_r", "4", "--checkpointing_steps", "3",
                                "--resume_from_checkpoint", os.path.join(out, "checkpoints", "step_3"))))
    with pytest.raises(UserError, match=r"--torch_dtype 'bfloat16' → 'float32'"):
        loop.fit()


def test_eval_only_scores_the_whole_model_in_bf16(trained, setting, tmp_path, capsys):
    """--torch_dtype bfloat16 scores the whole model in bf16, float32 upcasts it; left out, the best/ of a run that
    kept its body in bf16 is scored in bf16, as pipeline() and predict.py load it (audit52: it was upcast to float32,
    and a label near the boundary could differ from what the served model says)."""
    out, _ = trained
    common = ["--eval_only", "--model_name_or_path", os.path.join(out, "best"), "--validation_file",
              str(setting.data / "validation.jsonl"), "--max_length", "32"]
    full = Loop(parse_args(common + ["--output_dir", str(tmp_path / "fp32"), "--torch_dtype", "float32"]))
    half = Loop(parse_args(common + ["--output_dir", str(tmp_path / "bf16"), "--torch_dtype", "bfloat16"]))
    a, b = full.validate(), half.validate()
    assert {p.dtype for p in full.model.parameters()} == {torch.float32}
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    assert abs(a["eval_accuracy"] - b["eval_accuracy"]) <= 2 / 32 and abs(a["eval_loss"] - b["eval_loss"]) < 0.05
    capsys.readouterr()
    taken = Loop(parse_args(common + ["--output_dir", str(tmp_path / "taken")]))
    c = taken.validate()
    assert {p.dtype for p in taken.model.parameters()} == {torch.bfloat16} and c == b
    assert "--torch_dtype bfloat16 as the model was trained" in capsys.readouterr().out


# ---------------------------------------------------------------- refusals
def test_full_fine_tuning_in_bf16_is_refused_naming_lora(tmp_path, monkeypatch):
    base = ["--train_file", "x.jsonl", "--output_dir", str(tmp_path / "o")]
    (tmp_path / "x.jsonl").write_text('{"text": "a", "label": 0}\n')
    monkeypatch.chdir(tmp_path)  # the relative x.jsonl below
    with pytest.raises(UserError, match=r"--torch_dtype bfloat16 .*full fine-tuning freezes none.*--lora_r"):
        parse_args(base + ["--torch_dtype", "bfloat16"])
    with pytest.raises(UserError, match=r"--torch_dtype 'int8' is unknown; choose float32, bfloat16 or float16"):
        parse_args(base + ["--torch_dtype", "int8", "--lora_r", "4"])
    assert parse_args(base + ["--torch_dtype", "FP16", "--lora_r", "4"]).torch_dtype == "float16"
    assert parse_args(base + ["--torch_dtype", "fp32"]).torch_dtype == "float32"  # float32 needs nothing


@pytest.mark.parametrize("precision,kind,words", [
    ("no", "NO", ["--mixed_precision bf16", "now no"]),
    ("fp16", "NO", ["--mixed_precision bf16", "now fp16"]),
    ("bf16", "FSDP", ["not FSDP", "DDP"]),
    ("bf16", "DEEPSPEED", ["not DeepSpeed", "DDP"]),
])
def test_the_accelerator_must_fit_the_dtype(precision, kind, words, tmp_path):
    from accelerate.utils import DistributedType

    (tmp_path / "x.jsonl").write_text('{"text": "a", "label": 0}\n')
    cfg = parse_args(["--train_file", str(tmp_path / "x.jsonl"), "--output_dir", str(tmp_path / "o"),
                      "--lora_r", "4", "--torch_dtype", "bfloat16"])
    acc = SimpleNamespace(mixed_precision=precision, distributed_type=DistributedType[kind])
    with pytest.raises(UserError) as e:
        models.check_dtype(cfg, acc)
    for w in words:
        assert w in str(e.value), str(e.value)
    models.check_dtype(cfg, SimpleNamespace(mixed_precision="bf16", distributed_type=DistributedType.MULTI_GPU))
    cfg.eval_only = True  # scoring takes any precision but the other half one (bf16 weights under fp16 autocast)
    if precision == "fp16":
        with pytest.raises(UserError, match=r"--eval_only --torch_dtype bfloat16 under fp16 mixed precision would "
                                            r"score bfloat16 weights under fp16 autocast \(rounded twice\)"):
            models.check_dtype(cfg, acc)
    else:
        models.check_dtype(cfg, acc)


def test_fp16_where_accelerate_does_not_autocast_it_is_refused(tmp_path):
    """accelerate's fp16 on a CPU is a name only (no autocast, no scaler): an fp16 body would meet the fp32 head."""
    from accelerate.utils import DistributedType

    (tmp_path / "x.jsonl").write_text('{"text": "a", "label": 0}\n')
    cfg = parse_args(["--train_file", str(tmp_path / "x.jsonl"), "--output_dir", str(tmp_path / "o"),
                      "--lora_r", "4", "--torch_dtype", "fp16"])
    acc = SimpleNamespace(mixed_precision="fp16", distributed_type=DistributedType.NO, native_amp=False,
                          device=torch.device("cpu"))
    with pytest.raises(UserError, match="needs fp16 autocast, which accelerate does not do on cpu"):
        models.check_dtype(cfg, acc)


@pytest.mark.slow  # an XLNet built and scored twice through the CLI
def test_eval_only_in_bf16_without_mixed_precision_autocasts(setting, tmp_path):
    """XLNet builds float32 tensors in its forward pass: its bf16 weights alone failed ("expected scalar type
    Float but found BFloat16"); scored under bf16 autocast it gives the float32 scoring's loss."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    base = build_model_dir(str(setting.root), "xlnet")
    trained = str(tmp_path / "xlnet-classifier")  # a classifier folder: config, head and tokenizer
    config = AutoConfig.from_pretrained(base, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                                        label2id={"NEGATIVE": 0, "POSITIVE": 1})
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(trained)
    AutoTokenizer.from_pretrained(base).save_pretrained(trained)
    results = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / dtype
        run_cli(["--eval_only", "--model_name_or_path", trained, "--validation_file",
                 str(setting.data / "validation.jsonl"), "--max_length", "32", "--output_dir", str(out),
                 "--torch_dtype", dtype], how="python", ACCELERATE_MIXED_PRECISION="no")
        results[dtype] = json.load(open(out / "eval_results.json"))
    assert results["bfloat16"]["torch_dtype"] == "bfloat16" and results["bfloat16"]["mixed_precision"] == "no"
    # an untrained head scores near 0.5, where bf16 rounding flips labels: the loss is the measure
    assert abs(results["bfloat16"]["eval_loss"] - results["float32"]["eval_loss"]) < 0.02, results


def test_a_bf16_lora_run_without_mixed_precision_is_one_line(setting, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(args(setting, str(out), "--lora_r", "4", "--torch_dtype", "bfloat16"), how="python", check=False,
                   ACCELERATE_MIXED_PRECISION="no")
    check_user_error(proc, "--torch_dtype bfloat16", "accelerate launch --mixed_precision bf16")
    assert not out.exists()


@pytest.mark.parametrize("precision, native, device, words", [
    ("fp16", False, "cpu", ["fp16 mixed precision does nothing on cpu", "computes in float32 there",
                            "use bf16 or no mixed precision"]),
    ("BF16", False, "cpu", ["mixed precision 'BF16' is not one of no, fp16, bf16, fp8", "ACCELERATE_MIXED_PRECISION=bf16"]),
    ("bfloat16", False, "cpu", ["mixed precision 'bfloat16' is not one of"]),
])
def test_a_precision_that_would_not_run_as_named_is_one_line(precision, native, device, words):
    """audit33: fp16 on a CPU (or a name accelerate keeps as written: BF16, bfloat16) ran float32 throughout, while
    the start-up line, checkpoints, best/'s card and eval_results.json named the precision."""
    from accelerate.utils import DistributedType

    from loop import distributed

    acc = SimpleNamespace(mixed_precision=precision, native_amp=native, device=torch.device(device),
                          distributed_type=DistributedType.NO)
    with pytest.raises(UserError) as e:
        distributed.check_precision(acc)
    for w in words:
        assert w in str(e.value), str(e.value)
    # DeepSpeed casts by its own rules (accelerate's native_amp is False there): not refused
    distributed.check_precision(SimpleNamespace(mixed_precision="fp16", native_amp=False, device=torch.device("cpu"),
                                                distributed_type=DistributedType.DEEPSPEED))


def test_bf16_on_a_cpu_without_native_bf16_is_warned_about(monkeypatch):
    from accelerate.utils import DistributedType

    from loop import distributed

    acc = SimpleNamespace(mixed_precision="bf16", native_amp=True, device=torch.device("cpu"),
                          distributed_type=DistributedType.NO)
    monkeypatch.setattr(distributed, "cpu_has_bf16", lambda: False)
    assert "is emulated: about 10x slower than float32 here" in distributed.check_precision(acc)
    monkeypatch.setattr(distributed, "cpu_has_bf16", lambda: True)
    assert distributed.check_precision(acc) is None
    acc.mixed_precision = "no"
    monkeypatch.setattr(distributed, "cpu_has_bf16", lambda: False)
    assert distributed.check_precision(acc) is None


@pytest.mark.slow  # two CLI starts (~10 s)
def test_fp16_and_fp8_on_a_cpu_stop_at_the_start_in_one_line(setting, tmp_path):
    """Through the CLI: one error line, exit 2, before any data work."""
    for precision, words in (("fp16", ["fp16 mixed precision does nothing on cpu"]),
                             ("fp8", ["accelerate cannot start with this mixed precision", "fp8"])):
        proc = run_cli(args(setting, str(tmp_path / precision)), how="python", check=False,
                       ACCELERATE_MIXED_PRECISION=precision)
        check_user_error(proc, *words)
        assert "tokenizing" not in proc.stdout


def test_models_that_fail_under_mixed_precision_are_refused_at_the_start():
    """DeBERTa v1 failed at its first forward pass under bf16/fp16 autocast, after the data work, with a traceback
    (audit33); DeBERTa-v2 runs."""
    for precision in ("bf16", "fp16"):
        with pytest.raises(UserError, match=rf"deberta does not run under {precision} mixed precision: its attention "
                                            rf"fills masked scores .* or use DeBERTa-v2/v3"):
            models.check_mixed_precision(SimpleNamespace(model_type="deberta"), precision)
    models.check_mixed_precision(SimpleNamespace(model_type="deberta"), "no")
    models.check_mixed_precision(SimpleNamespace(model_type="deberta-v2"), "bf16")


def test_mixed_precision_as_a_flag_points_at_accelerate():
    with pytest.raises(UserError, match=r"accelerate launch --mixed_precision bf16 loop/train.py .*\(before the "
                                        r"script\), or ACCELERATE_MIXED_PRECISION=bf16 with python or torchrun"):
        parse_args(["--mixed_precision", "bf16"])
