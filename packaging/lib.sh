# Shared by the packaging scripts. Source it; it defines paths and helpers and starts nothing.
# shellcheck shell=bash
# shellcheck disable=SC2034

PACKAGING_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$PACKAGING_DIR/.." && pwd)

log() { printf '[%s %s] %s\n' "$(basename "$0" .sh)" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# tool NAME: the path of helm or crane: $HELM / $CRANE when set, else the one on PATH, else the one
# e2e/build-tools.sh builds from the Go module proxy (once per machine, cached in ~/.cache/veer-e2e).
tool() {
	local name=$1 var
	var=$(echo "$name" | tr '[:lower:]' '[:upper:]')
	if [ -n "${!var:-}" ]; then
		echo "${!var}"
	elif command -v "$name" >/dev/null; then
		command -v "$name"
	else
		bash "$REPO_DIR/e2e/build-tools.sh" "$name" >&2
		# shellcheck disable=SC2016
		echo "$(bash -c '. "$1/e2e/lib.sh" && '"${name}_bin" _ "$REPO_DIR")/$name"
	fi
}

# The package's version (Cargo.toml), which is the image's tag and both charts' appVersion.
cargo_version() {
	sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$REPO_DIR/Cargo.toml"
}

# chart_field CHART FIELD: a top-level field of charts/CHART/Chart.yaml (version, appVersion), unquoted.
chart_field() {
	sed -n "s/^$2: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *\$/\1/p" "$REPO_DIR/charts/$1/Chart.yaml"
}

CHARTS=(veer veer-loadtester)
