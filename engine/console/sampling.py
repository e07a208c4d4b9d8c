"""Which of the results and images the console's observer decodes when they come by the thousand a second.

At a publisher's full speed the observer was sent 3,000-6,000 results and as many images a second and
decoded every one (about 60 us each, with the result's JSON), which took half a core of two from the
pipeline it watches; the screen shows ten frames a second of the newest few dozen. Now, per topic, one
message in k is decoded, k set from the topic's rate over the last second (or over the fraction of one in
which `per_second` came) so that about `per_second` a second are: k = 1 below that rate, and a step of up
to 500 results after a calm second is shown whole; the rest are only counted (`FastClient.count_only`:
about 5 us each, no message object, no callback). Every k-th, not the first few of each read, so the
sample is spread evenly over time. What the console shows is then a sample at high rates and everything
at low ones:
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

import math
import time
from collections.abc import Callable

RESULTS_PER_SECOND = 500.0  # results decoded a second at most (the Results pane's list and statistics)
IMAGES_PER_SECOND = 250.0  # images decoded a second at most (the inspector's recent messages of the topic)
WINDOW = 1.0  # seconds over which a topic's rate is measured; its k is set anew after each


class _Topic:
    __slots__ = ("per_second", "since", "seen", "every", "skipped")

    def __init__(self, per_second: float, now: float) -> None:
        self.per_second = per_second
        self.since = now  # start of the current window
        self.seen = 0  # messages in it
        self.every = 1  # k: one message in k is decoded
        self.skipped = 0  # messages since the last one decoded


class Sampling:
    """Per sampled topic, one message in k decoded: `decode(topic)` is False for one that is only counted."""

    def __init__(self, rates: dict[bytes, float], window: float = WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.window = window
        now = clock()
        self._topics = {topic: _Topic(rate, now) for topic, rate in rates.items()}

    def sampled(self, topic: bytes) -> bool:
        return topic in self._topics

    def every(self, topic: bytes) -> int:
        """k for `topic` now (1 for a topic that is not sampled)."""
        state = self._topics.get(topic)
        return state.every if state is not None else 1

    def decode(self, topic: bytes) -> bool:
        """Whether this message on `topic` is decoded; True for a topic that is not sampled."""
        state = self._topics.get(topic)
        if state is None:
            return True
        now = self._clock()
        elapsed = now - state.since
        if elapsed >= self.window or state.seen >= state.per_second * self.window:
            # A window ends once it saw its share (a flood shows within a fraction of a second: k from the
            # rate it came at) or after `window` seconds with less (below the rate, or a calm spell: k = 1)
            state.every = max(1, math.ceil(state.seen / max(elapsed, 1e-3) / state.per_second))
            state.since, state.seen = now, 0
        state.seen += 1
        if state.skipped + 1 >= state.every:
            state.skipped = 0
            return True
        state.skipped += 1
        return False
