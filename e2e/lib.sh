# Shared settings for the e2e scripts. Source it; it defines paths and helpers, and starts nothing.
# shellcheck shell=bash
# The variables are used by the scripts that source this file.
# shellcheck disable=SC2034

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$E2E_DIR/.." && pwd)
# shellcheck source=e2e/versions.env
. "$E2E_DIR/versions.env"

# Built tools live outside the repository so that a fresh clone on the same machine reuses them.
E2E_CACHE=${VEER_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/veer-e2e}
RUN_DIR=${VEER_E2E_RUN:-$E2E_DIR/.run}

# Loopback ports, all overridable.
ETCD_PORT=${VEER_ETCD_PORT:-12379}
ETCD_PEER_PORT=${VEER_ETCD_PEER_PORT:-12380}
APISERVER_PORT=${VEER_APISERVER_PORT:-16443}
KCM_PORT=${VEER_KCM_PORT:-10257}
SCHEDULER_PORT=${VEER_SCHEDULER_PORT:-10259}
PROMETHEUS_PORT=${VEER_PROMETHEUS_PORT:-19090}
TRAFFICSIM_PORT=${VEER_TRAFFICSIM_PORT:-19091}
# Flux's source-controller and helm-controller are built and started only with VEER_E2E_FLUX=1 (the
# Makefile sets it; e2e/up.sh alone leaves them out). Their ports: source-controller's artifact server,
# metrics and health, helm-controller's metrics and health (their defaults :9090, :8080 and :9440 bind
# every interface and collide).
FLUX=${VEER_E2E_FLUX:-0}
FLUX_STORAGE_PORT=${VEER_FLUX_STORAGE_PORT:-19791}
FLUX_SOURCE_METRICS_PORT=${VEER_FLUX_SOURCE_METRICS_PORT:-19792}
FLUX_SOURCE_HEALTH_PORT=${VEER_FLUX_SOURCE_HEALTH_PORT:-19793}
FLUX_HELM_METRICS_PORT=${VEER_FLUX_HELM_METRICS_PORT:-19794}
FLUX_HELM_HEALTH_PORT=${VEER_FLUX_HELM_HEALTH_PORT:-19795}
# VEER_E2E_GITOPS=1 (the Makefile sets it; it implies VEER_E2E_FLUX=1) adds the rest of the GitOps
# pipeline: an OCI registry (distribution's `registry`), a Git server over smart HTTP (tools/gitserver),
# and Flux's kustomize-controller, image-reflector-controller and image-automation-controller.
GITOPS=${VEER_E2E_GITOPS:-0}
[ "$GITOPS" != 1 ] || FLUX=1
REGISTRY_PORT=${VEER_REGISTRY_PORT:-19796}
GIT_PORT=${VEER_GIT_PORT:-19797}
FLUX_KUSTOMIZE_METRICS_PORT=${VEER_FLUX_KUSTOMIZE_METRICS_PORT:-19798}
FLUX_KUSTOMIZE_HEALTH_PORT=${VEER_FLUX_KUSTOMIZE_HEALTH_PORT:-19799}
FLUX_REFLECTOR_METRICS_PORT=${VEER_FLUX_REFLECTOR_METRICS_PORT:-19800}
FLUX_REFLECTOR_HEALTH_PORT=${VEER_FLUX_REFLECTOR_HEALTH_PORT:-19801}
FLUX_AUTOMATION_METRICS_PORT=${VEER_FLUX_AUTOMATION_METRICS_PORT:-19802}
FLUX_AUTOMATION_HEALTH_PORT=${VEER_FLUX_AUTOMATION_HEALTH_PORT:-19803}

# The fake node kwok manages; tests may pin pods to it.
NODE_NAME=${VEER_E2E_NODE:-kwok-node-0}

