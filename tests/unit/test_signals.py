"""A stop asked by a signal (engine/signals.py): recorded without a lock, so a handler that interrupts the
main thread anywhere, also inside its own previous run, returns at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

STORM = textwrap.dedent("""
    import signal, sys, threading, time
    from engine.signals import SignalStop
    stop = threading.Event() if sys.argv[1] == "event" else SignalStop()
    signal.signal(signal.SIGALRM, (lambda *_a: stop.set()) if sys.argv[1] == "event" else stop.handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.00005)  # a signal every 50 us, landing anywhere
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        stop.wait(0.0001)
    signal.setitimer(signal.ITIMER_REAL, 0)
    print("done", stop.is_set())
""")


def storm(kind: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", STORM, kind], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_storm_of_signals_never_blocks_the_handler() -> None:
    """With `threading.Event.set` as the handler the same storm ends the process (a handler run inside the
    previous one's `set`, waiting for the lock it holds: a worker stopped by two signals at once hung)."""
    done = storm("signal-stop")
    assert done.returncode == 0 and done.stdout.strip() == "done True", (done.returncode, done.stderr[-500:])


def test_wait_sees_a_real_signal() -> None:
    code = textwrap.dedent("""
        import os, signal, threading, time
        from engine.signals import SignalStop
        stop = SignalStop()
        signal.signal(signal.SIGTERM, stop.handler)
        assert not stop.wait(0.05)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        print(stop.wait(60), stop.signum == signal.SIGTERM)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["True", "True"], out.stderr[-500:]


def test_interruptible_ends_a_blocking_read_and_sees_a_stop_asked_just_before() -> None:
    """A read of a pipe that stays open: Python reads on after a plain handler. Inside `interruptible` the
    signal raises `Interrupted`; a stop recorded before the block is entered raises at once (it was read on)."""
    code = textwrap.dedent("""
        import os, signal, threading
        from engine.signals import Interrupted, SignalStop
        stop = SignalStop()
        signal.signal(signal.SIGTERM, stop.handler)
        read_end, write_end = os.pipe()  # the write end stays open: a read waits for ever
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        try:
            with stop.interruptible():
                os.read(read_end, 1)
        except Interrupted as exc:
            print("interrupted", exc.signum == signal.SIGTERM)
        try:
            with stop.interruptible():  # the stop is set already: no read at all
                os.read(read_end, 1)
        except Interrupted:
            print("at once")
        stop.handler(signal.SIGINT, None)  # outside the block: recorded, nothing raised
        print("outside", stop.signum == signal.SIGTERM)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["interrupted", "True", "at", "once", "outside", "True"], (
        out.stdout, out.stderr[-500:])
