"""Mutation tests of loop/modelcard.py and loop/lora.py (audit65 m10): what best/README.md says (model-index splits and
values, local paths by their last part, labels, the Use section, the recipe) from a stand-in of a finished run, and
LoRA's adapters (alpha, targets, heads, the merge) on tiny models built from a config."""

from types import SimpleNamespace

import pytest

from loop import Loop, TrainConfig, modelcard


def stand_in(cfg, metrics_extra=None, **data):
    """A finished run's parts, without running one (as tests/test_core.py's card test does)."""
    loop = Loop.__new__(Loop)
    fields = dict(carved=False, eval_split_name="validation", label_names=["neg", "pos"], multi_label=False,
                  regression=False, extra_eval={})
    fields.update(data)
    loop.__dict__.update(cfg=cfg, max_length=64, max_steps=40, state=SimpleNamespace(global_step=30), tokenizer=None,
                         accelerator=SimpleNamespace(num_processes=2, mixed_precision="no"),
                         data=SimpleNamespace(**fields), regression=fields["regression"],
                         multi_label=fields["multi_label"])
    return loop


def card_of(loop, metrics):
    from huggingface_hub import ModelCard

    text = modelcard.render(loop, metrics)
    return text, ModelCard(text)


def test_a_hub_datasets_model_index_names_each_split_and_only_the_runs_metrics(tmp_path):
    """The model-index names the evaluation split the run used (--eval_split), the test split, an extra split by its
    own split; an extra *file* has no Hub split (text only); loss and sample counts stay out of it; a longer prefix
    (eval_hard_) is the extra set's, not eval's 'hard_accuracy'."""
    ood = tmp_path / "ood.jsonl"
    ood.write_text('{"text": "a", "label": 0}\n')
    cfg = TrainConfig(model_name_or_path="org/base", dataset_name="org/set", eval_split="validation_matched",
                      test_split="test_matched", extra_eval_splits="hard=validation_mismatched",
                      extra_eval_files=f"ood={ood}", metrics="accuracy", output_dir=str(tmp_path / "o"))
    loop = stand_in(cfg, eval_split_name="validation_matched", extra_eval={"hard": None, "ood": None})
    metrics = {"epoch": 2, "eval_accuracy": 0.91, "eval_loss": 0.3, "eval_samples": 10, "eval_hard_accuracy": 0.7,
               "eval_ood_accuracy": 0.6, "test_accuracy": 0.8, "test_loss": 0.4, "eval_note": "x"}
    text, card = card_of(loop, metrics)
    got = {(r.dataset_name, r.dataset_config, r.dataset_split, r.metric_type): r.metric_value
           for r in card.data.eval_results}
    assert got == {("org/set", None, "validation_matched", "accuracy"): 0.91,
                   ("org/set", None, "validation_mismatched", "accuracy"): 0.7,
                   ("org/set", None, "test_matched", "accuracy"): 0.8}
    assert card.data.datasets == ["org/set"] and card.data.metrics == ["accuracy"]
    assert card.data.base_model == "org/base" and card.data.model_name == "o"
    assert "| eval_hard | accuracy | 0.7000 |" in text and "| eval_ood | accuracy | 0.6000 |" in text
    assert "hard_accuracy" not in text and "| eval | examples | 10 |" in text
    assert "evaluated on `validation_matched`" in text
    assert "`eval_ood`: file `ood.jsonl`" in text and str(tmp_path) not in text



def test_scores_hold_a_variants_own_metrics_skip_missing_values_and_name_the_choosing_set(tmp_path):
    """A variant's own metrics (loop.own_metrics) are best/'s scores too; a metric without a value (None) is left
    out, not a failed card; --metric hard_accuracy is said to be read on the set `hard`; --from_scratch names no
    base_model even when the configuration came from a Hub id."""
    cfg = TrainConfig(model_name_or_path="org/base", from_scratch=True, dataset_name="org/set", metrics="accuracy,f1",
                      metric="hard_accuracy", extra_eval_splits="hard=validation_mismatched",
                      output_dir=str(tmp_path / "o"))
    loop = stand_in(cfg, extra_eval={"hard": None})
    loop.own_metrics = ["margin"]
    metrics = {"epoch": 1, "eval_accuracy": 0.9, "eval_f1": None, "eval_margin": 0.25, "eval_hard_accuracy": 0.5}
    text, card = card_of(loop, metrics)
    assert "| eval | margin | 0.2500 |" in text and "| eval | f1 |" not in text
    assert card.data.metrics == ["accuracy", "margin"]
    assert "best evaluation by `accuracy` on the evaluation set `hard`" in text and "(`eval_hard` chose them)" in text
    assert card.data.base_model is None and "trained from scratch (random weights) with the configuration of " \
        "[org/base](https://huggingface.co/org/base)" in text


