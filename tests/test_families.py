"""Every model family on a tiny random config: block view, freezing counts, training, caching.

Explicit layouts (DeBERTa-v2/v3, MPNet, ModernBERT, ALBERT, GPT-2, Llama, Qwen2, Mistral) and
discovered views (ERNIE, an encoder; OPT, a decoder) are built from transformers' config classes
(no download). The trainable parameter counts are computed here from parameter *names* (what
must train for ``--freeze_layers k``), independently of the block view.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import transformers as T
from datasets import Dataset
from transformers import AutoModelForSequenceClassification

from nlp_transfer.models.blocks import get_block_view
from nlp_transfer.text.model import ensure_pad_token
from nlp_transfer.transfer.cache import (
    CachedPrefixModel,
    CachingCollator,
    add_cache_index,
    caching_unsupported_reason,
    compute_prefix_cache,
)
from nlp_transfer.transfer.freeze import count_parameters, freeze_encoder_layers, set_train_mode

from conftest import tiny_config

V, H, L, FF, P = 100, 32, 2, 37, 64  # vocab, hidden, layers, intermediate, positions
SMALL = dict(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=2)
SMALL |= dict(intermediate_size=FF, max_position_embeddings=P, num_labels=3)
DECODER = SMALL | dict(num_key_value_heads=1, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _configs() -> dict:
    return {
        "deberta-v3": T.DebertaV2Config(  # DeBERTa-v3's settings: relative attention, no abs pos
            **SMALL,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_buckets=16,
            max_relative_positions=P,
            norm_rel_ebd="layer_norm",
            position_biased_input=False,
            type_vocab_size=0,
        ),
        "deberta-v2-conv": T.DebertaV2Config(  # v2-xlarge's conv after layer 0
            **SMALL, relative_attention=True, pos_att_type=["p2c", "c2p"], conv_kernel_size=3
        ),
        "mpnet": T.MPNetConfig(**SMALL),
        "modernbert": T.ModernBertConfig(
            **SMALL,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            cls_token_id=1,
            sep_token_id=2,
            global_attn_every_n_layers=2,
            local_attention=8,
        ),
        "albert": T.AlbertConfig(**SMALL, embedding_size=16),
        "gpt2": T.GPT2Config(
            vocab_size=V,
            n_embd=H,
            n_layer=L,
            n_head=2,
            n_positions=P,
            num_labels=3,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "llama": T.LlamaConfig(**DECODER),
        "qwen2": T.Qwen2Config(**DECODER),
        "mistral": T.MistralConfig(**DECODER),
        "ernie": T.ErnieConfig(**SMALL),  # discovered
        "opt": T.OPTConfig(  # discovered
            vocab_size=V,
            hidden_size=H,
            num_hidden_layers=L,
            ffn_dim=FF,
            num_attention_heads=2,
            max_position_embeddings=P,
            word_embed_proj_dim=H,
            num_labels=3,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        ),
    }


# What trains with --freeze_layers k > 0, by parameter name: layers k.. and the head.
TRAINS = {
    "deberta-v3": ("deberta.encoder.layer.{i}.", ("pooler.", "classifier.")),
    "deberta-v2-conv": ("deberta.encoder.layer.{i}.", ("pooler.", "classifier.")),
    "mpnet": ("mpnet.encoder.layer.{i}.", ("classifier.",)),
    "modernbert": ("model.layers.{i}.", ("model.final_norm.", "head.", "classifier.")),
    "albert": ("albert.encoder.albert_layer_groups.{i}.", ("albert.pooler.", "classifier.")),
    "gpt2": ("transformer.h.{i}.", ("transformer.ln_f.", "score.")),
    "llama": ("model.layers.{i}.", ("model.norm.", "score.")),
    "qwen2": ("model.layers.{i}.", ("model.norm.", "score.")),
    "mistral": ("model.layers.{i}.", ("model.norm.", "score.")),
    "ernie": ("ernie.encoder.layer.{i}.", ("ernie.pooler.", "classifier.")),
    "opt": ("model.decoder.layers.{i}.", ("model.decoder.final_layer_norm.", "score.")),
}
NUM_LAYERS = {"albert": 1}  # ALBERT: one shared layer group
DISCOVERED = {"ernie", "opt"}
FAMILIES = list(TRAINS)
ORIGINAL = ("bert", "roberta", "distilbert", "electra")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: one thread is 10x faster than two fighting over a shared 2-core CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if family in ORIGINAL:  # the first six families' tiny configs (counts: test_models.py)
        return AutoModelForSequenceClassification.from_config(tiny_config(family, num_labels=3))
    return AutoModelForSequenceClassification.from_config(_configs()[family])


def _expected_trainable(model: torch.nn.Module, family: str, k: int) -> int:
    layer, head = TRAINS[family]
    layers = NUM_LAYERS.get(family, L)
    prefixes = tuple(layer.format(i=i) for i in range(k, layers)) + head
    return sum(p.numel() for n, p in model.named_parameters() if k == 0 or n.startswith(prefixes))


def _batch(padding_side: str = "right", n: int = 4, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    lengths = [9, 5, 7, 3][:n]
    ids = torch.zeros(n, max(lengths), dtype=torch.long)  # pad id 0
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        cols = slice(0, length) if padding_side == "right" else slice(max(lengths) - length, None)
        ids[row, cols] = torch.randint(5, V, (length,), generator=gen)
        mask[row, cols] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 1][:n])}


@pytest.mark.parametrize("family", FAMILIES)
def test_block_view_names_and_kind(family):
    view = get_block_view(_model(family))
    layers = NUM_LAYERS.get(family, L)
    name = "layer_group" if family == "albert" else "layer"
    assert [b.name for b in view.blocks] == ["embeddings"] + [f"{name}_{i}" for i in range(layers)]
    assert view.discovered == (family in DISCOVERED)


@pytest.mark.parametrize("family", FAMILIES)
def test_two_training_steps_with_exact_trainable_counts(family):
    model = _model(family)
    for k in (0, 1):
        report = freeze_encoder_layers(model, k)
        expected = _expected_trainable(model, family, k)
        total = sum(p.numel() for p in model.parameters())
        assert (report.trainable_params, report.total_params) == (expected, total)
        assert count_parameters(model) == (expected, total)
        trainable = [p for p in model.parameters() if p.requires_grad]
        frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
        before = [p.detach().clone() for p in trainable]
        optimizer = torch.optim.AdamW(trainable, lr=1e-2)
        set_train_mode(model)
        for step in range(2):
            loss = model(**_batch(seed=step)).loss
            assert torch.isfinite(loss)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
        assert any(not torch.equal(p, b) for p, b in zip(trainable, before, strict=True))


def _pad(features: list[dict], side: str) -> dict:
    width = max(len(f["input_ids"]) for f in features)
    batch = {"input_ids": [], "attention_mask": []}
    for f in features:
        fill = [0] * (width - len(f["input_ids"]))
        ones = [1] * len(f["input_ids"])
        batch["input_ids"].append(
            f["input_ids"] + fill if side == "right" else fill + f["input_ids"]
        )
        batch["attention_mask"].append(ones + fill if side == "right" else fill + ones)
    out = {n: torch.tensor(v) for n, v in batch.items()}
    if "label" in features[0]:
        out["labels"] = torch.tensor([f["label"] for f in features])
    return out


CACHED = [
    (f, k, side)
    for f in [*ORIGINAL, *FAMILIES]
    if f not in DISCOVERED
    for k in ((1,) if f == "albert" else (1, 2))
    for side in (("right", "left") if f == "llama" else ("right",))
]


@pytest.mark.parametrize(("family", "k", "side"), CACHED)
def test_cached_prefix_matches_uncached_logits_and_loss(family, k, side):
    model = _model(family)
    freeze_encoder_layers(model, k)
    gen = torch.Generator().manual_seed(1)
    rows = [torch.randint(5, V, (n,), generator=gen).tolist() for n in (3, 11, 6, 8, 4, 9)]
    data = Dataset.from_dict({"input_ids": rows, "label": [0, 1, 2, 0, 1, 2]})

    def collate(features):
        return _pad(features, side)

    cache = compute_prefix_cache(model, k, data, collate, batch_size=4, dtype=torch.float32)
    caching = CachingCollator(collate, cache)
    indexed = add_cache_index(data)
    plain = collate([data[i] for i in range(len(data))])
    cached_inputs = caching([indexed[i] for i in range(len(indexed))])
    wrapped = CachedPrefixModel(model, k)
    for train in (False, True):
        wrapped.disable()
        set_train_mode(model) if train else model.eval()
        torch.manual_seed(3)
        expected = model(**plain)
        wrapped.enable()
        set_train_mode(wrapped) if train else wrapped.eval()
        torch.manual_seed(3)
        got = wrapped(**cached_inputs)
        torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
    frozen = [m for b in get_block_view(model).blocks[: k + 1] for m in b.modules]
    assert all(not m.training for m in frozen)  # frozen blocks ran in eval mode, in train mode
    wrapped.disable()
    assert all("forward" not in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("family", sorted(DISCOVERED))
def test_discovered_view_trains_but_caching_is_refused_clearly(family):
    model = _model(family)
    freeze_encoder_layers(model, 1)
    reason = caching_unsupported_reason(model)
    assert reason and f"model type {model.config.model_type!r}" in reason
    assert "--cache_frozen_prefix no" in reason
    with pytest.raises(ValueError, match="--cache_frozen_prefix"):
        CachedPrefixModel(model, 1)
    assert caching_unsupported_reason(_model("llama")) is None


def test_albert_freeze_layers_counts_the_shared_layer_group():
    model = _model("albert")
    report = freeze_encoder_layers(model, 1)
    assert report.frozen_blocks == ["embeddings", "layer_group_0"]
    with pytest.raises(ValueError, match=r"--freeze_layers .* between 0 .* and 1.*ALBERT shares"):
        freeze_encoder_layers(model, 2)


def test_full_fine_tuning_needs_no_view_and_other_strategies_name_the_type_and_flags():
    class Toy(torch.nn.Module):  # nothing to discover: no layer list, no input embeddings
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(model_type="toy")
            self.proj = torch.nn.Linear(4, 2)

    model = Toy()
    model.proj.weight.requires_grad_(False)
    report = freeze_encoder_layers(model, 0)
    assert report.trainable_params == report.total_params == 10
    with pytest.raises(ValueError, match=r"model type 'toy'.*--freeze_layers 0.*--layer_lr_decay"):
        freeze_encoder_layers(model, 1)


def _word_tokenizer(**specials):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i + 3 for i in range(V - 3)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return T.PreTrainedTokenizerFast(tokenizer_object=core, **specials)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_decoder_gets_a_pad_token_and_pools_the_last_real_token(family):
    config = _configs()[family]
    config.pad_token_id = None
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    tokenizer = _word_tokenizer(eos_token="</s>", unk_token="<unk>")
    assert tokenizer.pad_token is None
    ensure_pad_token(model, tokenizer)
    assert tokenizer.pad_token == "</s>" and model.config.pad_token_id == 2
    texts = ["w1 w2 w3 w4 w5 w6", "w7 w8"]
    with torch.no_grad():
        batch = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
        alone = model(**tokenizer(texts[1:], return_tensors="pt")).logits
    torch.testing.assert_close(batch[1:], alone, atol=1e-5, rtol=1e-5)


def test_build_text_classifier_gives_a_local_decoder_a_pad_token(tmp_path):
    from nlp_transfer.text.model import build_text_classifier

    config = _configs()["llama"]
    config.pad_token_id = None
    T.AutoModel.from_config(config).save_pretrained(tmp_path)
    _word_tokenizer(eos_token="</s>", unk_token="<unk>").save_pretrained(tmp_path)
    model, tokenizer = build_text_classifier(str(tmp_path), label_names=["a", "b"])
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert tokenizer.pad_token == "</s>" and model.config.pad_token_id == tokenizer.pad_token_id
    batch = tokenizer(["w1 w2 w3", "w4"], padding=True, return_tensors="pt")
    assert model(**batch).logits.shape == (2, 2)  # batches of 2 need the pad token


def test_discovery_joins_parallel_layer_lists_into_one_block_per_layer():
    """XLM keeps layer i in four lists (attentions, layer_norm1, ffns, layer_norm2)."""
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(
        T.XLMConfig(vocab_size=V, emb_dim=H, n_layers=L, n_heads=2, num_labels=3)
    )
    view = get_block_view(model)
    parts = ("attentions", "layer_norm1", "ffns", "layer_norm2")
    assert view.discovered and [b.name for b in view.blocks] == ["embeddings", "layer_0", "layer_1"]
    block = {id(m) for m in view.blocks[1].modules}
    assert block == {id(getattr(model.transformer, p)[0]) for p in parts}
    report = freeze_encoder_layers(model, 1)
    trains = tuple(f"transformer.{p}.1." for p in parts)
    trains += ("transformer.layer_norm_emb.", "sequence_summary.")
    expected = sum(p.numel() for n, p in model.named_parameters() if n.startswith(trains))
    assert report.trainable_params == expected
