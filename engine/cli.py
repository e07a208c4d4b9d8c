"""Command line: global options shared by the console and the headless subcommands.

`tui.cli.main` is the console script; it parses with `build_parser()` and hands subcommands to
`dispatch()`, which never imports textual.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from engine.config_file import add_config_options
from engine.config_file import apply as apply_config
from engine.env_options import apply_env
from engine.errors import ConfigError, MnistError, RoleFailed
from engine.global_options import add_global_options, log_level, setup_logging
from engine.mqtt.address import BrokerAddress, url_password_warning
from engine.protocol import Result
from engine.roles.publisher import MAX_RATE
from engine.settings import DEFAULT_DATASET, DURABLE_SESSION_EXPIRY, Settings
from engine.topics import ROLES, Topics, sanitize_id

log = logging.getLogger("mnist-tui")


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
    return value


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}: {text}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def _non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _number_in(low: float, high: float, integer: bool = False) -> Callable[[str], float]:
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


_rate = _number_in(0, int(MAX_RATE))
_max_delay_ms = _number_in(0, 1000)
_max_batch = _number_in(1, 1024, integer=True)
_session_expiry = _number_in(0, 2**32 - 1, integer=True)
_count = _number_in(1, 10**12, integer=True)


def _qos(text: str) -> int:
    if text not in ("0", "1", "2"):
        raise argparse.ArgumentTypeError(f"QoS must be 0, 1 or 2, not {text!r}")
    return int(text)


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("broker (default: an embedded local broker)")
    g.add_argument("--broker", metavar="URL", help="mqtt://[user@]host[:port] or mqtts://...")
    g.add_argument("--embedded", choices=("auto", "mosquitto", "python"), default="auto",
                   help="which embedded broker to start when no --broker is given (default: auto)")
    g.add_argument("--broker-config", type=_existing_file, default=None, metavar="FILE",
                   help="mosquitto.conf for the embedded mosquitto instead of the project's: its first listener "
                        "moves to 127.0.0.1 on a free port, persistence, logging and user stay ours (docs/SECURITY.md)")
    g.add_argument("--cafile", help="CA certificate for mqtts://")
    g.add_argument("--cert", help="client certificate")
    g.add_argument("--key", help="client key")
    g.add_argument("--password-file", default=None, metavar="FILE",
                   help="read the broker password from FILE (or env MNIST_BROKER_PASSWORD[_FILE]; "
                        "user from the URL or MNIST_BROKER_USER)")
    g.add_argument("--mqtt", choices=("auto", "5", "3.1.1"), default="auto",
                   help="MQTT version (default: 5 when the broker speaks it)")


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    t = parser.add_argument_group("topics")
    t.add_argument("--image-topic", default="mnist", help="topic of the images (default: mnist)")
    t.add_argument("--result-topic", default="result", help="topic of the results (default: result)")
    t.add_argument("--topic-prefix", default="mnist",
                   help="prefix of the status, control and reply topics (default: mnist)")
    i = parser.add_argument_group("input role")
    i.add_argument("--dataset", type=Path, default=Path(DEFAULT_DATASET),
                   help="folder of PNG digits with a list file ('0.png 7' per line)")
    i.add_argument("--list-file", help="list file (default: list.txt)")
    i.add_argument("--rate", type=_rate, default=10.0,
                   help="images per second, 0 = as fast as possible, at most 100,000 (default: 10)")
    i.add_argument("--qos", type=_qos, default=None,
                   help="QoS of images; a result goes out at the QoS of its image (default: 0, 1 with --durable)")
    i.add_argument("--shuffle", action="store_true", help="play the dataset in random order")
    i.add_argument("--once", action="store_true", help="play the dataset once instead of looping")
    i.add_argument("--count", type=_count, default=None, help="send N images, then stop")
    w = parser.add_argument_group("infer role")
    w.add_argument("--model", metavar="PATH",
                   help="state_dict of the shipped architecture (or a TorchScript file with --allow-torchscript)")
    w.add_argument("--allow-torchscript", action="store_true",
                   help="accept a TorchScript model file: it runs code from the file")
    w.add_argument("--max-batch", type=_max_batch, default=64, help="largest batch, 1-1024 (default: 64)")
    w.add_argument("--max-delay-ms", type=_max_delay_ms, default=2.0,
                   help="longest wait for a fuller batch, 0-1000 ms (default: 2)")
    w.add_argument("--queue-size", type=_positive_int, default=2_000,
                   help="images queued at most, about 0.5 s of work (default: 2000)")
    w.add_argument("--max-payload", type=_positive_int, default=1_048_576,
                   help="largest image payload in bytes (default: 1 MiB)")
    w.add_argument("--max-pixels", type=_positive_int, default=4_000_000,
                   help="largest image in pixels (default: 4,000,000)")
    w.add_argument("--group", help="shared-subscription group: workers in one group share the image stream")
    w.add_argument("--session-expiry", type=_session_expiry, default=None,
                   help="seconds the broker keeps an infer or output role's session (and its QoS 1 messages) "
                        "while it is away; give it a fixed --id to resume the session (default: 0, "
                        f"{DURABLE_SESSION_EXPIRY} with --durable)")
    w.add_argument("--result-qos", type=_qos, default=None,
                   help="QoS of every result (default: the QoS of its image; 1 with --durable)")
    w.add_argument("--threads", type=_positive_int, default=None, help="torch threads per worker")
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
        if not name or any(c in name for c in "+#") or "\0" in name:
            raise ConfigError(f"bad topic name {name!r}: no wildcards in a topic to publish on")
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
        model_path=args.model,
        allow_torchscript=args.allow_torchscript,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
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
        if args.cafile or args.cert:
            raise ConfigError("--cafile/--cert/--key need --broker mqtts://...")
        return None
    address = BrokerAddress.parse(args.broker)
    if warning := url_password_warning(args.broker):
        log.warning("%s", warning)
    address = address.with_credentials_from(password_file=args.password_file)
    return address.with_tls_files(args.cafile, args.cert, args.key)


def protocols_from_args(args: argparse.Namespace) -> tuple[int, ...] | None:
    return {"auto": None, "5": (5,), "3.1.1": (4,)}[args.mqtt]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (`mnist-tui: error: ...`, exit status 2), without the
    usage block above it: the same for a bad flag and a bad MNIST_* variable."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mnist-tui",
        description="Run, watch and steer an MQTT MNIST inference pipeline. "
                    "With no command: the terminal console.",
    )
    add_global_options(parser)
    add_config_options(parser)
    add_connection_options(parser)
    add_pipeline_options(parser)
    parser.add_argument("--roles", default=None,
                        help="roles the console starts in-process, comma-separated (default: all three on "
                             "the embedded broker, none with --broker)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run roles headless until Ctrl-C or SIGTERM")
    run.add_argument("roles", nargs="+", metavar="ROLE", help="input, infer, output, or all")
    run.add_argument("--workers", type=_positive_int, default=1,
                     help="infer workers sharing the stream (mosquitto or another broker with shared subscriptions): "
                          "the first runs in this process, the others as child processes")
    run.add_argument("--json", action="store_true", help="output role: print each result as one JSON line")
    run.add_argument("--hold", action="store_true", help="input role: wait for a start command")
    run.add_argument("--quiet", action="store_true", help="no periodic summary lines")
    # The broker and pipeline options also work after `run ROLE` (`run infer --id w1 --session-expiry 3600`);
    # defaults are suppressed there so that an option given before `run` is not reset.
    own = {a.dest for a in run._actions}
    add_connection_options(run)
    add_pipeline_options(run)
    for action in run._actions:
        if action.dest not in own:
            action.default = argparse.SUPPRESS
    apply_env(parser)  # each MNIST_* variable through its flag's parser (engine/env_options.py)
    apply_env(run)

    for name, helper in _optional_commands().items():
        helper(sub.add_parser(name, help=_HELP[name]))
    return parser


_HELP = {"train": "retrain the model reproducibly and write its model card",
         "bench": "benchmark the pipeline and report throughput, latency and losses",
         "record": "record traffic on chosen topics to a file",
         "replay": "play a recorded file back onto a broker",
         "metrics": "serve Prometheus metrics of every role on the broker",
         "health": "exit 0 when the pipeline is healthy, 1 with one line why not",
         "config": "show the effective broker settings and where each came from (secrets masked)"}


def _optional_commands() -> dict[str, Callable[[argparse.ArgumentParser], None]]:
    """Subcommands whose modules exist in this build (each module has add_arguments and run)."""
    import importlib

    found = {}
    modules = {"train": "engine.training.options", "bench": "engine.bench.run",
               "record": "engine.recorder", "replay": "engine.recorder",
               "metrics": "engine.monitor.metrics", "health": "engine.monitor.health", "config": "engine.config_file"}
    for name, module in modules.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError:
            continue
        adder = getattr(mod, f"add_{name}_arguments", None) or getattr(mod, "add_arguments", None)
        if adder is not None:
            found[name] = adder
    return found


def main(argv: list[str] | None = None, console: Callable[[argparse.Namespace], int] | None = None) -> int:
    """Parse, run a subcommand (or `console` when none is given), and turn every MnistError into one line
    on stderr with exit status 1. Shared by `mnist-tui` and `python -m engine`."""
    import warnings

    # torch warns about the pickle protocol of a file it is about to refuse; the refusal is the one line
    warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
    try:  # a Ctrl-C at any moment, even while the parser imports the optional commands, ends quietly
        parser = build_parser()
        args = parser.parse_args(argv)
        apply_config(args, argv)  # the config file's profile, where no flag or environment variable spoke
        if args.command:
            return dispatch(args)
        if console is None:
            parser.error("a command is needed here (run, train, bench, ...); the console is `mnist-tui`")
        return console(args)
    except MnistError as exc:
        print(f"mnist-tui: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def dispatch(args: argparse.Namespace) -> int:
    """Run a headless subcommand; returns the exit status. MnistError propagates to the caller."""
    # bench prints a report: its log lines are warnings only, unless -v or --log-level ask for more
    setup_logging(log_level(args, logging.WARNING if args.command == "bench" else logging.INFO))
    if args.command == "run":
        return run_roles(args)
    if args.command == "train":
        from engine.training import train
        return train.run(args)
    if args.command == "bench":
        from engine.bench import run as bench
        return bench.run(args)
    if args.command in ("record", "replay"):
        from engine import recorder

        return getattr(recorder, f"run_{args.command}")(args)
    if args.command == "metrics":
        from engine.monitor import metrics

        return metrics.run(args)
    if args.command == "health":
        from engine.monitor import health

        return health.run(args)
    if args.command == "config":
        from engine import config_file

        return config_file.run(args)
    raise ConfigError(f"unknown command {args.command!r}")


def _result_printer() -> Callable[[Result, bytes], None]:
    lock = threading.Lock()
    out = sys.stdout

    def print_result(result: Result, payload: bytes) -> None:
        if result.legacy:
            line = json.dumps({"id": None, "pred": result.pred, "legacy": True})
        else:
            line = payload.decode("utf-8").strip()
        with lock:
            try:
                out.write(line + "\n")
                out.flush()
            except (BrokenPipeError, ValueError):
                pass

    return print_result


def run_roles(args: argparse.Namespace) -> int:
    from engine.roles.pipeline import LocalPipeline

    roles = list(ROLES) if "all" in args.roles else args.roles
    for name in roles:
        if name not in ROLES:
            raise ConfigError(f"unknown role {name!r} (roles: input, infer, output, all)")
    if args.quiet or args.json:  # no summary lines; stdout is for results
        setup_logging(max(log_level(args), logging.WARNING))
    settings = settings_from_args(args)
    settings.autostart = not args.hold
    ids: dict[str, str] = {}
    if args.id:
        if len(roles) != 1:
            raise ConfigError("--id names one role: start one role per process to give it an id")
        ids[roles[0]] = args.id  # several workers get -1, -2, ... appended
    pipeline = LocalPipeline(
        settings, roles, address_from_args(args), broker_kind=args.embedded, broker_config=args.broker_config,
        workers=args.workers,
        client_ids=ids, on_result=_result_printer() if args.json else None, protocols=protocols_from_args(args),
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started = False
    failed: str | None = None
    try:
        pipeline.start()  # cleans up after itself when it fails
        started = True
        for note in pipeline.notes:
            log.warning("%s", note)
        log.info("broker: %s (%s, %s)", pipeline.address.url, pipeline.broker_description, pipeline.protocol_name)
        for role in pipeline.roles:
            log.info("%s %s started", role.role, role.client_id)
        publisher = pipeline.role("input")
        only_input = roles == ["input"]
        next_summary = time.monotonic() + 5
        while not stop.wait(0.2):
            failed = next((f"{r.role} {r.client_id}: {r.error_reason}" for r in pipeline.roles if r.error_reason), None)
            if failed is not None:
                break
            if only_input and publisher is not None and publisher.finished:
                log.info("input: sent %d images, done", publisher.sent)
                break
            if not (args.quiet or args.json) and time.monotonic() >= next_summary:
                next_summary += 5
                for role in pipeline.roles:
                    log.info("%s", _summary(role.status()))
    finally:
        if started:
            log.info("stopping")
            pipeline.stop()
        for s, handler in old.items():
            signal.signal(s, handler)
    if failed is not None:  # a role that died: one line and a non-zero exit (main prints it)
        raise RoleFailed(failed)
    return 0


def _summary(status: dict[str, Any]) -> str:
    role = status["role"]
    if role == "input":
        return f"input {status['id']}: {status['state']}, sent {status['sent']}, {status['rate_actual']}/s"
    if role == "infer":
        lat = status["lat_ms"]
        if status.get("batch_mean") is None:  # nothing processed in this interval: no batch, no latency
            return (f"infer {status['id']}: done {status['processed']}, errors {status['errors']}, idle, "
                    f"queue {status['queue']}, dropped {status['dropped']}")
        return (f"infer {status['id']}: done {status['processed']}, errors {status['errors']}, "
                f"{status['rate']}/s, queue {status['queue']}, dropped {status['dropped']}, "
                f"batch {status['batch_mean']}, p50 {lat['p50']} ms, p99 {lat['p99']} ms")
    acc = status["accuracy"]
    acc_text = f"{acc * 100:.2f}%" if acc is not None else "n/a"
    return (f"output {status['id']}: results {status['received']}, accuracy {acc_text}, "
            f"duplicates {status['duplicates']}, {status['rate']}/s")
