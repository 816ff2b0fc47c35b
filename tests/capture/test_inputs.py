"""Inputs: JSONL prompts, texts with a tokenizer, token arrays, random tokens, truncation and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import koopscope.capture as cap
from koopscope.errors import DataError, ParameterError
from tests.capture.models import CONTEXT, tiny, token_ids, torch


def char_tokenizer(texts):
    """A stand-in tokenizer: one token per character."""
    return {"input_ids": [[1 + ord(c) % 99 for c in t] for t in texts]}


def _write(tmp_path, text: str | bytes, name: str = "prompts.jsonl"):
    path = tmp_path / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def test_read_prompts_skips_blank_lines_and_a_bom(tmp_path):
    path = _write(tmp_path, "\ufeff" + json.dumps({"text": "héllo", "id": 1}) + "\n\n   \n" + '{"text": "b"}\n')
    assert cap.read_prompts(path) == ["héllo", "b"]
    assert cap.read_prompts(str(path)) == ["héllo", "b"]


@pytest.mark.parametrize("content,match", [
    ('{"text": "a"}\n{"text": "b"}\n{"text": "c"\n', r"Line 3 of the prompts file .* is not valid JSON"),
    ('{"text": "a"}\n{"prompt": "b"}\n', r'Line 2 of the prompts file .* has no "text" field'),
    ('["a"]\n', r'Line 1 .* has no "text" field \(got list'),
    ('{"text": "a"}\n\n{"text": 3}\n', r'Line 3 .* "text" field of type int'),
    ("", r"is empty \(no non-blank lines\)"),
    ("\n  \n", r"is empty"),
    (b'{"text": "a"}\n{"text": "\xff"}\n', r"Line 2 .* is not valid UTF-8"),
])
def test_malformed_prompts_files_name_the_line(tmp_path, content, match):
    with pytest.raises(DataError, match=match):
        cap.read_prompts(_write(tmp_path, content))


def test_missing_prompts_file(tmp_path):
    with pytest.raises(DataError, match=r"prompts file .*nope.jsonl' does not exist; pass the path of a JSONL"):
        cap.capture(tiny("gpt2"), str(tmp_path / "nope.jsonl"), tokenizer=char_tokenizer)
    with pytest.raises(DataError, match="is a directory"):
        cap.read_prompts(tmp_path)


def test_capture_from_jsonl_and_from_texts_agree(tmp_path):
    texts = ["the cat sat", "on the mat today", "x"]
    path = _write(tmp_path, "".join(json.dumps({"text": t}) + "\n" for t in texts))
    model = tiny("gpt2")
    from_file = cap.capture(model, path, tokenizer=char_tokenizer, max_tokens=12, seed=1)
    from_texts = cap.capture(model, texts, tokenizer=char_tokenizer, max_tokens=12, seed=1)
    assert from_file.provenance["input_source"] == f"jsonl:{path}"
    assert from_texts.provenance["input_source"] == "texts"
    assert from_file.provenance["prompt_sha256"] == from_texts.provenance["prompt_sha256"] is not None
    assert_array_equal(from_file.token_index, from_texts.token_index)
    for a, b in zip(from_file.states, from_texts.states, strict=True):
        assert_array_equal(a, b)


def test_texts_need_a_tokenizer():
    with pytest.raises(ParameterError, match=r"are text \(2 prompt\(s\)\) but tokenizer is None; pass tokenizer="):
        cap.capture(tiny("gpt2"), ["a", "b"])
    with pytest.raises(ParameterError, match="not callable"):
        cap.capture(tiny("gpt2"), ["a", "b"], tokenizer="gpt2")
    with pytest.raises(DataError, match="did not return one 'input_ids' list per text"):
        cap.capture(tiny("gpt2"), ["a", "b"], tokenizer=lambda texts: {"ids": []})


def test_prompts_longer_than_the_context_are_truncated_with_a_warning():
    model = tiny("gpt2")
    long = token_ids(1, CONTEXT + 10)[0].tolist()
    with pytest.warns(UserWarning, match=rf"1 of 2 input sequence\(s\) are longer than the model context of {CONTEXT} "
                                         rf"tokens and were truncated to their first {CONTEXT} tokens"):
        states = cap.capture(model, [long, long[:5]], max_tokens=None)
    assert states.provenance["n_truncated"] == 1 and states.provenance["context_length"] == CONTEXT
    assert states.n_tokens == CONTEXT + 5 and states.token_index[:, 1].max() == CONTEXT - 1


def test_random_tokens_profile_a_model_at_initialisation():
    batch = cap.random_tokens(3, 10, vocab_size=100, seed=4)
    assert batch.input_ids.shape == (3, 10) and batch.source == "random" and batch.n_tokens == 30
    assert_array_equal(batch.input_ids, cap.random_tokens(3, 10, vocab_size=100, seed=4).input_ids)
    assert not np.array_equal(batch.input_ids, cap.random_tokens(3, 10, vocab_size=100, seed=5).input_ids)
    assert 0 <= batch.input_ids.min() and batch.input_ids.max() < 100
    tensors = batch.to_torch()
    assert tensors["input_ids"].dtype == torch.int64 and tensors["attention_mask"].sum() == 30
    states = cap.capture(tiny("llama"), batch, max_tokens=16)
    assert states.n_tokens == 16 and states.provenance["input_source"] == "random"
    with pytest.raises(ParameterError, match="'vocab_size' parameter of random_tokens"):
        cap.random_tokens(1, 1, vocab_size=0)


def test_token_inputs_in_every_form_give_the_same_batch():
    ids = token_ids(2, 5)
    forms = [ids, ids.numpy(), {"input_ids": ids}, {"input_ids": ids.tolist(), "attention_mask": np.ones((2, 5), bool)},
             [row for row in ids], [row.tolist() for row in ids]]
    batches = [cap.as_token_batch(f) for f in forms]
    for b in batches:
        assert_array_equal(b.input_ids, ids.numpy()) and assert_array_equal(b.lengths, [5, 5])
    one = cap.as_token_batch(ids[0])  # a single 1-D sequence
    assert one.input_ids.shape == (1, 5)
    assert batches[0].token_ids_sha256() == batches[-1].token_ids_sha256()


def test_left_padding_is_packed_and_token_types_follow():
    batch = cap.as_token_batch({"input_ids": [[0, 0, 5, 6], [7, 8, 9, 1]], "attention_mask": [[0, 0, 1, 1], [1] * 4],
                                "token_type_ids": [[0, 0, 1, 1], [0, 0, 1, 1]]})
    assert_array_equal(batch.input_ids, [[5, 6, 0, 0], [7, 8, 9, 1]])
    assert_array_equal(batch.token_type_ids, [[1, 1, 0, 0], [0, 0, 1, 1]])
    assert_array_equal(batch.attention_mask, [[1, 1, 0, 0], [1, 1, 1, 1]])


@pytest.mark.parametrize("inputs,error,match", [
    ({"input_ids": [[1, 2]], "attention_mask": [[1, 2]]}, DataError, "values other than 0 and 1"),
    ({"input_ids": [[1, 2]], "attention_mask": [[1, 1, 1]]}, DataError, r"attention_mask .* has shape \(1, 3\)"),
    ({"input_ids": [[1.5, 2.0]]}, DataError, "has dtype float64; expected integer token ids"),
    ({"input_ids": [[1, -2]]}, DataError, r"Sequence 0 .* negative token id \(-2\)"),
    ({"input_ids": [[1, 2]], "attention_mask": [[0, 0]]}, DataError, "contain no tokens"),
    ({"ids": [[1]]}, ParameterError, "has no 'input_ids'"),
    ([], ParameterError, "are an empty sequence"),
    (3.5, ParameterError, "are a float"),
    ([[1, 2], "ab"], DataError, "Sequence 1 .* is not a 1-D sequence of integer token ids"),
    (np.zeros((2, 2, 2), dtype=int), DataError, r"must have shape \(S, T\)"),
])
def test_bad_token_inputs(inputs, error, match):
    with pytest.raises(error, match=match):
        cap.as_token_batch(inputs)


def test_token_ids_beyond_the_vocabulary():
    with pytest.raises(DataError, match=r"Sequence 1 .* token id 100, beyond the 100 embeddings of GPT2LMHeadModel"):
        cap.capture(tiny("gpt2"), [[1, 2], [3, 100]])


@pytest.mark.parametrize("option,value,match", [
    ("max_tokens", 0, r"'max_tokens' parameter of capture must be an int in \[1, inf\) or None"),
    ("seed", -1, "'seed' parameter of capture"),
    ("batch_size", 0, "'batch_size' parameter of capture"),
    ("eval_mode", "yes", "'eval_mode' parameter of capture"),
    ("device", "warp-drive", "'device' parameter of capture is 'warp-drive'"),
])
def test_bad_options(option, value, match):
    with pytest.raises(ParameterError, match=match):
        cap.capture(tiny("gpt2"), [[1, 2, 3]], **{option: value})
