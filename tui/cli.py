"""The `mnist-tui` console script.

With a subcommand (`run`, `train`, `bench`, ...) it hands over to engine.cli and never imports textual.
`web` (tui/web.py) serves the console to a browser; `completion` (tui/completion.py) prints a shell script.
Without one it opens the console: on an embedded broker with all three roles in this process, or, with
`--broker URL`, attached to an existing broker with only the roles named by `--roles` (default none).
Errors print as one line and a non-zero exit status; quitting stops every local role and the broker.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import deque
from multiprocessing import resource_tracker

from engine.errors import ConfigError
from engine.topics import ROLES


class _RecentErrors(logging.Handler):
    """Keeps log records while the console owns the terminal (a stray line would garble the screen)."""

    def __init__(self, size: int = 200) -> None:
        super().__init__(level=logging.WARNING)
        self.records: deque[logging.LogRecord] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def parse_roles(text: str | None, attached: bool) -> tuple[str, ...]:
    """--roles: comma-separated role names, "all" or "none"; default all on the embedded broker, none attached."""
    if text is None:
        return () if attached else ROLES
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names in (["none"], []):
        return ()
    if "all" in names:
        return ROLES
    for name in names:
        if name not in ROLES:
            raise ConfigError(f"unknown role {name!r} in --roles (roles: {', '.join(ROLES)}, all, none)")
    return tuple(dict.fromkeys(names))


def run_console(args: argparse.Namespace) -> int:
    from engine.config_file import console_prefs
    from engine.console.observer_process import ObserverProcess
    from engine.console.roles_process import RolesProcess
    from engine.options import address_from_args, protocols_from_args, settings_from_args

    settings = settings_from_args(args)
    # The console opens with its publisher stopped: space (or a start command from anywhere) starts it.
    # Headless, `run input` starts at once unless --hold.
    settings.autostart = False

    root = logging.getLogger()
    captured = _RecentErrors()
    root.addHandler(captured)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)

    def child_log(level: int, name: str, message: str) -> None:
        captured.records.append(logging.makeLogRecord({"levelno": level, "name": name, "msg": message}))

    local: RolesProcess | None = None
    observer: ObserverProcess | None = None
    app = None
    try:
        address = address_from_args(args)
        # Warnings about the options (a password in the URL, a password file others may read) open the
        # console as notifications, with the pipeline's notes.
        warnings = [record.getMessage() for record in captured.records if record.levelno == logging.WARNING]
        roles = parse_roles(args.roles, attached=address is not None)
        protocols = protocols_from_args(args)
        prefs = console_prefs(args)  # theme and filter: flag, environment, config file (which the app updates)

        from tui.app import MnistApp  # textual only on this path
        from tui.chrome.header_bar import BrokerInfo
        from tui.starting import CONNECTING, LOADING, StartingModel, Startup

        def start() -> Startup:
            """The blocking part (the roles' child loads torch and the model: 10-30 s), in the app's start thread
            while the console already shows its chrome."""
            nonlocal local, observer, address
            if address is None or roles:
                local = RolesProcess(settings, roles, address, broker_kind=args.embedded, protocols=protocols,
                                     broker_config=args.broker_config, on_log=child_log)
                info = local.start()
                address = info.address
                protocol: int | None = info.protocol
                kind, description, notes = info.broker_kind, info.broker_description, warnings + list(info.notes)
            else:
                protocol = protocols[0] if protocols else None
                kind, description, notes = "external", "external broker", warnings
            if kind == "external":
                description = f"external broker at {address.host}"
            observer = ObserverProcess(address, settings.topics, protocol=protocol, filter=prefs.filter)
            observer.start()
            return Startup(observer, BrokerInfo(address.url, kind, description), notes, local is not None)

        # The roles and the observer run in spawned processes, which need multiprocessing's resource tracker:
        # started here, while stderr is still the terminal's (under the app it has no descriptor to hand on).
        resource_tracker.ensure_running()
        starting = StartingModel(LOADING if address is None or roles else CONNECTING)
        app = MnistApp(starting, BrokerInfo("", "starting", "starting"), log_records=captured.records,
                       prefs=prefs, starter=start, warm_help=True)
        app.run()
        if app.start_thread is not None and app.start_thread.is_alive():  # quit while the roles were starting
            print("mnist-tui: waiting for the local roles to finish starting, then stopping them…",
                  file=sys.stderr, flush=True)
            app.start_thread.join()
        if app.start_error is not None:
            raise app.start_error
        if local is not None:  # the terminal is back: say why it waits
            print("mnist-tui: stopping the local roles and the broker…", file=sys.stderr, flush=True)
        return app.return_code or 0
    finally:
        if observer is not None:
            observer.stop()
        if local is not None:
            local.stop()
        root.removeHandler(captured)


def main(argv: list[str] | None = None) -> int:
    from engine.cli import Command
    from engine.cli import main as cli_main
    from tui import completion, web

    argv = sys.argv[1:] if argv is None else list(argv)
    commands = {web.NAME: Command(web.HELP, web.add_arguments, web.runner(argv))}  # the console's own commands
    commands[completion.NAME] = Command(completion.HELP, completion.add_arguments, completion.runner(commands))
    return cli_main(argv, console=run_console, commands=commands)


if __name__ == "__main__":
    sys.exit(main())
