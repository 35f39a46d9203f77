#!/usr/bin/env bash
# The scale benchmark (benches/scale.rs) on its own local control plane: builds it, starts the stack
# (e2e/up.sh), runs `cargo bench --bench scale` once per N given (default 100), appends each report to
# docs/benchmarks.md (BENCH_REPORT overrides; BENCH_REPORT=/dev/null only prints it), and always stops the
# stack again (e2e/down.sh), also one that was running before (which keeps its KCM settings: stop it first).
#
#   e2e/bench.sh                               # N = 100
#   e2e/bench.sh 100 1000                      # one run per N, one stack
#   BENCH_ARGS="--idle-window 60" e2e/bench.sh 1000
#   BENCH_ARGS="--controllers veer,flagger" e2e/bench.sh 100 1000                    # side by side
#   BENCH_ARGS="--controllers veer,flagger --profile istio" e2e/bench.sh 100 1000    # metrics-heavy
#
# Flagger (the release pinned in e2e/versions.env) is built by e2e/build-tools.sh and cached like the
# other tools. The traffic simulator exports only Istio's series, scraped every 5 s: a thousand
# workloads with every shape at 1 s would make Prometheus the benchmark.
# Building, starting the stack and each run hold the shared CPU lock (VEER_CPU_LOCK, default
# /tmp/veer-cpu.lock; set it empty for no lock): a large N loads the machine, and other builds running
# at the same time would skew the timings. Do not call this script under that lock yourself.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "$0")/lib.sh"

# The KCM paces Deployment rollouts at 20 QPS by default: at hundreds of Canaries that, not Veer, would
# decide how long the bootstrap and every promotion take. Empty: the KCM's default.
export VEER_E2E_KCM_QPS=${VEER_E2E_KCM_QPS-200}
export VEER_TRAFFICSIM_SHAPES=${VEER_TRAFFICSIM_SHAPES-istio}
export VEER_E2E_TRAFFICSIM_SCRAPE=${VEER_E2E_TRAFFICSIM_SCRAPE-5s}
LOCK=${VEER_CPU_LOCK-/tmp/veer-cpu.lock}
REPORT=${BENCH_REPORT:-$REPO_DIR/docs/benchmarks.md}
# -o: the lock is not inherited by what the command starts (up.sh's daemons would hold it until
# the stack stops, and every later run would wait for it forever).
locked() { if [ -n "$LOCK" ]; then flock -o "$LOCK" "$@"; else "$@"; fi; }
[ $# -gt 0 ] || set -- 100

cd "$REPO_DIR"
trap '"$E2E_DIR/down.sh"' EXIT
trap 'exit 130' INT TERM
locked cargo bench --bench scale --no-run
locked "$E2E_DIR/up.sh"
# shellcheck source=/dev/null
. "$RUN_DIR/env"
for n in "$@"; do
	log "scale benchmark, N = $n"
	# BENCH_ARGS is a list of flags.
	# shellcheck disable=SC2086
	locked cargo bench --bench scale -- --canaries "$n" --report "$REPORT" ${BENCH_ARGS:-}
done
log "reports appended to $REPORT"
