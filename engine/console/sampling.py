"""Which of the results and images the console's observer decodes when they come by the thousand a second.

At a publisher's full speed the observer was sent 3,000-6,000 results and as many images a second and
decoded every one (about 60 us each, with the result's JSON), which took half a core of two from the
pipeline it watches; the screen shows ten frames a second of the newest few dozen. Now, per topic, a
share of the messages is decoded, set from the topic's rate over the last second (or over the fraction of
one in which `per_second` came) so that about `per_second` a second are: all of them below that rate (a
step of up to 500 results after a calm second is shown whole), and the share follows a falling rate
within a window. The rest are only counted (`FastClient.count_only`: about 5 us each, no message object,
no callback). The decoded ones are spread through the stream, about one in 1/share with a random spacing
(so that two sources taking turns are both sampled), not the first few of each read. What the console
shows is then a sample at high rates and everything at low ones:
- the counts are exact: the topic's count and rate in the inspector, the number of results and their
  rate in the Results pane;
- the results listed, their accuracy and latency percentiles and the confusion matrix are those of the
  decoded sample, and the pane says what share that is (the output role's status has the pipeline's
  own, exact figures);
- every image is kept for a result's detail view (a raw append, as before), decoded or not;
- a result is only counted when it looks like a worker's (a JSON object: `{...}`); anything else is decoded,
  and counted as malformed if it is (a legacy `tensor([d])` result is decoded too). A counted one is not
  checked further.

The console's own images (a drawing: their ids hold its client id) and their results are always decoded.

Only plain QoS 0 messages are sampled: statuses, replies and QoS 1 results are always decoded, and so is
a retained message. Nothing here imports textual; used on the observer's network thread only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

RESULTS_PER_SECOND = 500.0  # results decoded a second at most (the Results pane's list and statistics)
IMAGES_PER_SECOND = 250.0  # images decoded a second at most (the inspector's recent messages of the topic)
WINDOW = 1.0  # seconds over which a topic's rate is measured; its share is set anew after each


class _Topic:
    __slots__ = ("per_second", "since", "seen", "share", "credit")

    def __init__(self, per_second: float, now: float) -> None:
        self.per_second = per_second
        self.since = now  # start of the current window
        self.seen = 0  # messages in it
        self.share = 1.0  # of the messages, the share decoded
        self.credit = 0.0  # a message is decoded once this reaches 1


class Sampling:
    """Per sampled topic, a share of the messages decoded: `decode(topic)` is False for one only counted."""

    def __init__(self, rates: dict[bytes, float], window: float = WINDOW,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self._clock = clock
        self._random = (rng or random.Random()).random
        self.window = window
        now = clock()
        self._topics = {topic: _Topic(rate, now) for topic, rate in rates.items()}

    def sampled(self, topic: bytes) -> bool:
        return topic in self._topics

    def share(self, topic: bytes) -> float:
        """The share of `topic`'s messages decoded now (1.0 for a topic that is not sampled)."""
        state = self._topics.get(topic)
        return state.share if state is not None else 1.0

    def decode(self, topic: bytes) -> bool:
        """Whether this message on `topic` is decoded; True for a topic that is not sampled."""
        state = self._topics.get(topic)
        if state is None:
            return True
        now = self._clock()
        elapsed = now - state.since
        if elapsed >= self.window or state.seen >= state.per_second * self.window:
            # A window ends once it saw its share (a flood shows within a fraction of a second: the share
            # from the rate it came at) or after `window` seconds with less (below the rate: all of them)
            state.share = min(1.0, state.per_second * max(elapsed, 1e-3) / max(state.seen, 1))
            state.since, state.seen = now, 0
        state.seen += 1
        if state.share >= 1.0:
            return True
        state.credit += state.share * (0.5 + self._random())  # on average `share`; random spacing
        if state.credit >= 1.0:
            state.credit -= 1.0
            return True
        return False
