#!/usr/bin/env bash
# Starts the local control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok with one fake Ready node, the traffic simulator (when the package has it) and
# Prometheus; installs Veer's CRDs, the Istio CRDs, the Gateway API CRDs and the SMI TrafficSplit CRD; with VEER_E2E_FLUX=1 (the default of `make test`)
# also Flux's CRDs, source-controller and helm-controller; with VEER_E2E_GITOPS=1 (also `make test`'s
# default; implies VEER_E2E_FLUX=1) also an OCI registry, a Git server and Flux's kustomize-controller,
# image-reflector-controller and image-automation-controller; writes e2e/.run/env. Idempotent: components
# that are already running (by recorded pid) are kept, missing ones are started. Stop it with e2e/down.sh.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "$0")/lib.sh"
started_at=$SECONDS

bash "$E2E_DIR/build-tools.sh"
K8S=$(k8s_bin) ETCD=$(etcd_bin)/etcd KWOK=$(kwok_bin) PROM=$(prom_dir)/root/usr/bin/prometheus
KUBECTL=$K8S/kubectl
PKI=$RUN_DIR/pki
KUBECONFIG_FILE=$RUN_DIR/admin.kubeconfig
kubectl() { "$KUBECTL" --kubeconfig="$KUBECONFIG_FILE" "$@"; }

# --- process bookkeeping ----------------------------------------------------------------------------
# pids/NN-name holds "pid exe"; NN is the start order, which down.sh reverses (see running_pid in lib.sh).
alive() { running_pid "$1" >/dev/null; }

