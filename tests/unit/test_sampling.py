"""engine.console.sampling: which results and images the console's observer decodes at high rates."""

from __future__ import annotations

import random

from engine.console.sampling import Sampling


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _sampling() -> tuple[Sampling, Clock]:
    clock = Clock()
    return Sampling({b"result": 500.0, b"mnist": 250.0}, clock=clock, rng=random.Random(7)), clock


def _decisions(sampling: Sampling, clock: Clock, topic: bytes, rate: float, seconds: float) -> list[bool]:
    """Whether each of `rate` messages a second on `topic` for `seconds`, evenly spaced, was decoded."""
    decided = []
    for _ in range(int(rate * seconds)):
        clock.t += 1 / rate
        decided.append(sampling.decode(topic))
    return decided


def _per_second(decided: list[bool], rate: int) -> list[int]:
    return [sum(decided[i : i + rate]) for i in range(0, len(decided) - rate + 1, rate)]


def test_below_its_rate_every_message_is_decoded_and_above_it_about_that_many_a_second() -> None:
    sampling, clock = _sampling()
    assert all(_decisions(sampling, clock, b"result", 400, 5))
    for rate in (600, 1500, 5000, 5100):
        decided = _decisions(sampling, clock, b"result", rate, 6)
        assert all(450 <= n <= 550 for n in _per_second(decided, rate)[1:]), (rate, _per_second(decided, rate))
    assert sampling.share(b"result") < 0.1
    assert sampling.sampled(b"result") and not sampling.sampled(b"other")
    assert all(_decisions(sampling, clock, b"other", 5000, 1))  # not sampled: always decoded


def test_the_sample_is_spread_through_the_stream_and_takes_turns_into_account() -> None:
    sampling, clock = _sampling()
    decided = _decisions(sampling, clock, b"result", 6000, 4)[6000:]
    decoded_at = [i for i, d in enumerate(decided) if d]
    assert max(b - a for a, b in zip(decoded_at, decoded_at[1:], strict=False)) <= 2 * 12
    for tenth in range(len(decided) // 600):  # every tenth of a second holds its part, not runs at the start
        assert 30 <= sum(decided[tenth * 600 : (tenth + 1) * 600]) <= 70
    # two workers taking turns (an even share would pick only one of them at a fixed spacing)
    assert 0.3 < sum(decided[0::2]) / sum(decided) < 0.7


def test_each_topic_has_its_own_rate_and_a_falling_rate_is_followed_within_a_window() -> None:
    sampling, clock = _sampling()
    images = _decisions(sampling, clock, b"mnist", 5000, 4)
    assert all(225 <= n <= 275 for n in _per_second(images, 5000)[1:])
    assert all(_decisions(sampling, clock, b"result", 400, 2))  # images spent nothing of the results' share
    _decisions(sampling, clock, b"mnist", 5000, 0.33)
    after = _decisions(sampling, clock, b"mnist", 200, 3)  # no calm spell: the flood simply stops
    assert all(after[400:]) and sum(after[:400]) >= 100  # all of them again within about two windows
    assert sampling.share(b"mnist") == 1.0
    _decisions(sampling, clock, b"result", 5000, 0.33)
    clock.t += 5  # and after a calm spell a step of up to a second's share at once is shown whole
    assert all(_decisions(sampling, clock, b"result", 4000, 0.1))