def test_local_paths_are_named_by_their_last_part_only(tmp_path):
    """A card may be published: the model folder (even given with a trailing slash), the data files and an extra
    evaluation file appear by their last part; no directory above them, and no base_model for a local model."""
    secret = tmp_path / "alice_client_secret"
    (secret / "bert").mkdir(parents=True)
    for name in ("train.jsonl", "dev.jsonl", "ood.jsonl"):
        (secret / name).write_text('{"text": "a", "label": 0}\n')
    cfg = TrainConfig(model_name_or_path=str(secret / "bert") + "/", train_file=str(secret / "train.jsonl"),
                      validation_file=str(secret / "dev.jsonl"), extra_eval_files=f"ood={secret / 'ood.jsonl'}",
                      output_dir=str(tmp_path / "o"))
    text, card = card_of(stand_in(cfg, extra_eval={"ood": None}), {"epoch": 1, "eval_accuracy": 0.5})
    assert "alice_client_secret" not in text
    assert "the local model `bert`" in text and "the local data `train.jsonl`, evaluated on `dev.jsonl`" in text
    assert card.data.base_model is None and card.data.datasets is None and card.data.eval_results is None


@pytest.mark.parametrize("relative", [False, True])
def test_a_local_dataset_folder_is_no_hub_dataset(tmp_path, monkeypatch, relative):
    """--dataset_name naming a local folder (absolute, or relative as `local/private_set`, which reads like a Hub
    id): its last part in the text, no datasets/model-index in the metadata."""
    folder = tmp_path / "local" / "private_set"
    folder.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    name = "local/private_set" if relative else str(folder)
    cfg = TrainConfig(model_name_or_path="org/base", dataset_name=name, output_dir=str(tmp_path / "o"))
    text, card = card_of(stand_in(cfg), {"epoch": 1, "eval_accuracy": 0.5, "test_accuracy": 0.4})
    assert card.data.datasets is None and card.data.eval_results is None
    assert "`private_set` (split `train`)" in text and str(tmp_path) not in text and "local/" not in text


def test_labels_use_and_cut_side_follow_the_task(tmp_path):
    """Multi-label: sigmoids and top_k=None in the Use line; regression: one output; a left-truncating tokenizer is
    said to cut at the start."""
    cfg = TrainConfig(model_name_or_path="org/base", dataset_name="org/set", output_dir=str(tmp_path / "o"))
    text, _ = card_of(stand_in(cfg, multi_label=True), {"epoch": 1})
    assert "Multi-label: a sigmoid per label; 0 `neg`, 1 `pos`." in text and "top_k=None, truncation=True)" in text
    text, _ = card_of(stand_in(cfg, regression=True), {"epoch": 1})
    assert "Regression: one output" in text and "top_k" not in text
    loop = stand_in(cfg)
    loop.tokenizer = SimpleNamespace(truncation_side="left")
    assert "A text longer than 64 tokens is cut at its start" in card_of(loop, {"epoch": 1})[0]
    loop.tokenizer = SimpleNamespace(truncation_side="right")
    assert "A text longer than 64 tokens is cut at its end" in card_of(loop, {"epoch": 1})[0]


def test_the_recipe_rows_and_lora_tags(tmp_path):
    """--max_steps: no epochs row; examples per optimizer step counts every process; optimizer steps is the run's
    total; --lora_r tags the card 'lora' and names peft's version; --label_smoothing_factor has a row;
    --hub_model_id titles the card and its Use line."""
    pytest.importorskip("peft")
    import peft

    cfg = TrainConfig(model_name_or_path="org/base", dataset_name="org/set", max_steps=40, lora_r=4,
                      per_device_train_batch_size=4, gradient_accumulation_steps=3, label_smoothing_factor=0.1,
                      output_dir=str(tmp_path / "o"))
    cfg.hub_model_id = "me/model"  # (as a finished run pushed with it; alone it warns that nothing is pushed)
    text, card = card_of(stand_in(cfg), {"epoch": 1, "eval_accuracy": 0.5})
    assert "| epochs |" not in text and "| examples per optimizer step | 24 |" in text
    assert "| optimizer steps | 40 |" in text and "| lora_r | 4 |" in text and "| label_smoothing_factor | 0.1 |" in text
    assert card.data.tags == ["loop", "lora"] and f"- peft {peft.__version__}" in text
    assert "# me/model\n" in text and 'model="me/model")' in text and card.data.model_name == "me/model"


