"""Where the broker is and how to log in: parsed from `mqtt://`, `mqtts://`, `ws://` and `wss://` URLs
and the environment. `ws://` and `wss://` reach a broker's websocket listener (MQTT over websockets, the
path included: `ws://host:8080/mqtt`)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from engine.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMES = {"mqtt": (False, 1883), "tcp": (False, 1883), "mqtts": (True, 8883), "ssl": (True, 8883),
           "ws": (False, 80), "wss": (True, 443)}
WEBSOCKET_SCHEMES = ("ws", "wss")


@dataclass(frozen=True)
class BrokerAddress:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    websocket_path: str | None = None  # set: MQTT over websockets, on this HTTP path
    insecure: bool = False  # TLS without checking the broker's certificate (a test broker's self-signed one)

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse `mqtt://[user[:pass]@]host[:port]`, `mqtts://...`, `ws://host[:port][/path]` or `wss://...`;
        raise ConfigError with one line."""
        text = url.strip()
        if "://" not in text:
            text = "mqtt://" + text
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"bad broker URL {url!r}: {exc}") from None
        if parts.scheme not in SCHEMES:
            raise ConfigError(f"bad broker URL {url!r}: scheme must be mqtt://, mqtts://, ws:// or wss://")
        if not parts.hostname:
            raise ConfigError(f"bad broker URL {url!r}: no host")
        if parts.netloc.rpartition("@")[2].endswith(":") or port == 0:  # were taken as the scheme's default port
            raise ConfigError(f"bad broker URL {url!r}: no port after the ':' (leave the ':' out for the default)"
                              if port is None else f"bad broker URL {url!r}: port 0")
        try:
            parts.hostname.encode("idna")  # what the resolver does with it: an empty label raised a traceback there
        except UnicodeError:
            raise ConfigError(f"bad broker URL {url!r}: host {parts.hostname!r} has an empty name between dots "
                              "or one over 63 characters") from None
        websocket = parts.scheme in WEBSOCKET_SCHEMES
        if parts.fragment or (not websocket and (parts.path not in ("", "/") or parts.query)):
            raise ConfigError(f"bad broker URL {url!r}: unexpected path or query")
        path = None
        if websocket:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            if any(ord(c) < 33 or ord(c) == 127 for c in path):
                raise ConfigError(f"bad broker URL {url!r}: a space or control character in the path")
        tls, default_port = SCHEMES[parts.scheme]
        return cls(
            host=parts.hostname,
            port=port or default_port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            websocket_path=path,
        )

    def with_credentials_from(
        self, env: dict[str, str] | None = None, password_file: str | None = None
    ) -> BrokerAddress:
        """Fill username/password from MNIST_BROKER_USER / MNIST_BROKER_PASSWORD or a password file.

        A password in a file or the environment does not show in the process list, as one in a URL would.
        """
        environ: Mapping[str, str] = os.environ if env is None else env
        user = self.username or environ.get("MNIST_BROKER_USER") or None
        password = self.password or environ.get("MNIST_BROKER_PASSWORD") or None
        password_file = password_file or environ.get("MNIST_BROKER_PASSWORD_FILE")
        if password_file and not password:
            try:
                password = Path(password_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read password file {password_file}: {exc.strerror}") from None
            warning = password_file_warning(password_file)
            if warning:
                log.warning("%s", warning)
        return replace(self, username=user, password=password)

    def with_tls_files(
        self, cafile: str | None = None, certfile: str | None = None, keyfile: str | None = None
    ) -> BrokerAddress:
        for label, path in (("CA file", cafile), ("certificate", certfile), ("key", keyfile)):
            if path and not Path(path).is_file():
                raise ConfigError(f"{label} not found: {path}")
        if (certfile is None) != (keyfile is None):
            raise ConfigError("--cert and --key go together")
        tls = self.tls or bool(cafile or certfile)
        return replace(self, tls=tls, cafile=cafile, certfile=certfile, keyfile=keyfile)

    def with_insecure(self, insecure: bool) -> BrokerAddress:
        """`--insecure`: TLS that does not check the broker's certificate or host name. Only for TLS URLs."""
        if insecure and not self.tls:
            raise ConfigError("--insecure is for TLS brokers (mqtts:// or wss://)")
        return replace(self, insecure=insecure)

    @property
    def url(self) -> str:
        """The URL without the password, fit to show on screen."""
        websocket = self.websocket_path is not None
        scheme = ("wss" if websocket else "mqtts") if self.tls else ("ws" if websocket else "mqtt")
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}{self.websocket_path or ''}"


def url_password_warning(url: str) -> str | None:
    """One line when `url` carries a password (`mqtt://user:pass@host`), else None."""
    try:
        password = urlsplit(url.strip() if "://" in url else "mqtt://" + url.strip()).password
    except ValueError:
        return None
    if not password:
        return None
    return ("the broker URL holds a password: on a command line it shows in the process list and the shell "
            "history; give it with --password-file (mode 600) or MNIST_BROKER_PASSWORD instead")


def password_file_warning(path: str | os.PathLike[str]) -> str | None:
    """One line when the password file at `path` may be read by its group or by others, else None."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    who = " and ".join(w for w, bits in (("its group", 0o070), ("others", 0o007)) if mode & bits)
    return f"password file {path} may be read by {who} (mode {mode:04o}): chmod 600 {path}"
