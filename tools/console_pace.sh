#!/usr/bin/env bash
# The console's pace at max (docs/PERFORMANCE.md): `bench --workers 1` for reference, then `mnist-tui --rate 0`
# in a 120x40 tmux session, publishing started with space once the worker is up.
# Usage: tools/console_pace.sh [RUNS]   (default 1; needs tmux and the project installed; CONSOLE_ARGS: more options)
# Prints, per run: bench's throughput; the console's result rate over DURATION (default 20) seconds after WARM
# (default 30), read from the Results pane's count; and each process's CPU over 10 s meanwhile.
set -u
RUNS=${1:-1}; DURATION=${DURATION:-20}; WARM=${WARM:-30}; SESSION=mnist-pace-$$
count() { tmux capture-pane -p -t "$SESSION" | grep -oE '[0-9,]+ results' | head -1 | tr -d ', results'; }
cpu() {  # per process CPU over $1 seconds: worker, roles (publisher and output), mosquitto, observer, screen
  python3 - "$1" <<'EOF'
import os, sys, time
def snap():
    out = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            cmd = open(f"/proc/{p}/cmdline").read().replace("\0", " ")
        except OSError:
            continue
        out[p] = (int(stat[11]) + int(stat[12]), cmd, int(stat[16]))
    return out
a = snap(); t = time.time(); time.sleep(float(sys.argv[1])); b = snap(); dt = time.time() - t
tick = os.sysconf("SC_CLK_TCK")
for p, (ticks, cmd, nice) in b.items():
    share = (ticks - a[p][0]) / tick / dt * 100 if p in a else 0.0
    name = ("worker" if "run infer" in cmd else "mosquitto" if "mosquitto" in cmd else "screen" if "mnist-tui" in cmd and not cmd.startswith("tmux")
            else "roles" if "spawn_main" in cmd and nice > 0 else "observer" if "spawn_main" in cmd else None)
    if name and share > 0.5:
        print(f"  {name:9} {share:5.1f}% of a core (nice {nice})")
EOF
}
for run in $(seq 1 "$RUNS"); do
  echo "== run $run"
  python3 -m engine bench --duration 8 --warmup 2 --json 2>/dev/null \
    | python3 -c 'import json, sys; print("bench --workers 1: %s answers/s" % format(json.load(sys.stdin)["throughput"], ",.0f"))'
  tmux new -d -s "$SESSION" -x 120 -y 40 "mnist-tui --rate 0 ${CONSOLE_ARGS:-}"
  for _ in $(seq 1 120); do sleep 1; tmux capture-pane -p -t "$SESSION" | grep -q "infer-.*\(running\|idle\|ready\)" && break; done
  sleep 2; tmux send-keys -t "$SESSION" space; sleep "$WARM"
  a=$(count); t0=$(date +%s.%N)
  cpu 10
  sleep $((DURATION > 10 ? DURATION - 10 : 0))
  b=$(count); t1=$(date +%s.%N)
  python3 -c "print(f'console at max: {($b - $a) / ($t1 - $t0):,.0f} results/s')"
  tmux send-keys -t "$SESSION" q; sleep 5; tmux kill-session -t "$SESSION" 2>/dev/null
done
