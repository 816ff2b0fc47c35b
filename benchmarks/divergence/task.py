"""The associative-recall task of RKSP (Table 11: sequence 64, vocabulary 256, 4 key-value pairs).

A sequence is ``k_1 v_1 k_2 v_2 k_3 v_3 k_4 v_4 p_1 ... p_m q``: four key-value pairs, filler tokens, then a
query key ``q`` equal to one of the four keys; the target is that key's value, and the loss is the
cross-entropy of the logits at the last position only. The vocabulary is split so that the roles never collide:
keys are drawn without replacement from [0, 64), values uniformly from [64, 128), fillers uniformly from
[128, 256). Chance accuracy is 1/64.

Batches are generated on the fly from a ``torch.Generator``, so a (seed, batch size) pair fixes the whole data
stream of a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["RecallTask"]


@dataclass(frozen=True)
class RecallTask:
    """Associative recall with ``n_pairs`` pairs in sequences of ``seq_len`` tokens over ``vocab`` ids."""

    seq_len: int = 64  # RKSP Table 11
    vocab: int = 256  # RKSP Table 11
    n_pairs: int = 4  # RKSP Table 11

    def __post_init__(self) -> None:
        if self.vocab % 4 or self.seq_len < 2 * self.n_pairs + 1 or self.n_pairs > self.vocab // 4:
            raise ValueError(f"RecallTask needs vocab divisible by 4, n_pairs <= vocab/4 and seq_len >= 2*n_pairs+1; "
                             f"got vocab={self.vocab}, n_pairs={self.n_pairs}, seq_len={self.seq_len}")

    @property
    def n_keys(self) -> int:
        """Size of each of the key and value ranges (a quarter of the vocabulary)."""
        return self.vocab // 4

    def generator(self, seed: int) -> torch.Generator:
        """A CPU generator seeded with ``seed``: the data stream of one run."""
        return torch.Generator().manual_seed(int(seed))

    def batch(self, gen: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` sequences (size, seq_len) int64 and their targets (size,) int64."""
        K, P = self.n_keys, self.n_pairs
        keys = torch.rand(size, K, generator=gen).argsort(dim=1)[:, :P]  # (size, P) distinct ids in [0, K)
        values = torch.randint(K, 2 * K, (size, P), generator=gen)  # (size, P) in [K, 2K)
        n_fill = self.seq_len - 2 * P - 1
        filler = torch.randint(2 * K, self.vocab, (size, n_fill), generator=gen)  # (size, m) in [2K, vocab)
        pick = torch.randint(0, P, (size,), generator=gen)  # (size,) which pair is queried
        rows = torch.arange(size)
        pairs = torch.stack((keys, values), dim=2).reshape(size, 2 * P)  # (size, 2P): k_1 v_1 k_2 v_2 ...
        tokens = torch.cat((pairs, filler, keys[rows, pick][:, None]), dim=1)  # (size, seq_len)
        return tokens, values[rows, pick]
