"""Issue #11: every sequence-classification family trains with default flags and reloads.

The matrix builds tiny random models offline: a config per architecture (2 layers or fewer, 32
wide) and one tokenizer per family, trained with `tokenizers` on the synthetic task's words:
- encoders: BERT-style `[CLS] x [SEP]`, with a pad token;
- decoder LMs: `<s> x`, WITHOUT a pad token (as Llama, Mistral, GPT-2... ship);
- encoder-decoders: `x </s>` with `<pad>` (BART and T5 classify from the last eos).
Base weights are saved (random), so the run goes through from_pretrained with a fresh head, as a
user's would. Each model trains a few steps in-process through the real loop with nothing but
data flags; best/ must load in pipeline() and give the same scores for a text alone and inside a
padded batch of mixed lengths.

The unmarked subset covers each family (BERT, DeBERTa-v2, XLNet, GPT-2, Llama, OPT, BART, T5);
the rest is marked slow.
"""

import json
import os

import pytest
import torch

from conftest import evals, write_data

from loop import Loop, UserError, parse_args, synthetic
from loop.labels import head_order

WORDS = sorted(set(synthetic.POSITIVE + synthetic.NEGATIVE + synthetic.NEUTRAL + ["not"]))
BATCH_TEXTS = ["good", "the film was dull and boring with a weak script", "superb", "not bad at all, quite lovely",
               "a tedious and clumsy movie", "brilliant"]


def make_tokenizer(path, family):
    """A word-level fast tokenizer for `family` (enc, dec, s2s), saved to `path`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = {"enc": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
               "dec": ["<unk>", "<s>", "</s>"],
               "s2s": ["<pad>", "</s>", "<unk>", "<s>", "<mask>"]}[family]
    vocab = {t: i for i, t in enumerate(special + WORDS)}
    unk = special[1] if family == "enc" else "<unk>"
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if family == "enc":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        kw = dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    elif family == "dec":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", vocab["<s>"])])
        kw = dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>")  # no pad token, like the real ones
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", vocab["</s>"])])
        kw = dict(unk_token="<unk>", pad_token="<pad>", eos_token="</s>", bos_token="<s>", mask_token="<mask>")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, **kw)
    fast.save_pretrained(path)
    return vocab


V = len(WORDS) + 5
QWEN2_VOCAB = 320  # 256 bytes + merges of the words + <|endoftext|>
BERTISH = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=128, pad_token_id=0)
ENC_IDS = dict(pad_token_id=0, bos_token_id=2, eos_token_id=3, sep_token_id=3, cls_token_id=2)
DEC_IDS = dict(bos_token_id=1, eos_token_id=2)
LLAMAISH = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                intermediate_size=64, max_position_embeddings=128, **DEC_IDS)
S2S_IDS = dict(pad_token_id=0, eos_token_id=1, bos_token_id=3, decoder_start_token_id=1)
BARTISH = dict(vocab_size=V, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
               forced_eos_token_id=1, **S2S_IDS)
T5ISH = dict(vocab_size=V, d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2,
             pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)

# model_type -> (tokenizer family, config kwargs); FAST ones run without -m slow
ARCHS = {
    # encoders
    "bert": ("enc", BERTISH),
    "distilbert": ("enc", dict(vocab_size=V, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128, pad_token_id=0)),
    "albert": ("enc", dict(BERTISH, embedding_size=16, **ENC_IDS)),
    "roberta": ("enc", dict(BERTISH, max_position_embeddings=140, **ENC_IDS)),
    "xlm-roberta": ("enc", dict(BERTISH, max_position_embeddings=140, **ENC_IDS)),
    "camembert": ("enc", dict(BERTISH, max_position_embeddings=140, **ENC_IDS)),
    "electra": ("enc", dict(BERTISH, embedding_size=32)),
    "deberta": ("enc", BERTISH),
    "deberta-v2": ("enc", BERTISH),
    "big_bird": ("enc", dict(BERTISH, attention_type="original_full", **ENC_IDS)),
    "convbert": ("enc", dict(BERTISH, embedding_size=32)),
    "fnet": ("enc", dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, intermediate_size=64,
                         max_position_embeddings=128, **ENC_IDS)),
    "funnel": ("enc", dict(architectures=["FunnelModel"], vocab_size=V, block_sizes=[1, 1], d_model=32, n_head=2, d_head=16, d_inner=64,
                           max_position_embeddings=128, pad_token_id=0)),
    "longformer": ("enc", dict(BERTISH, max_position_embeddings=140, attention_window=[8, 8], **ENC_IDS)),
    "mpnet": ("enc", dict(BERTISH, max_position_embeddings=140, **ENC_IDS)),
    "roformer": ("enc", dict(BERTISH, embedding_size=32)),
    "squeezebert": ("enc", dict(BERTISH, embedding_size=32, q_groups=2, k_groups=2, v_groups=2,
                                post_attention_groups=2, intermediate_groups=2, output_groups=2)),
    "xlm": ("enc", dict(vocab_size=V, emb_dim=32, n_layers=2, n_heads=2, max_position_embeddings=128, pad_index=0,
                        unk_index=1, bos_index=2, eos_index=3, mask_index=4)),
    "flaubert": ("enc", dict(vocab_size=V, emb_dim=32, n_layers=2, n_heads=2, max_position_embeddings=128,
                             pad_index=0, unk_index=1, bos_index=2, eos_index=3, mask_index=4)),
    "megatron-bert": ("enc", BERTISH),
    "ernie": ("enc", BERTISH),
    "data2vec-text": ("enc", dict(BERTISH, max_position_embeddings=140, **ENC_IDS)),
    "xlnet": ("enc", dict(vocab_size=V, d_model=32, n_layer=2, n_head=2, d_inner=64, **ENC_IDS)),
    "modernbert": ("enc", dict(BERTISH, global_attn_every_n_layers=2, local_attention=16, **ENC_IDS)),
    # decoder LMs: tokenizer without pad token; config pad_token_id left at the class default
    "gpt2": ("dec", dict(vocab_size=V, n_embd=32, n_layer=2, n_head=2, n_positions=128, **DEC_IDS)),
    "gpt_neo": ("dec", dict(vocab_size=V, hidden_size=32, num_layers=2, num_heads=2, max_position_embeddings=128,
                            attention_types=[[["global", "local"], 1]], window_size=16, **DEC_IDS)),
    "gpt_neox": ("dec", dict(LLAMAISH, num_key_value_heads=None)),
    "gptj": ("dec", dict(vocab_size=V, n_embd=32, n_layer=2, n_head=2, n_positions=128, rotary_dim=8, **DEC_IDS)),
    "gpt_bigcode": ("dec", dict(vocab_size=V, n_embd=32, n_layer=2, n_head=2, n_positions=128, **DEC_IDS)),
    "opt": ("dec", dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=2,
                        word_embed_proj_dim=32, max_position_embeddings=128, **DEC_IDS)),  # config pad 1 = our <s>
    "bloom": ("dec", dict(vocab_size=V, hidden_size=32, n_layer=2, n_head=2, **DEC_IDS)),
    "llama": ("dec", LLAMAISH),
    "mistral": ("dec", dict(LLAMAISH, sliding_window=None)),
    "mixtral": ("dec", dict(LLAMAISH, num_local_experts=2, num_experts_per_tok=1, sliding_window=None)),
    "qwen2": ("dec", dict(LLAMAISH, vocab_size=QWEN2_VOCAB)),  # a byte-level BPE: make_qwen2_tokenizer
    "qwen3": ("dec", dict(LLAMAISH, head_dim=16)),
    "gemma": ("dec", dict(LLAMAISH, head_dim=16)),
    "gemma2": ("dec", dict(LLAMAISH, head_dim=16, sliding_window=16)),
    "phi": ("dec", LLAMAISH),
    "phi3": ("dec", dict(LLAMAISH, pad_token_id=None)),
    "stablelm": ("dec", LLAMAISH),
    "starcoder2": ("dec", dict(LLAMAISH, sliding_window=None)),
    "falcon": ("dec", dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, **DEC_IDS)),
    "olmo": ("dec", LLAMAISH),
    "arcee": ("dec", LLAMAISH),
    "diffllama": ("dec", dict(LLAMAISH, num_key_value_heads=2)),
    "exaone4": ("dec", dict(LLAMAISH, sliding_window=16)),
    "gemma3_text": ("dec", dict(LLAMAISH, head_dim=16, sliding_window=16)),
    "glm": ("dec", dict(LLAMAISH, head_dim=16, pad_token_id=None)),
    "glm4": ("dec", dict(LLAMAISH, head_dim=16, pad_token_id=None)),
    "helium": ("dec", dict(LLAMAISH, head_dim=16)),
    "ministral": ("dec", dict(LLAMAISH, head_dim=16, sliding_window=16)),
    "olmo2": ("dec", LLAMAISH),
    "olmo3": ("dec", dict(LLAMAISH, sliding_window=16)),
    "qwen2_moe": ("dec", dict(LLAMAISH, num_experts=2, num_experts_per_tok=1, moe_intermediate_size=32,
                              shared_expert_intermediate_size=32)),
    "qwen3_moe": ("dec", dict(LLAMAISH, head_dim=16, num_experts=2, num_experts_per_tok=1, moe_intermediate_size=32)),
    # experts fused into stacked parameters, a shared expert and a dense first layer (linear layers): PEFT's LoRA
    "deepseek_v3": ("dec", dict(LLAMAISH, num_key_value_heads=2, n_routed_experts=2, n_shared_experts=1,
                                num_experts_per_tok=1, n_group=1, topk_group=1, first_k_dense_replace=1,
                                moe_intermediate_size=32, kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8,
                                qk_nope_head_dim=8, v_head_dim=16)),
    "seed_oss": ("dec", dict(LLAMAISH, head_dim=16)),
    "smollm3": ("dec", dict(LLAMAISH, pad_token_id=None)),
    "nemotron": ("dec", dict(LLAMAISH, head_dim=16)),
    "persimmon": ("dec", dict(LLAMAISH, num_key_value_heads=None)),
    "jetmoe": ("dec", dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_key_value_heads=1, kv_channels=16,
                           intermediate_size=64, num_local_experts=2, num_experts_per_tok=1, max_position_embeddings=128, **DEC_IDS)),
    "phimoe": ("dec", dict(LLAMAISH, num_local_experts=2, num_experts_per_tok=1, sliding_window=None)),
    "mpt": ("dec", dict(vocab_size=V, d_model=32, n_heads=2, n_layers=2, max_seq_len=128, **DEC_IDS)),
    "biogpt": ("dec", dict(BERTISH, pad_token_id=None, **DEC_IDS)),
    "ctrl": ("dec", dict(vocab_size=V, n_embd=32, n_layer=2, n_head=2, dff=64, n_positions=128, **DEC_IDS)),
    "openai-gpt": ("dec", dict(vocab_size=V, n_embd=32, n_layer=2, n_head=2, n_positions=128)),
    "esm": ("enc", dict(BERTISH, max_position_embeddings=140, mask_token_id=4, position_embedding_type="absolute")),
    "ibert": ("enc", dict(BERTISH, max_position_embeddings=140, **ENC_IDS)),
    "mobilebert": ("enc", dict(BERTISH, embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16,
                               num_feedforward_networks=1)),
    "rembert": ("enc", dict(BERTISH, input_embedding_size=16, output_embedding_size=16)),
    "roberta-prelayernorm": ("enc", dict(BERTISH, max_position_embeddings=140, **ENC_IDS)),
    "xlm-roberta-xl": ("enc", dict(BERTISH, max_position_embeddings=140, **ENC_IDS)),
    "yoso": ("enc", dict(BERTISH, max_position_embeddings=140)),
    "mra": ("enc", dict(BERTISH, max_position_embeddings=140)),
    "roc_bert": ("enc", dict(BERTISH, pronunciation_vocab_size=V, shape_vocab_size=V)),
    "nomic_bert": ("enc", BERTISH),
    "eurobert": ("enc", dict(BERTISH, num_key_value_heads=2, **ENC_IDS)),
    "gte": ("enc", BERTISH),
    "luke": ("enc", dict(BERTISH, entity_vocab_size=8, entity_emb_size=16)),
    # encoder-decoders
    "mvp": ("s2s", BARTISH),
    "bigbird_pegasus": ("s2s", dict(BARTISH, attention_type="original_full")),
    "bart": ("s2s", BARTISH),  # its config says 3 labels by default
    "mbart": ("s2s", BARTISH),
    "plbart": ("s2s", BARTISH),
    "t5": ("s2s", T5ISH),
    "mt5": ("s2s", T5ISH),
    "umt5": ("s2s", T5ISH),
    # Gemma 2 blocks in an encoder and a decoder; its head read a text with no padding after it one token early
    "t5gemma": ("s2s", dict(vocab_size=V, pad_token_id=0, eos_token_id=1, bos_token_id=3, **{
        part: dict(vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                   intermediate_size=64, head_dim=16, max_position_embeddings=128, sliding_window=16, pad_token_id=0,
                   eos_token_id=1, bos_token_id=3) for part in ("encoder", "decoder")})),
}
# Model types this transformers does not know (gte is native from 5.18; the GPU image has 5.17) are left out.
from transformers import CONFIG_MAPPING  # noqa: E402

ARCHS = {name: arch for name, arch in ARCHS.items() if name in CONFIG_MAPPING}
# FNet mixes tokens with a Fourier transform and takes no attention mask: padding changes its output
NO_MASK = {"fnet"}
FAST = {"bert", "deberta-v2", "xlnet", "gpt2", "llama", "opt", "bart", "t5"}


def make_qwen2_tokenizer(path):
    """transformers' Qwen2Tokenizer class reads a byte-level BPE from vocab.json and merges.txt (it
    ignores a word-level tokenizer.json, and then drops every word): train a small one on the words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([" ".join(WORDS)] * 50, trainers.BpeTrainer(
        vocab_size=QWEN2_VOCAB, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    os.makedirs(path, exist_ok=True)
    tok.model.save(path)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                   "model_max_length": 128}, f)


