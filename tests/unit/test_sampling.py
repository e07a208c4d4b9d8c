"""engine.console.sampling: which results and images the console's observer decodes at high rates."""

from __future__ import annotations

from itertools import pairwise

from engine.console.sampling import Sampling


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _decisions(sampling: Sampling, clock: Clock, topic: bytes, rate: float, seconds: float) -> list[bool]:
    """Whether each of `rate` messages a second on `topic` for `seconds`, evenly spaced, was decoded."""
    decided = []
    for _ in range(int(rate * seconds)):
        clock.t += 1 / rate
        decided.append(sampling.decode(topic))
    return decided


def test_below_its_rate_every_message_is_decoded_and_above_it_one_in_k_spread_evenly() -> None:
    clock = Clock()
    sampling = Sampling({b"result": 500.0, b"mnist": 250.0}, clock=clock)
    assert all(_decisions(sampling, clock, b"result", 400, 5))
    flood = _decisions(sampling, clock, b"result", 5000, 10)
    assert all(flood[:495])  # a window's share is decoded whole; then k is set from the rate it came at
    assert sum(flood[500:5000]) <= 4500 // 9
    for second in range(1, 10):  # from then on about 500 a second: one in 10
        assert 450 <= sum(flood[second * 5000 : (second + 1) * 5000]) <= 550
    decoded_at = [i for i, decoded in enumerate(flood) if decoded and i >= 1000]
    assert {b - a for a, b in pairwise(decoded_at)} <= {9, 10, 11}  # spread evenly, not in runs
    assert sampling.every(b"result") in (9, 10, 11)
    assert sampling.sampled(b"result") and not sampling.sampled(b"other")
    assert all(_decisions(sampling, clock, b"other", 5000, 1))  # not sampled: always decoded


def test_each_topic_has_its_own_rate_and_a_calm_second_brings_it_back_to_every_message() -> None:
    clock = Clock()
    sampling = Sampling({b"result": 500.0, b"mnist": 250.0}, clock=clock)
    images = _decisions(sampling, clock, b"mnist", 5000, 4)
    assert 3 * 225 <= sum(images[5000:]) <= 3 * 275  # about 250 a second once measured
    assert all(_decisions(sampling, clock, b"result", 400, 2))  # images spent nothing of the results' share
    _decisions(sampling, clock, b"mnist", 5000, 0.5)  # the flood stops halfway through a window...
    _decisions(sampling, clock, b"result", 5000, 0.5)
    clock.t += 5  # ...and after a calm spell a step of up to a second's share at once is shown whole
    assert all(_decisions(sampling, clock, b"mnist", 2000, 0.1))
    assert all(_decisions(sampling, clock, b"result", 4000, 0.1))
    assert sampling.every(b"mnist") == sampling.every(b"result") == 1
