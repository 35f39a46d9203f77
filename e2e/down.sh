#!/usr/bin/env bash
# Stops exactly the processes e2e/up.sh started (by recorded pid, in reverse start order: TERM, a
# bounded wait, then KILL), keeps their logs in e2e/.run-logs/ (replacing the previous run's) and removes
# the run state. Prints the log tails when a component had died before this script ran, or when the
# caller says the run failed (VEER_E2E_FAILED=1, set by `make test`).
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "$0")/lib.sh"

LOGS_KEPT=${RUN_DIR}-logs
[ -d "$RUN_DIR" ] || {
	log "nothing to stop ($RUN_DIR does not exist)"
	exit 0
}

show_tails=${VEER_E2E_FAILED:-0}
shopt -s nullglob
pidfiles=("$RUN_DIR"/pids/*)
shopt -u nullglob

# Reverse start order: the names start with a two-digit sequence number.
for ((i = ${#pidfiles[@]} - 1; i >= 0; i--)); do
	name=$(basename "${pidfiles[i]}" | cut -d- -f2-)
	if pid=$(running_pid "${pidfiles[i]}"); then
		stop_pid "$name" "$pid"
	else
		# Died on its own (or its pid now belongs to someone else, whom we leave alone).
		log "$name was no longer running"
		show_tails=1
	fi
done

rm -rf "$LOGS_KEPT"
if [ -d "$RUN_DIR/logs" ]; then
	mv "$RUN_DIR/logs" "$LOGS_KEPT"
	if [ "$show_tails" = 1 ]; then
		for f in "$LOGS_KEPT"/*.log; do
			log "last lines of $f:"
			tail -n 25 "$f" >&2
		done
	fi
	log "component logs kept in $LOGS_KEPT"
fi
rm -rf "$RUN_DIR"
