"""The user's config file: named broker profiles, so a broker's URL, user and TLS files are typed once.

    # ~/.config/mnist-tui/config.toml (the user config dir; MNIST_CONFIG or --config names another)
    profile = "lab"                      # used when no --profile is given (optional)

    [profiles.lab]
    broker = "mqtts://broker.lab:8883"
    user = "alice"
    password_file = "~/.config/mnist-tui/lab.password"
    cafile = "/etc/ssl/lab-ca.pem"      # also: cert, key, mqtt ("auto", "5", "3.1.1"), broker_config
    insecure = false                     # true: TLS without checking the broker's certificate

    [console]                            # written by the console when its theme or filter changes
    theme = "nord"
    filter = "mnist/#"

Precedence, for each setting: a flag, then its environment variable, then the file, then the default.
`mnist-tui config` shows each effective setting and where it came from, with secrets masked.

The console saves its preferences with `save_console_setting`: the [console] table alone changes (tomlkit
keeps every other key, comment and profile as written), through a temporary file renamed over the old one,
which keeps its mode; a symbolic link is never written through.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import stat
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

from engine.console.topic_filters import validate_watch_filter
from engine.errors import ConfigError

APP = "mnist-tui"
# profile key -> (argparse dest, flag, environment variable)
OPTIONS: dict[str, tuple[str, str, str]] = {
    "broker": ("broker", "--broker", "MNIST_BROKER"),
    "password_file": ("password_file", "--password-file", "MNIST_BROKER_PASSWORD_FILE"),
    "cafile": ("cafile", "--cafile", "MNIST_CAFILE"),
    "cert": ("cert", "--cert", "MNIST_CERT"),
    "key": ("key", "--key", "MNIST_KEY"),
    "mqtt": ("mqtt", "--mqtt", "MNIST_MQTT"),
    "insecure": ("insecure", "--insecure", "MNIST_INSECURE"),
    "broker_config": ("broker_config", "--broker-config", "MNIST_BROKER_CONFIG"),
}
PROFILE_KEYS = (*OPTIONS, "user")
PATH_KEYS = ("password_file", "cafile", "cert", "key", "broker_config")
BOOL_KEYS = ("insecure",)
# [console] key -> (argparse dest, flag, environment variable): the console's preferences, which it saves
CONSOLE_OPTIONS: dict[str, tuple[str, str, str]] = {
    "theme": ("theme", "--theme", "MNIST_THEME"),
    "filter": ("filter", "--filter", "MNIST_FILTER"),
}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("config file")
    g.add_argument("--config", default=None, metavar="FILE",
                   help=f"config file (env MNIST_CONFIG; default: {default_path()})")
    g.add_argument("--profile", default=None, metavar="NAME",
                   help="broker profile from the config file (env MNIST_PROFILE)")


def default_path() -> Path:
    from platformdirs import user_config_path

    return user_config_path(APP) / "config.toml"


def config_path(args: argparse.Namespace) -> tuple[Path, bool]:
    """The config file to read, and whether the user named it (then it must exist)."""
    named = getattr(args, "config", None) or os.environ.get("MNIST_CONFIG")
    return (Path(named).expanduser(), True) if named else (default_path(), False)


def load(path: Path, required: bool) -> dict[str, Any]:
    """The parsed file ({} when the default one does not exist); ConfigError with one line when unusable."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file not found: {path}") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"bad config file {path}: {exc}") from None
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ConfigError(f"bad config file {path}: [profiles.NAME] tables expected")
    for name, profile in profiles.items():
        for key, value in profile.items():
            if key not in PROFILE_KEYS:
                raise ConfigError(f"bad config file {path}: unknown key {key!r} in profile {name!r} "
                                  f"(known: {', '.join(PROFILE_KEYS)})")
            if key in BOOL_KEYS:
                if not isinstance(value, bool):
                    raise ConfigError(f"bad config file {path}: {name}.{key} must be true or false")
            elif not isinstance(value, str) or not value:
                raise ConfigError(f"bad config file {path}: {name}.{key} must be a non-empty string")
    _check_console(path, data.get("console", {}))
    return data


def _check_console(path: Path, console: object) -> None:
    if not isinstance(console, dict):
        raise ConfigError(f"bad config file {path}: [console] table expected")
    for key, value in console.items():
        if key not in CONSOLE_OPTIONS:
            raise ConfigError(f"bad config file {path}: unknown key {key!r} in [console] "
                              f"(known: {', '.join(CONSOLE_OPTIONS)})")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"bad config file {path}: console.{key} must be a non-empty string")