def build_model_dir(root, model_type):
    from transformers import AutoConfig, AutoModel

    family, kwargs = ARCHS[model_type]
    path = os.path.join(root, model_type)
    if os.path.isdir(path):
        return path
    if model_type == "qwen2":
        make_qwen2_tokenizer(path)
    else:
        make_tokenizer(path, family)
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(path)  # random base weights, no head: a "pretrained" base
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("matrix_data"), 64, 32)


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("matrix_models"))


def data_args(model, data, out, *extra):
    return ["--model_name_or_path", model, "--train_file", str(data / "train.jsonl"),
            "--validation_file", str(data / "validation.jsonl"), "--num_train_epochs", "1",
            "--learning_rate", "1e-3", "--max_length", "32", "--output_dir", out, *extra]


def alone_vs_batched(best):
    """Scores of each text alone and in one padded batch, through pipeline()."""
    from transformers import pipeline

    from loop.models import scored_alike

    clf = pipeline("text-classification", model=best, device=-1, top_k=None)
    scored_alike(clf.model)  # UMT5 on transformers < 5.18, T5Gemma (see loop/models.py)
    alone = [clf(t) for t in BATCH_TEXTS]
    batched = clf(BATCH_TEXTS, batch_size=len(BATCH_TEXTS))
    return alone, batched


def scores(result):
    result = result[0] if result and isinstance(result[0], list) else result
    return {r["label"]: r["score"] for r in result}


@pytest.mark.parametrize("model_type", [pytest.param(m, marks=() if m in FAST else pytest.mark.slow) for m in ARCHS])
def test_trains_and_reloads_with_default_flags(model_type, models_root, data, tmp_path, capsys):
    model = build_model_dir(models_root, model_type)
    out = str(tmp_path / "out")
    Loop(parse_args(data_args(model, data, out))).fit()
    assert evals(out)[0]["eval_samples"] == 32
    best = os.path.join(out, "best")
    saved = json.load(open(os.path.join(best, "config.json")))
    assert saved["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    side = json.load(open(os.path.join(best, "tokenizer_config.json")))["padding_side"]
    assert side == ("left" if model_type == "xlnet" else "right")
    alone, batched = alone_vs_batched(best)
    if model_type in NO_MASK:
        return
    for text, a, b in zip(BATCH_TEXTS, alone, batched):
        a, b = scores(a), scores(b)
        assert set(a) == {"NEGATIVE", "POSITIVE"}
        for label in a:
            assert abs(a[label] - b[label]) < 1e-4, (model_type, text, a, b)
    if ARCHS[model_type][0] == "dec":
        tok = json.load(open(os.path.join(best, "tokenizer_config.json")))
        assert tok["padding_side"] == "right"
        if model_type == "qwen2":  # transformers' Qwen2Tokenizer class brings its own pad, <|endoftext|>
            assert tok["pad_token"] == "<|endoftext|>"
            return
        assert tok["pad_token"] == "</s>"
        assert saved["pad_token_id"] == 2  # the tokenizer's pad id, whatever the class default was
        assert "padding with its eos token '</s>' (id 2) on the right" in capsys.readouterr().out


# ---------------------------------------------------------------- units (fast)
def test_opt_config_pad_is_synced_to_the_tokenizer(models_root, data, tmp_path):
    """OPT's config says pad 1; with pad = eos (2) the head must skip 2, not 1."""
    from loop import models

    path = build_model_dir(models_root, "opt")
    cfg = parse_args(data_args(path, data, str(tmp_path / "o")))
    config = models.load_config(cfg)
    assert config.pad_token_id == 1
    tok = models.load_tokenizer(cfg, config)
    model = models.build_model(cfg, config, ["NEGATIVE", "POSITIVE"], tokenizer=tok)
    assert model.config.pad_token_id == tok.pad_token_id == tok.eos_token_id == 2


def test_xlnet_has_no_position_limit_and_pads_left(models_root, data, tmp_path):
    from loop import models

    path = build_model_dir(models_root, "xlnet")
    for given, expected in ((None, 128), (100, 100)):  # the tokenizer's 128 is the only limit left
        cfg = parse_args(data_args(path, data, str(tmp_path / "x")) + (["--max_length", str(given)] if given else []))
        config = models.load_config(cfg)
        tok = models.load_tokenizer(cfg, config)
        assert config.max_position_embeddings == -1
        assert models.max_length(cfg, config, tok) == (expected if given else 32)
    assert tok.padding_side == "left"  # XLNet's head reads the last position


def test_nystromformer_with_fewer_landmarks_is_one_line_and_trains_with_exact_attention(data, tmp_path):
    """Its landmark pooling reshapes every input to segment_means_seq_len tokens: the first step was a reshape
    traceback (audit57 d F3). Refused before any work, naming the override, which then trains and reloads."""
    from transformers import AutoConfig, AutoModel

    from loop import UserError

    path = str(tmp_path / "nystromformer")
    make_tokenizer(path, "enc")
    config = AutoConfig.for_model("nystromformer", **dict(BERTISH, max_position_embeddings=140, num_landmarks=4,
                                                          segment_means_seq_len=32, **ENC_IDS))
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(path)
    out = str(tmp_path / "out")
    with pytest.raises(UserError, match=r"^nystromformer with num_landmarks 4 and segment_means_seq_len 32 takes inputs "
                                        r"of exactly 32 tokens only, .* --config_overrides num_landmarks=32 \(exact"):
        Loop(parse_args(data_args(path, data, out))).fit()
    Loop(parse_args(data_args(path, data, out, "--config_overrides", "num_landmarks=32"))).fit()
    alone, batched = alone_vs_batched(os.path.join(out, "best"))
    assert all(abs(scores(a)[k] - scores(b)[k]) < 1e-4 for a, b in zip(alone, batched) for k in scores(a))


def test_config_overrides_are_typed_for_none_fields(models_root, data, tmp_path):
    from loop import models

    path = build_model_dir(models_root, "llama")
    over = "pad_token_id=0,rope_scaling=null,attention_bias=true,rms_norm_eps=1e-5,num_key_value_heads=2"
    cfg = parse_args(data_args(path, data, str(tmp_path / "c")) + ["--config_overrides", over])
    config = models.configure(cfg, models.load_config(cfg), ["a", "b"])
    assert config.pad_token_id == 0 and config.attention_bias is True and config.rms_norm_eps == 1e-5
    assert config.num_key_value_heads == 2
    assert models.parse_value("[1,2.5,x,null]") == [1, 2.5, "x", None]
    qwen = build_model_dir(models_root, "qwen2")
    cfg = parse_args(data_args(qwen, data, str(tmp_path / "c")) + ["--config_overrides", "layer_types=[full_attention,full_attention]"])
    assert models.configure(cfg, models.load_config(cfg), ["a", "b"]).layer_types == ["full_attention"] * 2
    for bad, named in (("num_hidden_layers=two", "expected an int"), ("attention_bias=maybe", "true or false")):
        cfg = parse_args(data_args(path, data, str(tmp_path / "c")) + ["--config_overrides", bad])
        with pytest.raises(UserError, match=named):
            models.configure(cfg, models.load_config(cfg), ["a", "b"])


def test_a_pad_token_id_override_is_the_pad_the_tokenizer_pads_with(models_root, data, tmp_path):
    """--config_overrides pad_token_id=0 on a Llama whose tokenizer has no pad token: configure() set it, then
    sync_pad_token made it the tokenizer's eos (2), and best/ padded with '</s>', silently (audit59 a3). Now the
    tokenizer pads with token 0, said in one line, and the built model's config agrees; an id the tokenizer lacks
    is refused."""
    from loop import models

    path = build_model_dir(models_root, "llama")
    said = []
    cfg = parse_args(data_args(path, data, str(tmp_path / "c")) + ["--config_overrides", "pad_token_id=0"])
    tokenizer = models.load_tokenizer(cfg, models.load_config(cfg), say=said.append)
    token = tokenizer.convert_ids_to_tokens(0)
    assert tokenizer.pad_token_id == 0 and said == [f"padding with {token!r} (id 0), as --config_overrides "
                                                    f"pad_token_id=0 asks."], said
    model = models.build_model(cfg, models.load_config(cfg), ["a", "b"], tokenizer=tokenizer)
    assert model.config.pad_token_id == 0
    cfg = parse_args(data_args(path, data, str(tmp_path / "c")) + ["--config_overrides", "pad_token_id=99999"])
    with pytest.raises(UserError, match=r"--config_overrides pad_token_id=99999 names no token of the tokenizer"):
        models.load_tokenizer(cfg, models.load_config(cfg))
    cfg = parse_args(data_args(path, data, str(tmp_path / "c")) + ["--config_overrides", "pad_token_id=-1"])
    with pytest.raises(UserError, match=r"--config_overrides pad_token_id=-1 names no token of the tokenizer"):
        models.load_tokenizer(cfg, models.load_config(cfg))  # (not Python's last token)


def test_attention_default_and_refusal(models_root, data, tmp_path):
    from loop import models

    for model_type, default in (("bert", "sdpa"), ("deberta-v2", "eager")):
        path = build_model_dir(models_root, model_type)
        cfg = parse_args(data_args(path, data, str(tmp_path / "a")))
        assert cfg.attn_implementation is None
        model = models.build_model(cfg, models.load_config(cfg), ["a", "b"])
        assert model.config._attn_implementation == default
    cfg = parse_args(data_args(path, data, str(tmp_path / "a"), "--attn_implementation", "sdpa"))
    with pytest.raises(UserError, match=r"does not work for DebertaV2ForSequenceClassification here; choose one of: eager"):
        models.build_model(cfg, models.load_config(cfg), ["a", "b"])
    path = build_model_dir(models_root, "bert")
    cfg = parse_args(data_args(path, data, str(tmp_path / "a"), "--attn_implementation", "eager"))
    assert models.build_model(cfg, models.load_config(cfg), ["a", "b"]).config._attn_implementation == "eager"
    if not torch.cuda.is_available():  # flex attention's CPU kernels failed at the first training step
        llama = build_model_dir(models_root, "llama")
        cfg = parse_args(data_args(llama, data, str(tmp_path / "a"), "--attn_implementation", "flex_attention"))
        with pytest.raises(UserError, match=r"flex_attention does not work for LlamaForSequenceClassification here; "
                                            r"choose one of: eager, sdpa"):
            models.build_model(cfg, models.load_config(cfg), ["a", "b"])


def test_custom_code_needs_trust_remote_code(tmp_path, data):
    from loop import models

    d = tmp_path / "custom"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "tinycustom", "auto_map": {
        "AutoConfig": "configuration_tiny.TinyConfig",
        "AutoModelForSequenceClassification": "modeling_tiny.TinyForSequenceClassification"}}))
    (d / "configuration_tiny.py").write_text(
        "from transformers import BertConfig\nclass TinyConfig(BertConfig):\n    model_type = 'tinycustom'\n")
    cfg = parse_args(data_args(str(d), data, str(tmp_path / "o")))
    with pytest.raises(UserError, match="--trust_remote_code runs the Python code stored in the model's repository"):
        models.load_config(cfg)
    cfg = parse_args(data_args(str(d), data, str(tmp_path / "o"), "--trust_remote_code"))
    assert type(models.load_config(cfg)).__name__ == "TinyConfig"  # the repository's code ran


