#!/usr/bin/env bash
# The overload, group and moderate-rate measurements of docs/PERFORMANCE.md in one go.
# Usage: OUT=dir tools/overload_bench.sh   (SMALL=1: a short trial run on a small machine; MAX_WAIT=s for
# the bounded QoS 1 runs, default 1)
# Every report is `python3 -m engine bench ... --json`, written to $OUT/<name>.json (stderr to .err).
set -u
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
D=${DURATION:-6}; G=${GENERATORS:-8}; GROUPS_=${GROUP_WORKERS:-"4 8"}
if [ "${SMALL:-0}" = 1 ]; then D=2; G=2; GROUPS_="2"; fi
B=(python3 -m engine bench --no-progress --json --embedded mosquitto --drain 2 --warmup 1)
run() { name=$1; shift; echo "== $name: $*" >&2; timeout 120 "${B[@]}" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"; echo "rc=$?" >&2; }
{ nproc; python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)'; mosquitto -h | head -1; } > "$OUT/machine.txt" 2>&1
run full-w1 --workers 1 --duration "$D"
run rate1000-w1 --workers 1 --rate 1000 --duration "$D"
for q in 0 1; do
  for x in 2 5 10; do
    run "overload-q$q-x$x" --workers 1 --qos "$q" --overload "$x" --generators "$G" --duration "$D" --capacity-seconds 3
  done
done
# QoS 1 with the worker's --max-wait bound (what waits at the broker longer than that is skipped unread)
for x in 2 5; do
  run "overload-q1-x$x-wait${MAX_WAIT:-1}" --workers 1 --qos 1 --overload "$x" --generators "$G" --duration "$D" \
    --capacity-seconds 3 --max-wait "${MAX_WAIT:-1}"
done
for w in $GROUPS_; do
  run "group-g$G-w$w" --workers "$w" --generators "$G" --rate 0 --duration "$D"
done
echo done >&2
