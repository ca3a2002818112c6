"""audit65 m8: behaviour of loop/models.py and loop/hub.py that mutation testing found unpinned.

Each test kills one or more hand-made mutants (named in its docstring) that the rest of the suite let
through: tiny models built from a config (offline, no weights beyond a few KB), called directly.
"""

import os

import pytest
import torch

from loop import UserError, parse_args
from test_models import build_model_dir, make_tokenizer
from test_everyday import prepared


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("mutant_models"))


@pytest.fixture(autouse=True)
def data_files(tmp_path, monkeypatch):
    """t.jsonl and v.jsonl in the test's own folder, its working directory (parse_args checks data files)."""
    monkeypatch.chdir(tmp_path)
    for name in ("t.jsonl", "v.jsonl"):
        (tmp_path / name).write_text('{"text": "good", "label": "a"}\n')


def args(path, *extra):
    return parse_args(["--model_name_or_path", path, "--output_dir", "unused_out", *extra])


# ------------------------------------------------------------------ pad tokens and padding sides


def test_a_decoder_pads_with_its_eos_and_a_gpt2_pads_right(root):
    """The pad token of a decoder LM without one is its eos (not bos, not unk), on the right for GPT-2 (whose
    config's summary_type is 'cls_index', not 'last'); left only for XLNet's 'last'.
    Kills: m18 (unk first), m19 (bos first), m16 (left for any summary_type but 'first')."""
    from transformers import AutoConfig, AutoTokenizer

    from loop import models

    path = build_model_dir(root, "gpt2")
    config = models.load_config(args(path))
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.pad_token is None and tok.eos_token == "</s>"
    note = models.prepare_padding(tok, config)
    assert tok.pad_token == "</s>" and tok.pad_token_id == tok.eos_token_id
    assert note == f"the tokenizer has no pad token; padding with its eos token '</s>' (id {tok.eos_token_id}) on the right."
    assert config.summary_type == "cls_index" and models.padding_side(config) == "right"
    assert models.padding_side(AutoConfig.for_model("xlnet")) == "left"
    assert models.padding_side(AutoConfig.for_model("bert")) == "right"


def test_a_tokenizer_with_only_sep_and_cls_pads_with_sep_and_one_with_a_pad_keeps_it(tmp_path):
    """An encoder tokenizer without pad, eos, bos or unk pads with its sep token; one with a pad token keeps it
    and no line is said. Kills: m20 (sep/cls fallbacks dropped: a refusal), m21 (the pad check inverted)."""
    from transformers import AutoConfig, AutoTokenizer

    from loop import models

    make_tokenizer(str(tmp_path), "enc")
    config = AutoConfig.for_model("bert")
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert models.prepare_padding(tok, config) is None and tok.pad_token == "[PAD]"
    tok.pad_token = tok.unk_token = None
    assert tok.eos_token is None and tok.bos_token is None
    assert "its sep token '[SEP]'" in models.prepare_padding(tok, config)
    assert tok.pad_token == "[SEP]"
    tok.pad_token = tok.sep_token = tok.cls_token = None
    with pytest.raises(UserError, match="the tokenizer has no pad, eos, unk, bos, sep or cls token"):
        models.prepare_padding(tok, config)


def test_the_padding_side_and_truncation_side_are_saved_with_the_tokenizer(root, tmp_path):
    """best/'s tokenizer pads and truncates where training did, for pipeline(): XLNet's left padding and
    --truncation_side left reach tokenizer_config.json.
    Kills: m17 (padding_side not in init_kwargs), m11 (truncation_side not in init_kwargs)."""
    from transformers import AutoTokenizer

    from loop import models

    path = build_model_dir(root, "xlnet")
    cfg = args(path, "--truncation_side", "left")
    tok = models.load_tokenizer(cfg, models.load_config(cfg))
    assert tok.padding_side == "left" and tok.truncation_side == "left"
    tok.save_pretrained(tmp_path / "best")
    again = AutoTokenizer.from_pretrained(tmp_path / "best")
    assert again.padding_side == "left" and again.truncation_side == "left"


def test_an_encoder_decoder_tokenizer_reads_a_literal_eos_as_text_after_a_save(root, tmp_path):
    """BART's head reads the last eos: '</s>' inside a text must stay text, in the run and in best/.
    Kills: m09 (split_special_tokens False), m10 (not saved in init_kwargs)."""
    from transformers import AutoTokenizer

    from loop import models

    path = build_model_dir(root, "bart")
    cfg = args(path)
    tok = models.load_tokenizer(cfg, models.load_config(cfg))
    eos = tok.eos_token_id
    assert tok("good </s> film")["input_ids"].count(eos) == 1
    tok.save_pretrained(tmp_path / "best")
    assert AutoTokenizer.from_pretrained(tmp_path / "best")("good </s> film")["input_ids"].count(eos) == 1


def test_tokenizer_name_is_the_tokenizer_loaded(root):
    """--tokenizer_name is the tokenizer used, not the model's. Kills: m04."""
    from loop import models

    model = build_model_dir(root, "bert")
    other = build_model_dir(root, "gpt2")
    tok = models.load_tokenizer(args(model, "--tokenizer_name", other))
    assert tok.bos_token == "<s>" and "[CLS]" not in tok.get_vocab()