# ---------------------------------------------------------------- LoRA
class Recording(Loop):
    """Keeps the weights as they were when training started (after setup and any resume)."""

    def on_train_start(self):
        self.start = {k: v.detach().clone() for k, v in self.model.named_parameters()}


def lora_run(model, data, out, *extra):
    loop = Recording(parse_args(data_args(model, data, out, "--lora_r", "4", "--num_train_epochs", "2",
                                          "--learning_rate", "1e-2", *extra)))
    loop.fit()
    return loop


@pytest.fixture(scope="module")
def lora_llama(models_root, data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("lora") / "out")
    model = build_model_dir(models_root, "llama")
    return model, out, lora_run(model, data, out, "--checkpointing_steps", "3")


def test_lora_trains_only_adapters_and_head(lora_llama, capsys):
    _, out, loop = lora_llama
    changed, frozen = [], []
    for name, p in loop.model.named_parameters():
        same = torch.equal(p.detach(), loop.start[name])
        (frozen if same else changed).append(name)
        trainable = "lora_" in name or ".modules_to_save." in name
        assert p.requires_grad == trainable, name
        if not trainable:
            assert same, f"frozen weight {name} changed"
    assert any("lora_B" in n for n in changed) and any("modules_to_save" in n and "score" in n for n in changed)
    assert any("embed_tokens" in n for n in frozen)
    assert len(evals(out)) == 2


def test_lora_best_is_a_merged_plain_model_and_the_adapter_sits_beside_it(lora_llama, models_root):
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    model_dir, out, loop = lora_llama
    best = os.path.join(out, "best")
    assert os.path.isfile(os.path.join(best, "model.safetensors")) and not os.path.isfile(os.path.join(best, "adapter_config.json"))
    assert os.path.isfile(os.path.join(best, "adapter", "adapter_config.json"))
    best_epoch = json.load(open(os.path.join(best, "best_metrics.json")))["epoch"]
    tok = AutoTokenizer.from_pretrained(best)
    batch = tok(BATCH_TEXTS, padding=True, return_tensors="pt")
    plain = AutoModelForSequenceClassification.from_pretrained(best).eval()
    base = AutoModelForSequenceClassification.from_pretrained(model_dir, config=AutoConfig.from_pretrained(best))  # README
    adapted = PeftModel.from_pretrained(base, os.path.join(best, "adapter")).eval()
    with torch.no_grad():
        merged_logits, adapter_logits = plain(**batch).logits, adapted(**batch).logits
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-5), (merged_logits, adapter_logits)
    if best_epoch == 2:  # best/ holds the final weights: the in-memory LoRA model must agree too
        loop.model.eval()
        with torch.no_grad():
            assert torch.allclose(loop.model(**batch).logits, merged_logits, atol=1e-5)
    alone, batched = alone_vs_batched(best)
    for a, b in zip(alone, batched):
        a, b = scores(a), scores(b)
        assert all(abs(a[k] - b[k]) < 1e-4 for k in a)


def test_lora_resume_is_exact(lora_llama, data):
    """Resume mid-epoch 1 (step 3 of 4 per epoch): the final weights are bit-identical."""
    model, out, full = lora_llama
    final = {k: v.detach().clone() for k, v in full.model.named_parameters()}
    resumed = lora_run(model, data, out, "--checkpointing_steps", "3", "--resume_from_checkpoint",
                       os.path.join(out, "checkpoints", "step_3"))
    assert resumed.resumed_from.endswith("step_3")
    for name, p in resumed.model.named_parameters():
        assert torch.equal(p.detach(), final[name]), name


