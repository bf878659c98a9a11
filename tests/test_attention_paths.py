"""Every BEACON-B attention path (dense sdpa / eager references, blocked, flex, the automatic choice) against a
float64 ALiBi formula, with padding and packed rows, forward and backward; the automatic choice; memory bounds."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import hf_genomics.models.beacon.modeling_beacon as modeling
from hf_genomics import BeaconConfig, BeaconForMaskedLM
from hf_genomics.models.beacon.modeling_beacon import (
    BeaconAlibiBias,
    alibi_slopes,
    attention_sequence_ids,
    blocked_attention_plan,
    resolve_attention_implementation,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

PATHS = ["eager", "sdpa", "alibi_blocked", "alibi_flex", "alibi_auto"]
HEADS, HEAD_DIM = 4, 16


def tiny_config(**overrides):
    sizes = dict(
        num_hidden_layers=2,
        hidden_size=HEADS * HEAD_DIM,
        num_attention_heads=HEADS,
        intermediate_size=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BeaconConfig(**{**sizes, **overrides})


def packed_layout(length=40):
    """Three rows: one full-length sequence; two packed sequences then padding; left padding then one sequence."""
    attention_mask = torch.ones(3, length, dtype=torch.long)
    position_ids = torch.arange(length).repeat(3, 1)
    attention_mask[1, 31:] = 0
    position_ids[1, 13:31] = torch.arange(18)
    attention_mask[2, :9] = 0
    position_ids[2, 9:] = torch.arange(length - 9)
    return attention_mask, position_ids


def reference_attention(query, key, value, sequence_ids, scaling):
    """softmax(QK^T * scaling - slope_h * |i - j|, keys of the same sequence only) V in float64, written out."""
    query, key, value = (t.double() for t in (query, key, value))
    length = query.shape[2]
    distance = (torch.arange(length)[None, :] - torch.arange(length)[:, None]).abs().double()
    scores = query @ key.transpose(-1, -2) * scaling - alibi_slopes(HEADS).double()[:, None, None] * distance
    same = sequence_ids[:, None, :, None] == sequence_ids[:, None, None, :]
    weights = scores.masked_fill(~same, float("-inf")).softmax(-1)
    return (weights @ value).transpose(1, 2)


def run_path(path, query, key, value, attention_mask, position_ids, config_overrides=None):
    """One attention call as a BeaconModel layer makes it, with the inputs the model builds once per forward."""
    config = tiny_config(attn_implementation=path, **(config_overrides or {}))
    config._attn_implementation = path
    alibi = BeaconAlibiBias(HEADS)
    embedding_output = torch.zeros(*query.shape[:1], query.shape[2], HEADS * HEAD_DIM, dtype=query.dtype)
    sequence_ids = attention_sequence_ids(attention_mask, position_ids, attention_mask.shape, torch.device("cpu"))
    mask, kwargs = modeling._attention_inputs(config, alibi, embedding_output, attention_mask, sequence_ids)
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(kwargs.pop("attention_implementation"), None)
    attention = attention or modeling.eager_attention_forward
    module = nn.Module().eval()
    module.is_causal = False  # as BeaconSelfAttention (sdpa reads it)
    output, _ = attention(module, query, key, value, mask, scaling=HEAD_DIM**-0.5, dropout=0.0, **kwargs)
    return output


def random_qkv(length, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3, HEADS, length, HEAD_DIM, generator=generator).to(dtype) for _ in range(3)]


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 16 queries, so that the blocked path really splits a 40-token input and narrows key ranges."""
    monkeypatch.setattr(modeling, "BLOCKED_ATTENTION_BIAS_ELEMENTS", 16)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("path", PATHS)
def test_every_path_matches_the_formula_with_padding_and_packing(path, dtype, tolerance, small_blocks):
    attention_mask, position_ids = packed_layout()
    query, key, value = random_qkv(40, dtype)
    sequence_ids = attention_sequence_ids(attention_mask, position_ids, attention_mask.shape, torch.device("cpu"))
    expected = reference_attention(query, key, value, sequence_ids, HEAD_DIM**-0.5)
    with torch.no_grad():
        output = run_path(path, query, key, value, attention_mask, position_ids)
    assert output.shape == (3, 40, HEADS, HEAD_DIM) and output.dtype == dtype
    relative_error = (output.double() - expected).abs().max() / expected.abs().max()
    assert relative_error < tolerance