def test_retarget_leaves_other_cards_alone_and_renames_the_model_index(tmp_path):
    """retarget() changes only a card loop wrote (tag 'loop'): a variant's own card with front matter stays its
    own (None); loop's card gets the new name in its model-index, title and Use line."""
    from huggingface_hub import ModelCard

    assert modelcard.retarget("---\nlicense: mit\n---\n# mine\n", "me/x", "me/x") is None
    cfg = TrainConfig(model_name_or_path="org/base", dataset_name="org/set", output_dir=str(tmp_path / "o"))
    text = modelcard.render(stand_in(cfg), {"epoch": 1, "eval_accuracy": 0.5})
    moved = ModelCard(modelcard.retarget(text, "me/x", "me/x"))
    assert moved.data.model_name == "me/x" and 'model="me/x")' in moved.text and "# me/x\n" in moved.text


# ---- LoRA on tiny models built from a config (no files, no training)

def tiny(kind):
    import torch
    from transformers import (BertConfig, BertForSequenceClassification, GPT2Config, GPT2ForSequenceClassification,
                              LlamaConfig, LlamaForSequenceClassification)

    torch.manual_seed(0)
    if kind == "llama":
        return LlamaForSequenceClassification(LlamaConfig(
            vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=2, pad_token_id=0, num_labels=2))
    if kind == "gpt2":
        return GPT2ForSequenceClassification(GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32,
                                                        pad_token_id=0, num_labels=2))
    return BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                                    num_hidden_layers=1, num_attention_heads=2,
                                                    max_position_embeddings=32, num_labels=2))


def lora_cfg(tmp_path, *extra):
    from loop import parse_args

    return parse_args(["--lora_r", "4", "--output_dir", str(tmp_path / "o"), *extra])


def adapted(model):
    """{module name: set of lora parameter kinds} of a PEFT model, by the plain model's module names."""
    return sorted({n.split(".lora_")[0].replace("base_model.model.", "").replace(".base_layer", "")
                   for n, _ in model.named_parameters() if ".lora_A." in n})


def test_target_names_with_spaces_and_a_trailing_comma_adapt_those_layers(tmp_path):
    """`--lora_target_modules "q_proj, v_proj,"` (a space after the comma, a trailing comma) names q_proj and
    v_proj; a name kept with its space named no module and the run was refused."""
    pytest.importorskip("peft")
    from loop import lora

    model = lora.apply_lora(tiny("llama"), lora_cfg(tmp_path, "--lora_target_modules", " q_proj, v_proj,"))
    assert adapted(model) == ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]


def test_default_targets_are_the_bodys_linear_layers_and_the_head_trains_in_full(tmp_path):
    """Left out, every linear layer of the body (GPT-2's Conv1D included) gets adapters and the head none; the head
    is trained in full (modules_to_save), a top-level module without parameters (BERT's dropout) is no head."""
    pytest.importorskip("peft")
    from loop import lora

    bert = tiny("bert")
    assert lora.head_modules(bert) == ["classifier"]
    model = lora.apply_lora(tiny("gpt2"), lora_cfg(tmp_path))
    assert adapted(model) == ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_fc",
                              "transformer.h.0.mlp.c_proj"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if "lora_" not in n} == {"base_model.model.score.modules_to_save.default.weight"}
    model = lora.apply_lora(tiny("llama"), lora_cfg(tmp_path, "--lora_alpha", "12", "--lora_dropout", "0.2"))
    assert len(adapted(model)) == 7 and not any("score" in n for n in adapted(model))
    config = model.peft_config["default"]
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 12, 0.2)
    assert "score" in config.modules_to_save


def test_a_bf16_head_is_trained_in_fp32(tmp_path):
    """The head (trained in full) gets fp32 master weights even when the body is bf16; the body stays bf16."""
    pytest.importorskip("peft")
    import torch

    from loop import lora

    model = lora.apply_lora(tiny("llama").to(torch.bfloat16), lora_cfg(tmp_path))
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert dtypes["base_model.model.score.modules_to_save.default.weight"] == torch.float32
    assert dtypes["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"] == torch.bfloat16


