"""Command line: the top-level parser and the dispatch of the headless subcommands.

`tui.cli.main` is the console script; it parses with `build_parser()` and hands subcommands to
`dispatch()`, which never imports textual. Option types and the shared option groups live in
`engine/options.py`; each command adds its own arguments from its own module (`COMMANDS`). Only the entry
points (`engine/__main__.py`, `tui/cli.py`) import this module.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from engine.config_file import add_config_options
from engine.config_file import apply as apply_config
from engine.env_options import apply_env, check_env_error
from engine.errors import ConfigError, MnistError, RoleFailed
from engine.global_options import add_global_options, log_level, setup_logging
from engine.options import (
    OneLineParser,
    add_connection_options,
    add_pipeline_options,
    address_from_args,
    positive_int,
    protocols_from_args,
    settings_from_args,
    topic_filter,
)
from engine.protocol import Result
from engine.signals import Interrupted, SignalStop
from engine.topics import ROLES

log = logging.getLogger("mnist-tui")


def build_parser(commands: Mapping[str, Command] | None = None) -> argparse.ArgumentParser:
    """The whole command line: COMMANDS plus `commands`, those the console script adds (`web`)."""
    parser = OneLineParser(
        prog="mnist-tui",
        description="Run, watch and steer an MQTT MNIST inference pipeline. "
                    "With no command: the terminal console.",
    )
    add_global_options(parser)
    add_config_options(parser)  # every command reads the config file (train and completion too)
    general = _flags(parser)
    add_connection_options(parser)
    broker = _flags(parser) - general | {"--image-topic", "--result-topic", "--topic-prefix"}
    add_pipeline_options(parser)
    # what a command reads when given before it: the hint for `health --broker URL` names these only (record,
    # health and metrics read the topics too); train and completion connect to no broker: those are not for them
    parser.hint_flags = general | broker
    parser.offline_flags = {"train": broker, "completion": broker}
    parser.add_argument("--roles", default=None,
                        help="roles the console starts in-process, comma-separated (default: all three on "
                             "the embedded broker, none with --broker)")
    c = parser.add_argument_group("console (the console saves these to the config file when they change in it)")
    c.add_argument("--theme", default=None, metavar="NAME", help="Textual theme (default: Textual's)")
    c.add_argument("--filter", type=topic_filter, default=None, metavar="FILTER",
                   help="the topic inspector's subscription filter (default: #)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run roles headless until Ctrl-C or SIGTERM")
    run.add_argument("roles", nargs="+", metavar="ROLE", help="input, infer, output, or all")
    run.add_argument("--workers", type=positive_int, default=1,
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

    for name, command in {**COMMANDS, **(commands or {})}.items():
        adder = command.adder()
        if adder is not None:
            adder(sub.add_parser(name, help=command.help))
    return parser


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings} - {"-h", "--help"}


class Command(NamedTuple):
    """A subcommand: the module that adds its arguments and the one that runs it (each `module:function`).

    Modules are imported when needed (bench and train pull in torch); an optional one missing from this
    build (training) is simply not offered. The console script's own commands may give functions instead.
    """

    help: str
    add: str | Callable[[argparse.ArgumentParser], None]
    run: str | Callable[[argparse.Namespace], int]

    def adder(self) -> Callable[[argparse.ArgumentParser], None] | None:
        try:
            return _function(self.add)
        except ModuleNotFoundError:
            return None

    def runner(self) -> Callable[[argparse.Namespace], int]:
        return _function(self.run)


def _function(path: str | Callable[..., Any]) -> Any:
    if callable(path):
        return path
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


COMMANDS: dict[str, Command] = {
    "train": Command("retrain the model reproducibly and write its model card",
                     "engine.training.options:add_arguments", "engine.training.train:run"),
    "bench": Command("benchmark the pipeline and report throughput, latency and losses",
                     "engine.bench.run:add_arguments", "engine.bench.run:run"),
    "record": Command("record traffic on chosen topics to a file",
                      "engine.recorder:add_record_arguments", "engine.recorder:run_record"),
    "replay": Command("play a recorded file back onto a broker",
                      "engine.recorder:add_replay_arguments", "engine.recorder:run_replay"),
    "metrics": Command("serve Prometheus metrics of every role on the broker",
                       "engine.monitor.metrics:add_metrics_arguments", "engine.monitor.metrics:run"),
    "health": Command("exit 0 when the pipeline is healthy, 1 with one line why not",
                      "engine.monitor.health:add_health_arguments", "engine.monitor.health:run"),
    "config": Command("show the effective broker settings and where each came from (secrets masked)",
                      "engine.config_file:add_arguments", "engine.config_file:run"),
}


def main(argv: list[str] | None = None, console: Callable[[argparse.Namespace], int] | None = None,
         commands: Mapping[str, Command] | None = None) -> int:
    """Parse, run a subcommand (or `console` when none is given), and turn every MnistError into one line
    on stderr with exit status 1. Shared by `mnist-tui` and `python -m engine`."""
    import warnings

    # torch warns about the pickle protocol of a file it is about to refuse; the refusal is the one line
    warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
    try:  # a Ctrl-C at any moment, even while the parser imports the optional commands, ends quietly
        parser = build_parser(commands)
        args = parser.parse_args(argv)
        check_env_error(args)  # a bad variable of the command that runs (MNIST_BENCH_*): one line, exit 2
        apply_config(args, argv)  # the config file's profile, where no flag or environment variable spoke
        if args.command:
            return dispatch(args, commands)
        if console is None:
            parser.error("a command is needed here (run, train, bench, ...); the console is `mnist-tui`")
        return console(args)
    except MnistError as exc:
        print(f"mnist-tui: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # 130 for Ctrl-C; 143 for a SIGTERM while `run` was starting
        return 128 + getattr(exc, "signum", signal.SIGINT)


def dispatch(args: argparse.Namespace, commands: Mapping[str, Command] | None = None) -> int:
    """Run a headless subcommand; returns the exit status. MnistError propagates to the caller."""
    # bench prints a report: its log lines are warnings only, unless -v or --log-level ask for more
    setup_logging(log_level(args, logging.WARNING if args.command == "bench" else logging.INFO))
    if args.command == "run":
        return run_roles(args)
    command = {**COMMANDS, **(commands or {})}.get(args.command)
    if command is not None:
        return command.runner()(args)
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
    from engine.roles.publisher import Publisher

    roles = list(ROLES) if "all" in args.roles else args.roles
    for name in roles:
        if name not in ROLES:
            raise ConfigError(f"unknown role {name!r} (roles: input, infer, output, all)")
    if args.workers > 1 and "infer" in roles:
        from engine.roles.workerpool import check_worker_count

        check_worker_count(args.workers)
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
    stop = SignalStop()
    started = False

    def on_signal(signum: int, frame: Any) -> None:
        if not started:  # while starting (model, broker, connections): abort at once; start cleans up
            raise Interrupted(signum)
        stop.handler(signum, frame)  # running: leave the loop below, then stop every role in order

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    failed: str | None = None
    publisher: Publisher | None = None  # the input role, when this process runs one
    try:
        pipeline.start()  # cleans up after itself when it fails
        started = True
        found = pipeline.role("input")  # (a stopped pipeline has no roles: the warning below needs it after)
        assert found is None or isinstance(found, Publisher)
        publisher = found
        for note in pipeline.notes:
            log.warning("%s", note)
        assert pipeline.address is not None, "a started pipeline knows its broker"
        log.info("broker: %s (%s, %s)", pipeline.address.url, pipeline.broker_description, pipeline.protocol_name)
        for role in pipeline.roles:
            log.info("%s %s started", role.role, role.client_id)
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
    if publisher is not None and publisher.no_subscriber:  # MQTT 5 brokers say so of a QoS 1 image: it is gone
        log.warning("input %s: %d of %d images had nobody subscribed to %s (the broker said \"no matching "
                    "subscribers\"): gone", publisher.client_id, publisher.no_subscriber, publisher.sent,
                    publisher.topics.images)
    if failed is not None:  # a role that died: one line and a non-zero exit (main prints it)
        raise RoleFailed(failed)
    return 0


def _summary(status: dict[str, Any]) -> str:
    role = status["role"]
    if role == "input":
        # MQTT 5 brokers say when a QoS 1 image had nobody subscribed to it: it is gone (shown once there is one)
        unheard = f", no subscriber {status['no_subscriber']}" if status.get("no_subscriber") else ""
        return f"input {status['id']}: {status['state']}, sent {status['sent']}{unheard}, {status['rate_actual']}/s"
    if role == "infer":
        lat = status["lat_ms"]
        # expired: past its MQTT 5 expiry or older than --max-wait, not answered (shown once there is one)
        expired = f", expired {status['expired']}" if status.get("expired") else ""
        if status.get("backlogs_dropped"):  # --max-wait: stale backlogs left to the broker to drop
            expired += f", backlogs dropped {status['backlogs_dropped']}"
        if status.get("intake_pauses"):  # a QoS 0 flood: left its subscription while the queue was full
            expired += f", intake pauses {status['intake_pauses']}"
        if status.get("batch_mean") is None:  # nothing processed in this interval: no batch, no latency
            return (f"infer {status['id']}: done {status['processed']}, errors {status['errors']}, idle, "
                    f"queue {status['queue']}, dropped {status['dropped']}{expired}")
        return (f"infer {status['id']}: done {status['processed']}, errors {status['errors']}, "
                f"{status['rate']}/s, queue {status['queue']}, dropped {status['dropped']}{expired}, "
                f"batch {status['batch_mean']}, p50 {lat['p50']} ms, p99 {lat['p99']} ms")
    acc = status["accuracy"]
    acc_text = f"{acc * 100:.2f}%" if acc is not None else "n/a"
    return (f"output {status['id']}: results {status['received']}, accuracy {acc_text}, "
            f"duplicates {status['duplicates']}, {status['rate']}/s")