def test_a_pad_token_id_override_of_a_tokenizer_with_a_pad_changes_it_and_the_model_config(root):
    """--config_overrides pad_token_id=N on a tokenizer that pads with another token: the tokenizer pads with N
    and the built model's config says N. Kills: m13 (the check inverted: nothing changed), m14 (only said)."""
    from loop import models

    path = build_model_dir(root, "bert")
    said = []
    cfg = args(path, "--from_scratch", "true", "--config_overrides", "pad_token_id=3")
    config = models.load_config(cfg)
    tok = models.load_tokenizer(cfg, config, say=said.append)
    assert tok.pad_token_id == 3 and tok.pad_token == "[SEP]"
    assert said == ["padding with '[SEP]' (id 3), as --config_overrides pad_token_id=3 asks."]
    model = models.build_model(cfg, config, ["a", "b"], tokenizer=tok)
    assert model.config.pad_token_id == 3
    batch = tok(["good", "a dull plot"], padding=True)
    assert batch["input_ids"][0][-1] == 3


# ------------------------------------------------------------------ pad ids in the model config


def test_sync_pad_token_sets_the_eos_of_an_encoder_decoder_only_and_refuses_a_pad_at_the_table_end(root):
    """An encoder-decoder's config takes the tokenizer's eos id (its head finds the text's last eos by it); a
    decoder's eos is left alone; a pad id equal to the vocabulary size is outside the table.
    Kills: m63 (eos not synced), m66 (eos synced for decoders too), m62 (> for >=), m65 (pad not set), m64 (a nested
    text config left out)."""
    from types import SimpleNamespace

    from transformers import AutoConfig

    from loop import models

    bart = AutoConfig.for_model("bart", vocab_size=50, eos_token_id=7, pad_token_id=9)
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=1, pad_token="<pad>")
    models.sync_pad_token(bart, tok)
    assert (bart.pad_token_id, bart.eos_token_id) == (0, 1)
    gpt2 = AutoConfig.for_model("gpt2", vocab_size=50, eos_token_id=7, pad_token_id=None)
    models.sync_pad_token(gpt2, tok)
    assert (gpt2.pad_token_id, gpt2.eos_token_id) == (0, 7)
    gemma3 = AutoConfig.for_model("gemma3")  # its text model's config is nested: that is the one the model reads
    assert gemma3.get_text_config() is not gemma3
    models.sync_pad_token(gemma3, SimpleNamespace(pad_token_id=3, eos_token_id=1, pad_token="<x>"))
    assert gemma3.get_text_config().pad_token_id == 3

    class Tok:  # a pad id at the vocabulary's size (no tokens added past it)
        pad_token_id, eos_token_id, pad_token, vocab_size = 50, 1, "<x>", 51

        def __len__(self):
            return 51

    with pytest.raises(UserError, match="has id 50, outside the model's 50 embeddings"):
        models.sync_pad_token(AutoConfig.for_model("gpt2", vocab_size=50), Tok())


def test_a_tokenizer_without_a_pad_leaves_the_config_pad_alone():
    """sync_pad_token with a tokenizer that has no pad id (a custom build's): nothing to sync, no crash.
    Kills: m61 (None compared with the vocabulary size: TypeError)."""
    from types import SimpleNamespace

    from transformers import AutoConfig

    from loop import models

    config = AutoConfig.for_model("gpt2", vocab_size=50, pad_token_id=5)
    models.sync_pad_token(config, SimpleNamespace(pad_token_id=None, eos_token_id=1))
    assert config.pad_token_id == 5


def test_the_built_decoder_model_config_pads_with_the_tokenizers_eos(root):
    """build_model puts the tokenizer's pad id into the model config (GPT-2's own config names none: the head
    could not find a text's last token in a batch). Kills: m67 (sync_pad_token not called)."""
    from loop import models

    path = build_model_dir(root, "gpt2")
    cfg = args(path)
    config = models.load_config(cfg)
    tok = models.load_tokenizer(cfg, config)
    model = models.build_model(cfg, config, ["a", "b"], tokenizer=tok)
    assert model.config.pad_token_id == tok.eos_token_id is not None


# ------------------------------------------------------------------ dtype


def test_a_checkpoint_stored_in_bfloat16_is_trained_in_float32(root, tmp_path):
    """A checkpoint stored in bfloat16: the loop's master weights are float32 all the same (from_pretrained is
    given dtype=float32). Kills: m69 (weights_dtype ignores --torch_dtype)."""
    from transformers import AutoModel

    from loop import models

    path = build_model_dir(root, "bert")
    half = str(tmp_path / "bf16")
    import shutil

    shutil.copytree(path, half)
    AutoModel.from_pretrained(path).to(torch.bfloat16).save_pretrained(half)
    cfg = args(half)
    config = models.load_config(cfg)
    tok = models.load_tokenizer(cfg, config)
    model = models.build_model(cfg, config, ["a", "b"], tokenizer=tok)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    from types import SimpleNamespace

    assert models.weights_dtype(SimpleNamespace(torch_dtype="bfloat16")) == torch.bfloat16
    assert models.weights_dtype(args(half)) == torch.float32


