"""engine.console.sampling: which results and images the console's observer decodes at high rates."""

from __future__ import annotations

from engine.console.sampling import Sampling


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _decoded(sampling: Sampling, clock: Clock, topic: bytes, rate: float, seconds: float) -> int:
    """Messages on `topic` decoded out of `rate` a second for `seconds`, evenly spaced."""
    n = int(rate * seconds)
    decoded = 0
    for _ in range(n):
        clock.t += 1 / rate
        decoded += sampling.decode(topic)
    return decoded


def test_below_its_rate_every_message_is_decoded_and_above_it_about_that_many_a_second() -> None:
    clock = Clock()
    sampling = Sampling({b"result": 500.0, b"mnist": 100.0}, clock=clock)
    assert _decoded(sampling, clock, b"result", 400, 5) == 2000
    decoded = _decoded(sampling, clock, b"result", 5000, 10)
    assert 10 * 500 <= decoded <= 10 * 500 + 1000 + 1  # at most one burst (two seconds' worth) more
    assert sampling.sampled(b"result") and not sampling.sampled(b"other")
    assert _decoded(sampling, clock, b"other", 5000, 1) == 5000  # not sampled: always decoded


def test_each_topic_has_its_own_budget_and_a_quiet_spell_refills_only_a_burst() -> None:
    clock = Clock()
    sampling = Sampling({b"result": 500.0, b"mnist": 100.0}, clock=clock)
    assert _decoded(sampling, clock, b"mnist", 5000, 4) <= 4 * 100 + 200 + 1
    assert _decoded(sampling, clock, b"result", 5000, 4) >= 4 * 500  # images used none of the results' budget
    clock.t += 60  # a minute of quiet: then at most two seconds' worth at once
    burst = 0
    while sampling.decode(b"result"):
        burst += 1
    assert burst == 1000