def test_lora_trains_body_modules_the_checkpoint_lacks_in_full(data, tmp_path, capsys):
    """A BERT saved without its pooler: transformers makes a fresh, random pooler. Frozen under LoRA
    (only a rank-4 update on top) it would stay random; it is trained in full, like the head, and
    best/ holds the trained weights."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, BertModel

    path = str(tmp_path / "bert_without_pooler")
    make_tokenizer(path, ARCHS["bert"][0])
    torch.manual_seed(0)
    BertModel(AutoConfig.for_model("bert", **ARCHS["bert"][1]), add_pooling_layer=False).save_pretrained(path)
    out = str(tmp_path / "out")
    loop = lora_run(path, data, out)
    assert "LoRA: bert.pooler.dense is not loaded from the checkpoint: trained in full" in capsys.readouterr().out
    pooler = {n: p for n, p in loop.model.named_parameters() if "pooler" in n and "modules_to_save" in n}
    assert len(pooler) == 2 and all(p.requires_grad for p in pooler.values()), list(pooler)
    assert all(not torch.equal(p.detach(), loop.start[n]) for n, p in pooler.items())
    saved = load_file(os.path.join(out, "best", "model.safetensors"))
    assert not any("lora" in k for k in saved) and "bert.pooler.dense.weight" in saved
    assert not any("pooler" in n and "lora_" in n for n, _ in loop.model.named_parameters())


def test_lora_on_an_moe_model_keeps_its_adapters_on_the_shared_experts_linear_layers(
        models_root, data, tmp_path, capsys):
    """DeepSeek-V3: PEFT's rewrite for transformers 4 adapters (peft#3711) moved every *_proj target onto the routed
    experts' stacked parameters; the run failed at the start ('ParamWrapper does not work with lora_dropout != 0',
    naming --lora_target_modules None), and with dropout 0 the shared expert lost its adapters and best/ missed the
    experts' weights. Now: adapters on the linear layers, said once, best/ merged and whole."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    model = build_model_dir(models_root, "deepseek_v3")
    out = str(tmp_path / "out")
    loop = lora_run(model, data, out)  # --lora_dropout 0.05, the default
    import peft
    from packaging.version import Version

    if Version(peft.__version__) >= Version("0.20"):  # (the rewrite's move came with it; the extra allows 0.13)
        assert "onto DeepseekV3ForSequenceClassification's routed experts (peft#3711)" in capsys.readouterr().out
    adapted = {n.split(".lora_A")[0].split("base_model.model.")[-1] for n, _ in loop.model.named_parameters()
               if ".lora_A." in n}
    assert {"model.layers.1.mlp.shared_experts.gate_proj", "model.layers.0.mlp.down_proj",
            "model.layers.1.self_attn.o_proj"} <= adapted
    assert not any("experts" in n and "shared" not in n for n in adapted), adapted  # the routed ones: not linear
    best = os.path.join(out, "best")
    plain, info = AutoModelForSequenceClassification.from_pretrained(best, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    base = load_file(os.path.join(model, "model.safetensors"))
    merged = load_file(os.path.join(best, "model.safetensors"))
    for name in ("layers.1.mlp.shared_experts.gate_proj.weight", "layers.1.mlp.experts.0.gate_proj.weight"):
        trained = not torch.equal(merged["model." + name], base[name])  # (both saved as transformers 4 names)
        assert trained == ("shared" in name), name  # the shared expert's delta merged, the routed experts frozen


def test_lora_logs_parameters_and_works_with_gradient_checkpointing(models_root, data, tmp_path, capsys):
    model = build_model_dir(models_root, "gpt2")  # Conv1D layers: PEFT's fan-in/fan-out path
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop = lora_run(model, data, str(tmp_path / "out"), "--gradient_checkpointing", "--lora_target_modules",
                        "c_attn")
    # PEFT's own "fan_in_fan_out is set to False but the target module is Conv1D" (it sets it): every run (audit64 p5)
    assert not [w for w in caught if "fan_in_fan_out" in str(w.message)], [str(w.message) for w in caught]
    log = capsys.readouterr().out
    assert "trainable of" in log and "%)" in log
    assert all("c_attn" in n or "score" in n for n, p in loop.model.named_parameters() if p.requires_grad)
    assert os.path.isfile(os.path.join(str(tmp_path / "out"), "best", "adapter", "adapter_model.safetensors"))


def test_lora_without_peft_is_one_line(monkeypatch, models_root, data, tmp_path):
    import sys

    from loop import models

    args = data_args(build_model_dir(models_root, "bert"), data, str(tmp_path / "o"))
    cfg = parse_args(args + ["--lora_r", "8"])
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
    with pytest.raises(UserError, match=r'pip install -e "\.\[peft\]"'):
        models.build_model(cfg, models.load_config(cfg), ["a", "b"])
    # said as the options are read, before the data (audit64 p2: 26 s of tokenizing 200k rows first)
    with pytest.raises(UserError, match=r'^--lora_r needs the PEFT library; install it with pip install -e "\.\[peft\]"'):
        parse_args(args + ["--lora_r", "8"])
    parse_args(args)  # without LoRA, no PEFT needed


def test_a_lora_target_the_checkpoint_lacked_is_named_as_trained_in_full(models_root):
    """audit64 p4: on a BERT saved without its pooler (trained in full, like the head), `--lora_target_modules
    pooler.dense` passed the check and ended in PEFT's 'No modules were targeted for adaptation'."""
    pytest.importorskip("peft")
    from transformers import AutoModelForSequenceClassification

    from loop import lora

    model = AutoModelForSequenceClassification.from_pretrained(build_model_dir(models_root, "bert"), num_labels=2)
    heads = lora.head_modules(model) + ["bert.pooler"]  # as apply_lora adds a module the checkpoint lacked
    lora.check_lora_targets(model, ["query"], heads)
    with pytest.raises(UserError, match=r"--lora_target_modules pooler.dense names the classification head "
                                        r"\(classifier, bert.pooler\), which is trained in full already"):
        lora.check_lora_targets(model, ["pooler.dense"], heads)


def test_a_run_without_lora_never_imports_peft(tmp_path):
    """audit64 p1: every full fine-tuning run imported PEFT (5 s; an installed PEFT that fails to import ended runs
    that never asked for it), through the checks whether a model is PEFT's."""
    import subprocess
    import sys

    from conftest import env

    code = ("import sys, torch; from loop import lora\n"
            "model = torch.nn.Linear(2, 2); assert not lora.is_peft(model)\n"
            "print('peft' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.split() == ["False"], proc.stderr[-2000:]


def test_decoders_pad_right_because_left_padding_shifts_absolute_positions(models_root):
    """Why decoders pad on the right: GPT-2's learned positions count from the first column, so left padding
    changes a short text's score in a batch; right padding never does (causal attention)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from loop import models

    path = build_model_dir(models_root, "gpt2")
    tok = AutoTokenizer.from_pretrained(path)
    config = models.configure(parse_args(["--model_name_or_path", path]), models.load_config(
        parse_args(["--model_name_or_path", path])), ["a", "b"])
    models.prepare_padding(tok, config)
    models.sync_pad_token(config, tok)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, config=config).eval()
    texts = BATCH_TEXTS[:2]
    with torch.no_grad():
        alone = torch.cat([model(**tok(t, return_tensors="pt")).logits for t in texts])
        out = {}
        for side in ("right", "left"):
            tok.padding_side = side
            out[side] = model(**tok(texts, padding=True, return_tensors="pt")).logits
    assert torch.allclose(out["right"], alone, atol=1e-5)
    assert not torch.allclose(out["left"], alone, atol=1e-4)


def test_cli_errors_are_one_line(models_root, data, tmp_path):
    from conftest import run_cli

    path = build_model_dir(models_root, "deberta-v2")
    for extra, expected in ((["--config_overrides", "num_hidden_layers=two"], "expected an int"),):
        proc = run_cli(data_args(path, data, str(tmp_path / "o"), *extra), how="python", check=False)
        lines = [x for x in proc.stderr.splitlines() if x.strip() and "Warning" not in x and not x.startswith("  ")]
        assert proc.returncode == 2, proc.stderr[-2000:]
        errors = [x for x in lines if x.startswith("error:")]
        assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_lora_with_two_processes(models_root, data, tmp_path):
    """Under DDP, and under DDP with --torch_compile: accelerate unwraps DDP(compiled model) to the compile
    wrapper, whose save_pretrained is PEFT's: best/ was the adapter alone (no config.json, no merged model).
    The uncompiled run keeps its frozen body in bf16 (--torch_dtype, under bf16 mixed precision): DDP
    broadcasts the bf16 body and reduces the fp32 adapters' gradients."""
    from safetensors import safe_open

    from conftest import FAULTS, run_cli

    for compiled in (False, True):
        out = str(tmp_path / f"out{compiled}")
        extra = ["--torch_compile", "true"] if compiled else ["--torch_dtype", "bfloat16"]
        run_cli(data_args(build_model_dir(models_root, "llama"), data, out, "--lora_r", "4", *extra), nproc=2,
                how="fork", script=FAULTS, LOOP_TEST_COMPILE_EAGER=1, ACCELERATE_MIXED_PRECISION="no" if compiled else "bf16")
        assert evals(out)[0]["eval_samples"] == 32
        best = os.path.join(out, "best")
        assert os.path.isfile(os.path.join(best, "adapter", "adapter_config.json"))
        assert {"config.json", "model.safetensors"} <= set(os.listdir(best)), os.listdir(best)
        assert not os.path.exists(os.path.join(best, "adapter_config.json"))
        with safe_open(os.path.join(best, "model.safetensors"), "pt") as f:
            kept = str(f.get_slice("model.layers.0.self_attn.q_proj.weight").get_dtype())
        assert kept == ("F32" if compiled else "BF16"), kept


@pytest.mark.parametrize("model_type, targets", [("gpt2", ["c_attn", "c_fc"]), ("llama", ["q_proj", "down_proj"]),
                                                 ("llama", ["embed_tokens", "v_proj"])])
def test_merged_state_dict_from_whole_tensors_equals_the_adapter(models_root, model_type, targets):
    """best/'s merge computes B @ A x scaling from the gathered state dict (FSDP-safe, no PEFT call
    on sharded layers); the merged plain model must give the adapter model's logits, GPT-2's
    transposed Conv1D and an embedding layer included (whose adapter was left out of best/ before).
    The zero-initialised factor is randomised: PEFT starts with no delta."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from loop.lora import merged_state_dict

    model_dir = build_model_dir(models_root, model_type)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token = tok.pad_token or tok.eos_token
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, pad_token_id=tok.pad_token_id)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=targets, modules_to_save=["score"],
                                                 task_type="SEQ_CLS"))
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n or "lora_embedding_A" in n:  # the factors PEFT starts at zero
                p.normal_(0, 0.5)
    peft_model.eval()
    merged = merged_state_dict(peft_model, peft_model.state_dict())
    plain = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, pad_token_id=tok.pad_token_id)
    missing, unexpected = plain.load_state_dict(merged, strict=False)
    assert not unexpected and all("rotary" in k or "position_ids" in k for k in missing), (missing, unexpected)
    plain.eval()
    batch = tok(BATCH_TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want, got = peft_model(**batch).logits, plain(**batch).logits
        no_delta = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=2, pad_token_id=tok.pad_token_id)
    assert torch.allclose(got, want, atol=1e-4), (got, want)
    assert not torch.allclose(got, no_delta.eval()(**batch).logits, atol=1e-3)  # the delta mattered


# ---------------------------------------------------------------- DDP and parameters without a gradient
@pytest.mark.parametrize("model_type, unused", [
    ("xlnet", "transformer.mask_emb"),  # used only for masked-LM pretraining
    ("esm", "esm.contact_head.regression.weight"),  # the protein contact head
    ("bert", None),
    ("llama", None),
])
def test_unused_parameters_found_by_a_trial_pass(models_root, model_type, unused):
    """The parameters the classification loss never reaches, from one forward pass's autograd graph;
    the trial pass leaves the RNG where it was (a resumed run's dropout masks must not move)."""
    from loop import models

    model_dir = build_model_dir(models_root, model_type)
    cfg = parse_args(["--model_name_or_path", model_dir, "--label_names", "NEGATIVE,POSITIVE", "--output_dir", "x"])
    config = models.load_config(cfg)
    tok = models.load_tokenizer(cfg, config)
    model = models.build_model(cfg, config, ["NEGATIVE", "POSITIVE"], tokenizer=tok)
    before = torch.get_rng_state()
    names = models.unused_parameters(model, tok)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(p.grad is None for p in model.parameters())  # nothing was backpropagated
    if unused is None:
        assert names == [] and models.find_unused_parameters(cfg, model, tok) == (False, "")
    else:
        assert unused in names and "classifier" not in " ".join(names) and "score" not in " ".join(names)
        on, reason = models.find_unused_parameters(cfg, model, tok)
        assert on and f"{len(names)} parameter(s) get no gradient" in reason and unused.split(".")[-1] in reason


def test_find_unused_parameters_for_experts_and_by_flag(models_root):
    """An MoE model whose experts are modules of their own needs it whatever one trial batch routes to; one whose
    experts are one tensor (transformers 5's Mixtral, Qwen2/3-MoE: some token always reaches it) is decided by the
    trial pass, off (helper zoo2 F2: DDP walked the graph every step and warned on every rank); the flag decides
    when given."""
    from types import SimpleNamespace

    from transformers import PretrainedConfig

    from loop import models

    def decide(model_type, *flags):
        model_dir = build_model_dir(models_root, model_type)
        cfg = parse_args(["--model_name_or_path", model_dir, "--label_names", "NEGATIVE,POSITIVE", "--output_dir", "x",
                          *flags])
        config = models.load_config(cfg)
        tok = models.load_tokenizer(cfg, config)
        return models.find_unused_parameters(cfg, models.build_model(cfg, config, ["NEGATIVE", "POSITIVE"], tok), tok)

    assert decide("qwen2_moe") == (False, "")
    weight = torch.nn.Parameter(torch.zeros(2))
    separate = SimpleNamespace(config=PretrainedConfig(num_experts=4), named_parameters=lambda: [
        ("model.layers.0.mlp.experts.3.w1.weight", weight), ("model.layers.0.mlp.shared_expert.w1.weight", weight)])
    cfg = parse_args(["--model_name_or_path", "x", "--output_dir", "x"])
    assert models.find_unused_parameters(cfg, separate, None) == (True, "the model routes tokens to experts "
                                                                         "(num_experts=4)")
    # LoRA on the attention leaves the routed experts frozen: every trainable parameter gets a gradient
    assert decide("qwen2_moe", "--lora_r", "4") == (False, "")
    assert decide("xlnet", "--ddp_find_unused_parameters", "false") == (False, "--ddp_find_unused_parameters")
    assert decide("bert", "--ddp_find_unused_parameters", "true") == (True, "--ddp_find_unused_parameters")


@pytest.mark.slow
def test_ddp_trains_a_model_with_parameters_without_gradient(models_root, data, tmp_path):
    """Two processes (DDP on gloo), through the CLI: XLNet (unused mask embedding) failed at the second
    step with "Expected to have finished reduction" before find_unused_parameters was chosen. (The
    other nine such architectures, MoE included, are in the strategy sweep below.)"""
    from conftest import run_cli

    out = str(tmp_path / "out")
    p = run_cli(data_args(build_model_dir(models_root, "xlnet"), data, out), nproc=2, how="fork")
    assert "DDP: find_unused_parameters on" in p.stdout
    assert evals(out)[-1]["eval_samples"] == 32 and os.path.isfile(os.path.join(out, "best", "model.safetensors"))


@pytest.mark.slow
def test_ddp_lora_on_an_moe_model_leaves_find_unused_off(models_root, data, tmp_path):
    """LoRA on the attention of an MoE model: the frozen experts need no find_unused_parameters (a graph
    walk every step); two processes train, evaluate and save without DDP's reduction error."""
    from conftest import run_cli

    out = str(tmp_path / "out")
    p = run_cli(data_args(build_model_dir(models_root, "qwen2_moe"), data, out) + ["--lora_r", "4"], nproc=2, how="fork")
    assert "find_unused_parameters on" not in p.stdout + p.stderr
    assert evals(out)[-1]["eval_samples"] == 32 and os.path.isfile(os.path.join(out, "best", "model.safetensors"))


def test_fsdp_wrap_classes_leave_out_the_block_holding_the_embeddings(models_root):
    """BERT lists BertEmbeddings among its blocks; accelerate then shards the word embeddings twice
    and torch refuses. Llama's list has no such block and is left as it is."""
    from transformers import AutoModelForSequenceClassification

    from loop.models import fsdp_wrap_classes

    bert = AutoModelForSequenceClassification.from_pretrained(build_model_dir(models_root, "bert"), num_labels=2)
    assert "BertEmbeddings" in bert._no_split_modules
    assert fsdp_wrap_classes(bert) == [n for n in bert._no_split_modules if n != "BertEmbeddings"]
    llama = AutoModelForSequenceClassification.from_pretrained(build_model_dir(models_root, "llama"), num_labels=2)
    assert fsdp_wrap_classes(llama) is None


def test_fsdp_refuses_encoder_decoders_in_one_line_and_skips_missing_block_classes(models_root, tmp_path):
    """An encoder-decoder's embedding table is used by encoder and decoder: accelerate's FSDP2 fails
    deep in fully_shard ("shared with a parameter already managed by another FSDP group"); we say so
    first, with the way out. ESM lists block classes it does not contain: those are dropped."""
    from types import SimpleNamespace

    from transformers import AutoModelForSequenceClassification

    from loop import Loop
    from loop.errors import UserError
    from loop.models import fsdp_wrap_classes, shared_input_embeddings

    bart = AutoModelForSequenceClassification.from_pretrained(build_model_dir(models_root, "bart"), num_labels=2)
    assert shared_input_embeddings(bart) == ["model.encoder.embed_tokens", "model.decoder.embed_tokens"]
    bert = AutoModelForSequenceClassification.from_pretrained(build_model_dir(models_root, "bert"), num_labels=2)
    assert shared_input_embeddings(bert) == []
    esm = AutoModelForSequenceClassification.from_pretrained(build_model_dir(models_root, "esm"), num_labels=2)
    present = {type(m).__name__ for m in esm.modules()}
    assert any(n not in present for n in esm._no_split_modules)
    assert fsdp_wrap_classes(esm) == [n for n in esm._no_split_modules if n in present and n != "EsmEmbeddings"]

    loop = Loop(parse_args(["--model_name_or_path", "x", "--output_dir", str(tmp_path)]))
    plugin = SimpleNamespace(fsdp_version=2, transformer_cls_names_to_wrap=None)
    loop.accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin))
    with pytest.raises(UserError, match=r"FSDP2 cannot shard model type 'bart': its input embeddings are shared "
                                        r"with model.encoder.embed_tokens, model.decoder.embed_tokens; train it with DDP"):
        loop.configure_fsdp(bart)
    loop.configure_fsdp(bert)
    assert plugin.transformer_cls_names_to_wrap == fsdp_wrap_classes(bert)


def test_gradient_checkpointing_on_a_model_without_it_is_one_line(models_root):
    """11 of the matrix's classes (ALBERT, XLNet, MPNet, CTRL, ...) cannot checkpoint activations;
    transformers raises a ValueError deep in the start-up, we say it with the way out."""
    from loop import models
    from loop.errors import UserError

    model_dir = build_model_dir(models_root, "xlnet")
    cfg = parse_args(["--model_name_or_path", model_dir, "--label_names", "NEGATIVE,POSITIVE", "--output_dir", "x",
                      "--gradient_checkpointing", "true"])
    config = models.load_config(cfg)
    tok = models.load_tokenizer(cfg, config)
    with pytest.raises(UserError, match=r"XLNetForSequenceClassification does not support --gradient_checkpointing; "
                                        r"drop the flag"):
        models.build_model(cfg, config, ["NEGATIVE", "POSITIVE"], tok)


def test_gradient_checkpointing_checkpoints_without_a_deprecation_warning(models_root, recwarn):
    """--gradient_checkpointing called transformers' gradient_checkpointing_enable, which warns on every run that
    it goes in transformers 6 (through the console's filter too, audit60 f1): its new name, and the blocks do
    checkpoint."""
    from loop import models

    model_dir = build_model_dir(models_root, "bert")
    cfg = parse_args(["--model_name_or_path", model_dir, "--label_names", "NEGATIVE,POSITIVE", "--output_dir", "x",
                      "--gradient_checkpointing", "true"])
    config = models.load_config(cfg)
    model = models.build_model(cfg, config, ["NEGATIVE", "POSITIVE"], models.load_tokenizer(cfg, config))
    # (transformers >= 5.23's name; before it, the older one, which the floor's 5.14 has)
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    assert not [w for w in recwarn if "checkpointing_enable" in str(w.message)], [str(w.message) for w in recwarn]


# ---------------------------------------------------------------- every architecture under each strategy
ENCODER_DECODERS = {name for name, (family, _) in ARCHS.items() if family == "s2s"}
SHARED_EMBEDDINGS = ENCODER_DECODERS - {"t5gemma"}  # one table for encoder and decoder (T5Gemma has one each)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_every_architecture_under_ddp_and_fsdp2(models_root, tmp_path, strategy):
    """All 89 architectures, two CPU processes, three optimizer steps and a gathered state dict
    (tests/strategy_sweep.py). DDP: all train (some only with find_unused_parameters, chosen by the
    loop). FSDP2: all but the encoder-decoders sharing one embedding table, which are refused in one line."""
    from conftest import run_cli

    result = str(tmp_path / "result.json")
    p = run_cli([strategy, models_root, result], nproc=2, how="fork", script="tests/strategy_sweep.py", timeout=400)
    with open(result) as f:
        got = json.load(f)
    assert set(got) == set(ARCHS)
    if strategy == "ddp":
        assert {k: v for k, v in got.items() if v != "ok"} == {}
        assert p.stdout.count("DDP: find_unused_parameters on") >= 5  # xlnet, esm, luke, mra, big_bird, MoE ...
    else:
        assert {k: v for k, v in got.items() if v != "ok" and k not in SHARED_EMBEDDINGS} == {}
        assert all(got[k].startswith("refused: FSDP2 cannot shard") for k in SHARED_EMBEDDINGS), got


KNOWN_HALF_PRECISION_FAILURES = {"deberta"}  # README, Models: "What does not work"


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_every_architecture_runs_under_autocast(models_root, dtype):
    """Forward and backward of every architecture under CPU autocast (what mixed precision does),
    finite loss; DeBERTa v1's documented failure is expected, any other is new."""
    from loop import models

    failed = {}
    for name in ARCHS:
        model_dir = build_model_dir(models_root, name)
        cfg = parse_args(["--model_name_or_path", model_dir, "--label_names", "NEGATIVE,POSITIVE", "--output_dir", "x"])
        config = models.load_config(cfg)
        tok = models.load_tokenizer(cfg, config)
        model = models.build_model(cfg, config, ["NEGATIVE", "POSITIVE"], tok)
        batch = tok(BATCH_TEXTS[:4], padding=True, return_tensors="pt")
        try:
            with torch.autocast("cpu", dtype=getattr(torch, dtype)):
                loss = model(**batch, labels=torch.tensor([0, 1, 0, 1])).loss
            loss.backward()
            if not torch.isfinite(loss):
                failed[name] = f"loss {loss.item()}"
        except RuntimeError as e:
            failed[name] = str(e)[:200]
    assert set(failed) == KNOWN_HALF_PRECISION_FAILURES, failed


def test_find_unused_parameters_reads_nested_configs_layerdrop_and_a_failed_trial():
    """Experts in a sub-config (a text_config, DBRX's ffn_config) and stochastic depth turn it on
    without a trial pass; a trial pass that fails turns it on too (slower, never a hang)."""
    from types import SimpleNamespace

    from transformers import PretrainedConfig

    from loop.models import find_unused_parameters

    cfg = parse_args(["--model_name_or_path", "x", "--output_dir", "x"])
    outer = PretrainedConfig()
    outer.text_config = PretrainedConfig(moe_num_experts=4)
    assert find_unused_parameters(cfg, SimpleNamespace(config=outer), None) == \
        (True, "the model routes tokens to experts (moe_num_experts=4)")
    dropping = SimpleNamespace(config=PretrainedConfig(encoder_layerdrop=0.1))
    assert find_unused_parameters(cfg, dropping, None) == \
        (True, "the model skips layers at random in training (encoder_layerdrop=0.1)")
    on, reason = find_unused_parameters(cfg, SimpleNamespace(config=PretrainedConfig()), None)
    assert on and reason.startswith("the trial forward pass failed (")


def test_lora_delta_of_an_embedding_layer_equals_peft(models_root):
    """Embedding LoRA factors live in lora_embedding_A/B (no `.weight`): the delta computed from the
    state dict equals PEFT's own get_delta_weight (which would be a collective under FSDP)."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForSequenceClassification

    from loop.lora import lora_delta

    base = AutoModelForSequenceClassification.from_pretrained(build_model_dir(models_root, "llama"), num_labels=2)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["embed_tokens"], task_type="SEQ_CLS"))
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_embedding_A" in n:
                p.normal_(0, 0.5)
    state = peft_model.state_dict()
    layers = [(n, m) for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)]
    assert [n.split(".")[-1] for n, _ in layers] == ["embed_tokens"]
    for name, module in layers:
        ours, theirs = lora_delta(name, module, "default", state), module.get_delta_weight("default")
        assert ours.abs().max() > 0 and torch.allclose(ours, theirs, atol=1e-6)


def test_a_trained_classifier_keeps_its_label_rows(tiny_model, tmp_path):
    """Starting from a fine-tuned classifier whose head knows the data's labels in another order
    (joy, anger, sadness; the data's sorted order is anger, joy, sadness), the data's ids follow the
    head's rows: before any training the loop's model predicts what the original predicted. A head
    with other names warns; one with another label count is refused in one line."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer


    trained_dir = str(tmp_path / "emotion")
    config = AutoConfig.from_pretrained(tiny_model, num_labels=3, id2label={0: "joy", 1: "Anger", 2: "sadness"},
                                        architectures=["DistilBertForSequenceClassification"])
    torch.manual_seed(0)
    original = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        original.classifier.bias.copy_(torch.tensor([0.0, 9.0, 0.0]))  # always row 1
    original.save_pretrained(trained_dir)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(trained_dir)
    rows = [{"text": t, "label": lab} for t, lab in
            [("lovely", "joy"), ("dull", "anger"), ("weak", "sadness"), ("superb", "joy"), ("awful", "anger"),
             ("boring", "sadness")] * 4]
    synthetic.write_jsonl(rows, tmp_path / "train.jsonl")
    synthetic.write_jsonl(rows[:6], tmp_path / "validation.jsonl")

    def setup(model_dir, **over):
        args = ["--model_name_or_path", model_dir, "--train_file", str(tmp_path / "train.jsonl"),
                "--validation_file", str(tmp_path / "validation.jsonl"), "--output_dir", str(tmp_path / "out"),
                "--overwrite_output_dir", "true"]
        for k, v in over.items():
            args += [f"--{k}", str(v)]
        lp = Loop(parse_args(args))
        lp.setup()
        return lp

    lp = setup(trained_dir)
    assert lp.data.label_names == ["joy", "anger", "sadness"]  # the head's order, the data's spelling
    assert [lp.data.label_names[i] for i in lp.data.train["labels"][:3]] == ["joy", "anger", "sadness"]
    tok = AutoTokenizer.from_pretrained(trained_dir)
    batch = tok(["lovely", "weak"], padding=True, return_tensors="pt")
    lp.model.eval(), original.eval()
    with torch.no_grad():
        ours = [lp.model.config.id2label[i] for i in lp.model(**batch).logits.argmax(-1).tolist()]
        theirs = [original.config.id2label[i] for i in original(**batch).logits.argmax(-1).tolist()]
    assert theirs == ["Anger", "Anger"] and ours == ["anger", "anger"]

    # integer ids named by --label_names are renumbered the same way
    assert head_order(["sadness", "joy", "anger"], ["joy", "Anger", "sadness"]) == [2, 0, 1]
    assert head_order(["joy", "anger"], ["joy", "anger"]) is None  # same order: nothing to do
    assert head_order(["joy", "fear", "sadness"], ["joy", "anger", "sadness"]) is None  # other names

    other = str(tmp_path / "other")
    config.id2label = {0: "positive", 1: "neutral", 2: "negative"}
    AutoModelForSequenceClassification.from_config(config).save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(other)
    with pytest.warns(UserWarning, match="trained on the labels positive, neutral, negative, the data's are anger, joy, sadness"):
        setup(other)
    two = [r for r in rows if r["label"] != "sadness"]
    synthetic.write_jsonl(two, tmp_path / "two.jsonl")
    with pytest.raises(UserError, match="classification head has 3 labels but the data has 2"):
        setup(other, train_file=tmp_path / "two.jsonl", validation_file=tmp_path / "two.jsonl")


def test_empty_texts_train_on_a_tokenizer_that_adds_no_token(tmp_path):
    """A byte-level BPE (GPT-2, Qwen) adds no token to an empty text: zero positions crashed the first batch
    that held only such texts (length grouping puts them together). They get one token (eos) instead."""
    model_dir = build_model_dir(str(tmp_path / "models"), "qwen2")
    rows = synthetic.make_rows(48, seed=1) + [{"text": "", "label": lab} for lab in ("NEGATIVE", "POSITIVE") * 12]
    synthetic.write_jsonl(rows, tmp_path / "train.jsonl")
    synthetic.write_jsonl(rows[:8] + rows[-4:], tmp_path / "validation.jsonl")
    out = str(tmp_path / "out")
    lp = Loop(parse_args(["--model_name_or_path", model_dir, "--train_file", str(tmp_path / "train.jsonl"),
                          "--validation_file", str(tmp_path / "validation.jsonl"), "--output_dir", out,
                          "--per_device_train_batch_size", "8", "--num_train_epochs", "1"]))
    lp.fit()
    eos = lp.tokenizer.eos_token_id
    assert [ids for ids in lp.data.train["input_ids"] if len(ids) == 1] == [[eos]] * 24
    assert evals(out)[-1]["eval_samples"] == 12


def test_a_literal_eos_in_the_text_of_an_encoder_decoder(tmp_path):
    """BART classifies from the eos token; a text holding the literal '</s>' added a second eos and crashed
    the batch ('All examples must have the same number of <eos> tokens'). The tokenizer now reads text as
    text, in training and in best/ (pipeline() scores it too)."""
    from transformers import pipeline

    model_dir = build_model_dir(str(tmp_path / "models"), "bart")
    rows = synthetic.make_rows(40, seed=1)
    rows[3]["text"] += " <s>struck</s> out"
    synthetic.write_jsonl(rows, tmp_path / "train.jsonl")
    synthetic.write_jsonl(rows[:8], tmp_path / "validation.jsonl")
    out = str(tmp_path / "out")
    Loop(parse_args(["--model_name_or_path", model_dir, "--train_file", str(tmp_path / "train.jsonl"),
                     "--validation_file", str(tmp_path / "validation.jsonl"), "--output_dir", out,
                     "--per_device_train_batch_size", "8", "--num_train_epochs", "1"])).fit()
    clf = pipeline("text-classification", model=os.path.join(out, "best"), device=-1)
    assert len(clf([rows[3]["text"], "good film"], batch_size=2)) == 2


def test_position_limit_from_any_config_field():
    """MPT keeps its limit in max_seq_len: the default length is clamped to it (it crashed at step 1)."""
    from transformers import AutoConfig

    from loop import models

    class Tokenizer:  # a tokenizer without a limit of its own
        init_kwargs, model_max_length, pad_token_id = {}, int(1e30), None

    mpt = AutoConfig.for_model("mpt", max_seq_len=64, d_model=32, n_heads=2, n_layers=1)
    assert models.max_length(parse_args([]), mpt, Tokenizer()) == 64
    with pytest.warns(UserWarning, match="--max_length 100 is above the model's limit of 64 positions"):
        assert models.max_length(parse_args(["--max_length", "100"]), mpt, Tokenizer()) == 64


def test_roberta_positions_start_after_the_pad_id_and_unlimited_models_take_the_length_asked():
    """RoBERTa-family positions are numbered from pad_token_id + 1: 34 embeddings hold 32 tokens, and a length of 33
    or 34 died at step 1 with an IndexError. XLNet has no position limit: --max_length 1024 was cut to 512, with a
    warning about a limit of 512 it does not have. A real run at the default length on a tiny RoBERTa trains."""
    import warnings

    from transformers import AutoConfig

    from loop import models

    class Tokenizer:  # a tokenizer without a limit of its own
        init_kwargs, model_max_length, pad_token_id = {}, int(1e30), None

    roberta = AutoConfig.for_model("roberta", max_position_embeddings=34, pad_token_id=1)
    assert models.max_length(parse_args([]), roberta, Tokenizer()) == 32
    with pytest.warns(UserWarning, match="--max_length 34 is above the model's limit of 32 positions"):
        assert models.max_length(parse_args(["--max_length", "34"]), roberta, Tokenizer()) == 32
    # the model is built with the tokenizer's pad id (sync_pad_token): 3 (<s> </s> <unk> <pad>) leaves 30 positions;
    # the config's 1 made it 32, and a text of 31 tokens died mid-training (audit62 t1)
    padded_at_3 = Tokenizer()
    padded_at_3.pad_token_id = 3
    assert models.max_length(parse_args([]), roberta, padded_at_3) == 30
    short = Tokenizer()
    short.model_max_length = 16
    with pytest.warns(UserWarning, match="--max_length 20 is above the tokenizer's model_max_length of 16 positions"):
        assert models.max_length(parse_args(["--max_length", "20"]), roberta, short) == 16
    xlnet = AutoConfig.for_model("xlnet", d_model=32, n_layer=1, n_head=2, d_inner=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert models.max_length(parse_args(["--max_length", "1024"]), xlnet, Tokenizer()) == 1024
    assert models.max_length(parse_args([]), xlnet, Tokenizer()) == 512


def test_lora_flags_without_lora_or_out_of_range_are_one_line():
    """--lora_alpha without --lora_r trained all weights silently; --lora_dropout 1.5 failed late, naming
    another flag. Both are refused at parse time, naming the flag."""
    with pytest.raises(UserError, match=r"--lora_alpha applies only with --lora_r"):
        parse_args(["--lora_alpha", "16"])
    with pytest.raises(UserError, match=r"--lora_dropout must be at least 0 and below 1, got 1.5"):
        parse_args(["--lora_r", "8", "--lora_dropout", "1.5"])
    assert parse_args(["--lora_r", "8", "--lora_alpha", "16"]).lora_alpha == 16


def test_lora_refuses_from_scratch_and_names_that_miss_the_body(models_root):
    """--from_scratch with --lora_r trained adapters on a random frozen body without a word (now a warning: a speed
    benchmark may mean it); `q_proj,v_prj` trained q_proj alone
    without a word (PEFT fails only when no name matches); a head's name and PEFT's 'all-linear' failed as
    'No modules were targeted'. all-linear is the default set: every linear layer of the body."""
    pytest.importorskip("peft")
    from transformers import AutoModelForSequenceClassification

    from loop import lora

    with pytest.warns(UserWarning, match=r"--lora_r trains small adapters on a body that stays frozen, and "
                                         r"--from_scratch makes that body random"):
        parse_args(["--lora_r", "8", "--from_scratch"])
    path = build_model_dir(models_root, "llama")

    def adapted(targets):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        args = ["--lora_r", "4"] + (["--lora_target_modules", targets] if targets else [])
        return {n for n, p in lora.apply_lora(model, parse_args(args)).named_parameters() if p.requires_grad}

    default = adapted(None)
    assert any("q_proj.lora_A" in n for n in default) and any("score" in n for n in default)
    assert adapted("all-linear") == default
    assert {n for n in adapted("q_proj,v_proj") if "lora_" in n} == {n for n in default if "lora_" in n and (
        "q_proj" in n or "v_proj" in n)}
    with pytest.raises(UserError, match=r"--lora_target_modules v_prj names no module of LlamaForSequenceClassification; "
                                        r"its linear layers are down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, "
                                        r"v_proj \(or leave the option out: all of them\)"):
        adapted("q_proj,v_prj")
    with pytest.raises(UserError, match=r"--lora_target_modules score names the classification head \(score\), which "
                                        r"is trained in full already"):
        adapted("score")
    # audit64 p3: a name of modules LoRA does not adapt was PEFT's line with the module's repr, hundreds of lines
    with pytest.raises(UserError, match=r"^--lora_target_modules layers names model\.layers \(ModuleList\), which LoRA "
                                        r"does not adapt; name linear layers: down_proj, gate_proj, k_proj, .*\)\.$"):
        adapted("layers")
    with pytest.raises(UserError, match=r"--lora_target_modules norm names model\.norm \(LlamaRMSNorm\), which"):
        adapted("norm")
    # (review r2 F5: the module refused is named, not a name the list of linear layers may hold too)
    with pytest.raises(UserError, match=r"--lora_target_modules self_attn names model\.layers\.0\.self_attn "
                                        r"\(LlamaAttention, and 1 more\), which LoRA does not adapt"):
        adapted("self_attn")
    with pytest.raises(UserError, match=r"^--lora_target_modules all-linear means every linear layer and stands "
                                        r"alone; give it by itself"):
        adapted("all-linear,q_proj")


def test_umt5_decoder_self_attention_is_made_causal():
    """transformers 5.17 (the GPU image's) builds UMT5's decoder self-attention non-causal: under SDPA a
    text then scores differently alone and in a padded batch. The loop makes it causal (as 5.18 does),
    and touches neither the encoder nor the cross-attention."""
    from transformers import AutoModelForSequenceClassification, UMT5Config

    from loop.models import causal_decoder_self_attention

    config = UMT5Config(vocab_size=100, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2, pad_token_id=0,
                        decoder_start_token_id=0)
    model = AutoModelForSequenceClassification.from_config(config)
    attention = {n: m for n, m in model.named_modules() if type(m).__name__ == "UMT5Attention"}
    for m in attention.values():
        m.is_causal = False  # as 5.17 builds them
    causal_decoder_self_attention(model)
    assert {n.split("transformer.")[1]: m.is_causal for n, m in attention.items()} == {
        "encoder.block.0.layer.0.SelfAttention": False, "decoder.block.0.layer.0.SelfAttention": True,
        "decoder.block.0.layer.1.EncDecAttention": False}


def test_config_overrides_leave_labels_to_the_data_and_head_dim_follows_the_width(models_root, tmp_path):
    """num_labels=3 over 2-class data trained a 3-output head whose config named LABEL_0..2 (pipeline()
    accuracy by name 0); hidden_size=64 on a Llama config kept head_dim 16 (attention half as wide as a
    fresh config of that width)."""
    from transformers import AutoConfig, AutoTokenizer

    from loop.models import configure, sync_pad_token

    out = str(tmp_path / "o")
    for key in ("num_labels=3", "id2label={0:a}", "problem_type=regression"):
        with pytest.raises(UserError, match=f"--config_overrides {key.split('=')[0]}: the labels and the problem type "
                                            f"come from the data"):
            parse_args(["--output_dir", out, "--config_overrides", key])
    config = AutoConfig.for_model("llama", hidden_size=32, num_attention_heads=2, num_key_value_heads=2)
    assert config.head_dim == 16
    configure(parse_args(["--output_dir", out, "--config_overrides", "hidden_size=64"]), config, ["a", "b"])
    assert (config.hidden_size, config.head_dim) == (64, 32)
    config = AutoConfig.for_model("llama", hidden_size=32, num_attention_heads=2, num_key_value_heads=2)
    configure(parse_args(["--output_dir", out, "--config_overrides", "hidden_size=64,head_dim=8"]), config, ["a", "b"])
    assert config.head_dim == 8  # given: kept

    # T5/BART heads pool at the eos token found by the config's id: it follows the tokenizer's
    model = build_model_dir(models_root, "t5")
    tok = AutoTokenizer.from_pretrained(model)
    config = AutoConfig.from_pretrained(model, eos_token_id=tok.eos_token_id + 1)
    sync_pad_token(config, tok)
    assert config.eos_token_id == tok.eos_token_id and config.pad_token_id == tok.pad_token_id


def test_layer_types_follow_an_overridden_layer_count_and_a_broken_config_is_one_line(tmp_path):
    """Qwen2 (Gemma, ...) list an attention type per layer: num_hidden_layers=1 trained a whole run and then
    failed saving best/ (the config no longer validated), num_hidden_layers=3 failed building layer 3."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from loop.models import configure

    out = str(tmp_path / "o")
    small = dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64, vocab_size=100)
    for layers in (1, 3):
        config = AutoConfig.for_model("qwen2", num_hidden_layers=2, **small)
        configure(parse_args(["--output_dir", out, "--config_overrides", f"num_hidden_layers={layers}"]), config,
                  ["a", "b"])
        assert config.layer_types == ["full_attention"] * layers
        AutoModelForSequenceClassification.from_config(config).save_pretrained(str(tmp_path / f"m{layers}"))
    config = AutoConfig.for_model("qwen2", num_hidden_layers=4, layer_types=["sliding_attention", "full_attention"] * 2,
                                  sliding_window=8, **small)
    configure(parse_args(["--output_dir", out, "--config_overrides", "num_hidden_layers=3"]), config, ["a", "b"])
    assert config.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]  # the pattern kept
    config = AutoConfig.for_model("qwen2", num_hidden_layers=2, **small)
    with pytest.raises(UserError, match=r"--config_overrides 'num_hidden_layers=3,layer_types=\[full_attention\]' "
                                        r"makes a Qwen2Config that does not hold together \(.*layer_types.*\); change"):
        configure(parse_args(["--output_dir", out, "--config_overrides",
                              "num_hidden_layers=3,layer_types=[full_attention]"]), config, ["a", "b"])


def test_a_tokenizer_that_runs_pair_texts_together_is_warned_about(models_root):
    """GPT-2/Qwen-style tokenizers join a pair with nothing between ('greatit was boring')."""
    import warnings

    from transformers import AutoTokenizer

    from loop.config import TrainConfig
    from loop.data import check_pair_separator

    gpt2 = AutoTokenizer.from_pretrained(build_model_dir(models_root, "gpt2"))
    pair, first = gpt2("great", "it was")["input_ids"], gpt2("great")["input_ids"]
    assert pair == first + gpt2("it was", add_special_tokens=False)["input_ids"]  # nothing between the texts
    with pytest.warns(UserWarning, match="puts nothing between the two texts of a pair"):
        check_pair_separator(TrainConfig(text_pair_column="b", model_name_or_path="gpt2"), gpt2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_pair_separator(TrainConfig(text_pair_column="b"), AutoTokenizer.from_pretrained(build_model_dir(models_root, "bert")))
        check_pair_separator(TrainConfig(), gpt2)  # no pairs, nothing to say


def test_ignore_mismatched_sizes_gives_a_classifier_of_other_labels_a_new_head(tiny_model, tmp_path, capsys):
    """A classifier trained on 3 labels, fine-tuned on 2: refused in one line naming --ignore_mismatched_sizes;
    with it the body is the checkpoint's, bit for bit, the head new with 2 rows, both said at start, and best/
    classifies with the data's labels. A --config_overrides that changes a weight's shape is refused naming the
    weight and both shapes; with the flag that weight is new and the others are loaded."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    trained = str(tmp_path / "three")
    config = AutoConfig.from_pretrained(tiny_model, num_labels=3, id2label={0: "negative", 1: "neutral", 2: "positive"},
                                        architectures=["DistilBertForSequenceClassification"])
    torch.manual_seed(0)
    original = AutoModelForSequenceClassification.from_config(config)
    original.save_pretrained(trained)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(trained)
    write_data(tmp_path, 64, 32)  # NEGATIVE / POSITIVE

    def args(*extra):
        return ["--model_name_or_path", trained, "--train_file", str(tmp_path / "train.jsonl"),
                "--validation_file", str(tmp_path / "validation.jsonl"), "--output_dir", str(tmp_path / "out"),
                "--overwrite_output_dir", "true", "--num_train_epochs", "1", "--learning_rate", "1e-3", *extra]

    with pytest.raises(UserError, match=r"head has 3 labels but the data has 2 \(NEGATIVE, POSITIVE\); add "
                                        r"--ignore_mismatched_sizes to train a new head"):
        Loop(parse_args(args())).setup()
    capsys.readouterr()
    lp = Loop(parse_args(args("--ignore_mismatched_sizes")))
    lp.setup()
    said = capsys.readouterr().out
    assert "the model's head was trained on 3 labels (negative, neutral, positive); a new one is made for the " \
           "data's 2" in said
    assert "new head: classifier.bias, classifier.weight (2 of another shape in the checkpoint)" in said
    ours, theirs = lp.model.state_dict(), original.state_dict()
    assert ours["classifier.weight"].shape == (2, theirs["classifier.weight"].shape[1])
    body = [k for k in theirs if not k.startswith("classifier.")]
    assert len(body) > 10 and all(torch.equal(ours[k], theirs[k]) for k in body)

    Loop(parse_args(args("--ignore_mismatched_sizes"))).fit()
    classify = pipeline("text-classification", model=str(tmp_path / "out" / "best"))
    assert {r["label"] for r in classify(["a superb lovely film", "an awful dull film"])} <= {"NEGATIVE", "POSITIVE"}

    best, v = str(tmp_path / "out" / "best"), config.vocab_size
    grown = ["--model_name_or_path", best, "--output_dir", str(tmp_path / "out2"), "--config_overrides", f"vocab_size={v + 9}"]
    with pytest.raises(UserError, match=rf"do not fit the model built from its config and --config_overrides "
                                        rf"\(distilbert.embeddings.word_embeddings.weight: \[{v}, 64\] in the "
                                        rf"checkpoint, \[{v + 9}, 64\] here\); drop the --config_overrides that change "
                                        rf"these shapes, or add --ignore_mismatched_sizes"):
        Loop(parse_args(args(*grown))).setup()
    lp = Loop(parse_args(args(*grown, "--ignore_mismatched_sizes")))
    lp.setup()
    assert "new weights: distilbert.embeddings.word_embeddings.weight (1 of another shape" in capsys.readouterr().out
    ours, theirs = lp.model.state_dict(), AutoModelForSequenceClassification.from_pretrained(best).state_dict()
    assert ours["distilbert.embeddings.word_embeddings.weight"].shape[0] == v + 9
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs if "word_embeddings" not in k)


def test_best_config_names_default_labels(tmp_path):
    """transformers 5 leaves id2label/label2id out of config.json where they are its defaults (two labels
    LABEL_0, LABEL_1): best/'s config.json names them anyway (a server reading config.json found none); named
    labels are left as transformers wrote them."""
    from transformers import AutoConfig, DistilBertConfig

    from loop.checkpoint import labels_in_config

    config = DistilBertConfig(n_layers=1, dim=32, hidden_dim=64, n_heads=2, num_labels=2)
    config.save_pretrained(tmp_path / "ids")
    labels_in_config(str(tmp_path / "ids"), config)
    saved = json.load(open(tmp_path / "ids" / "config.json"))
    assert saved["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"} and saved["label2id"] == {"LABEL_0": 0, "LABEL_1": 1}
    assert AutoConfig.from_pretrained(tmp_path / "ids").id2label == {0: "LABEL_0", 1: "LABEL_1"}
    config = DistilBertConfig(n_layers=1, dim=32, hidden_dim=64, n_heads=2, id2label={0: "NEG", 1: "POS"},
                              label2id={"NEG": 0, "POS": 1})
    config.save_pretrained(tmp_path / "named")
    before = (tmp_path / "named" / "config.json").read_text()
    labels_in_config(str(tmp_path / "named"), config)
    assert (tmp_path / "named" / "config.json").read_text() == before and '"NEG"' in before


def test_config_overrides_reach_the_rope_settings_transformers_5_keeps_in_a_dict(tmp_path, capsys):
    """audit52: transformers 5 keeps rope_theta (and a rope scaling's keys) in LlamaConfig.rope_parameters, a dict:
    `rope_theta=500000` was refused as 'not a field', and `rope_parameters={...}` as 'expected a dict', so no RoPE
    decoder's base could be changed. The old name sets the dict's key (said once), a JSON object sets its keys and
    keeps the others (commas inside it stay), and the model built from the config uses it."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from loop.models import configure

    out = str(tmp_path / "o")
    small = dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64, vocab_size=100,
                 num_hidden_layers=1)
    config = AutoConfig.for_model("llama", **small)
    configure(parse_args(["--output_dir", out, "--config_overrides", "rope_theta=500000"]), config, ["a", "b"])
    assert config.rope_parameters == {"rope_theta": 500000.0, "rope_type": "default"}
    assert "rope_theta is rope_parameters['rope_theta'] in LlamaConfig: 500000.0" in capsys.readouterr().out
    config = AutoConfig.for_model("llama", **small)
    configure(parse_args(["--output_dir", out, "--config_overrides",
                          'rope_parameters={"rope_type": "linear", "factor": 2.0},hidden_size=64']), config, ["a", "b"])
    assert config.rope_parameters == {"rope_theta": 10000.0, "rope_type": "linear", "factor": 2.0}
    assert config.hidden_size == 64
    model = AutoModelForSequenceClassification.from_config(config)
    assert model.config.rope_parameters["factor"] == 2.0
    with pytest.raises(UserError, match=r"--config_overrides rope_parameters=\[1\]: expected a JSON object like"):
        configure(parse_args(["--output_dir", out, "--config_overrides", "rope_parameters=[1]"]),
                  AutoConfig.for_model("llama", **small), ["a", "b"])
    for key in ("rope_thetaa", "b"):  # (b: a key of label2id, which the data sets, not a field)
        with pytest.raises(UserError, match=f"--config_overrides key '{key}' is not a field of LlamaConfig"):
            configure(parse_args(["--output_dir", out, "--config_overrides", f"{key}=1"]),
                      AutoConfig.for_model("llama", **small), ["a", "b"])


def test_loops_own_t5gemma_scores_a_text_alike_alone_and_in_a_padded_batch(tmp_path):
    """build_model applies scored_alike itself: the loop's own evaluation reads T5Gemma's texts as pipeline() does
    (audit58 a M05: without it the loop's scores differed from loop-predict's; the matrix test goes through
    pipeline())."""
    from loop import models
    from loop.config import parse_args

    path = build_model_dir(str(tmp_path), "t5gemma")
    cfg = parse_args(["--model_name_or_path", path, "--label_names", "NEGATIVE,POSITIVE",
                      "--output_dir", str(tmp_path / "o")])
    config = models.load_config(cfg)
    tok = models.load_tokenizer(cfg, config)
    model = models.build_model(cfg, config, ["NEGATIVE", "POSITIVE"], tok).eval()
    texts = ["good", "a long and boring film that never ends at all"]
    with torch.no_grad():
        together = model(**tok(texts, padding=True, return_tensors="pt")).logits
        for i, t in enumerate(texts):
            alone = model(**tok([t], return_tensors="pt")).logits[0]
            assert torch.allclose(alone, together[i], atol=1e-5), (t, alone, together[i])
    # plain pipeline() does not: best/'s model card says so (audit59 a4); of other models, nothing
    assert models.scored_otherwise_alone(model) == "T5Gemma"
    assert models.scored_otherwise_alone(torch.nn.Sequential(torch.nn.Linear(2, 2))) is None


def test_own_targets_puts_pefts_rewrite_back(tiny_model):
    """own_targets turns PEFT's transformers-4 rewrite off only while the adapter is built (audit58 a M09)."""
    pytest.importorskip("peft.utils.transformers_weight_conversion")  # (peft >= 0.19; the extra allows 0.13)
    from peft import LoraConfig
    from peft.utils import transformers_weight_conversion as conversion
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from loop.lora import own_targets

    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(tiny_model))
    before = conversion.convert_peft_config_for_transformers
    with own_targets(model, LoraConfig(target_modules=["q_lin"])):
        assert conversion.convert_peft_config_for_transformers is not before
    assert conversion.convert_peft_config_for_transformers is before


def test_lora_alpha_defaults_to_twice_the_rank(tiny_model, tmp_path):
    """--lora_alpha's default is 2 * r (README's table; config help): the adapters' scaling is 2 (audit58 a X02)."""
    pytest.importorskip("peft")
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from loop import parse_args
    from loop.lora import apply_lora

    cfg = parse_args(["--lora_r", "4", "--output_dir", str(tmp_path)])
    model = apply_lora(AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(tiny_model)), cfg)
    assert model.peft_config["default"].lora_alpha == 8
    from peft.tuners.lora import LoraLayer

    scalings = {m.scaling["default"] for m in model.modules() if isinstance(m, LoraLayer)}
    assert scalings == {2.0}, scalings