# ------------------------------------------------------------------ labels


def test_labels_go_into_the_config_in_the_data_s_order(root):
    """id2label, label2id and num_labels follow the data's label order (3 labels on a BART whose config says 3
    by default, and 4 on a BERT), and a multi-label run's problem type wins over regression's.
    Kills: m45 (sorted names), m46 (label2id reversed), m47 (num_labels not set), m49 (regression first)."""
    from transformers import AutoConfig

    from loop import models

    cfg = args(build_model_dir(root, "bert"))
    config = models.configure(cfg, AutoConfig.for_model("bert"), ["pos", "neg", "mid", "zero"])
    assert config.id2label == {0: "pos", 1: "neg", 2: "mid", 3: "zero"}
    assert config.label2id == {"pos": 0, "neg": 1, "mid": 2, "zero": 3}
    assert config.num_labels == 4 and models.config_labels(config) == ["pos", "neg", "mid", "zero"]
    config = models.configure(cfg, AutoConfig.for_model("bert"), ["b", "a"], multi_label=True, regression=True)
    assert config.problem_type == "multi_label_classification"


def test_single_label_data_on_a_multi_label_or_regression_head_goes_back_to_single_label(root):
    """A config trained multi-label (or as a regression) given single-label data: softmax cross-entropy again.
    Kills: m48."""
    from transformers import AutoConfig

    from loop import models

    cfg = args(build_model_dir(root, "bert"))
    for kind in ("multi_label_classification", "regression"):
        config = AutoConfig.for_model("bert", problem_type=kind)
        assert models.configure(cfg, config, ["a", "b"]).problem_type == "single_label_classification"


def test_a_trained_head_s_label_names_and_problem():
    """trained_head_labels: named labels of a classifier, None for LABEL_i defaults or --from_scratch;
    trained_problem says regression for one output.
    Kills: m40 (from_scratch ignored), m41 (LABEL_i taken as names), m43."""
    from transformers import AutoConfig

    from loop import models

    named = AutoConfig.for_model("bert", architectures=["BertForSequenceClassification"],
                                 id2label={0: "NEG", 1: "POS"}, label2id={"NEG": 0, "POS": 1})
    assert models.trained_head_labels(parse_args([]), named) == ["NEG", "POS"]
    assert models.trained_head_labels(parse_args(["--from_scratch", "true"]), named) is None
    default = AutoConfig.for_model("bert", architectures=["BertForSequenceClassification"], num_labels=3)
    assert models.trained_head_labels(parse_args([]), default) is None
    one = AutoConfig.for_model("bert", num_labels=1)
    assert models.trained_problem(one) == "regression"
    assert models.trained_problem(AutoConfig.for_model("bert", num_labels=2)) is None


def test_from_scratch_on_a_classifier_config_of_other_labels_builds_a_new_head(root, tmp_path):
    """--from_scratch on a folder whose config is a 3-label classifier: nothing is reused, so 2 data labels are
    not refused as a mismatched head. Kills: m44 (from_scratch ignored: refused)."""
    from transformers import AutoConfig

    from loop import models

    path = build_model_dir(root, "bert")
    folder = tmp_path / "clf"
    import shutil

    shutil.copytree(path, folder)
    config = AutoConfig.from_pretrained(folder)
    config.architectures = ["BertForSequenceClassification"]
    config.num_labels = 3
    config.save_pretrained(folder)
    cfg = args(str(folder), "--from_scratch", "true")
    config = models.configure(cfg, models.load_config(cfg), ["a", "b"])
    assert config.num_labels == 2
    with pytest.raises(UserError, match="the model's classification head has 3 labels but the data has 2"):
        models.configure(args(str(folder)), models.load_config(cfg), ["a", "b"])


def test_ignore_mismatched_sizes_says_the_new_head_without_a_names_warning(root, tmp_path, recwarn):
    """A trained 3-label head, 2 data labels with --ignore_mismatched_sizes: a new head, and no warning that the
    old names are reused (nothing of the old head is). Kills: m50."""
    from transformers import AutoConfig

    from loop import models

    config = AutoConfig.for_model("bert", architectures=["BertForSequenceClassification"],
                                  id2label={0: "x", 1: "y", 2: "z"}, label2id={"x": 0, "y": 1, "z": 2})
    models.configure(args(build_model_dir(root, "bert"), "--ignore_mismatched_sizes", "true"), config, ["a", "b"])
    assert config.num_labels == 2
    assert not [w for w in recwarn if "reused" in str(w.message)]


def test_the_same_label_names_in_another_case_are_not_warned_about(root, recwarn):
    """A trained head's labels NEG/POS and the data's neg/pos: the same labels, no warning. Kills: m51."""
    from transformers import AutoConfig

    from loop import models

    config = AutoConfig.for_model("bert", architectures=["BertForSequenceClassification"],
                                  id2label={0: "NEG", 1: "POS"}, label2id={"NEG": 0, "POS": 1})
    models.configure(args(build_model_dir(root, "bert")), config, ["neg", "pos"])
    assert not [w for w in recwarn if "reused" in str(w.message)]
    models.configure(args(build_model_dir(root, "bert")), config, ["pos", "neg"])
    assert [w for w in recwarn if "reused" in str(w.message)]


