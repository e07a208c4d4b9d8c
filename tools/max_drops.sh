#!/usr/bin/env bash
# What the console's worker answers and drops with the publisher at max (docs/PERFORMANCE.md, "Max without
# overrunning the worker's queue"): `mnist-tui` in a 120x40 tmux session, publishing started with space and
# `+` pressed up to max once the worker is up; after WARM (default 30) seconds, the worker's statuses for
# DURATION (default 60) seconds, read from the broker.
# Usage: tools/max_drops.sh [LABEL]   (needs tmux, mosquitto_sub and the project installed)
set -u
LABEL=${1:-run}; WARM=${WARM:-30}; DURATION=${DURATION:-60}; SESSION=mnist-drops-$$
CONFIG=$(mktemp); OUT=$(mktemp)
trap 'tmux kill-session -t "$SESSION" 2>/dev/null; rm -f "$CONFIG" "$OUT"' EXIT
tmux new-session -d -s "$SESSION" -x 120 -y 40 "MNIST_CONFIG=$CONFIG mnist-tui"
for _ in $(seq 120); do
  sleep 1
  tmux has-session -t "$SESSION" 2>/dev/null || { echo "the console ended (is mnist-tui on PATH?)" >&2; exit 1; }
  tmux capture-pane -p -t "$SESSION" | grep -q "running" && break
done
tmux send-keys -t "$SESSION" space; sleep 1
for _ in $(seq 10); do tmux send-keys -t "$SESSION" +; sleep 0.3; done
port=$(tmux capture-pane -p -t "$SESSION" | head -1 | grep -oE '127\.0\.0\.1:[0-9]+' | cut -d: -f2)
sleep "$WARM"
timeout "$((DURATION + 1))" mosquitto_sub -p "$port" -t 'mnist/status/infer/+' > "$OUT"
tmux send-keys -t "$SESSION" q; sleep 3
python3 - "$LABEL" "$OUT" <<'PY'
import json, sys
rows = [r for r in (json.loads(line) for line in open(sys.argv[2]) if line.strip()) if r.get("state") == "running"]
if len(rows) < 2:
    sys.exit(f"{sys.argv[1]}: fewer than two statuses of a running worker")
a, b = rows[0], rows[-1]
dt, answered, dropped = b["ts"] - a["ts"], b["processed"] - a["processed"], b["dropped"] - a["dropped"]
print(f"{sys.argv[1]}: {dt:.0f} s, answered {answered / dt:,.0f}/s, dropped {dropped:,}"
      f" ({100 * dropped / max(answered + dropped, 1):.2f}%), queue_peak of the last statuses:"
      f" {[r.get('queue_peak') for r in rows[-8:]]}")
PY