@pytest.mark.parametrize("path", ["eager", "sdpa", "alibi_blocked", "alibi_auto"])
def test_gradients_match_the_formula(path, small_blocks):
    attention_mask, position_ids = packed_layout()
    inputs = [t.requires_grad_() for t in random_qkv(40, torch.float64)]
    reference_inputs = [t.detach().clone().requires_grad_() for t in inputs]
    sequence_ids = attention_sequence_ids(attention_mask, position_ids, attention_mask.shape, torch.device("cpu"))
    cotangent = torch.randn(3, 40, HEADS, HEAD_DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (run_path(path, *inputs, attention_mask, position_ids) * cotangent).sum().backward()
    (reference_attention(*reference_inputs, sequence_ids, HEAD_DIM**-0.5) * cotangent).sum().backward()
    for tensor, reference in zip(inputs, reference_inputs):
        torch.testing.assert_close(tensor.grad, reference.grad, rtol=1e-9, atol=1e-9)


def test_flex_refuses_backward_on_cpu():
    attention_mask, position_ids = packed_layout()
    query, key, value = [t.requires_grad_() for t in random_qkv(40, torch.float32)]
    with pytest.raises(NotImplementedError, match='"alibi_flex" has no backward on cpu.*"alibi_blocked"'):
        run_path("alibi_flex", query, key, value, attention_mask, position_ids)


def test_packed_rows_equal_the_sequences_run_alone():
    """A model on packed rows gives every sequence the states (and pooled output) it gets alone."""
    torch.manual_seed(0)
    model = BeaconForMaskedLM(tiny_config()).double().eval()
    lengths, generator = [9, 14, 6, 11], torch.Generator().manual_seed(0)
    sequences = [torch.randint(4, 8, (n,), generator=generator) for n in lengths]
    packed = torch.cat([torch.cat(sequences[:2]), torch.cat(sequences[2:]), torch.ones(6, dtype=torch.long)])
    packed = packed.view(2, 23)
    position_ids = torch.cat([torch.arange(n) for n in lengths] + [torch.zeros(6, dtype=torch.long)]).view(2, 23)
    attention_mask = torch.ones(2, 23, dtype=torch.long)
    attention_mask[1, 17:] = 0
    for path in PATHS:
        model.set_attn_implementation(path)
        with torch.no_grad():
            logits = model(input_ids=packed, attention_mask=attention_mask, position_ids=position_ids).logits
            alone = [model(input_ids=s[None]).logits[0] for s in sequences]
        torch.testing.assert_close(logits[0], torch.cat(alone[:2]), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(logits[1, :17], torch.cat(alone[2:]), rtol=1e-9, atol=1e-9)


def test_blocked_plan_visits_only_keys_of_the_block_sequences_and_alibi_window(small_blocks):
    attention_mask, position_ids = packed_layout()
    sequence_ids = attention_sequence_ids(attention_mask, position_ids, attention_mask.shape, torch.device("cpu"))
    plan = blocked_attention_plan(HEADS, 40, alibi_slopes(HEADS), sequence_ids)
    assert plan == ((0, 16, 0, 40), (16, 32, 0, 40), (32, 40, 0, 40))  # row 0 is one 40-token sequence
    # Only row 1's second sequence (13..30) and padding (31..39) in a 1-row batch: keys 13..39 for queries 16..31.
    plan = blocked_attention_plan(HEADS, 40, alibi_slopes(HEADS), sequence_ids[1:2])
    assert plan == ((0, 16, 0, 31), (16, 32, 13, 40), (32, 40, 31, 40))
    # Steep slopes: every head is cut beyond 60 / slope tokens, so far keys are never visited.
    steep = torch.full((HEADS,), 6.0)  # window of 10 tokens
    assert blocked_attention_plan(HEADS, 40, steep, None) == ((0, 16, 0, 26), (16, 32, 6, 40), (32, 40, 22, 40))


def test_blocked_path_never_builds_a_bias_larger_than_its_budget(monkeypatch):
    """A 2,048-token forward on the blocked path with a budget of 2^20: no attention mask above it, where the dense
    path would build (1, H, L, L) = 16.8M elements."""
    shapes, sdpa = [], F.scaled_dot_product_attention

    def recording_sdpa(query, key, value, attn_mask=None, **kwargs):
        shapes.append(tuple(attn_mask.shape))
        return sdpa(query, key, value, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording_sdpa)
    monkeypatch.setattr(modeling, "BLOCKED_ATTENTION_BIAS_ELEMENTS", 2**20)
    model = BeaconForMaskedLM(tiny_config(num_hidden_layers=1, attn_implementation="alibi_blocked")).eval()
    with torch.no_grad():
        model(input_ids=torch.randint(4, 8, (1, 2048)))
    budget = modeling.BLOCKED_ATTENTION_BIAS_ELEMENTS
    assert len(shapes) > 1 and max(math.prod(shape) for shape in shapes) <= budget
    assert sum(shape[2] for shape in shapes) == 2048


def test_automatic_choice_by_device_and_size(monkeypatch):
    config = tiny_config()
    assert BeaconForMaskedLM(config).config._attn_implementation == "alibi_auto"
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_attention_implementation(config, cuda, 8, 512, None) == "alibi_flex"
    assert resolve_attention_implementation(config, cpu, 8, 512, None) == "sdpa"
    sequence_ids = torch.zeros(8, 4096, dtype=torch.int32)
    assert resolve_attention_implementation(config, cpu, 8, 4096, sequence_ids) == "alibi_blocked"
    with torch.no_grad():  # inference: dense while the bias has <= 2^25 elements; 4 x 4096^2 = 2^26
        assert resolve_attention_implementation(config, cpu, 1, 4096, None) == "alibi_blocked"
    assert resolve_attention_implementation(config, cpu, 1, 4096, None) == "sdpa"  # training: up to 2^26
    config._attn_implementation = "flex_attention"  # transformers' flex would give every head the bias of head 0
    assert resolve_attention_implementation(config, cpu, 1, 64, None) == "alibi_flex"
    config._attn_implementation = "sdpa"
    assert resolve_attention_implementation(config, cpu, 1, 65536, None) == "sdpa"
    absolute = BeaconForMaskedLM(tiny_config(position_embedding_type="absolute", max_position_embeddings=64))
    assert absolute.config._attn_implementation == "sdpa"


def test_bfloat16_autocast_training_step_on_every_trainable_path():
    torch.manual_seed(0)
    input_ids = torch.randint(4, 8, (2, 48))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 30:] = 0
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    for path in ["eager", "sdpa", "alibi_blocked", "alibi_auto"]:
        model = BeaconForMaskedLM(tiny_config(attn_implementation=path))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        assert torch.isfinite(loss) and abs(loss.item() - math.log(10)) < 0.5
        query = model.beacon.encoder.layer[0].attention.self.query
        assert query.weight.dtype == torch.float32 and torch.isfinite(query.weight.grad).all()


def test_packed_rows_must_start_with_position_zero():
    model = BeaconForMaskedLM(tiny_config())
    input_ids = torch.randint(4, 8, (2, 10))
    position_ids = torch.arange(10).repeat(2, 1)
    position_ids[1] += 3
    with pytest.raises(ValueError, match="Row 1 has tokens before its first position id 0"):
        model(input_ids=input_ids, position_ids=position_ids)
    with pytest.raises(ValueError, match=r"attention_mask must have the shape of input_ids, \(batch, seq_len\)"):
        model(input_ids=input_ids, attention_mask=torch.ones(2, 9, dtype=torch.long))


def test_pair_maps_do_not_depend_on_padding_or_packing():
    """The pair ResNet sees zeros outside each sequence: alone, right-padded and packed give the same map."""
    from hf_genomics import BeaconForPairwisePrediction

    torch.manual_seed(0)
    config = tiny_config(pairwise_channels=8, pairwise_num_blocks=2, pairwise_dropout=0.0)
    model = BeaconForPairwisePrediction(config).double().eval()
    generator = torch.Generator().manual_seed(0)
    sequences = [torch.randint(4, 8, (n,), generator=generator) for n in (12, 7)]
    padded = torch.ones(2, 12, dtype=torch.long)
    padded[0], padded[1, :7] = sequences
    attention_mask = (padded != 1).long()
    position_ids = torch.cat([torch.arange(12), torch.arange(7)])[None]
    with torch.no_grad():
        alone = [model(input_ids=s[None]).logits[0] for s in sequences]
        batch = model(input_ids=padded, attention_mask=attention_mask).logits
        packed = model(input_ids=torch.cat(sequences)[None], position_ids=position_ids).logits
    for logits in (batch, packed):
        assert logits.shape == (2, 12, 12)  # aligned with the tokens of the longest sequence
        torch.testing.assert_close(logits[0], alone[0], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(logits[1, :7, :7], alone[1], rtol=1e-9, atol=1e-9)


def test_absolute_position_models_refuse_packed_rows():
    model = BeaconForMaskedLM(tiny_config(position_embedding_type="absolute", max_position_embeddings=64))
    position_ids = torch.cat([torch.arange(6), torch.arange(4)])[None]
    with pytest.raises(ValueError, match="packing needs an ALiBi model"):
        model(input_ids=torch.randint(4, 8, (1, 10)), position_ids=position_ids)