export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-modcacherw CGO_ENABLED=0

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# key NAME VALUES... [-- FILES...] : a short hash of one tool's own inputs (its pinned version, its go.mod/go.sum)
# and the Go version, used in its cache dir name; bumping one tool's version rebuilds only that tool.
# RECIPE_REV below is bumped by hand when a build recipe in build-tools.sh changes in a way that matters.
key() {
	local name=$1 values=() files=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do values+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	files=("$@")
	{
		echo "$name ${values[*]}"
		go version
		[ ${#files[@]} -eq 0 ] || cat "${files[@]}"
	} | sha256sum | cut -c1-16
}

RECIPE_REV=1
k8s_bin() {
	echo "$E2E_CACHE/k8s-$(key k8s "$K8S_VERSION" "$K8S_STAGING_VERSION" "$RECIPE_REV" -- \
		"$E2E_DIR"/tools/k8s/go.mod "$E2E_DIR"/tools/k8s/go.sum)"
}
etcd_bin() {
	echo "$E2E_CACHE/etcd-$(key etcd "$ETCD_VERSION" "$RECIPE_REV" -- \
		"$E2E_DIR"/tools/etcd/go.mod "$E2E_DIR"/tools/etcd/go.sum)"
}
kwok_bin() { echo "$E2E_CACHE/kwok-$(key kwok "$KWOK_VERSION" "$RECIPE_REV")"; }
helm_bin() { echo "$E2E_CACHE/helm-$(key helm "$HELM_VERSION" "$K8S_VERSION" "$RECIPE_REV")"; }
prom_dir() { echo "$E2E_CACHE/prometheus-$(key prometheus "$PROMETHEUS_DEB_VERSION" "$RECIPE_REV")"; }
crds_dir() { echo "$E2E_CACHE/crds-$(key crds "$ISTIO_API_VERSION" "$GATEWAY_API_VERSION" "$RECIPE_REV")"; }
flagger_bin() { echo "$E2E_CACHE/flagger-$(key flagger "$FLAGGER_VERSION" "$RECIPE_REV")"; }
registry_bin() { echo "$E2E_CACHE/registry-$(key registry "$REGISTRY_VERSION" "$RECIPE_REV")"; }
crane_bin() { echo "$E2E_CACHE/crane-$(key crane "$CRANE_VERSION" "$RECIPE_REV")"; }
# flux_bin DIR VERSION: the cache directory of the Flux controller built from e2e/tools/DIR, keyed by
# its version and its go.mod and go.sum.
flux_bin() {
	echo "$E2E_CACHE/$1-$(key "$1" "$2" "$RECIPE_REV" -- "$E2E_DIR/tools/$1/go.mod" "$E2E_DIR/tools/$1/go.sum")"
}
flux_source_bin() { flux_bin flux-source "$FLUX_SOURCE_VERSION"; }
flux_helm_bin() { flux_bin flux-helm "$FLUX_HELM_VERSION"; }
flux_kustomize_bin() { flux_bin flux-kustomize "$FLUX_KUSTOMIZE_VERSION"; }
flux_image_reflector_bin() { flux_bin flux-image-reflector "$FLUX_IMAGE_REFLECTOR_VERSION"; }
flux_image_automation_bin() { flux_bin flux-image-automation "$FLUX_IMAGE_AUTOMATION_VERSION"; }
# Our own Git server (tools/gitserver/main.go): its key covers its source too.
gitserver_bin() {
	echo "$E2E_CACHE/gitserver-$(key gitserver "$RECIPE_REV" -- \
		"$E2E_DIR"/tools/gitserver/go.mod "$E2E_DIR"/tools/gitserver/go.sum "$E2E_DIR"/tools/gitserver/main.go)"
}

# running_pid PIDFILE : print the pid recorded in PIDFILE ("pid exe", written by up.sh) if that process
# still runs the recorded executable, else fail. The exe check keeps a reused pid from being taken for
# ours. A process whose executable was rebuilt since it started shows it as "PATH (deleted)".
running_pid() {
	local pid exe actual
	[ -f "$1" ] && read -r pid exe <"$1" || return 1
	actual=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	[ "$actual" = "$exe" ] || [ "$actual" = "$exe (deleted)" ] || return 1
	echo "$pid"
}

# stop_pid NAME PID : TERM, up to 10 s for it to exit, then KILL.
stop_pid() {
	local name=$1 pid=$2
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 100); do
		if ! readlink "/proc/$pid/exe" >/dev/null 2>&1; then # gone (or a zombie)
			log "stopped $name (pid $pid)"
			return 0
		fi
		sleep 0.1
	done
	log "$name (pid $pid) ignored TERM for 10 s; killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

# port_open PORT : true when something accepts TCP connections on 127.0.0.1:PORT (no ss/netstat needed).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for DESC TIMEOUT_S LOGFILE CMD... : retry CMD every 0.5 s; on timeout print the log tail and fail.
wait_for() {
	local desc=$1 timeout=$2 logfile=$3
	shift 3
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			log "timed out after ${timeout}s waiting for $desc"
			if [ -n "$logfile" ] && [ -f "$logfile" ]; then
				log "last lines of $logfile:"
				tail -n 40 "$logfile" >&2
			fi
			return 1
		fi
		sleep 0.5
	done
}
