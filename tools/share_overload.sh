#!/usr/bin/env bash
# One worker pinned to a CPU and held to a share of it (`bench --worker-cpus --worker-cpu-share`), offered 2x,
# 5x and 10x what it takes by generator processes on the other CPUs: the overload figures of docs/PERFORMANCE.md
# on a machine with few cores ("A worker held to a share of a core").
# Usage: OUT=dir SHARE=0.1 ROUNDS=1 tools/share_overload.sh; then `python -m tools.bench_table dir`.
# Needs root (a cgroup CPU quota per worker). Each run measures the worker's closed-loop capacity under the
# same quota first (--capacity-seconds), then offers the multiple of it open loop. QoS 1 runs bound the wait
# at the broker with the worker's --max-wait (MAX_WAIT, default 1 s): unbounded, 10x leaves a backlog that
# takes minutes to answer.
set -u
OUT=${OUT:-share-out}; SHARE=${SHARE:-0.1}; ROUNDS=${ROUNDS:-1}; CPU=${CPU:-0}; D=${DURATION:-8}; G=${GENERATORS:-2}
mkdir -p "$OUT"
B=(python3 -m engine bench --no-progress --json --embedded mosquitto --workers 1 --worker-cpus "$CPU"
   --worker-cpu-share "$SHARE" --generators "$G" --duration "$D" --capacity-seconds 5 --warmup 2)
run() { name=$1; shift; echo "== $name: $*" >&2; timeout 300 "${B[@]}" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"; echo "rc=$?" >&2; }
{ nproc; uptime; python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)'; } > "$OUT/machine.txt" 2>&1
for r in $(seq "$ROUNDS"); do
  for q in 0 1; do
    for x in 2 5 10; do
      if [ "$q" = 1 ]; then
        run "r$r-q$q-x$x" --qos "$q" --overload "$x" --max-wait "${MAX_WAIT:-1}"
      else
        run "r$r-q$q-x$x" --qos "$q" --overload "$x"
      fi
    done
  done
done
echo done >&2
