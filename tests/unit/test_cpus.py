"""CPU lists and pinning for `bench --worker-cpus` (engine/cpus.py), on real processes."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import pytest
from helpers import allowed_cpus

from engine.cpus import parse_cpu_list, pin_process, split_cpus
from engine.errors import ConfigError

THREADED = "import threading, time; [threading.Thread(target=time.sleep, args=(60,), daemon=True).start() " \
           "for _ in range(3)]; print('up', flush=True); time.sleep(60)"


@pytest.mark.parametrize(("text", "cpus"), [("0", {0}), ("0,2", {0, 2}), ("1-3", {1, 2, 3}), ("0-1, 5", {0, 1, 5})])
def test_cpu_lists_as_taskset_takes_them(text: str, cpus: set[int]) -> None:
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", "x", "-1", "3-1", "0-", "1.5", "0-99999"])
def test_a_bad_cpu_list_is_an_argument_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a CPU list"):
        parse_cpu_list(text)


def test_the_rest_of_the_cpus_or_a_clear_refusal() -> None:
    mine = frozenset(os.sched_getaffinity(0))
    with pytest.raises(ConfigError, match="leaves no CPU"):
        split_cpus(mine)
    with pytest.raises(ConfigError, match="may run on CPUs"):
        split_cpus(frozenset({max(mine) + 1}))
    if len(mine) > 1:
        assert split_cpus(frozenset({min(mine)})) == mine - {min(mine)}


def test_pinning_reaches_every_thread_and_those_started_later() -> None:
    mine = frozenset(os.sched_getaffinity(0))
    if len(mine) < 2:
        pytest.skip("pinning to a subset needs two CPUs")
    target = frozenset({max(mine)})
    child = subprocess.Popen([sys.executable, "-c", THREADED], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        before = allowed_cpus(child.pid)
        assert len(before) == 4 and all(cpus == mine for cpus in before)
        pin_process(child.pid, target)
        assert allowed_cpus(child.pid) == [target] * 4
    finally:
        child.kill()
        child.wait()
    # a process pinned before it starts its threads passes the pin on to them
    late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3); " + THREADED],
                            stdout=subprocess.PIPE, text=True)
    try:
        pin_process(late.pid, target)
        assert late.stdout is not None and late.stdout.readline().strip() == "up"
        deadline = time.monotonic() + 30
        while len(threads := allowed_cpus(late.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threads == [target] * 4
    finally:
        late.kill()
        late.wait()
