#!/usr/bin/env bash
# The cost of TLS, mutual TLS and authentication on the launch path (issue 18 benchmark):
# two `proffer local` clusters side by side in one run — one open, one `--secure` (TLS on the
# master and the agents, agents with client certificates, every call authenticated) — and
# `proffer run` batches of short tasks against each, interleaved. Prints tasks/s, the
# launch→RUNNING p50 and the CPU seconds the cluster process (master + agents) spent per task.
#
#   scripts/bench_tls_launch.sh [TASKS=300] [ROUNDS=3]      (builds nothing: uses target/release
#   or target/debug `proffer`, or $PROFFER)
set -euo pipefail
TASKS=${1:-300}
ROUNDS=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
P=${PROFFER:-}
for c in "$here/target/release/proffer" "$here/target/debug/proffer"; do
    [ -z "$P" ] && [ -x "$c" ] && P=$c
done
[ -n "$P" ] || { echo "build proffer first (cargo build --release -p proffer-cli)"; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pp=$(port); ps_=$(port)
"$P" local --no-demo --port "$pp" --work-dir "$work/plain" --allocation-interval 100ms >"$work/plain.log" 2>&1 &
plain_pid=$!
"$P" local --secure --no-demo --port "$ps_" --work-dir "$work/secure" --allocation-interval 100ms >"$work/secure.log" 2>&1 &
secure_pid=$!
for _ in $(seq 100); do [ -f "$work/secure/secure/env.sh" ] && grep -q "serving on" "$work/plain.log" "$work/secure.log" 2>/dev/null && break; sleep 0.1; done
sleep 1
cpu() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
run() { # run NAME PORT PID [env file]
    local before after out
    before=$(cpu "$3")
    if [ -n "${4:-}" ]; then
        out=$(set +u; source "$4"; "$P" run --master "127.0.0.1:$2" --tasks "$TASKS" --cmd true --cpus 0.01 --mem 4 --quiet 2>&1)
    else
        out=$(env -u PROFFER_TLS_CA "$P" run --master "127.0.0.1:$2" --tasks "$TASKS" --cmd true --cpus 0.01 --mem 4 --quiet 2>&1)
    fi
    after=$(cpu "$3")
    local rate p50
    rate=$(echo "$out" | sed -n 's/.*(\([0-9.]*\) tasks\/s).*/\1/p')
    p50=$(echo "$out" | sed -n 's/.*launch→RUNNING: p50 \([0-9]*\) ms.*/\1/p')
    printf "%-22s %10s %14s %16.2f\n" "$1" "$rate" "$p50" "$(awk -v a="$after" -v b="$before" -v n="$TASKS" 'BEGIN{print (a-b)*1000/n}')"
}
echo "proffer run --tasks $TASKS --cmd true, $ROUNDS rounds, $(nproc) cores, $(date -u +%F)"
printf "%-22s %10s %14s %16s\n" "cluster" "tasks/s" "→RUNNING p50" "cluster CPU ms/task"
for r in $(seq "$ROUNDS"); do
    run "open (round $r)" "$pp" "$plain_pid"
    run "secure (round $r)" "$ps_" "$secure_pid" "$work/secure/secure/env.sh"
done
