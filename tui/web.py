"""`mnist-tui web`: the console in a browser, served by textual-serve.

Each browser session runs its own console process (`python -m tui.cli` with the options given before
`web`), so every tab sees and steers the pipeline through the broker, as the terminal console does.
Loopback by default: whoever reaches the port steers the pipeline, so another address is the operator's
explicit choice (docs/SECURITY.md).
"""

from __future__ import annotations

import argparse
import shlex
import socket
import sys
from collections.abc import Callable

from engine.errors import ConfigError
from engine.options import positive_int

NAME = "web"
HELP = "serve the console to a browser (textual-serve); loopback only unless --host says otherwise"
_OWN_VALUED = {"--host", "--port"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve the console in a browser: each browser session opens its own console with the options given "
        "before `web` (without --broker, each session starts its own embedded broker and roles). "
        "SECURITY: anyone who reaches the port can start, stop and steer the pipeline; there is no login. "
        "The default binds to loopback only; --host 0.0.0.0 exposes it to the network and is your choice.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, loopback only; 0.0.0.0 serves the "
                             "steering console to the whole network)")
    parser.add_argument("--port", type=positive_int, default=8000, help="port to listen on (default 8000)")


def console_argv(argv: list[str]) -> list[str]:
    """The options before the `web` subcommand: what each browser session's console is started with."""
    for index in range(len(argv) - 1, -1, -1):
        if argv[index] == NAME and (index == 0 or argv[index - 1] not in _OWN_VALUED):
            return argv[:index]
    raise ConfigError("`web` not found on the command line")


def console_command(argv: list[str]) -> str:
    """The shell command textual-serve runs per session: this interpreter's console with the same options."""
    return shlex.join([sys.executable, "-m", "tui.cli", *console_argv(argv)])


def check_can_listen(host: str, port: int) -> None:
    """ConfigError (one line) unless `host:port` can be bound now, as the server binds it (SO_REUSEADDR, each
    address the host resolves to): a port in use is told before textual-serve prints its start banner."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _name, address in addresses:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
    except OSError as exc:  # the port is taken, the address is not ours, the name does not resolve
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def runner(argv: list[str]) -> Callable[[argparse.Namespace], int]:
    """`run` for the command line `argv` (the subcommand needs the raw options it passes through)."""

    def run(args: argparse.Namespace) -> int:
        from textual_serve.server import Server

        if args.port > 65535:
            raise ConfigError(f"--port {args.port} is not a TCP port (1-65535)")
        check_can_listen(args.host, args.port)
        server = Server(console_command(argv), host=args.host, port=args.port, title="mnist-tui")
        try:
            server.serve()
        except OSError as exc:  # taken between the check and the server's own bind
            raise ConfigError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from exc
        return 0

    return run