# ------------------------------------------------------------------ lengths and positions


def test_max_length_rules(root):
    """--max_length is capped at the model's positions and the tokenizer's model_max_length; without it the
    limit is capped at 512; a model without a limit takes the length asked.
    Kills: m24 (tokenizer's limit ignored), m26 (length asked ignored), m27 (512 cap dropped), m28 (boundary)."""
    from types import SimpleNamespace

    from transformers import AutoConfig

    from loop import models

    def tok(limit, pad=0):
        return SimpleNamespace(init_kwargs={}, model_max_length=limit, pad_token_id=pad)

    bert = AutoConfig.for_model("bert", max_position_embeddings=2048)
    assert models.max_length(parse_args([]), bert, tok(10**30)) == 512
    assert models.max_length(parse_args(["--max_length", "64"]), bert, tok(50)) == 50
    with pytest.warns(UserWarning, match="above the model's limit of 2048"):
        assert models.max_length(parse_args(["--max_length", "2049"]), bert, tok(10**30)) == 2048
    assert models.max_length(parse_args(["--max_length", "2048"]), bert, tok(10**30)) == 2048
    t5 = AutoConfig.for_model("t5")
    assert models.max_length(parse_args(["--max_length", "1000"]), t5, tok(10**30)) == 1000
    assert models.max_length(parse_args([]), t5, tok(10**30)) == 512


def test_max_length_reads_a_position_override_and_the_tokenizers_pad(root):
    """--config_overrides max_position_embeddings=N is the limit before it reaches the config; a RoBERTa's
    positions start after the tokenizer's pad id (the id it is built with), not its config's.
    Kills: m29 (pad id of the tokenizer ignored), m30 (overrides ignored), m31 (pad fixed at 1), m32."""
    from types import SimpleNamespace

    from transformers import AutoConfig

    from loop import models

    roberta = AutoConfig.for_model("roberta", max_position_embeddings=100, pad_token_id=1)
    tok = SimpleNamespace(init_kwargs={}, model_max_length=10**30, pad_token_id=5)
    assert models.max_length(parse_args([]), roberta, tok) == 100 - 5 - 1
    assert models.position_limit(roberta, pad_id=0) == 99
    assert models.max_length(parse_args(["--config_overrides", "max_position_embeddings=60"]), roberta, tok) == 54
    bert = AutoConfig.for_model("bert", max_position_embeddings=512)
    assert models.max_length(parse_args(["--config_overrides", "max_position_embeddings=40"]), bert, tok) == 40


def test_record_max_length_keeps_the_tokenizers_first_limit_and_none_for_unlimited():
    """record_max_length keeps the tokenizer's own limit once (a second record keeps the first), and None where
    it had none (10**30). Kills: m22 (10**30 kept as a limit), m23 (overwritten by the second record)."""
    from types import SimpleNamespace

    from loop import models

    tok = SimpleNamespace(init_kwargs={}, model_max_length=256)
    models.record_max_length(tok, 64)
    models.record_max_length(tok, 32)
    assert tok.init_kwargs[models.OWN_LIMIT] == 256 and tok.model_max_length == 32
    tok = SimpleNamespace(init_kwargs={}, model_max_length=int(1e30))
    models.record_max_length(tok, 64)
    assert tok.init_kwargs[models.OWN_LIMIT] is None


def test_eval_only_scores_a_recorded_length_capped_by_the_model(root):
    """--eval_only on a best/ that recorded 300 tokens for a model of 128 positions: 128. Kills: m25."""
    from types import SimpleNamespace

    from transformers import AutoConfig

    from loop import models

    tok = SimpleNamespace(init_kwargs={models.OWN_LIMIT: None}, model_max_length=300, pad_token_id=0)
    cfg = parse_args(["--eval_only", "true", "--model_name_or_path", "x", "--validation_file", "v.jsonl"])
    assert models.max_length(cfg, AutoConfig.for_model("bert", max_position_embeddings=128), tok) == 128


def test_position_limit_ignores_booleans_and_takes_the_smallest():
    """Kills: m33 (True counted as 1), m34 (the largest field)."""
    from types import SimpleNamespace

    from loop import models

    assert models.position_limit(SimpleNamespace(max_position_embeddings=True, n_positions=64)) == 64
    assert models.position_limit(SimpleNamespace(max_position_embeddings=128, max_seq_len=64)) == 64


# ------------------------------------------------------------------ --config_overrides values


