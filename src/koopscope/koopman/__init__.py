"""Koopman operator learning as a model layer (layer 5): lifting, operator, streaming DMD updates, hybrid training.

A :class:`KoopmanLayer` lifts states with φ, advances them with a learned linear operator K and maps back with ψ
(the "ResNet-BK" design, ``shared/reference/systems_to_build.md`` §2); a :class:`KoopmanBlock` puts one beside a
transformer block, and :class:`KoopmanLanguageModel` is the small reference model built from them:

>>> import torch, koopscope as ks                                              # doctest: +SKIP
>>> lm = ks.koopman.KoopmanLanguageModel(vocab_size=256)                        # doctest: +SKIP
>>> trainer = ks.koopman.HybridKoopmanTrainer(                                  # doctest: +SKIP
...     lm, torch.optim.AdamW(lm.parameters(), 3e-3),
...     schedule=ks.koopman.LossWeightSchedule("linear", 0.01, 0.1, total_steps=500, warmup_steps=100))
>>> trainer.fit(batches, steps=500)["phases"]["hybrid"]                         # doctest: +SKIP
>>> lm.blocks[0].koopman.fingerprint().to_html("K0.html")                       # doctest: +SKIP

- :class:`KoopmanLayer`, :class:`KoopmanBlock`, :func:`koopman_mode`, :func:`recording` (:mod:`.layer`);
- :class:`PairBuffer`, :class:`StreamingUpdate`, :func:`streaming_update`, :func:`least_squares_operator`
  (:mod:`.update`): the streaming DMD update of K with ``koopscope.dmd``;
- :func:`koopman_loss`, :func:`prediction_loss` (:mod:`.loss`); :class:`LossWeightSchedule` (:mod:`.schedule`);
- :class:`HybridKoopmanTrainer` (:mod:`.trainer`); :class:`KoopmanLanguageModel` (:mod:`.model`);
- :func:`operator_spectrum`, :func:`operator_fingerprint` (:mod:`.spectrum`): K as a Spectrum and fingerprint.

Importing this package imports torch (``import koopscope`` does not: ``ks.koopman`` loads on first use).
"""

from __future__ import annotations

from koopscope.errors import MissingDependencyError

try:
    import torch  # noqa: F401
except ImportError:
    raise MissingDependencyError("koopscope.koopman needs torch, which is not installed; install it with "
                                 '`pip install -c constraints.txt -e ".[torch]"`.') from None

from koopscope.koopman.layer import (  # noqa: E402
    MODES,
    KoopmanBlock,
    KoopmanLayer,
    KoopmanTerms,
    koopman_blocks,
    koopman_mode,
    recording,
)
from koopscope.koopman.loss import koopman_loss, prediction_loss  # noqa: E402
from koopscope.koopman.model import CausalBlock, KoopmanLanguageModel, next_token_loss  # noqa: E402
from koopscope.koopman.schedule import LossWeightSchedule  # noqa: E402
from koopscope.koopman.spectrum import operator_fingerprint, operator_spectrum  # noqa: E402
from koopscope.koopman.trainer import PHASES, HybridKoopmanTrainer  # noqa: E402
from koopscope.koopman.update import (  # noqa: E402
    DESIGN_RCOND,
    PairBuffer,
    StreamingUpdate,
    UpdateResult,
    ema_blend,
    least_squares_operator,
    streaming_update,
)

__all__ = [
    "DESIGN_RCOND", "MODES", "PHASES", "CausalBlock", "HybridKoopmanTrainer", "KoopmanBlock", "KoopmanLanguageModel",
    "KoopmanLayer", "KoopmanTerms", "LossWeightSchedule", "PairBuffer", "StreamingUpdate", "UpdateResult", "ema_blend",
    "koopman_blocks", "koopman_loss", "koopman_mode", "least_squares_operator", "next_token_loss",
    "operator_fingerprint", "operator_spectrum", "prediction_loss", "recording", "streaming_update",
]
