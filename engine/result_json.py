"""The worker's result JSON (docs/PROTOCOL.md), written for a whole batch at once.

Byte for byte what `json.dumps(result, separators=(",", ":"))` gives for a result whose
probabilities are rounded to 4 decimals, at a fraction of the cost: the probabilities are rounded in
numpy for the whole batch, and each rounded value's text comes from a table of the 10,001 possible
ones (turning floats into their shortest text was most of json.dumps' time). Strings are escaped by
the json module's own C escaper.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii as _quote
from typing import Any

import numpy as np

SCALE = 10_000  # 4 decimals
# The text json.dumps writes for each rounded probability: "0.0", "0.0185", ..., "1.0"
_PROB_TEXT = [repr(round(i / SCALE, 4)) for i in range(SCALE + 1)]

_TEMPLATE = ('{"id":%s,"label":%s,"worker":%s,"src":%s,"t_sent":%s,"pred":%d,"conf":%s,"probs":[%s],'
             '"model":%s,"t_recv":%r,"t_done":%r,"batch":%d}')


def _opt_str(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _opt_num(value: int | float | None) -> str:
    return "null" if value is None else repr(value)


def encode_results(
    heads: list[dict[str, Any]],  # as `extract_meta` gave them: str or None, numbers or None
    probs: np.ndarray,
    model: str,
    worker: str,
    t_recvs: list[float],
    t_done: float,
) -> list[bytes]:
    """One UTF-8 JSON result per row of `probs` (float, N x 10), in the order of `heads`.

    Each head holds the image's id, label, src and t_sent (as `extract_meta` gave them).
    """
    n = len(heads)
    levels = np.rint(np.clip(np.nan_to_num(probs), 0.0, 1.0) * SCALE).astype(np.intp)
    preds = probs.argmax(axis=1)
    conf = levels[np.arange(n), preds].tolist()
    rows = levels.tolist()
    pred_list = preds.tolist()
    text = _PROB_TEXT
    quoted_worker = _quote(worker)
    quoted_model = _quote(model)
    out = []
    for i, head in enumerate(heads):
        out.append((_TEMPLATE % (
            _quote(head["id"]), _opt_num(head["label"]), quoted_worker, _opt_str(head["src"]),
            _opt_num(head["t_sent"]), pred_list[i], text[conf[i]], ",".join([text[v] for v in rows[i]]),
            quoted_model, t_recvs[i], t_done, n,
        )).encode("ascii"))
    return out
