"""How fast the console answers a key while the pipeline floods it: `python -m tools.keylatency`.

A benchmark, not a test. It starts the real `mnist-tui` (embedded broker, the three local roles) under
a pseudo-terminal, starts the publisher (space; `--rate 0` by default: max, as fast as the worker takes;
`-- --flood` floods), waits until results flow, and then, `--presses` times, types `?` and measures the
time from writing the key to the first bytes on the terminal that show the help screen (its title), then
`?` again to close it and the time until the main screen's footer is back. `?` closes the help too, so
no lone escape byte is needed (a terminal application waits a moment after a lone escape to tell it from
an escape sequence).

A reader thread drains the terminal all the time with large reads and timestamps every chunk, so the
console never waits for the terminal; the markers are found in the raw bytes (Textual writes a title in
one style as one run of text). Between presses it waits a random 0.2-0.6 s, so the keys do not fall in
step with the console's refresh (2-10 a second). Prints min / median / p90 / max of each and of both, the load
average before and after, and the result rate the console showed; `--json` prints the same as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import re
import signal
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass, field

OPEN_MARK = b"mnist-tui: keys"  # the help screen's title
# The main screen's footer (the space key) with the colour it has when nothing is over it: behind the help
# screen the console also redraws it, dimmed, so the words alone do not say the help is gone.
FOOTER_RE = re.compile(rb"\x1b\[[0-9;]*mStart/stop")
MAIN_MARK = b"Publisher"  # a pane title: the main screen is up
READY_MARK = b"connected"  # the header once the roles are up (it says "starting: ..." until then)
RESULTS_RE = re.compile(rb"([0-9][0-9,.]*k?) results")  # the Results pane's subtitle
RATE_RE = re.compile(rb"accuracy .{0,400}?([0-9][0-9,.]*k?/s)", re.S)


@dataclass
class Terminal:
    """The master side of a pty, drained by a thread: chunks of output with the time each arrived."""

    fd: int
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    def start(self) -> None:
        threading.Thread(target=self._read, name="pty-reader", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 1 << 20)
            except OSError:
                data = b""
            now = time.monotonic()
            with self.cond:
                if not data:
                    self.closed = True
                    self.cond.notify_all()
                    return
                self.chunks.append((now, data))
                self.cond.notify_all()

    def write(self, data: bytes) -> float:
        """Write `data` (a key) and return the time just before the write."""
        t = time.monotonic()
        os.write(self.fd, data)
        return t

    def mark(self) -> int:
        with self.cond:
            return len(self.chunks)

    def wait_for(self, pattern: bytes | re.Pattern[bytes], start: int, timeout: float) -> tuple[float, bytes] | None:
        """The arrival time of the chunk that completes the first match of `pattern` in the output from chunk
        `start` on, and the match; None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        buf = b""
        index = start
        while True:
            with self.cond:
                while index >= len(self.chunks) and not self.closed:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self.cond.wait(left):
                        return None
                if index >= len(self.chunks):
                    return None
                t, data = self.chunks[index]
            index += 1
            buf = buf[-200:] + data
            found = pattern.search(buf) if isinstance(pattern, re.Pattern) else (
                pattern if pattern in buf else None)
            if found is not None:
                return t, found.group(0) if isinstance(found, re.Match) else found

    def last(self, pattern: re.Pattern[bytes], since: int) -> bytes | None:
        with self.cond:
            text = b"".join(data for _t, data in self.chunks[since:])
        found = pattern.findall(text)
        return found[-1] if found else None


def spawn(argv: list[str], columns: int, lines: int) -> tuple[subprocess.Popen[bytes], Terminal]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = dict(os.environ, TERM=os.environ.get("TERM_FOR_BENCH", "xterm-256color"), COLUMNS=str(columns),
               LINES=str(lines), COLORTERM="truecolor")

    def controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                            preexec_fn=controlling_tty, close_fds=True)
    os.close(slave)
    term = Terminal(master)
    term.start()
    return proc, term


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {"n": len(ordered), "min": ordered[0], "median": statistics.median(ordered), "p90": p90,
            "max": ordered[-1]}


