"""Which of the results and images the console's observer decodes when they come by the thousand a second.

At a publisher's full speed the observer was sent 3,000-6,000 results and as many images a second and
decoded every one (about 60 us each, with the result's JSON), which took half a core of two from the
pipeline it watches; the screen shows ten frames a second of the newest few dozen. Now, per topic, a
token bucket lets through about `per_second` messages a second, spread evenly, and up to two seconds' worth
at once after a quiet spell (a step of a few hundred images is shown whole); the rest are only counted
(`FastClient.count_only`: about 2 us each, no message object, no callback). What the console shows is
then a sample at high rates and everything at low ones:
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

import time
from collections.abc import Callable

RESULTS_PER_SECOND = 500.0  # results decoded a second at most (the Results pane's list and statistics)
IMAGES_PER_SECOND = 250.0  # images decoded a second at most (the inspector's recent messages of the topic)
BURST = 2.0  # seconds of a topic's rate that may be decoded at once after a quiet spell


class Sampling:
    """A token bucket per sampled topic: `decode(topic)` is False for a message that is only to be counted."""

    def __init__(self, rates: dict[bytes, float], burst: float = BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        now = clock()
        # per topic: [tokens, time of the last message, tokens a second, most tokens held]
        self._buckets = {topic: [max(1.0, rate * burst), now, rate, max(1.0, rate * burst)]
                         for topic, rate in rates.items()}

    def sampled(self, topic: bytes) -> bool:
        return topic in self._buckets

    def decode(self, topic: bytes) -> bool:
        """Whether this message on `topic` is decoded; True for a topic that is not sampled."""
        bucket = self._buckets.get(topic)
        if bucket is None:
            return True
        now = self._clock()
        tokens = min(bucket[3], bucket[0] + (now - bucket[1]) * bucket[2])
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        return False
