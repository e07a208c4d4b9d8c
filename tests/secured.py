"""The secured network listener recipe of mosquitto.conf, with the ACL from docs/SECURITY.md, for tests.

`secured_broker` (a fixture, registered in conftest.py) is mosquitto with the recipe enabled on a TLS
port: a throwaway CA made with openssl, a password file with one account per role, the documented ACL.
`login` names an account of the recipe; `verdict` waits for the broker's verdict on a console action.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import NO_MOSQUITTO, wait_for

from engine.console.observer import Observer, Verdict
from engine.mqtt.address import BrokerAddress
from engine.mqtt.broker import EmbeddedBroker, default_config_path, find_mosquitto, free_port

REPO = Path(__file__).resolve().parents[1]

RECIPE_DIR = "/etc/mosquitto/mnist/"
PASSWORDS = {"console": "console-pw", "player-1": "player-pw", "worker-1": "worker-1-pw",
             "worker-2": "worker-2-pw", "collector-1": "collector-pw"}
ROLE_ACCOUNT = {"input": "player-1", "infer": "worker-1", "output": "collector-1"}  # one account per role


def recipe_config(conf_text: str, secrets: Path, port: int) -> str:
    """mosquitto.conf with its recipe enabled as docs/SECURITY.md says: uncomment the settings."""
    block = re.search(r"^# >>> network listener recipe.*?^# <<< network listener recipe", conf_text,
                      re.MULTILINE | re.DOTALL)
    assert block, "mosquitto.conf has no network listener recipe block"
    enabled = re.sub(r"^#(?=[a-z_]+\s)", "", block.group(0), flags=re.MULTILINE)
    assert "\nlistener 8883\n" in enabled and RECIPE_DIR in enabled
    enabled = enabled.replace("\nlistener 8883\n", f"\nlistener {port} 127.0.0.1\n")
    enabled = enabled.replace(RECIPE_DIR, f"{secrets}/")
    return conf_text.replace(block.group(0), enabled)


def documented_acl() -> str:
    text = (REPO / "docs" / "SECURITY.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- acl-file -->\s*```text\n(.*?)```", text, re.DOTALL)
    assert match, "docs/SECURITY.md has no ACL block after <!-- acl-file -->"
    return match.group(1)


def make_secrets(secrets: Path) -> None:
    secrets.mkdir()
    (secrets / "acl").write_text(documented_acl())
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for i, (user, password) in enumerate(PASSWORDS.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run([passwd, *create, "-b", str(secrets / "passwd"), user, password], check=True,
                       capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=secrets)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test CA")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (secrets / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "san.ext")


@pytest.fixture
def secured_broker(tmp_path):
    """mosquitto with the recipe enabled: (broker, TLS address without credentials)."""
    if find_mosquitto() is None:
        pytest.skip(NO_MOSQUITTO)
    if shutil.which("openssl") is None or not (shutil.which("mosquitto_passwd")
                                               or Path("/usr/bin/mosquitto_passwd").exists()):
        pytest.skip("needs openssl and mosquitto_passwd (apt-get install openssl mosquitto)")
    secrets = tmp_path / "secrets"
    make_secrets(secrets)
    tls_port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(recipe_config(default_config_path().read_text(), secrets, tls_port))
    with EmbeddedBroker(kind="mosquitto", config=conf) as broker:
        yield broker, BrokerAddress(port=tls_port, tls=True, cafile=str(secrets / "ca.crt"))


def login(address: BrokerAddress, user: str, password: str | None = None) -> BrokerAddress:
    """Log in as an account of the recipe; a role name ("infer") stands for its first account ("worker-1")."""
    user = ROLE_ACCOUNT.get(user, user)
    return replace(address, username=user, password=password or PASSWORDS[user])


def verdict(obs: Observer, topic: str, action: str) -> Verdict:
    def found() -> Verdict | None:
        return next((v for v in obs.snapshot().verdicts if v.topic == topic and v.action == action), None)

    wait_for(found, 20, message=f"no verdict for {action} on {topic}")
    found_verdict = found()
    assert found_verdict is not None
    return found_verdict