def test_config_override_values_are_typed():
    """Kills: m35 (true/false swapped), m36 (3 parsed as 3.0), m37 ('1' not true), m38 (a dict field's other
    keys lost), m39 (an int field parsed loosely: '2.5' accepted)."""
    from loop import models

    assert models.parse_value("true") is True and models.parse_value("False") is False
    assert models.parse_value("3") == 3 and isinstance(models.parse_value("3"), int)
    assert models.parse_value("[1, 2.5]") == [1, 2.5]
    assert models.typed_value("flag", "1", False) is True and models.typed_value("flag", "0", True) is False
    assert models.typed_value("rope", '{"factor": 2.0}', {"rope_type": "linear", "factor": 1.0}) == \
        {"rope_type": "linear", "factor": 2.0}
    with pytest.raises(UserError, match="expected an int"):
        models.typed_value("num_hidden_layers", "2.5", 2)


def test_xlnet_is_configured_without_memories_in_evaluation():
    """XLNet's use_mems_eval goes off (pipeline() cannot unbatch memories). Kills: m52."""
    from transformers import AutoConfig

    from loop import models

    config = AutoConfig.for_model("xlnet", use_mems_eval=True)
    assert models.configure(parse_args([]), config, ["a", "b"]).use_mems_eval is False


def test_a_label_map_is_not_a_config_overrides_holder():
    """--config_overrides NEG=1 on a config whose labels are NEG/POS: not a field; the labels come from the data.
    Kills: m53 (id2label/label2id taken as the dict holding the key)."""
    from transformers import AutoConfig

    from loop import models

    config = AutoConfig.for_model("bert", num_labels=2)
    config.id2label, config.label2id = {0: "NEG", 1: "POS"}, {"NEG": 0, "POS": 1}
    with pytest.raises(UserError, match="--config_overrides key 'NEG' is not a field of BertConfig"):
        models.apply_overrides(parse_args(["--config_overrides", "NEG=1"]), config)


def test_nystromformer_with_other_landmarks_than_the_segment_is_refused_either_way():
    """Fewer or more landmarks than segment_means_seq_len: refused; equal: taken. Kills: m57 (only more refused)."""
    from transformers import AutoConfig

    from loop import models

    for landmarks in (32, 128):
        config = AutoConfig.for_model("nystromformer", num_landmarks=landmarks, segment_means_seq_len=64)
        with pytest.raises(UserError, match=f"num_landmarks {landmarks} and segment_means_seq_len 64"):
            models.check_landmarks(config)
    models.check_landmarks(AutoConfig.for_model("nystromformer", num_landmarks=64, segment_means_seq_len=64))


# ------------------------------------------------------------------ embeddings and vocabulary


def test_grow_embeddings_only_for_tokens_added_past_the_table_and_exactly_to_the_tokenizer(root):
    """Kills: m58 (a bigger own vocabulary grows too), m59 (a tokenizer exactly the table's size counts),
    m60 (the table grows past the tokenizer)."""
    from loop import models

    class Tok:
        def __init__(self, vocab, total):
            self.vocab_size, self.total = vocab, total

        def __len__(self):
            return self.total

    assert models.added_tokens_past(Tok(50, 53), 50) and not models.added_tokens_past(Tok(60, 63), 50)
    assert not models.added_tokens_past(Tok(50, 50), 50)
    model = torch.nn.Module()
    emb = torch.nn.Embedding(50, 4)
    sizes = []
    model.get_input_embeddings = lambda: emb
    model.resize_token_embeddings = sizes.append
    models.grow_embeddings(model, Tok(50, 53))
    assert sizes == [53]


def test_check_vocabulary_refuses_the_id_equal_to_the_table_size(root):
    """A token id equal to the number of rows is one past the table. Kills: m77."""
    from loop import models

    model = torch.nn.Module()
    emb = torch.nn.Embedding(50, 4)
    model.get_input_embeddings = lambda: emb
    models.check_vocabulary(parse_args([]), model, 49)
    with pytest.raises(UserError, match="token ids up to 50 but the model's embedding table has 50 rows"):
        models.check_vocabulary(parse_args([]), model, 50)


# ------------------------------------------------------------------ building


def test_eval_only_refuses_a_model_whose_head_would_be_new(root):
    """--eval_only on a base model folder (no trained head): refused, not scored at random. Kills: m70."""
    from loop import models

    path = build_model_dir(root, "bert")
    cfg = parse_args(["--model_name_or_path", path, "--eval_only", "true", "--validation_file", "v.jsonl",
                      "--output_dir", "unused_out"])
    config = models.load_config(cfg)
    with pytest.raises(UserError, match="has no trained weights for classifier"):
        models.build_model(cfg, config, ["a", "b"], tokenizer=models.load_tokenizer(cfg, config))


def test_weights_of_another_shape_are_refused_without_ignore_mismatched_sizes(root, tmp_path):
    """A checkpoint whose embeddings do not fit its config (vocab_size overridden) is refused, naming the flag:
    not silently started anew. Kills: m72 (ignore_mismatched_sizes always on)."""
    from loop import models

    path = build_model_dir(root, "bert")
    cfg = args(path, "--config_overrides", "vocab_size=80")
    config = models.load_config(cfg)
    with pytest.raises(UserError, match="ignore_mismatched_sizes"):
        models.build_model(cfg, config, ["a", "b"], tokenizer=models.load_tokenizer(cfg, config))