def test_target_checks_refuse_what_peft_would_take_silently_and_accept_suffixes(tmp_path):
    """A name must match a module's full name or its last parts: `proj` (a substring) names nothing; `self_attn.q_proj`
    names q_proj; `embed_tokens` (an embedding) is adaptable; 'all-linear' in a list is refused."""
    pytest.importorskip("peft")
    from loop import lora
    from loop.errors import UserError

    model = tiny("llama")
    heads = lora.head_modules(model)
    lora.check_lora_targets(model, ["self_attn.q_proj", "embed_tokens"], heads)
    with pytest.raises(UserError, match=r"--lora_target_modules proj names no module"):
        lora.check_lora_targets(model, ["proj"], heads)
    with pytest.raises(UserError, match=r"all-linear means every linear layer and stands alone"):
        lora.check_lora_targets(model, ["q_proj", "all-linear"], heads)
    with pytest.raises(UserError, match=r"--lora_target_modules norm names model\.norm \(LlamaRMSNorm\)"):
        lora.check_lora_targets(model, ["norm"], heads)


@pytest.mark.parametrize("dora", [False, True])
def test_merged_weights_give_the_adapter_models_logits(tmp_path, dora):
    """best/'s merge of a LoRA llama with alpha 12 on r 4 gives the PEFT model's logits in a plain model, the head's
    trained copy included. A DoRA layer (a variant's own LoraConfig: no option builds one) is refused in one line:
    PEFT's delta, which it added, leaves out DoRA's magnitude (audit65 m10 B1: logits off by 0.9)."""
    pytest.importorskip("peft")
    import torch
    from peft import LoraConfig, get_peft_model

    from loop.lora import merged_state_dict

    base = tiny("llama")
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=12, target_modules=["q_proj", "v_proj", "down_proj"],
                                            modules_to_save=["score"], task_type="SEQ_CLS", use_dora=dora))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n or "modules_to_save" in n:
                p.normal_(0, 0.5)
    model.eval()
    if dora:
        from loop import UserError

        with pytest.raises(UserError, match=r"the LoRA layer '.*q_proj' has use_dora, which loop cannot merge into "
                                            r"best/ \(it merges B @ A x scaling\); build the adapters without it\."):
            merged_state_dict(model, model.state_dict())
        if "lora_bias" in LoraConfig.__dataclass_fields__:  # (peft >= 0.14; the extra allows 0.13)
            biased = get_peft_model(tiny("llama"), LoraConfig(r=4, target_modules=["q_proj"], lora_bias=True))
            with pytest.raises(UserError, match=r"the LoRA layer '.*q_proj' has lora_bias, which loop cannot merge"):
                merged_state_dict(biased, biased.state_dict())  # (review r3 B1b: logits off by 0.55)
        return
    merged = merged_state_dict(model, model.state_dict())
    plain = tiny("llama")
    missing, unexpected = plain.load_state_dict(merged, strict=False)
    assert not unexpected and not [k for k in missing if "rotary" not in k], (missing, unexpected)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    with torch.no_grad():
        want, got = model(input_ids=ids).logits, plain.eval()(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-4), (got, want)


def test_is_peft_only_for_a_peft_model(tmp_path):
    """With PEFT imported, a plain model is not PEFT's (best/ saves it as it is, no merge) and a wrapped one is."""
    pytest.importorskip("peft")
    from loop import lora

    model = tiny("llama")
    assert not lora.is_peft(model)
    assert lora.is_peft(lora.apply_lora(model, lora_cfg(tmp_path)))


def test_a_multimodal_models_default_targets_are_its_language_models_layers(tmp_path):
    """Gemma 3 as gemma-3-4b ships (a vision tower beside the language model): LoRA adapted the vision tower's
    linear layers too, which a text never runs: adapters that trained nothing, counted as trainable, and under DDP
    find_unused_parameters for them (helper zoo F3). The default targets are the language model's layers."""
    pytest.importorskip("peft")
    from transformers import AutoModelForSequenceClassification, Gemma3Config

    from loop import lora

    text = dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                intermediate_size=64, head_dim=16, sliding_window=16)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_index=63,
                          boi_token_index=61, eoi_token_index=62, num_labels=2)
    model = AutoModelForSequenceClassification.from_config(config)
    assert any(".vision_tower." in n for n in lora.linear_modules(model)) is False
    names = adapted(lora.apply_lora(model, lora_cfg(tmp_path)))
    assert names and all(n.startswith("model.language_model.layers.0.") for n in names), names
    assert len(names) == 7  # q, k, v, o, gate, up, down
