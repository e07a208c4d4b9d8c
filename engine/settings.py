"""Settings shared by every role, with defaults that follow docs/PROTOCOL.md."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from engine.datafiles import data_path
from engine.topics import Topics, sanitize_id

DURABLE_SESSION_EXPIRY = 86_400  # seconds a durable role's session outlives it (--durable): a day
DEFAULT_DATASET = data_path("assets/mnist_images")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "lenet5.pt"
MODEL_CARD = WEIGHTS_DIR / "MODEL_CARD.md"


def default_client_id(role: str, stable: bool = False) -> str:
    """`<role>-<host>-<pid>`: unique per process, readable in the Workers pane. `stable` (durable
    sessions): `<role>-<host>`, the same after a restart, so that the broker hands the session back."""
    host = socket.gethostname().split(".")[0]
    return sanitize_id(f"{role}-{host}" if stable else f"{role}-{host}-{os.getpid()}")


@dataclass
class Settings:
    topics: Topics = field(default_factory=Topics)
    protocol: int = 5
    status_interval: float = 1.0
    # input
    dataset: Path = DEFAULT_DATASET
    list_file: str | None = None
    rate: float = 10.0
    qos: int = 0
    order: str = "sequential"
    loop: bool = True
    count: int | None = None
    autostart: bool = False
    image_expiry: int = 0  # s: MQTT 5 message expiry of each image (0: none)
    pace: bool = True  # at rate 0: as fast as the running workers keep up (engine/roles/pacer.py), not a flood
    # infer
    model_path: str | None = None
    allow_torchscript: bool = False  # a TorchScript model file runs code from the file
    max_batch: int = 64
    max_delay_ms: float = 2.0
    max_wait: float | None = None  # s: skip an image published longer ago than this (None: answer every image)
    queue_size: int = 2_000  # about 0.2-0.5 s of work: the bound of the latency under overload
    max_payload: int = 1_048_576
    max_pixels: int = 4_000_000
    share_group: str | None = None
    drain_seconds: float = 3.0  # on stop, answer what is queued for at most this long; the rest counts as dropped
    session_expiry: int = 0
    durable: bool = False  # "lose nothing": stable ids, a session expiry, QoS 1 results, broker persistence
    threads: int | None = None
    result_qos: int | None = None
    # output
    latency_window: int = 10_000
    dedup_window: int = 100_000  # ids kept to recognize duplicates (~140 bytes each): ~14 MB at most