def _usable_console(path: Path, console: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The [console] table without a filter the console cannot subscribe, and a note saying so.

    The console writes this table itself; a filter it saved once (an older version took characters a broker
    refuses) must not stop every command: it is left out, and the console starts with `#`."""
    value = console.get("filter")
    if value is None:
        return console, []
    try:
        validate_watch_filter(value)
    except ConfigError as exc:
        kept = {key: v for key, v in console.items() if key != "filter"}
        return kept, [f"console.filter in {path} is not used: {exc}; the console starts with #"]
    return console, []


def _given(argv: list[str], flag: str) -> bool:
    """`flag` is on the command line, whole or shortened as argparse takes it (`--filt x/#`, `--filt=x/#`)."""
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name == flag or (name.startswith("--") and len(name) > 3 and flag.startswith(name)):
            return True
    return False


def apply(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, str]:
    """Fill the broker options from the chosen profile where neither a flag nor the environment set them.

    Returns where each profile setting came from ({key: "flag" | "env" | "config" | "default"}), and
    records it on args as `config_sources` (with `config_file` and `profile`) for `mnist-tui config`.
    """
    argv = sys.argv[1:] if argv is None else argv
    path, required = config_path(args)
    data = load(path, required)
    name = getattr(args, "profile", None) or os.environ.get("MNIST_PROFILE") or data.get("profile")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"bad config file {path}: profile must be a string")
    profiles = data.get("profiles", {})
    if name and name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"no profile {name!r} in {path} (profiles: {known})")
    profile: dict[str, Any] = profiles.get(name, {}) if name else {}
    sources = _apply_table(args, argv, OPTIONS, profile, path, name)
    sources["user"] = _apply_user(args, profile, sources)
    console, notes = _usable_console(path, data.get("console", {}))
    sources |= _apply_table(args, argv, CONSOLE_OPTIONS, console, path, "console")
    if sources["filter"] in ("flag", "env"):
        notes = []  # the file's filter is not wanted anyway
    args.config_sources, args.config_file, args.profile = sources, path, name
    args.config_notes = notes
    return sources


def _apply_table(args: argparse.Namespace, argv: list[str], options: dict[str, tuple[str, str, str]],
                 table: dict[str, Any], path: Path, name: str | None) -> dict[str, str]:
    sources: dict[str, str] = {}
    for key, (dest, flag, env) in options.items():
        if _given(argv, flag):
            sources[key] = "flag"
        elif os.environ.get(env):
            sources[key] = "env"
        elif key in table:
            setattr(args, dest, _profile_value(key, table[key], path, name))
            sources[key] = "config"
        else:
            sources[key] = "default"
    return sources


def _profile_value(key: str, value: Any, path: Path, name: str | None) -> Any:
    if key not in PATH_KEYS:
        return value
    file = Path(value).expanduser()
    if key == "broker_config":  # as --broker-config checks it (engine.options.existing_file)
        if not file.is_file():
            raise ConfigError(f"bad config file {path}: {name}.{key}: no such file: {value}")
        return file
    return str(file)


def _apply_user(args: argparse.Namespace, profile: dict[str, str], sources: dict[str, str]) -> str:
    url = getattr(args, "broker", None)
    try:
        parts = urlsplit(url if url and "://" in url else f"mqtt://{url}") if url else None
        if parts is not None:
            _ = parts.port  # a bad port or IPv6 address is said here, as one line
    except ValueError as exc:
        raise ConfigError(f"bad broker URL {url!r}: {exc}") from None
    if parts is not None and parts.username:
        return sources["broker"]  # a user in the URL comes with it
    if os.environ.get("MNIST_BROKER_USER"):
        return "env"
    if "user" in profile and parts is not None:
        netloc = f"{quote(profile['user'], safe='')}@{parts.netloc}"
        args.broker = urlunsplit(parts._replace(netloc=netloc))
        return "config"
    return "default"


# ----- `mnist-tui config` -----
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(config_command=True)


def run(args: argparse.Namespace) -> int:
    """Print the effective broker settings, each with its source; passwords never shown."""
    from engine.global_options import log_level
    from engine.mqtt.address import BrokerAddress

    sources = getattr(args, "config_sources", None) or apply(args)
    path = args.config_file
    lines = [("config file", f"{path}" + ("" if Path(path).is_file() else " (none)"), ""),
             ("profile", args.profile or "-", "")]
    address = BrokerAddress.parse(args.broker) if args.broker else None
    lines.append(("broker", address.url if address else "embedded (a local broker started for the session)",
                  sources["broker"]))
    lines.append(("user", (address.username if address else None) or os.environ.get("MNIST_BROKER_USER") or "-",
                  sources["user"]))
    password = (address.password if address else None) or os.environ.get("MNIST_BROKER_PASSWORD")
    pw_source = sources["broker"] if address and address.password else "env" if password else sources["password_file"]
    lines.append(("password", "****" if password or args.password_file else "-", pw_source))
    for key in ("password_file", "cafile", "cert", "key", "mqtt", "broker_config"):
        lines.append((key, str(getattr(args, OPTIONS[key][0]) or "-"), sources[key]))
    lines.append(("insecure", "yes" if getattr(args, "insecure", False) else "no", sources["insecure"]))
    lines.append(("theme", getattr(args, "theme", None) or "Textual's default", sources["theme"]))
    lines.append(("filter", getattr(args, "filter", None) or "#", sources["filter"]))
    level_source = ("flag" if args.log_level else "env" if os.environ.get("MNIST_LOG_LEVEL")
                    else "flag" if args.verbose or args.less_verbose else "default")
    lines.append(("log level", logging.getLevelName(log_level(args)).lower(), level_source))
    width = max(len(k) for k, _, _ in lines)
    text = "".join(f"{key:<{width}}  {value}" + (f"  ({source})" if source else "") + "\n"
                   for key, value, source in lines)
    for note in getattr(args, "config_notes", []):
        print(f"note: {note}", file=sys.stderr)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `mnist-tui config | head`
        pass
    return 0


# ----- the console's preferences -----
class ConsolePrefs(NamedTuple):
    """What the console starts with (None: Textual's theme; the filter `#`), and the file it saves into."""

    file: Path
    theme: str | None
    filter: str
    notes: tuple[str, ...] = ()  # what the console says as it starts (a saved filter it does not use)
    left_out: tuple[str, ...] = ()  # keys of the file's [console] table not used: saved anew once chosen


def console_prefs(args: argparse.Namespace) -> ConsolePrefs:
    """The console's preferences from parsed, config-applied args (`apply` must have run)."""
    notes = tuple(getattr(args, "config_notes", ()))
    return ConsolePrefs(Path(args.config_file), getattr(args, "theme", None), getattr(args, "filter", None) or "#",
                        notes, ("filter",) if notes else ())


def save_console_setting(path: Path, key: str, value: str) -> None:
    """Set `key` of the [console] table of `path` to `value`, changing nothing else in the file.

    Atomic (a temporary file in the same folder, renamed over the old one), with the old file's mode (a new
    file is private to the user). A symbolic link, a folder or a file that is not valid TOML is left alone.
    Raises ConfigError with one line when the setting cannot be saved.
    """
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    if key not in CONSOLE_OPTIONS:
        raise ValueError(f"not a console setting: {key!r}")
    where = f"{key} not saved to {path}"
    try:
        old = os.lstat(path)
    except FileNotFoundError:
        old = None
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    if old is not None and stat.S_ISLNK(old.st_mode):
        raise ConfigError(f"{where}: it is a symbolic link, which the console does not write through")
    if old is not None and not stat.S_ISREG(old.st_mode):
        raise ConfigError(f"{where}: not a regular file")
    try:
        text = _read_no_follow(path) if old is not None else ""
        doc = tomlkit.parse(text)
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    except (TOMLKitError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: the file is not valid TOML ({exc})") from None
    console = doc.get("console")
    if console is None:
        console = tomlkit.table()
        doc["console"] = console
    if not isinstance(console, dict):
        raise ConfigError(f"{where}: its 'console' is not a table")
    console[key] = value
    try:
        _replace(path, tomlkit.dumps(doc), None if old is None else stat.S_IMODE(old.st_mode))
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror or exc}") from None


def _read_no_follow(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode("utf-8")


def _replace(path: Path, text: str, mode: int | None) -> None:
    """Write `text` to a new file beside `path` (mode `mode`, else 0600) and rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # the rename replaces a name: it never follows a link put there meanwhile
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