@pytest.mark.parametrize("value", ["1", "1.0"])
def test_lora_dropout_of_one_is_refused(value, tmp_path):
    """--lora_dropout 1 drops every input of the adapters: they would never train, silently (audit58 a C07)."""
    from loop import UserError, parse_args

    with pytest.raises(UserError, match=r"--lora_dropout must be at least 0 and below 1"):
        parse_args(["--lora_r", "8", "--lora_dropout", value, "--output_dir", str(tmp_path)])


def test_check_landmarks_refuses_more_landmarks_than_the_segment_length_too():
    """num_landmarks above segment_means_seq_len fails the same reshape (seq_len // num_landmarks is 0; audit58 a X01)."""
    from transformers import NystromformerConfig

    from loop.errors import UserError
    from loop.models import check_landmarks

    check_landmarks(NystromformerConfig(num_landmarks=32, segment_means_seq_len=32))
    for landmarks in (4, 64):
        with pytest.raises(UserError, match=rf"num_landmarks {landmarks} and segment_means_seq_len 32"):
            check_landmarks(NystromformerConfig(num_landmarks=landmarks, segment_means_seq_len=32))


def _tiny_t5gemma(**extra):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    family, kwargs = ARCHS["t5gemma"]
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(AutoConfig.for_model("t5gemma", num_labels=2, **kwargs,
                                                                                **extra))


