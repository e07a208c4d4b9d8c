"""Settings from the environment: every option of the console and of `run` has an MNIST_* variable,
and a variable's value goes through exactly the parser of its flag (same checks, same one-line error,
exit status 2). Booleans take 1/0, true/false, yes/no, on/off.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

# option dest -> environment variable
ENV_VARS: dict[str, str] = {
    "broker": "MNIST_BROKER", "embedded": "MNIST_EMBEDDED", "broker_config": "MNIST_BROKER_CONFIG",
    "cafile": "MNIST_CAFILE", "cert": "MNIST_CERT",
    "key": "MNIST_KEY", "password_file": "MNIST_BROKER_PASSWORD_FILE", "mqtt": "MNIST_MQTT",
    "image_topic": "MNIST_IMAGE_TOPIC", "result_topic": "MNIST_RESULT_TOPIC", "topic_prefix": "MNIST_TOPIC_PREFIX",
    "dataset": "MNIST_DATASET", "list_file": "MNIST_LIST_FILE", "rate": "MNIST_RATE", "qos": "MNIST_QOS",
    "shuffle": "MNIST_SHUFFLE", "once": "MNIST_ONCE", "count": "MNIST_COUNT", "expiry": "MNIST_IMAGE_EXPIRY",
    "flood": "MNIST_FLOOD", "model": "MNIST_MODEL",
    "max_batch": "MNIST_MAX_BATCH", "max_delay_ms": "MNIST_MAX_DELAY_MS", "max_wait": "MNIST_MAX_WAIT",
    "queue_size": "MNIST_QUEUE_SIZE",
    "max_payload": "MNIST_MAX_PAYLOAD", "max_pixels": "MNIST_MAX_PIXELS", "group": "MNIST_GROUP",
    "session_expiry": "MNIST_SESSION_EXPIRY", "result_qos": "MNIST_RESULT_QOS", "durable": "MNIST_DURABLE",
    "threads": "MNIST_THREADS", "allow_torchscript": "MNIST_ALLOW_TORCHSCRIPT", "id": "MNIST_CLIENT_ID",
    "roles": "MNIST_ROLES", "insecure": "MNIST_INSECURE", "theme": "MNIST_THEME", "filter": "MNIST_FILTER",
    # global options (engine/global_options.py, engine/config_file.py)
    "log_level": "MNIST_LOG_LEVEL", "config": "MNIST_CONFIG", "profile": "MNIST_PROFILE",
    # run
    "workers": "MNIST_WORKERS", "json": "MNIST_JSON", "hold": "MNIST_HOLD", "quiet": "MNIST_QUIET",
}

# `bench` (engine/bench/run.py): its own options, and its --rate (full speed by default, whatever MNIST_RATE
# asks of the console's publisher), have variables of their own; the shared options keep the ones above.
BENCH_ENV_VARS: dict[str, str] = {
    "rate": "MNIST_BENCH_RATE", "duration": "MNIST_BENCH_DURATION", "warmup": "MNIST_BENCH_WARMUP",
    "workers": "MNIST_BENCH_WORKERS", "window": "MNIST_BENCH_WINDOW", "drain": "MNIST_BENCH_DRAIN",
    "generators": "MNIST_BENCH_GENERATORS", "collectors": "MNIST_BENCH_COLLECTORS", "overload": "MNIST_BENCH_OVERLOAD",
    "capacity_seconds": "MNIST_BENCH_CAPACITY_SECONDS", "json": "MNIST_BENCH_JSON",
    "no_progress": "MNIST_BENCH_NO_PROGRESS", "worker_cpus": "MNIST_BENCH_WORKER_CPUS",
    "worker_cpu_share": "MNIST_BENCH_WORKER_CPU_SHARE",
}

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"not a yes/no value: {text!r} (use 1/0, true/false, yes/no)")


def _is_switch(action: argparse.Action) -> bool:
    return isinstance(action, argparse._StoreTrueAction)


def convert(action: argparse.Action, text: str) -> object:
    """`text` parsed as the option of `action` would parse it on the command line."""
    if _is_switch(action):
        return parse_bool(text)
    value = action.type(text) if callable(action.type) else text
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(repr, action.choices))
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {choices})")
    return value


ENV_ERROR = "env_error"  # namespace attribute: (parser, message) of a command's bad variable, see apply_env


def apply_env(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None,
              names: Mapping[str, str] | None = None) -> None:
    """Name each option's variable in its --help line, and make a set variable the option's default.

    `names` (option dest -> variable) go before ENV_VARS: a command's own variables (BENCH_ENV_VARS).

    A bad value ends the program like a bad flag (`parser.error`): `prog: error: VAR=value: why`, exit status 2.
    A bad value of one of `names` does so only when that command runs (`check_env_error` after parsing): a
    stray MNIST_BENCH_RATE must not stop the console. Options whose default is suppressed (the global options
    repeated after `run`) only get the help text.
    """
    env = os.environ if environ is None else environ
    variables = {**ENV_VARS, **(names or {})}
    for action in parser._actions:
        var = variables.get(action.dest)
        if var is None or not action.option_strings:
            continue
        if var not in (action.help or ""):
            action.help = f"{action.help} (env {var})" if action.help else f"env {var}"
        text = env.get(var)
        if text is None or action.default is argparse.SUPPRESS:
            continue
        try:
            action.default = convert(action, text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            message = f"{var}={text!r}: {exc}"
            if names is None:
                parser.error(message)
            # a subcommand's defaults reach the namespace only when that subcommand is the one parsed
            parser.set_defaults(**{ENV_ERROR: (parser, message)})
            return


def check_env_error(args: argparse.Namespace) -> None:
    """End the program (exit status 2) if the command that was parsed has a bad variable (see apply_env)."""
    error = getattr(args, ENV_ERROR, None)
    if error is not None:
        parser, message = error
        parser.error(message)
