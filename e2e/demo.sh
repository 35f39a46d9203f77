#!/usr/bin/env bash
# The demo (`make demo`): on a fresh machine it builds and starts a local Kubernetes control plane,
# Prometheus and the traffic simulator, builds Veer, starts the controller and the load tester,
# deploys a podinfo-like workload with an Istio Canary, rolls out a good version (weight, phase and
# metric values printed live), then a bad version that is rolled back, prints a summary, and stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
. e2e/lib.sh

NS=demo
pids=()
cleanup() {
	local status=$?
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	e2e/down.sh >/dev/null 2>&1 || true
	if [ "$status" -ne 0 ]; then
		echo "The demo failed; logs: e2e/.run-logs/ and $DEMO_LOGS" >&2
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "Starting a local Kubernetes control plane, Prometheus and the traffic simulator"
e2e/up.sh
. e2e/.run/env
kubectl() { "$VEER_E2E_KUBECTL" "$@"; }

say "Building Veer"
cargo build --quiet --bin veer --bin veer-loadtester
BIN=${CARGO_TARGET_DIR:-target}/debug
DEMO_LOGS=$(mktemp -d /tmp/veer-demo.XXXXXX)

say "Starting the Veer controller and load tester"
CONTROLLER_PORT=$(free_port)
"$BIN/veer" controller --namespace "$NS" --metrics-server "$PROMETHEUS_URL" --min-analysis-interval 1s \
	--log-format plain --listen-address 127.0.0.1 --port "$CONTROLLER_PORT" >"$DEMO_LOGS/controller.log" 2>&1 &
pids+=($!)
LOADTESTER_PORT=$(free_port)
"$BIN/veer-loadtester" --address 127.0.0.1 --port "$LOADTESTER_PORT" \
	--gate-store "file:$DEMO_LOGS/gates.json" >"$DEMO_LOGS/loadtester.log" 2>&1 &
pids+=($!)
echo "controller metrics: http://127.0.0.1:$CONTROLLER_PORT/metrics   logs: $DEMO_LOGS"

say "Deploying podinfo 6.0.0 with a Canary (Istio, weight +20% every 5s up to 60%, success rate >= 99%, p99 <= 500ms)"
# Synthetic baseline traffic: the simulator serves Istio-shaped metrics for the canary workload;
# the Canary's rollout webhook adds real requests through the load tester's built-in hey.
curl -fsS -X PUT "$TRAFFICSIM_URL/api/istio/$NS/podinfo" -H 'content-type: application/json' \
	-d '{"rps": 10, "errorRate": 0, "latencyMs": 40}' >/dev/null
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $NS}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo, namespace: $NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec:
      containers:
      - name: podinfod
        image: ghcr.io/stefanprodan/podinfo:6.0.0
        ports: [{name: http, containerPort: 9898}]
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: $NS}
spec:
  provider: istio
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898, targetPort: http}
  analysis:
    interval: 5s
    threshold: 2
    maxWeight: 60
    stepWeight: 20
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 15s
    - name: request-duration
      thresholdRange: {max: 500}
      interval: 15s
    webhooks:
    - name: load-test
      url: http://127.0.0.1:$LOADTESTER_PORT/
      metadata:
        cmd: "hey -z 10s -q 5 -c 2 $TRAFFICSIM_URL/traffic/$NS/podinfo"
EOF
kubectl -n "$NS" wait canary/podinfo --for=condition=promoted --timeout=120s >/dev/null
"$BIN/veer" status -n "$NS" podinfo
kubectl -n "$NS" get deploy,svc,virtualservice,destinationrule

say "Rolling out a good version: podinfo 6.0.1"
kubectl -n "$NS" set image deploy/podinfo podinfod=ghcr.io/stefanprodan/podinfo:6.0.1 >/dev/null
"$BIN/veer" status -n "$NS" podinfo --watch --until Succeeded,Failed --timeout 5m

say "Rolling out a bad version: podinfo 6.0.2, whose canary answers 30% of requests with 500"
curl -fsS -X PUT "$TRAFFICSIM_URL/api/istio/$NS/podinfo" -H 'content-type: application/json' \
	-d '{"rps": 10, "errorRate": 0.3, "latencyMs": 40}' >/dev/null
kubectl -n "$NS" set image deploy/podinfo podinfod=ghcr.io/stefanprodan/podinfo:6.0.2 >/dev/null
"$BIN/veer" status -n "$NS" podinfo --watch --until Succeeded,Failed --timeout 5m

say "Summary"
primary=$(kubectl -n "$NS" get deploy podinfo-primary -o jsonpath='{.spec.template.spec.containers[0].image}')
phase=$(kubectl -n "$NS" get canary podinfo -o jsonpath='{.status.phase}')
kubectl -n "$NS" get events --field-selector involvedObject.kind=Canary --sort-by=.firstTimestamp \
	-o custom-columns=TYPE:.type,MESSAGE:.message | tail -n 14
echo
echo "The primary runs $primary; the last run ended $phase."
if [ "$primary" != "ghcr.io/stefanprodan/podinfo:6.0.1" ] || [ "$phase" != Failed ]; then
	echo "expected 6.0.1 promoted and 6.0.2 rolled back" >&2
	exit 1
fi
echo "Veer promoted 6.0.1 on healthy metrics and rolled 6.0.2 back when its success rate fell below 99%."