@pytest.mark.skipif("t5gemma" not in ARCHS, reason="this transformers has no T5Gemma")
def test_only_an_encoder_decoder_t5gemma_gets_the_card_line_on_pipeline_scoring(tmp_path):
    """best/'s model card says pipeline() scores a T5Gemma text otherwise alone (its encoder-decoder head reads one
    position early); an encoder-only T5GemmaForSequenceClassification (is_encoder_decoder=False) reads its pooled
    encoder output and gets no such line (audit60 round-2 mutants mo8, mc2)."""
    from types import SimpleNamespace

    from loop import Loop, TrainConfig, modelcard, models

    pair, alone = _tiny_t5gemma(), _tiny_t5gemma(is_encoder_decoder=False)
    assert models.scored_otherwise_alone(pair) == "T5Gemma" and models.scored_otherwise_alone(alone) is None
    stand_in = Loop.__new__(Loop)  # a finished run's parts, as test_core's card test
    stand_in.__dict__.update(cfg=TrainConfig(output_dir=str(tmp_path / "o")), max_length=128, max_steps=10,
                             state=SimpleNamespace(global_step=5), tokenizer=None,
                             accelerator=SimpleNamespace(num_processes=1, mixed_precision="no"),
                             data=SimpleNamespace(carved=False, eval_split_name="validation", label_names=["a", "b"],
                                                  multi_label=False, regression=False))
    metrics = {"epoch": 1, "eval_accuracy": 0.9, "eval_loss": 0.3}
    line = "transformers' `pipeline()` scores a T5Gemma model's text otherwise alone than in a padded batch"
    stand_in.model = pair
    assert line in modelcard.render(stand_in, metrics)
    stand_in.model = alone
    assert "otherwise alone" not in modelcard.render(stand_in, metrics)


