#!/usr/bin/env bash
# One worker with a core of its own, offered more than it can take: the overload figures a 2-core
# machine can give (docs/PERFORMANCE.md, "A worker with a core of its own").
# Usage: OUT=dir ROUNDS=3 CPU=0 tools/pinned_overload.sh; then `python -m tools.pinned_table dir`.
# Per round: the pinned worker's closed-loop capacity at QoS 0 and 1 (`bench --worker-cpus`), then
# C floods at it (`python -m tools.c_flood --worker-cpu`): 1 and 2 floods at QoS 0, 2 at QoS 1.
# Everything but the worker (broker, bench, floods) runs on the other CPUs.
set -u
OUT=${OUT:-pinned-out}; ROUNDS=${ROUNDS:-3}; CPU=${CPU:-0}; D=${DURATION:-8}
mkdir -p "$OUT"
run() { name=$1; shift; echo "== $name: $*" >&2; timeout 180 "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"; echo "rc=$?" >&2; }
{ nproc; uptime; python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)'; } > "$OUT/machine.txt" 2>&1
for r in $(seq "$ROUNDS"); do
  for q in 0 1; do
    run "r$r-capacity-q$q" python3 -m engine bench --no-progress --json --embedded mosquitto --workers 1 --qos "$q" \
      --worker-cpus "$CPU" --duration "$D" --warmup 3
  done
  run "r$r-flood1-q0" python3 -m tools.c_flood --json --floods 1 --seconds "$D" --worker-cpu "$CPU"
  run "r$r-flood2-q0" python3 -m tools.c_flood --json --floods 2 --seconds "$D" --worker-cpu "$CPU"
  run "r$r-flood2-q1" python3 -m tools.c_flood --json --floods 2 --qos 1 --seconds "$D" --worker-cpu "$CPU"
done
echo done >&2
