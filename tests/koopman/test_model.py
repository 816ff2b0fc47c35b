"""KoopmanLanguageModel: causality, the tied head, the mode switch, seeding, and bad input."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from koopscope.errors import DataError, ParameterError
from koopscope.koopman import CausalBlock, KoopmanBlock, KoopmanLanguageModel, koopman_mode, next_token_loss
from tests.koopman.refusal import refused


def small(**kwargs) -> KoopmanLanguageModel:
    return KoopmanLanguageModel(**{"vocab_size": 13, "d_model": 16, "n_layers": 3, "n_heads": 2, "koopman_dim": 8,
                                   "max_len": 10, **kwargs})


def tokens(B: int = 2, T: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 13, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", ["standard", "koopman"])
def test_logits_are_causal_in_both_modes(mode: str) -> None:
    lm = small().eval()
    x = tokens()
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 13  # change the future only
    with torch.no_grad():
        a, b = lm(x, mode=mode), lm(y, mode=mode)
    assert a.shape == (2, 10, 13)
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=1e-6)  # positions 0..5 never see 6..9
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_wrapping_and_the_mode_switch() -> None:
    lm = small(koopman_layers=(0, 2))
    assert lm.koopman_layers == (0, 2)
    assert [type(b) for b in lm.blocks] == [KoopmanBlock, CausalBlock, KoopmanBlock]
    x = tokens()
    with torch.no_grad():
        standard, koop = lm(x), lm(x, mode="koopman")
        assert not torch.allclose(standard, koop)
        with koopman_mode(lm, "koopman"):
            torch.testing.assert_close(lm(x), koop)  # mode=None follows each wrapper's attribute
        torch.testing.assert_close(lm(x, mode="standard"), standard)
    assert all(isinstance(b, CausalBlock) for b in small(koopman_layers=()).blocks)
    assert len(small().koopman_layers) == 3  # None wraps every block


def test_standard_mode_equals_the_plain_model_with_the_same_seed() -> None:
    # The baseline (no wrappers) and the Koopman model share every block weight: a fair comparison.
    plain, wrapped = small(koopman_layers=(), seed=4), small(seed=4)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(tokens()), plain(tokens()), rtol=0, atol=0)


def test_tied_head_and_loss() -> None:
    lm = small(koopman_layers=())
    x = tokens(T=11)
    with torch.no_grad():
        h = lm.tok(x[:, :-1]) + lm.pos(torch.arange(10))
        for block in lm.blocks:
            h = block(h)
        expected = F.cross_entropy((lm.norm(h) @ lm.tok.weight.T).reshape(-1, 13), x[:, 1:].reshape(-1))
        torch.testing.assert_close(next_token_loss(lm, x), expected)
        torch.testing.assert_close(next_token_loss(lm, (x[:, :-1], x[:, 1:])), expected)
    assert not any(isinstance(m, torch.nn.Linear) and m.out_features == 13 for m in lm.modules())  # no own head


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"koopman_layers": (0, 3)}, "The 'koopman_layers' parameter of KoopmanLanguageModel must list distinct block "
                                 "indices in [0, 3); got (0, 3): pass e.g. (1, 2), () for none, or None for every "
                                 "block."),
    ({"koopman_layers": (1, 1)}, "The 'koopman_layers' parameter of KoopmanLanguageModel must list distinct block "
                                 "indices in [0, 3); got (1, 1): pass e.g. (1, 2), () for none, or None for every "
                                 "block."),
    ({"n_heads": 3}, "The 'n_heads' parameter of KoopmanLanguageModel must divide d_model=16; got 3: choose a "
                     "divisor such as 8."),
    ({"koopman_dim": 0}, "The 'koopman_dim' parameter of KoopmanLayer must be an int in [1, inf); got 0; pass the "
                         "lifted dimension k, e.g. 256 (the design's reference)."),
    ({"vocab_size": 0}, "The 'vocab_size' parameter of KoopmanLanguageModel must be an int in [1, inf); got 0; a "
                        "positive int."),
])
def test_parameter_errors(kwargs: dict, message: str) -> None:
    refused(ParameterError, message, small, **kwargs)


def test_token_errors() -> None:
    lm = small()
    with pytest.raises(DataError) as err:
        lm(tokens(T=11))
    assert str(err.value) == ("tokens passed to KoopmanLanguageModel.forward have sequence length 11; the model takes "
                              "1 to max_len = 10 positions: split the input into shorter windows.")
    with pytest.raises(DataError) as err:
        lm(tokens().float())
    assert str(err.value) == ("tokens passed to KoopmanLanguageModel.forward must be an int64 tensor of shape (batch, "
                              "seq); got a torch.float32 tensor of shape (2, 10): convert with torch.as_tensor(ids, "
                              "dtype=torch.long).")
    with pytest.raises(ParameterError, match="The 'mode' parameter of KoopmanLanguageModel.forward must be one of"):
        lm(tokens(), mode="fast")
    with pytest.raises(DataError, match=r"must be token ids \(batch, seq \+ 1\) with seq \+ 1 >= 2 or a pair"):
        next_token_loss(lm, tokens(T=1))