def test_position_limit_is_the_smallest_field_and_ignores_a_true_or_false_one():
    """A config with two position fields (max_position_embeddings and MPT's max_seq_len) is limited by the smaller;
    a field set to true/false by --config_overrides (bool is an int in Python) is no limit of 1 or 0 positions
    (audit60 round-2 mutants mo4, mo5)."""
    from transformers import AutoConfig

    from loop import models

    bert = AutoConfig.for_model("bert", max_position_embeddings=512)
    bert.max_seq_len = 128
    assert models.position_limit(bert) == 128
    bert.max_seq_len = 4096
    assert models.position_limit(bert) == 512
    assert models.position_limit(AutoConfig.for_model("bert", max_position_embeddings=512), {"max_seq_len": "true"}) == 512


def test_a_pad_token_id_override_the_tokenizer_pads_with_already_says_nothing(models_root, data, tmp_path):
    """--config_overrides pad_token_id=N where the tokenizer pads with N already: no 'padding with' line (nothing
    changed) (audit60 round-2 mutant mo1)."""
    from loop import models

    path = build_model_dir(models_root, "bert")
    config = models.load_config(parse_args(data_args(path, data, str(tmp_path / "c"))))
    pad = models.load_tokenizer(parse_args(data_args(path, data, str(tmp_path / "c"))), config).pad_token_id
    said = []
    cfg = parse_args(data_args(path, data, str(tmp_path / "c")) + ["--config_overrides", f"pad_token_id={pad}"])
    tokenizer = models.load_tokenizer(cfg, models.load_config(cfg), say=said.append)
    assert tokenizer.pad_token_id == pad and not [s for s in said if "padding with" in s], said