def run(args: argparse.Namespace) -> dict[str, object]:
    argv = [sys.executable, "-m", "tui.cli", "--rate", str(args.rate), *args.extra]
    load_before = os.getloadavg()
    proc, term = spawn(argv, args.columns, args.lines)
    report: dict[str, object] = {"command": " ".join(["mnist-tui", *argv[3:]]), "size": f"{args.columns}x{args.lines}",
                                 "console_pid": proc.pid, "load_before": [round(x, 2) for x in load_before]}
    try:
        if term.wait_for(MAIN_MARK, 0, args.start_timeout) is None:
            raise SystemExit("the console did not show its main screen in time")
        if term.wait_for(READY_MARK, 0, args.start_timeout) is None:
            raise SystemExit("the console's roles did not start in time (the header never said connected)")
        footer = term.wait_for(FOOTER_RE, 0, 10)
        if footer is None:
            raise SystemExit("the console's footer did not show")
        close_mark = footer[1]
        mark = term.mark()
        if term.wait_for(RESULTS_RE, mark, 3) is None:  # nothing flows yet: start the publisher
            term.write(b" ")
        if term.wait_for(RESULTS_RE, mark, 60) is None:
            raise SystemExit("no results appeared on the console within 60 s")
        if args.ready_file:
            with open(args.ready_file, "w") as f:
                f.write(f"{proc.pid}\n")
        time.sleep(args.warmup)  # the flood reaches its steady state
        flood_from = term.mark()
        opened: list[float] = []
        closed: list[float] = []
        for _ in range(args.presses):
            for mark_bytes, into in ((OPEN_MARK, opened), (close_mark, closed)):
                time.sleep(random.uniform(0.2, 0.6))
                start = term.mark()
                t0 = term.write(b"?")
                seen = term.wait_for(mark_bytes, start, args.timeout)
                if seen is None:
                    shown = mark_bytes.decode(errors="replace")
                    raise SystemExit(f"no {shown!r} on the screen within {args.timeout} s of a key")
                into.append(seen[0] - t0)
        report["load_after"] = [round(x, 2) for x in os.getloadavg()]
        report["results_shown"] = (term.last(RESULTS_RE, flood_from) or b"?").decode(errors="replace")
        rate = term.last(RATE_RE, flood_from)
        report["result_rate_shown"] = (rate.decode(errors="replace").rsplit(" ", 1)[-1] if rate else "?")
        report["open_ms"] = {k: round(v * 1000, 1) if k != "n" else v for k, v in summary(opened).items()}
        report["close_ms"] = {k: round(v * 1000, 1) if k != "n" else v for k, v in summary(closed).items()}
        report["all_ms"] = {k: round(v * 1000, 1) if k != "n" else v for k, v in summary(opened + closed).items()}
        if args.raw:
            report["open_raw_ms"] = [round(v * 1000, 1) for v in opened]
            report["close_raw_ms"] = [round(v * 1000, 1) for v in closed]
    finally:
        with contextlib.suppress(OSError):
            term.write(b"q")
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        if args.dump:
            with open(args.dump, "wb") as f:
                f.write(b"".join(data for _t, data in term.chunks))
        os.close(term.fd)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.keylatency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--presses", type=int, default=20, help="open/close pairs of the help screen (default 20)")
    parser.add_argument("--rate", default="0", help="publisher rate, images/s (default 0: max, paced by the worker)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of flood before the first key")
    parser.add_argument("--size", default="120x40", help="terminal COLUMNSxLINES (default 120x40)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a key's effect")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds to wait for the console")
    parser.add_argument("--ready-file", help="write the console's pid here once the flood runs (for a profiler)")
    parser.add_argument("--dump", help="write everything the console wrote to this file")
    parser.add_argument("--raw", action="store_true", help="also report every measurement")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("extra", nargs="*", help="more mnist-tui options (after --)")
    args = parser.parse_args(argv)
    args.columns, args.lines = (int(x) for x in args.size.lower().split("x"))
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['command']}  ({report['size']}; console pid {report['console_pid']})")
    print(f"load average before {report['load_before']}, after {report['load_after']}; console showed "
          f"{report['results_shown']} results, {report['result_rate_shown']}")
    for name in ("open", "close", "all"):
        s = report[f"{name}_ms"]
        assert isinstance(s, dict)
        print(f"{name:>5} (ms, n={s['n']}): min {s['min']}  median {s['median']}  p90 {s['p90']}  max {s['max']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