def test_damaged_weights_under_eval_only_are_one_line_naming_eval_only(root, tmp_path):
    """A trained classifier folder whose weight file is damaged: under --eval_only the line says so.
    Kills: m76."""
    import shutil

    from transformers import AutoConfig

    from loop import models

    folder = tmp_path / "clf"
    shutil.copytree(build_model_dir(root, "bert"), folder)
    config = AutoConfig.from_pretrained(folder)
    config.architectures = ["BertForSequenceClassification"]
    config.save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    cfg = parse_args(["--model_name_or_path", str(folder), "--eval_only", "true", "--validation_file", "v.jsonl",
                      "--output_dir", "unused_out"])
    config = models.load_config(cfg)
    with pytest.raises(UserError, match="^--eval_only scores a trained classifier, but the weights of"):
        models.build_model(cfg, config, ["a", "b"], tokenizer=models.load_tokenizer(cfg, config))


def test_a_model_type_without_a_classification_head_is_one_line(tmp_path):
    """A config of a type transformers has no sequence-classification head for. Kills: m75."""
    from transformers import AutoConfig

    from loop import models

    AutoConfig.for_model("clip_vision_model", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64).save_pretrained(tmp_path)
    cfg = args(str(tmp_path), "--from_scratch", "true")
    with pytest.raises(UserError, match="transformers has no sequence-classification head for model type") as e:
        models.build_model(cfg, models.load_config(cfg), ["a", "b"])
    # and what to do instead (helper zoo2 F6: LED, a long-text model, was refused naming no way forward)
    assert str(e.value).endswith("; use a model of a type that AutoModelForSequenceClassification lists (for long "
                                 "texts: longformer, big_bird, bigbird_pegasus).")


def test_a_folder_without_config_is_named_as_what_it_is(tmp_path):
    """A run's output folder as --model_name_or_path: named (pass its best/), not 'a folder without config.json'
    alone. Kills: m03."""
    from loop import models

    out = tmp_path / "run"
    (out / "best").mkdir(parents=True)
    (out / "best" / "config.json").write_text("{}")
    (out / "best_metrics.json").write_text("{}")
    with pytest.raises(UserError) as e:
        models.load_config(args(str(out)))
    assert "best" in str(e.value) and "without a usable config.json" not in str(e.value)


# ------------------------------------------------------------------ hub.py


@pytest.fixture
def offline_env(monkeypatch, tmp_path):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    return monkeypatch


def test_offline_variable_per_library(offline_env):
    """HF_HUB_OFFLINE when set (even to 0) rules over TRANSFORMERS_OFFLINE; HF_DATASETS_OFFLINE holds datasets
    only; '0' and 'no' are not on. Kills: h07, h08, h09."""
    from loop import hub

    offline_env.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub.offline_variable("model") == "TRANSFORMERS_OFFLINE"
    offline_env.setenv("HF_HUB_OFFLINE", "0")
    assert hub.offline_variable("model") is None
    offline_env.delenv("HF_HUB_OFFLINE")
    offline_env.delenv("TRANSFORMERS_OFFLINE")
    offline_env.setenv("HF_DATASETS_OFFLINE", "1")
    assert hub.offline_variable("model") is None and hub.offline_variable("dataset") == "HF_DATASETS_OFFLINE"
    offline_env.setenv("HF_DATASETS_OFFLINE", "no")
    assert hub.offline_variable("dataset") is None


def test_hub_names_are_only_the_options_not_found_here(offline_env, tmp_path):
    """A local model folder and tokenizer folder are no Hub names; a dataset name counts only without data files.
    Kills: h01, h02, h03."""
    from loop import hub

    model = tmp_path / "m"
    model.mkdir()
    cfg = parse_args(["--model_name_or_path", str(model), "--tokenizer_name", str(model), "--dataset_name", "org/d",
                      "--train_file", "t.jsonl", "--validation_file", "v.jsonl"])
    assert hub.hub_names(cfg) == []
    cfg = parse_args(["--model_name_or_path", str(model), "--eval_only", "true", "--validation_file", "v.jsonl",
                      "--dataset_name", "org/d"])  # --eval_only: the validation file alone replaces the dataset
    assert hub.hub_names(cfg) == []
    cfg = parse_args(["--model_name_or_path", "org/m", "--tokenizer_name", "org/t", "--dataset_name", "org/d"])
    assert [n[:2] for n in hub.hub_names(cfg)] == [("--model_name_or_path", "org/m"), ("--tokenizer_name", "org/t"),
                                                   ("--dataset_name", "org/d")]


def test_a_tokenizer_repo_with_one_of_its_files_cached_counts_as_cached(offline_env, tmp_path):
    """Kills: h04 (every probe file required)."""
    from conftest import hub_cache_repo

    from loop import hub

    hub_cache_repo(tmp_path / "hub", "org/tok", {"tokenizer.json": "{}"})
    assert hub.cached("org/tok", "model", ("tokenizer_config.json", "tokenizer.json"))