def test_a_umt5_is_named_on_the_card_only_under_a_transformers_before_5_18(monkeypatch):
    """scored_otherwise_alone names UMT5 (best/'s card then says pipeline() scores it otherwise alone) under a
    transformers before 5.18 (the GPU image's 5.17), whose pipeline() builds its decoder non-causal; from 5.18 on it is
    causal and the card says nothing (audit60 round-2 mutant mo7: here on 5.18+, the version is stood in for)."""
    import sys

    from transformers import AutoModelForSequenceClassification, UMT5Config

    from loop import models

    config = UMT5Config(vocab_size=100, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2, pad_token_id=0,
                        decoder_start_token_id=0)
    model = AutoModelForSequenceClassification.from_config(config)
    for version, named in (("5.17.0", "UMT5"), ("5.18.0", None), ("5.25.0", None)):
        monkeypatch.setattr(sys.modules["transformers"], "__version__", version)  # (what `import transformers` gives)
        assert models.scored_otherwise_alone(model) == named, version


def test_tokens_added_to_the_tokenizer_grow_the_embeddings_and_a_one_segment_model_gets_no_segment_ids(
        tiny_model, tmp_path):
    """Special tokens added to a model's tokenizer (<e1>, [E2]) ran past its embedding table: a run whose
    data held none trained and saved a best/ whose first such text died in predict.py with an IndexError, and one
    whose data held them was refused as 'another model's tokenizer'. The table grows to the tokenizer (as
    transformers' examples do), config and best/ with it. A BERT-style tokenizer (segment ids) beside a model with
    one segment embedding (RoBERTa's kind) gave a pair's second text segment id 1: an IndexError at the first batch
    of pairs; it gives no segment ids now (audit62 t2, t4)."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoTokenizer

    from loop import models

    grown = str(tmp_path / "grown")
    shutil.copytree(tiny_model, grown)
    tok = AutoTokenizer.from_pretrained(grown)
    rows = AutoConfig.from_pretrained(grown).vocab_size
    assert len(tok) <= rows
    tok.add_special_tokens({"additional_special_tokens": [f"<e{i}>" for i in range(rows - len(tok) + 3)]})
    tok.save_pretrained(grown)
    cfg = parse_args(["--model_name_or_path", grown, "--from_scratch", "true", "--output_dir", str(tmp_path / "o")])
    config = models.load_config(cfg)
    tok = models.load_tokenizer(cfg, config)
    model = models.build_model(cfg, config, ["NEG", "POS"], tokenizer=tok)
    assert model.get_input_embeddings().num_embeddings == len(tok) == rows + 3 == model.config.vocab_size
    with torch.no_grad():
        model(**tok([f"good <e{rows - len(tok) + 5}> film"], return_tensors="pt"))  # the last added token
    # a pad token added past the table: the model is built with its pad row before the table grows, which torch
    # refuses (a traceback): one line naming the pad id to use instead
    tok.add_special_tokens({"pad_token": "[NEWPAD]"})
    tok.save_pretrained(grown)
    with pytest.raises(UserError, match=r"^the tokenizer's pad token '\[NEWPAD\]' was added to it, with id 64, past "
                                        r"the model's 61 embeddings; pad with a token the model has: "
                                        r"--config_overrides pad_token_id=N, N below 61"):
        models.build_model(cfg, models.load_config(cfg), ["NEG", "POS"], tokenizer=models.load_tokenizer(cfg))

    one_segment = str(tmp_path / "one_segment")
    shutil.copytree(tiny_model, one_segment, ignore=shutil.ignore_patterns("config.json"))
    bert_style = AutoTokenizer.from_pretrained(one_segment, model_input_names=["input_ids", "token_type_ids",
                                                                               "attention_mask"])
    assert bert_style(["a good film"], ["a dull plot"])["token_type_ids"] == [[0, 0, 0, 0, 0, 1, 1, 1, 1]]
    bert_style.save_pretrained(one_segment)
    AutoConfig.for_model("roberta", vocab_size=rows, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=80, type_vocab_size=1).save_pretrained(one_segment)
    cfg = parse_args(["--model_name_or_path", one_segment, "--from_scratch", "true", "--output_dir",
                      str(tmp_path / "o2"), "--text_pair_column", "hypothesis"])
    config = models.load_config(cfg)
    tok = models.load_tokenizer(cfg, config)
    pair = tok(["a good film"], ["a dull plot"], return_tensors="pt")
    assert "token_type_ids" not in pair
    model = models.build_model(cfg, config, ["NEG", "POS"], tokenizer=tok)
    with torch.no_grad():
        model(**pair)
    tok.save_pretrained(tmp_path / "saved")  # best/'s tokenizer: pipeline() and predict.py give none either
    assert "token_type_ids" not in AutoTokenizer.from_pretrained(tmp_path / "saved")(["a"], ["b"])
    two_segments = AutoConfig.for_model("bert", vocab_size=rows, hidden_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=64)
    assert "token_type_ids" in models.load_tokenizer(parse_args(["--model_name_or_path", one_segment]),
                                                     two_segments)(["a"], ["b"])  # a BERT reads them: kept


def test_a_decoder_tokenizer_without_pad_or_eos_pads_with_bos_so_a_last_unknown_word_is_read(models_root):
    """audit62 t5: a decoder tokenizer with neither pad nor eos padded with unk; the head reads the last token that
    is not the pad, so a text ending in an unknown word was read at the word before it ("good zzz" scored as
    "good"). bos begins a text and never ends one: padding with it, the last word is read."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from loop import models

    path = build_model_dir(models_root, "llama")
    tok = AutoTokenizer.from_pretrained(path)
    tok.eos_token = None
    assert tok.pad_token is None and tok.unk_token == "<unk>" and tok.bos_token == "<s>"
    args = parse_args(["--model_name_or_path", path])
    config = models.configure(args, models.load_config(args), ["a", "b"])
    assert "padding with its bos token '<s>'" in models.prepare_padding(tok, config)
    models.sync_pad_token(config, tok)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, config=config).eval()
    with torch.no_grad():
        good, unknown_last = (model(**tok(t, return_tensors="pt")).logits for t in ("good", "good zzzz"))
    assert tok("good zzzz")["input_ids"][-1] == tok.unk_token_id
    assert not torch.allclose(good, unknown_last, atol=1e-4)


def test_a_tokenizer_best_would_not_load_back_is_refused_and_a_forced_class_named(tiny_model, tmp_path):
    """transformers 5 loads a qwen2 (phi3, modernbert, ...) folder's tokenizer as the type's own class whatever its
    tokenizer_config.json names (helper zoo F1, F2): --tokenizer_name of another class trained, and best/ came back
    from pipeline() as Qwen2Tokenizer reading every text as a few [UNK]s, each scored NEGATIVE, silently. Refused
    before any work; and the folder's own tokenizer of another class is named so, not as a folder without one."""
    import shutil

    import datasets
    from transformers import Qwen2Config

    from loop import data, models, synthetic

    qwen = tmp_path / "qwen2"
    Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                num_key_value_heads=2).save_pretrained(qwen)
    cfg = parse_args(["--model_name_or_path", str(qwen), "--tokenizer_name", tiny_model, "--from_scratch", "true"])
    with pytest.raises(UserError, match=r"^best/ would not load the tokenizer of --tokenizer_name '.*' back: "
                                        r"transformers loads the tokenizer of a 'qwen2' model's folder as "
                                        r"Qwen2Tokenizer whatever its tokenizer_config.json names, and that class "
                                        r"reads these files otherwise \(\d+ tokens for a sentence TokenizersBackend "
                                        r"reads as \d+\), so pipeline\(\) would score other inputs than training"):
        models.load_tokenizer(cfg, models.load_config(cfg))
    bert = parse_args(["--model_name_or_path", tiny_model, "--tokenizer_name", tiny_model])
    models.load_tokenizer(bert, models.load_config(bert))  # (a tokenizer that loads back as itself)

    for name in os.listdir(tiny_model):
        if name.startswith("tokenizer"):
            shutil.copy(os.path.join(tiny_model, name), qwen)
    own = parse_args(["--model_name_or_path", str(qwen)])
    tok = models.load_tokenizer(own, models.load_config(own))
    rows = datasets.Dataset.from_list(synthetic.make_rows(50))
    with pytest.raises(UserError, match=r"transformers loaded that folder's tokenizer as Qwen2Tokenizer, the class it "
                                        r"fixes for this model type, not the TokenizersBackend its "
                                        r"tokenizer_config.json names, and that class does not read its files"):
        data.check_unknown_tokens(own, tok, rows)
    # a class name transformers reads as another of its kind is not a fixed class (review rev2 F2): an Electra
    # folder's ElectraTokenizer loads as BertTokenizer, and the old line ("it does not fit this text") stands
    electra = tmp_path / "electra"
    electra.mkdir()
    (electra / "config.json").write_text('{"model_type": "electra"}')
    (electra / "tokenizer_config.json").write_text('{"tokenizer_class": "ElectraTokenizer"}')
    assert models.forced_class(str(electra), type("BertTokenizer", (), {})()) is None
    assert models.forced_class(str(qwen), type("BertTokenizer", (), {})()) == "TokenizersBackend"


def test_a_decoder_builds_no_cache_of_keys_and_values_in_training_evaluation_or_prediction(models_root, data,
                                                                                            tmp_path):
    """use_cache was left on: a decoder's every forward built a cache of each layer's keys and values and held it
    until it returned (an evaluation batch of a 7B model: GBs; helper zoo2 F1). Off in the built model, in best/
    and in loop-predict's pipeline, also for a Hub model whose config has it on."""
    from transformers import AutoConfig

    from loop import predict

    model = build_model_dir(models_root, "llama")
    assert AutoConfig.from_pretrained(model).use_cache is True  # (the base's own config)
    out = str(tmp_path / "out")
    lp = Loop(parse_args(data_args(model, data, out)))
    lp.fit()
    with torch.no_grad():
        outputs = lp.unwrapped_model.eval()(input_ids=torch.tensor([[5, 6, 7, 8]]))
    assert getattr(outputs, "past_key_values", None) is None
    best = os.path.join(out, "best")
    assert json.load(open(os.path.join(best, "config.json")))["use_cache"] is False
    edited = json.load(open(os.path.join(best, "config.json")))
    json.dump(dict(edited, use_cache=True), open(os.path.join(best, "config.json"), "w"))  # as a Hub model has it
    clf = predict.load(best, None, False)
    assert clf.model.config.use_cache is False
