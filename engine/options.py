"""Option types and the option groups shared by the CLI and every command (broker, pipeline).

Each command module registers its own subparser with these; `engine/cli.py` only builds the top-level
parser and dispatches. No module here imports `engine.cli`.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from engine.console.topic_filters import MAX_LEVELS, validate_topic, validate_watch_filter
from engine.errors import ConfigError
from engine.mqtt.address import BrokerAddress, url_password_warning
from engine.roles.publisher import MAX_RATE, MIN_RATE, underflows, valid_rate
from engine.settings import DEFAULT_DATASET, DURABLE_SESSION_EXPIRY, Settings
from engine.topics import Topics, sanitize_id


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < math.inf:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0: for a length of time where 0 would mean no end at all (bench --duration)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < math.inf:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a finite number > 0: {text}")
    return value


def int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}: {text}")
    return value


def positive_int(text: str) -> int:
    return int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return int_at_least(text, 0)


def number_in(low: float, high: float, integer: bool = False) -> Callable[[str], float]:
    """A parser of numbers from `low` to `high` (the bounds of the control protocol where it has them)."""

    def parse(text: str) -> float:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if integer else 'a number'}: {text!r}") from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be from {low:,} to {high:,}: {text}")
        return value

    return parse


_any_rate = number_in(0, int(MAX_RATE))


def image_rate(text: str) -> float:
    """--rate: 0 (max) or MIN_RATE..MAX_RATE images/s."""
    value = _any_rate(text)
    if not valid_rate(value) or underflows(text, value):
        raise argparse.ArgumentTypeError(f"must be 0 (max) or from {MIN_RATE:g} to {MAX_RATE:,g}: {text}")
    return value


max_delay_ms = number_in(0, 1000)
max_wait_seconds = number_in(0, 86_400)
max_batch = number_in(1, 1024, integer=True)
torch_threads = number_in(1, 256, integer=True)  # torch crashed (SIGSEGV) at 100,000
session_expiry_seconds = number_in(0, 2**32 - 1, integer=True)
image_count = number_in(1, 10**12, integer=True)


def topic_filter(text: str) -> str:
    """An MQTT subscription filter (the topic inspector's), checked as the console checks one typed in."""
    try:
        return validate_watch_filter(text.strip())
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


MAX_OPTION_TOPIC = 1_024  # bytes of --image-topic, --result-topic, --topic-prefix (MQTT allows 65,535)


def topic_name(text: str) -> str:
    """A topic to publish on (or the prefix of some): no wildcards, nothing a broker refuses, at most
    MAX_OPTION_TOPIC bytes. A role given `a/#` or a control character as its image topic published into a
    dropped connection and said it had sent; a prefix of 65,530 bytes made topics past MQTT's limit under it."""
    try:
        validate_topic(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if len(text.encode("utf-8")) > MAX_OPTION_TOPIC:
        raise argparse.ArgumentTypeError(f"a topic of {len(text.encode('utf-8')):,} bytes: at most "
                                         f"{MAX_OPTION_TOPIC:,} here")
    return text


def qos_level(text: str) -> int:
    if text not in ("0", "1", "2"):
        raise argparse.ArgumentTypeError(f"QoS must be 0, 1 or 2, not {text!r}")
    return int(text)


log = logging.getLogger("mnist-tui")


def existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("broker (default: an embedded local broker)")
    g.add_argument("--broker", metavar="URL",
                   help="mqtt://[user@]host[:port], mqtts://..., ws://host[:port][/path] or wss://...")
    g.add_argument("--embedded", choices=("auto", "mosquitto", "python"), default="auto",
                   help="which embedded broker to start when no --broker is given (default: auto)")
    g.add_argument("--broker-config", type=existing_file, default=None, metavar="FILE",
                   help="mosquitto.conf for the embedded mosquitto instead of the project's: its first listener "
                        "moves to 127.0.0.1 on a free port, persistence, logging and user stay ours (docs/SECURITY.md)")
    g.add_argument("--cafile", help="CA certificate for mqtts://")
    g.add_argument("--insecure", action="store_true",
                   help="TLS without checking the broker's certificate (a test broker's self-signed one)")
    g.add_argument("--cert", help="client certificate")
    g.add_argument("--key", help="client key")
    g.add_argument("--password-file", default=None, metavar="FILE",
                   help="read the broker password from FILE (or env MNIST_BROKER_PASSWORD[_FILE]; "
                        "user from the URL or MNIST_BROKER_USER)")
    g.add_argument("--mqtt", choices=("auto", "5", "3.1.1"), default="auto",
                   help="MQTT version (default: 5 when the broker speaks it)")


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    t = parser.add_argument_group("topics")
    t.add_argument("--image-topic", type=topic_name, default="mnist", help="topic of the images (default: mnist)")
    t.add_argument("--result-topic", type=topic_name, default="result", help="topic of the results (default: result)")
    t.add_argument("--topic-prefix", type=topic_name, default="mnist",
                   help="prefix of the status, control and reply topics (default: mnist)")
    i = parser.add_argument_group("input role")
    i.add_argument("--dataset", type=Path, default=Path(DEFAULT_DATASET),
                   help="folder of PNG digits with a list file ('0.png 7' per line)")
    i.add_argument("--list-file", help="list file (default: list.txt)")
    i.add_argument("--rate", type=image_rate, default=10.0,
                   help="images per second, 0 = max: as fast as the running workers keep up (by their "
                        "statuses), at most 100,000 (default: 10)")
    i.add_argument("--flood", action="store_true",
                   help="at --rate 0, publish as fast as possible even when the workers cannot keep up "
                        "(an overload test)")
    i.add_argument("--qos", type=qos_level, default=None,
                   help="QoS of images; a result goes out at the QoS of its image (default: 0, 1 with --durable)")
    i.add_argument("--shuffle", action="store_true", help="play the dataset in random order")
    i.add_argument("--once", action="store_true", help="play the dataset once instead of looping")
    i.add_argument("--count", type=image_count, default=None, help="send N images, then stop")
    i.add_argument("--expiry", type=session_expiry_seconds, default=0, metavar="SECONDS",
                   help="MQTT 5 message expiry of each image: the broker drops one it still holds for an absent "
                        "worker after this long, and a worker skips one that expired in its queue (counted as "
                        "expired) (default: 0, none)")
    w = parser.add_argument_group("infer role")
    w.add_argument("--model", metavar="PATH",
                   help="state_dict of the shipped architecture (or a TorchScript file with --allow-torchscript)")
    w.add_argument("--allow-torchscript", action="store_true",
                   help="accept a TorchScript model file: it runs code from the file")
    w.add_argument("--max-batch", type=max_batch, default=64, help="largest batch, 1-1024 (default: 64)")
    w.add_argument("--max-delay-ms", type=max_delay_ms, default=2.0,
                   help="longest wait for a fuller batch, 0-1000 ms (default: 2)")
    w.add_argument("--max-wait", type=max_wait_seconds, default=0, metavar="SECONDS",
                   help="skip an image published more than SECONDS ago (by the time in its metadata) instead of "
                        "inferring it: counted as expired, not answered. Bounds the latency of an overloaded "
                        "worker at QoS 1, whose backlog waits at the broker (a backlog stale at its head is "
                        "dropped there with the image connection's session, unless durable); needs the clocks "
                        "in step (NTP) across machines (default: 0, none: every image is answered however late)")
    w.add_argument("--queue-size", type=positive_int, default=2_000,
                   help="images queued at most (default: 2000); fewer when that is more than 1 s of work at "
                        "the pace of the worker's full batches")
    w.add_argument("--max-payload", type=positive_int, default=1_048_576,
                   help="largest image payload in bytes (default: 1 MiB)")
    w.add_argument("--max-pixels", type=positive_int, default=4_000_000,
                   help="largest image in pixels (default: 4,000,000)")
    w.add_argument("--group", help="shared-subscription group: workers in one group share the image stream")
    w.add_argument("--session-expiry", type=session_expiry_seconds, default=None,
                   help="seconds the broker keeps an infer or output role's session (and its QoS 1 messages) "
                        "while it is away; give it a fixed --id to resume the session (default: 0, "
                        f"{DURABLE_SESSION_EXPIRY} with --durable)")
    w.add_argument("--result-qos", type=qos_level, default=None,
                   help="QoS of every result (default: the QoS of its image; 1 with --durable)")
    w.add_argument("--threads", type=torch_threads, default=None, help="torch threads per worker (1-256)")
    parser.add_argument("--durable", action="store_true",
                        help="lose nothing: QoS 1 images and results, durable sessions under stable ids "
                             "(<role>-<host>[-N]), and an embedded mosquitto that keeps them on disk "
                             "(docs/RELIABILITY.md)")
    parser.add_argument("--id", help="client id (of the single role started; default <role>-<host>-<pid>)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    prefix = args.topic_prefix.strip("/") or "mnist"
    topics = Topics(
        images=args.image_topic,
        results=args.result_topic,
        status_prefix=f"{prefix}/status",
        control_prefix=f"{prefix}/control",
        reply_prefix=f"{prefix}/reply",
    )
    for name in (topics.images, topics.results, prefix):
        validate_topic(name)  # as --image-topic, --result-topic and --topic-prefix were (a caller without them)
    # the deepest topic under the prefix is <prefix>/reply/<role>/<id>: three levels more
    deepest = max(prefix.count("/") + 4, topics.images.count("/") + 1, topics.results.count("/") + 1)
    if deepest > MAX_LEVELS:
        raise ConfigError(f"a topic (or the topic prefix and the three levels under it) deeper than {MAX_LEVELS} "
                          "levels: brokers refuse them")
    group = args.group
    if group is not None and (not group or sanitize_id(group) != group):
        raise ConfigError(f"bad group name {group!r}: use letters, digits, '_', '.' and '-' only")
    durable = bool(getattr(args, "durable", False))
    qos = args.qos if args.qos is not None else int(durable)
    expiry = args.session_expiry if args.session_expiry is not None else (DURABLE_SESSION_EXPIRY if durable else 0)
    result_qos = args.result_qos if args.result_qos is not None else (1 if durable else None)
    return Settings(
        topics=topics,
        dataset=args.dataset,
        list_file=args.list_file,
        rate=args.rate,
        qos=qos,
        order="shuffle" if args.shuffle else "sequential",
        loop=not args.once,
        count=args.count,
        image_expiry=int(args.expiry),
        pace=not args.flood,
        model_path=args.model,
        allow_torchscript=args.allow_torchscript,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_wait=float(args.max_wait) or None,
        queue_size=args.queue_size,
        max_payload=args.max_payload,
        max_pixels=args.max_pixels,
        share_group=args.group,
        session_expiry=int(expiry),
        result_qos=result_qos,
        durable=durable,
        threads=args.threads,
    )


def address_from_args(args: argparse.Namespace) -> BrokerAddress | None:
    """The external broker's address, or None for an embedded one."""
    if getattr(args, "broker_config", None) is not None and (args.broker or getattr(args, "embedded", "") == "python"):
        raise ConfigError("--broker-config configures the embedded mosquitto: not for "
                          + ("--broker" if args.broker else "--embedded python"))
    if not args.broker:
        if args.cafile or args.cert or getattr(args, "insecure", False):
            raise ConfigError("--cafile/--cert/--key/--insecure need --broker mqtts://... or wss://...")
        return None
    address = BrokerAddress.parse(args.broker)
    if warning := url_password_warning(args.broker):
        log.warning("%s", warning)
    address = address.with_credentials_from(password_file=args.password_file)
    address = address.with_tls_files(args.cafile, args.cert, args.key)
    return address.with_insecure(bool(getattr(args, "insecure", False)))


def protocols_from_args(args: argparse.Namespace) -> tuple[int, ...] | None:
    return {"auto": None, "5": (5,), "3.1.1": (4,)}[args.mqtt]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (`mnist-tui: error: ...`, exit status 2), without the
    usage block above it: the same for a bad flag and a bad MNIST_* variable."""

    hint_flags: set[str] = set()  # the options a command reads when they come before it (set by build_parser)
    offline_flags: dict[str, set[str]] = {}  # command -> those of them it has no use for (set by build_parser)
    _command: str | None = None  # the command of the line being parsed, once known

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._command = getattr(parsed, "command", None)
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}{self._global_hint(message)} (see --help)\n")

    def _global_hint(self, message: str) -> str:
        """For `health --broker URL`: the options a command does not take but the program does go first."""
        prefix = "unrecognized arguments: "
        if not message.startswith(prefix):
            return ""
        names = [word.split("=", 1)[0] for word in message[len(prefix):].split() if word.startswith("-")]
        known = list(dict.fromkeys(name for name in names if name in self.hint_flags))
        unused = self.offline_flags.get(self._command or "", set())
        hint = ""
        if moved := [name for name in known if name not in unused]:
            flags = " ".join(moved)
            verb = "goes" if len(moved) == 1 else "go"
            hint += f"; {flags} {verb} before the command: {self.prog} {flags} ... COMMAND"
        if idle := [name for name in known if name in unused]:
            verb = "is" if len(idle) == 1 else "are"
            hint += f"; {self._command} connects to no broker: {' '.join(idle)} {verb} not for it"
        return hint