def test_a_relative_path_is_not_a_hub_name_and_a_folder_typo_is_named(offline_env, tmp_path):
    """Kills: h05 ('./best' taken for a Hub id), h06 (the typo hint dropped), h15 (a path taken for a Hub name)."""
    from loop import hub

    assert not hub.hub_name("./best") and hub.hub_name("org/name")
    offline_env.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    assert hub.folder_typo("out/bets") == " (though 'out' is a folder here)"
    offline_env.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"^--model_name_or_path '\./nothere' is not a folder"):
        hub.check(parse_args(["--model_name_or_path", "./nothere", "--train_file", "t.jsonl"]))


def test_offline_with_everything_cached_is_silent_and_online_checks_reachability(offline_env, tmp_path):
    """HF_HUB_OFFLINE=1 and the model cached: no probe of the Hub and no line; without it, a reachable Hub
    returns None at once, an unreachable one with the model cached goes offline with a line.
    Kills: h12 (probed offline), h13 (no probe), h14 (offline line though offline already), h10."""
    import huggingface_hub.constants

    from conftest import hub_cache_repo

    from loop import hub

    hub_cache_repo(tmp_path / "hub", "org/m", {"config.json": "{}"})
    cfg = parse_args(["--model_name_or_path", "org/m", "--train_file", "t.jsonl"])
    probes = []
    offline_env.setattr(hub, "reachable", lambda *a: probes.append(1) or False)
    offline_env.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    offline_env.setenv("HF_HUB_OFFLINE", "1")
    assert hub.check(cfg) is None and probes == []
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False
    offline_env.delenv("HF_HUB_OFFLINE")
    said = hub.check(cfg)
    assert probes == [1] and said.startswith("the Hugging Face Hub cannot be reached: 'org/m' read from the cache")
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    offline_env.setattr(hub, "reachable", lambda *a: True)
    offline_env.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    assert hub.check(parse_args(["--model_name_or_path", "org/missing", "--train_file", "t.jsonl"])) is None
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False


def test_a_refusal_says_offline_mode_when_the_hub_was_not_asked(offline_env, tmp_path):
    """HF_HUB_OFFLINE=1 and the model not cached: 'offline mode is on', with the tokenizer advice.
    Kills: h18 (offline reported as unreachable), h19 (the --tokenizer_name advice dropped)."""
    from loop import hub

    offline_env.setenv("HF_HUB_OFFLINE", "1")
    offline_env.setattr(hub, "reachable", lambda *a: False)
    with pytest.raises(UserError) as e:
        hub.check(parse_args(["--model_name_or_path", "org/m", "--train_file", "t.jsonl"]))
    assert "(offline mode is on: HF_HUB_OFFLINE)" in str(e.value)
    assert "--model_name_or_path /path/to/model (and --tokenizer_name if separate)" in str(e.value)


def test_push_to_hub_problems(offline_env, tmp_path):
    """No --push_to_hub: no problem; offline mode named only when on ('0' is off); no token; an unreachable Hub;
    the repository is the output folder's name. Kills: h22, h23, h24, h25, h32."""
    from loop import hub

    offline_env.setattr("huggingface_hub.get_token", lambda: "hf_x")
    offline_env.setattr(hub, "reachable", lambda *a: True)
    out = str(tmp_path / "runs" / "my-model")
    cfg = parse_args(["--push_to_hub", "true", "--output_dir", out])
    assert hub.repo_id(cfg) == "my-model"
    assert hub.push_problem(parse_args(["--output_dir", out])) is None
    offline_env.setenv("HF_HUB_OFFLINE", "0")
    assert hub.push_problem(cfg) is None
    offline_env.setenv("HF_HUB_OFFLINE", "1")
    assert "offline mode is on (HF_HUB_OFFLINE)" in hub.push_problem(cfg)
    offline_env.delenv("HF_HUB_OFFLINE")
    # huggingface_hub reads TRANSFORMERS_OFFLINE where HF_HUB_OFFLINE is unset: the push failed after training
    # (audit65 m8 F1)
    offline_env.setenv("TRANSFORMERS_OFFLINE", "1")
    assert "offline mode is on (TRANSFORMERS_OFFLINE)" in hub.push_problem(cfg)
    offline_env.setenv("HF_HUB_OFFLINE", "0")  # which rules over it
    assert hub.push_problem(cfg) is None
    offline_env.delenv("HF_HUB_OFFLINE")
    offline_env.delenv("TRANSFORMERS_OFFLINE")
    offline_env.setattr(hub, "reachable", lambda *a: False)
    assert "the Hub cannot be reached" in hub.push_problem(cfg)
    offline_env.setattr("huggingface_hub.get_token", lambda: None)
    assert "no Hugging Face token" in hub.push_problem(cfg)


def test_a_proxy_bypassed_by_no_proxy_is_not_probed(offline_env):
    """Kills: h26."""
    from loop import hub

    offline_env.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    offline_env.setenv("HF_ENDPOINT", "https://hub.example")
    assert hub.probe_address() == ("127.0.0.1", 3128)
    offline_env.setenv("NO_PROXY", "hub.example")
    assert hub.probe_address() == ("hub.example", 443)