any_alive() {
	local f
	for f in "$RUN_DIR"/pids/*; do alive "$f" && return 0; done
	return 1
}

# start NN NAME PORT EXE ARGS... : start EXE in its own session (so a Ctrl-C in the terminal does not
# kill it behind down.sh's back), logging to logs/NAME.log, unless it is already running.
start() {
	local seq=$1 name=$2 port=$3 exe
	exe=$(readlink -f "$4")
	shift 4
	local pidfile=$RUN_DIR/pids/$seq-$name pid
	if pid=$(running_pid "$pidfile"); then
		if [ "$(readlink "/proc/$pid/exe")" = "$exe" ]; then
			log "$name already running (pid $pid)"
			return 0
		fi
		log "$name (pid $pid) runs an executable that has been rebuilt since: restarting it"
		stop_pid "$name" "$pid"
	fi
	if [ -n "$port" ] && port_open "$port"; then
		die "port $port (for $name) is taken by a process this script did not start; pick another one (see e2e/lib.sh)"
	fi
	log "starting $name"
	setsid "$exe" "$@" </dev/null >>"$RUN_DIR/logs/$name.log" 2>&1 &
	echo "$! $exe" >"$pidfile"
	# setsid execs in place (the child is not a group leader), so the pid is the program's own; wait
	# for the exec to happen so that alive() holds from here on.
	for _ in $(seq 50); do
		alive "$pidfile" && return 0
		kill -0 "$!" 2>/dev/null || break
		sleep 0.1
	done
	alive "$pidfile" || {
		tail -n 40 "$RUN_DIR/logs/$name.log" >&2
		die "$name exited right after start"
	}
}

# ready NAME TIMEOUT CMD... : wait for CMD to succeed; fail early when the process died.
ready() {
	local name=$1 timeout=$2
	shift 2
	local pidfile log_file deadline=$((SECONDS + timeout))
	pidfile=$(ls "$RUN_DIR"/pids/*-"$name")
	log_file=$RUN_DIR/logs/$name.log
	until "$@" >/dev/null 2>&1; do
		if ! alive "$pidfile"; then
			log "$name died; last lines of $log_file:"
			tail -n 40 "$log_file" >&2
			die "$name is not running"
		fi
		if ((SECONDS >= deadline)); then
			log "$name not ready after ${timeout}s; last lines of $log_file:"
			tail -n 40 "$log_file" >&2
			die "$name did not become ready"
		fi
		sleep 0.5
	done
	log "$name ready"
}

# Leftovers of a run that is no longer running (a crash, a reboot) would only confuse: start clean.
if [ -d "$RUN_DIR" ] && ! any_alive; then
	log "removing stale run state in $RUN_DIR"
	rm -rf "$RUN_DIR"
fi
mkdir -p "$RUN_DIR"/{pids,logs}

bash "$E2E_DIR/pki.sh"
curl_k8s() { curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"; }

# --- etcd ------------------------------------------------------------------------------------------
# No fsync: the data is thrown away after the run, and fsync dominates apiserver write latency on CI disks.
start 10 etcd "$ETCD_PORT" "$ETCD" --name e2e --data-dir "$RUN_DIR/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
	--unsafe-no-fsync --log-level warn
ready etcd 30 curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/readyz"

# --- kube-apiserver --------------------------------------------------------------------------------
# The audit log records the writes to what Veer reads and writes (not pods, nodes or workload status,
# which kwok and the controller manager write all the time), so that a test can tell who wrote what and
# when: tests/e2e_reliability.rs checks that a deposed leader writes nothing (the controllers of the tests
# impersonate the chart's ServiceAccount; the audit event names the impersonated user and its extras).
# Metadata level, rotated at 50 MB.
cat >"$RUN_DIR/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
  resources:
  - group: flagger.app
  - group: coordination.k8s.io
    resources: [leases]
  - group: ""
    resources: [services, configmaps, secrets, events]
  - group: apps
    resources: [deployments, daemonsets]
  - group: networking.k8s.io
    resources: [ingresses]
  - group: networking.istio.io
  - group: gateway.networking.k8s.io
  - group: split.smi-spec.io
  - group: autoscaling
    resources: [horizontalpodautoscalers]
- level: None
EOF
# --endpoint-reconciler-type=none: the `kubernetes` Service would need a non-loopback advertise address
# and nothing here routes to it.
start 20 kube-apiserver "$APISERVER_PORT" "$K8S/kube-apiserver" \
	--audit-policy-file="$RUN_DIR/audit-policy.yaml" --audit-log-path="$RUN_DIR/logs/audit.log" \
	--audit-log-maxsize=50 --audit-log-maxbackup=2 --audit-log-format=json \
	--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
	--bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
	--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
	--client-ca-file="$PKI/ca.crt" \
	--service-account-issuer=https://kubernetes.default.svc.cluster.local \
	--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
	--service-cluster-ip-range=10.0.0.0/24 --authorization-mode=RBAC --allow-privileged=true \
	--endpoint-reconciler-type=none --profiling=false --cert-dir="$RUN_DIR/apiserver-certs" --v=1
ready kube-apiserver 120 curl_k8s "https://127.0.0.1:$APISERVER_PORT/readyz"

# --- kube-controller-manager and kube-scheduler ----------------------------------------------------
# VEER_E2E_KCM_QPS raises the KCM's client rate limit (default 20 QPS, burst 30), so that rolling out
# hundreds of Deployments at once is not paced by it (e2e/bench.sh). A running KCM keeps its setting.
kcm_rate=()
[ -z "${VEER_E2E_KCM_QPS:-}" ] ||
	kcm_rate=(--kube-api-qps="$VEER_E2E_KCM_QPS" --kube-api-burst="$((VEER_E2E_KCM_QPS * 2))")

# Leader election off: there is one of each. Their serving certs come from our CA so that health checks
# verify TLS like everything else. --authentication-skip-lookup with our --client-ca-file: otherwise both
# look for a front-proxy CA in kube-system/extension-apiserver-authentication and log an error about its
# absence every few seconds (we run no aggregated API server, so there is none).
start 30 kube-controller-manager "$KCM_PORT" "$K8S/kube-controller-manager" \
	--kubeconfig="$KUBECONFIG_FILE" \
	--authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
	--authentication-skip-lookup --client-ca-file="$PKI/ca.crt" \
	--bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
	--tls-cert-file="$PKI/components.crt" --tls-private-key-file="$PKI/components.key" \
	--leader-elect=false \
	--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
	--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
	--profiling=false --v=1 "${kcm_rate[@]}"

cat >"$RUN_DIR/scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $KUBECONFIG_FILE
leaderElection:
  leaderElect: false
EOF
start 40 kube-scheduler "$SCHEDULER_PORT" "$K8S/kube-scheduler" --config="$RUN_DIR/scheduler.yaml" \
	--authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
	--authentication-skip-lookup --client-ca-file="$PKI/ca.crt" \
	--bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
	--tls-cert-file="$PKI/components.crt" --tls-private-key-file="$PKI/components.key" --v=1
ready kube-controller-manager 60 curl -fsS --max-time 2 --cacert "$PKI/ca.crt" "https://127.0.0.1:$KCM_PORT/healthz"
ready kube-scheduler 60 curl -fsS --max-time 2 --cacert "$PKI/ca.crt" "https://127.0.0.1:$SCHEDULER_PORT/healthz"

# --- kwok and the fake node ------------------------------------------------------------------------
# kwok 0.8 has no built-in stages. Node: initialize (Ready, addresses, allocatable) + lease heartbeat.
# Pod: ready (Pending -> Running/Ready with an IP), complete (Job pods), delete (finishes deletions a
# kubelet would confirm; without it pod and namespace deletion hang).
STAGES=$KWOK/stages
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
	pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
	echo ---
	cat "$STAGES/$f"
done >"$RUN_DIR/kwok-stages.yaml"
# kwok opens no port without --node-port/--server-address.
start 50 kwok "" "$KWOK/kwok" --kubeconfig="$KUBECONFIG_FILE" --config="$RUN_DIR/kwok-stages.yaml" \
	--manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
	--node-lease-duration-seconds=40 --cidr=10.244.0.0/16 --node-ip=10.243.0.1

kubectl apply --server-side --field-manager=veer-e2e -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE_NAME
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: $NODE_NAME
    type: kwok
EOF
# Ready is kwok's doing; the not-ready taint that came with the new Node is removed by the KCM's node
# lifecycle controller once it sees Ready. Pods schedule only after both.
node_usable() {
	[ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] &&
		[ -z "$(kubectl get node "$NODE_NAME" -o jsonpath='{.spec.taints}')" ]
}
ready kwok 60 node_usable

# --- traffic simulator (optional until the veer-trafficsim bin target exists) ------------------------
TRAFFICSIM_STARTED=0
metadata=$(cd "$REPO_DIR" && cargo metadata --no-deps --format-version 1 --offline)
if grep -q '"name":"veer-trafficsim"' <<<"$metadata"; then
	log "building veer-trafficsim"
	# Ask cargo for the executable's path: it honours CARGO_TARGET_DIR and any .cargo/config.
	sim=$(cd "$REPO_DIR" && cargo build --bin veer-trafficsim --message-format=json-render-diagnostics |
		sed -n 's/.*"executable":"\([^"]*veer-trafficsim\)".*/\1/p' | tail -n1)
	[ -x "$sim" ] || die "cargo build --bin veer-trafficsim produced no executable"
	start 60 trafficsim "$TRAFFICSIM_PORT" "$sim" --listen "127.0.0.1:$TRAFFICSIM_PORT"
	ready trafficsim 30 curl -fsS --max-time 2 "http://127.0.0.1:$TRAFFICSIM_PORT/metrics"
	TRAFFICSIM_STARTED=1
else
	log "no veer-trafficsim bin target in Cargo.toml yet: not starting the traffic simulator"
fi

# --- Prometheus ------------------------------------------------------------------------------------
# The traffic simulator is scraped every second so that analysis windows of a few seconds have data
# (VEER_E2E_TRAFFICSIM_SCRAPE: the scale benchmark's thousand workloads are scraped every 5 s).
TRAFFICSIM_SCRAPE=${VEER_E2E_TRAFFICSIM_SCRAPE:-1s}
cat >"$RUN_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:$PROMETHEUS_PORT']
  - job_name: trafficsim
    scrape_interval: $TRAFFICSIM_SCRAPE
    scrape_timeout: $TRAFFICSIM_SCRAPE
    static_configs:
      - targets: ['127.0.0.1:$TRAFFICSIM_PORT']
EOF
start 70 prometheus "$PROMETHEUS_PORT" "$PROM" --config.file="$RUN_DIR/prometheus.yml" \
	--storage.tsdb.path="$RUN_DIR/prometheus" --storage.tsdb.retention.time=1d \
	--web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle
ready prometheus 60 curl -fsS --max-time 2 "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
# A running Prometheus keeps its old config on a second up.sh: reload it (same file, maybe new ports).
curl -fsS --max-time 5 -X POST "http://127.0.0.1:$PROMETHEUS_PORT/-/reload" >/dev/null

# --- CRDs and the default namespace ----------------------------------------------------------------
# Server-side apply: the Istio CRDs are too big for the client-side last-applied annotation (256 KiB).
log "installing Veer's, Istio's, the Gateway API's and SMI's CRDs"
shopt -s nullglob
veer_crds=("$REPO_DIR"/crds/*.yaml)
shopt -u nullglob
[ ${#veer_crds[@]} -gt 0 ] || die "no CRDs in $REPO_DIR/crds"
crd_names=()
for f in "${veer_crds[@]}" "$(crds_dir)/istio-crds.yaml" "$(crds_dir)/gateway-api-crds.yaml" \
	"$E2E_DIR/crds/split.smi-spec.io.yaml"; do
	# -o name prints one customresourcedefinition.apiextensions.k8s.io/NAME per object.
	applied=$(kubectl apply --server-side --force-conflicts --field-manager=veer-e2e -o name -f "$f")
	mapfile -t -O "${#crd_names[@]}" crd_names <<<"$applied"
done
# The Gateway API's files also hold its ValidatingAdmissionPolicy against downgrades: wait for the CRDs.
mapfile -t crd_names < <(printf '%s\n' "${crd_names[@]}" | grep '^customresourcedefinition')
kubectl wait --for=condition=Established --timeout=60s "${crd_names[@]}" >/dev/null ||
	die "CRDs not Established: ${crd_names[*]}"

# --- Flux (VEER_E2E_FLUX=1) -------------------------------------------------------------------------
# source-controller fetches charts (HelmRepository -> HelmChart) and serves them as artifacts on its
# storage address; helm-controller installs HelmReleases from those artifacts. Both are
# controller-runtime programs that run out of cluster with KUBECONFIG; every listener is pinned to
# loopback (their defaults bind :8080, :9090 and :9440 on all interfaces). Leader election is off by
# default in both.
FLUX_STARTED=0
if [ "$FLUX" = 1 ]; then
	FLUX_SOURCE=$(flux_source_bin) FLUX_HELM=$(flux_helm_bin)
	flux_crd_dirs=(-f "$FLUX_SOURCE/crds" -f "$FLUX_HELM/crds")
	if [ "$GITOPS" = 1 ]; then
		FLUX_KUSTOMIZE=$(flux_kustomize_bin) FLUX_REFLECTOR=$(flux_image_reflector_bin)
		FLUX_AUTOMATION=$(flux_image_automation_bin)
		flux_crd_dirs+=(-f "$FLUX_KUSTOMIZE/crds" -f "$FLUX_REFLECTOR/crds" -f "$FLUX_AUTOMATION/crds")
	fi
	log "installing Flux's CRDs"
	applied=$(kubectl apply --server-side --force-conflicts --field-manager=veer-e2e -o name "${flux_crd_dirs[@]}")
	mapfile -t flux_crds <<<"$applied"
	kubectl wait --for=condition=Established --timeout=60s "${flux_crds[@]}" >/dev/null ||
		die "Flux CRDs not Established: ${flux_crds[*]}"
	mkdir -p "$RUN_DIR/flux-storage"
	export KUBECONFIG=$KUBECONFIG_FILE
	start 80 flux-source-controller "$FLUX_STORAGE_PORT" "$FLUX_SOURCE/source-controller" \
		--storage-path="$RUN_DIR/flux-storage" \
		--storage-addr="127.0.0.1:$FLUX_STORAGE_PORT" --storage-adv-addr="127.0.0.1:$FLUX_STORAGE_PORT" \
		--metrics-addr="127.0.0.1:$FLUX_SOURCE_METRICS_PORT" --health-addr="127.0.0.1:$FLUX_SOURCE_HEALTH_PORT" \
		--log-level=info
	start 81 flux-helm-controller "$FLUX_HELM_METRICS_PORT" "$FLUX_HELM/helm-controller" \
		--metrics-addr="127.0.0.1:$FLUX_HELM_METRICS_PORT" --health-addr="127.0.0.1:$FLUX_HELM_HEALTH_PORT" \
		--log-level=info
	ready flux-source-controller 60 curl -fsS --max-time 2 "http://127.0.0.1:$FLUX_SOURCE_HEALTH_PORT/readyz"
	ready flux-helm-controller 60 curl -fsS --max-time 2 "http://127.0.0.1:$FLUX_HELM_HEALTH_PORT/readyz"
	FLUX_STARTED=1
fi

# --- GitOps (VEER_E2E_GITOPS=1) ---------------------------------------------------------------------
# The rest of the GitOps pipeline: CI pushes an image to the registry, image-reflector-controller
# scans its tags (ImageRepository with `spec.insecure: true`: the registry speaks plain HTTP) and an
# ImagePolicy picks one, image-automation-controller commits it to a repository of the Git server,
# source-controller fetches that (GitRepository) and kustomize-controller applies it (Kustomization,
# downloaded from source-controller's artifact server). The registry and the Git server keep their data
# under the run directory and have no authentication: they listen on loopback only. Every controller
# listener is on loopback; --events-addr stays empty (no notification-controller: no events are sent).
GITOPS_STARTED=0
if [ "$GITOPS" = 1 ]; then
	REGISTRY=$(registry_bin)/registry GITSERVER=$(gitserver_bin)/gitserver
	# The Git server runs the machine's `git upload-pack` and `git receive-pack`.
	command -v git >/dev/null || die "VEER_E2E_GITOPS=1 needs git (the Git server runs it)"
	mkdir -p "$RUN_DIR/registry" "$RUN_DIR/git" "$RUN_DIR/flux-image-reflector"
	# Log level warn: at info every request is logged twice; the access log (one line each) stays on.
	cat >"$RUN_DIR/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $RUN_DIR/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
	# OTEL_TRACES_EXPORTER=none: otherwise its OpenTelemetry exporter tries to send to localhost:4318.
	OTEL_TRACES_EXPORTER=none start 82 registry "$REGISTRY_PORT" "$REGISTRY" serve "$RUN_DIR/registry.yml"
	start 83 gitserver "$GIT_PORT" "$GITSERVER" --listen="127.0.0.1:$GIT_PORT" --root="$RUN_DIR/git"
	start 84 flux-kustomize-controller "$FLUX_KUSTOMIZE_METRICS_PORT" "$FLUX_KUSTOMIZE/kustomize-controller" \
		--metrics-addr="127.0.0.1:$FLUX_KUSTOMIZE_METRICS_PORT" \
		--health-addr="127.0.0.1:$FLUX_KUSTOMIZE_HEALTH_PORT" --log-level=info
	# Its tag database (Badger, the default) lives in the run directory, with a 16 MiB value log instead
	# of the default 256 MiB (memory-mapped; its help says the effective memory use is about twice that):
	# plenty for the few tags of a test.
	start 85 flux-image-reflector-controller "$FLUX_REFLECTOR_METRICS_PORT" \
		"$FLUX_REFLECTOR/image-reflector-controller" \
		--storage-path="$RUN_DIR/flux-image-reflector" --storage-value-log-file-size=$((16 << 20)) \
		--metrics-addr="127.0.0.1:$FLUX_REFLECTOR_METRICS_PORT" \
		--health-addr="127.0.0.1:$FLUX_REFLECTOR_HEALTH_PORT" --log-level=info
	start 86 flux-image-automation-controller "$FLUX_AUTOMATION_METRICS_PORT" \
		"$FLUX_AUTOMATION/image-automation-controller" \
		--metrics-addr="127.0.0.1:$FLUX_AUTOMATION_METRICS_PORT" \
		--health-addr="127.0.0.1:$FLUX_AUTOMATION_HEALTH_PORT" --log-level=info
	ready registry 30 curl -fsS --max-time 2 "http://127.0.0.1:$REGISTRY_PORT/v2/"
	ready gitserver 30 curl -fsS --max-time 2 "http://127.0.0.1:$GIT_PORT/healthz"
	ready flux-kustomize-controller 60 \
		curl -fsS --max-time 2 "http://127.0.0.1:$FLUX_KUSTOMIZE_HEALTH_PORT/readyz"
	ready flux-image-reflector-controller 60 \
		curl -fsS --max-time 2 "http://127.0.0.1:$FLUX_REFLECTOR_HEALTH_PORT/readyz"
	ready flux-image-automation-controller 60 \
		curl -fsS --max-time 2 "http://127.0.0.1:$FLUX_AUTOMATION_HEALTH_PORT/readyz"
	GITOPS_STARTED=1
fi

# Pods can only be created once the service-account controller made the namespace's default account.
wait_for "the default service account" 60 "$RUN_DIR/logs/kube-controller-manager.log" \
	kubectl -n default get serviceaccount default

# --- hand-over -------------------------------------------------------------------------------------
{
	echo "# Written by e2e/up.sh; source it (set -a not needed) to talk to the local control plane."
	printf 'export VEER_E2E=1\n'
	printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
	printf 'export PROMETHEUS_URL=%q\n' "http://127.0.0.1:$PROMETHEUS_PORT"
	printf 'export TRAFFICSIM_URL=%q\n' "http://127.0.0.1:$TRAFFICSIM_PORT"
	printf 'export VEER_E2E_TRAFFICSIM_RUNNING=%q\n' "$TRAFFICSIM_STARTED"
	printf 'export VEER_E2E_NODE=%q\n' "$NODE_NAME"
	printf 'export VEER_E2E_KUBECTL=%q\n' "$KUBECTL"
	printf 'export VEER_E2E_HELM=%q\n' "$(helm_bin)/helm"
	printf 'export VEER_E2E_FLAGGER=%q\n' "$(flagger_bin)/flagger"
	printf 'export VEER_E2E_FLUX_RUNNING=%q\n' "$FLUX_STARTED"
	printf 'export VEER_E2E_GITOPS_RUNNING=%q\n' "$GITOPS_STARTED"
	if [ "$GITOPS_STARTED" = 1 ]; then
		printf 'export VEER_E2E_REGISTRY=%q\n' "127.0.0.1:$REGISTRY_PORT"
		printf 'export VEER_E2E_GIT_URL=%q\n' "http://127.0.0.1:$GIT_PORT"
		printf 'export VEER_E2E_CRANE=%q\n' "$(crane_bin)/crane"
		printf 'export VEER_E2E_REGISTRY_BIN=%q\n' "$REGISTRY"
	fi
	printf 'export VEER_E2E_AUDIT_LOG=%q\n' "$RUN_DIR/logs/audit.log"
} >"$RUN_DIR/env"
log "control plane ready in $((SECONDS - started_at))s; use it with: . $RUN_DIR/env"