def test_transformers_cache_is_named_as_unread(offline_env, tmp_path):
    """Kills: h28."""
    from loop import hub

    offline_env.setenv("HF_HUB_OFFLINE", "1")
    offline_env.setenv("TRANSFORMERS_CACHE", str(tmp_path / "old"))
    with pytest.raises(UserError, match="TRANSFORMERS_CACHE is set, which transformers no longer reads"):
        hub.check(parse_args(["--model_name_or_path", "org/m", "--train_file", "t.jsonl"]))


def test_hub_snapshot_is_the_main_revision_else_the_newest(offline_env, tmp_path):
    """Kills: h29 (oldest snapshot), h34 (main revision not preferred)."""
    import time

    from huggingface_hub import constants

    from loop import hub

    repo = os.path.join(constants.HF_HUB_CACHE, "datasets--org--d")
    for name in ("old", "new", "main"):
        os.makedirs(os.path.join(repo, "snapshots", name))
        time.sleep(0.02)
    os.utime(os.path.join(repo, "snapshots", "main"), (1, 1))
    assert hub.hub_snapshot("org/d", "dataset") == os.path.join(repo, "snapshots", "new")
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write("main\n")
    assert hub.hub_snapshot("org/d", "dataset") == os.path.join(repo, "snapshots", "main")


def test_local_files_advice_by_mode():
    """Kills: h20 (eval_only advice), h21 (test_split advice)."""
    from loop import hub

    from types import SimpleNamespace

    assert hub.local_files(SimpleNamespace(eval_only=True, test_split=None)) == "--validation_file test.parquet"
    assert hub.local_files(SimpleNamespace(eval_only=False, test_split="test")).endswith(
        "--test_file test.parquet, without --test_split")
    assert hub.local_files(SimpleNamespace(eval_only=False, test_split=None)) == \
        "--train_file train.parquet --validation_file test.parquet"



def test_check_reads_the_datasets_cache_for_the_configuration_named_and_refuses_a_cut_copy(offline_env, tmp_path):
    """Offline, a Hub dataset with two configurations prepared: --dataset_config_name picks one (no refusal); a
    copy cut short beside a whole one is refused before anything loads (load_dataset would fail on it).
    Kills: h17 (the configuration not passed: 'which load_dataset will not choose between'), h16 (the cut copy
    passed)."""
    from loop import hub

    offline_env.setattr("datasets.config.HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    offline_env.setenv("HF_HUB_OFFLINE", "1")
    model = tmp_path / "m"
    model.mkdir()
    prepared(tmp_path / "datasets", "org___sets", config="one")
    prepared(tmp_path / "datasets", "org___sets", config="two")
    ok = parse_args(["--model_name_or_path", str(model), "--dataset_name", "org/sets", "--dataset_config_name", "two"])
    assert hub.check(ok) is None
    with pytest.raises(UserError, match="holds 2 configurations of 'org/sets'"):
        hub.check(parse_args(["--model_name_or_path", str(model), "--dataset_name", "org/sets"]))
    prepared(tmp_path / "datasets", "org___sets", config="two", copy="9999.incomplete", info=False)
    with pytest.raises(UserError, match="cut short"):
        hub.check(ok)


def test_a_refusal_names_the_offline_variable_of_the_missing_kind_when_the_hub_was_probed(offline_env, tmp_path):
    """HF_DATASETS_OFFLINE=1 alone, a Hub model and a Hub dataset, the Hub unreachable and only the model cached:
    the dataset is missing because datasets is offline, which the refusal says. Kills: h18."""
    from conftest import hub_cache_repo

    from loop import hub

    offline_env.setattr("datasets.config.HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    offline_env.setenv("HF_DATASETS_OFFLINE", "1")
    offline_env.setattr(hub, "reachable", lambda *a: False)
    hub_cache_repo(tmp_path / "hub", "org/m", {"config.json": "{}"})
    with pytest.raises(UserError, match=r"--dataset_name 'org/data' is neither .*\(offline mode is on: "
                                        r"HF_DATASETS_OFFLINE\)"):
        hub.check(parse_args(["--model_name_or_path", "org/m", "--dataset_name", "org/data"]))


def test_a_hub_cache_holding_only_a_datasets_card_is_not_offered_as_its_files(offline_env, tmp_path):
    """Offline, a Hub dataset not prepared, its hub-cache snapshot holding only its card: the refusal advises local
    data files, not that snapshot as --dataset_name (no data files to read); with a data file it offers the
    snapshot. Kills: h27."""
    from conftest import hub_cache_repo

    from loop import hub

    offline_env.setattr("datasets.config.HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    offline_env.setenv("HF_HUB_OFFLINE", "1")
    model = tmp_path / "m"
    model.mkdir()
    shot = hub_cache_repo(tmp_path / "hub", "org/data", {"README.md": "# card"}, repo_type="dataset")
    cfg = parse_args(["--model_name_or_path", str(model), "--dataset_name", "org/data"])
    with pytest.raises(UserError, match="pass local copies: --train_file train.parquet --validation_file test.parquet"):
        hub.check(cfg)
    (shot / "train.csv").write_text("text,label\na,b\n")
    with pytest.raises(UserError, match=f"pass local copies: --dataset_name {shot} \\(its files, in the hub cache\\)"):
        hub.check(cfg)
