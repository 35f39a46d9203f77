#!/usr/bin/env bash
# Builds (or finds in the cache) every tool the local control plane needs. Idempotent: each tool has its
# own cache directory keyed by its inputs, completed by a `.complete` stamp; a warm run builds nothing.
# Usage: e2e/build-tools.sh [k8s|etcd|kwok|helm|prometheus|crds|flagger|flux-source|flux-helm|flux-kustomize|
#   flux-image-reflector|flux-image-automation|gitserver|registry|crane ...]
# (default: k8s to flagger; the two Flux controllers too when VEER_E2E_FLUX=1; with VEER_E2E_GITOPS=1
# also the other three Flux controllers, the Git server, the registry and crane. Otherwise registry and
# crane are built by tests/e2e_artifacts.rs and packaging/ when they need them.)
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "$0")/lib.sh"
mkdir -p "$E2E_CACHE"

# build_once DIR FUNC : run FUNC DIR unless DIR/.complete exists; a lock keeps two runs from racing.
build_once() {
	local dir=$1 fn=$2
	[ -f "$dir/.complete" ] && return 0
	exec 9>"$dir.lock"
	flock 9
	if [ ! -f "$dir/.complete" ]; then
		rm -rf "$dir.tmp"
		mkdir -p "$dir.tmp"
		local start=$SECONDS
		log "building $(basename "$dir") ..."
		"$fn" "$dir.tmp"
		rm -rf "$dir"
		mv "$dir.tmp" "$dir"
		touch "$dir/.complete"
		log "built $(basename "$dir") in $((SECONDS - start))s"
	fi
	exec 9>&-
}

# The staging modules must be pinned to the release's v0.X.Y; check that the committed replace block
# covers every staging module of the pinned release before spending half an hour compiling.
check_k8s_replaces() {
	local gomod want have
	gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	want=$(grep -oE 'k8s.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | sort)
	have=$(grep -oE "k8s.io/[a-z0-9-]+ => k8s.io/[a-z0-9-]+ $K8S_STAGING_VERSION" "$E2E_DIR/tools/k8s/go.mod" |
		awk '{print $1}' | sort)
	[ "$want" = "$have" ] || die "e2e/tools/k8s/go.mod replace block differs from $K8S_VERSION's staging modules:
$(diff <(echo "$want") <(echo "$have"))"
}

build_k8s() {
	check_k8s_replaces
	local out=$1 minor ldf p
	minor=$(echo "$K8S_VERSION" | cut -d. -f2)
	ldf="-s -w"
	# Without version stamping the binaries report v0.0.0-master, which breaks emulation-version logic.
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldf="$ldf -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
		ldf="$ldf -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
	done
	(cd "$E2E_DIR/tools/k8s" && go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags "$ldf" -o "$out/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() {
	(cd "$E2E_DIR/tools/etcd" && go build -trimpath -ldflags "-s -w" -o "$1/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
	GOBIN=$1 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
	# The stage files (pod ready / complete / delete, node heartbeat) come from the same module.
	local dir
	dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	mkdir -p "$1/stages"
	cp -r "$dir/kustomize/stage/." "$1/stages/"
	chmod -R u+w "$1/stages"
}

build_helm() {
	local minor ldf
	minor=$(echo "$K8S_VERSION" | cut -d. -f2)
	# Without these helm lint/template assume Kubernetes v1.20.
	ldf="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
	ldf="$ldf -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
	ldf="$ldf -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
	GOBIN=$1 go install -trimpath -ldflags "$ldf" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# Debian's prometheus package, unpacked rather than installed: its maintainer scripts add a system user
# and start a daemon on :9090. The pinned version is a stable-security update; when the archive has moved
# on to a newer one, the pinned file is gone, so take the current candidate (same 2.x HTTP API) and say so.
build_prometheus() {
	local out=$1 deb
	(
		cd "$out"
		apt-get download "prometheus=$PROMETHEUS_DEB_VERSION" >/dev/null 2>&1 && exit 0
		# A fresh machine may have no package lists yet.
		apt-get update >/dev/null
		apt-get download "prometheus=$PROMETHEUS_DEB_VERSION" >/dev/null 2>&1 && exit 0
		log "WARNING: prometheus=$PROMETHEUS_DEB_VERSION is no longer in the archive; using the candidate" \
			"$(apt-cache policy prometheus | sed -n 's/ *Candidate: //p')"
		apt-get download prometheus >/dev/null
	)
	deb=$(ls "$out"/prometheus_*.deb)
	dpkg -x "$deb" "$out/root"
	rm -f "$deb"
	"$out/root/usr/bin/prometheus" --version >/dev/null
}

# The real Istio CRDs (VirtualService, DestinationRule, Gateway, ...) from the istio.io/api module, and
# the Gateway API's standard channel (HTTPRoute, Gateway, ...) from sigs.k8s.io/gateway-api.
build_crds() {
	local dir f
	dir=$(go mod download -json "istio.io/api@$ISTIO_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	cp "$dir/kubernetes/customresourcedefinitions.gen.yaml" "$1/istio-crds.yaml"
	dir=$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	for f in "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
		printf -- '---\n' >>"$1/gateway-api-crds.yaml"
		cat "$f" >>"$1/gateway-api-crds.yaml"
	done
}

# Flagger, to compare Veer with the real thing (tests/e2e_differential.rs). Built by name from the module
# proxy; it runs out of cluster with -kubeconfig.
build_flagger() {
	GOBIN=$1 go install -trimpath -ldflags "-s -w" "github.com/fluxcd/flagger/cmd/flagger@$FLAGGER_VERSION"
}

# An OCI registry (distribution, the reference implementation) for the tests that push Veer's image and
# charts (tests/e2e_artifacts.rs); it runs on 127.0.0.1 with storage in a temporary directory.
build_registry() {
	GOBIN=$1 go install -trimpath \
		-ldflags "-s -w -X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION" \
		"github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"
}

# crane (go-containerregistry) pushes an OCI image layout directory to a registry (packaging/publish.sh).
build_crane() {
	GOBIN=$1 go install -trimpath -ldflags "-s -w" "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
}

# Flux's controllers: their go.mod files in tools/flux-* are what gets built; versions.env names the same
# versions (for the CRDs and the cache key), and a mismatch would build one version with another's CRDs.
check_flux_version() {
	local dir=$1 module=$2 version=$3
	grep -qE "^[[:space:]]*(require )?$module $version\$" "$E2E_DIR/tools/$dir/go.mod" ||
		die "e2e/tools/$dir/go.mod does not require $module $version (versions.env); update one of them"
}

# build_flux OUT DIR MODULE VERSION BINARY: the controller binary plus its CRDs (config/crd/bases of the
# same module version) in OUT/crds.
build_flux() {
	local out=$1 dir=$2 module=$3 version=$4 binary=$5 src
	check_flux_version "$dir" "$module" "$version"
	(cd "$E2E_DIR/tools/$dir" && go build -trimpath -ldflags "-s -w" -o "$out/$binary" "$module")
	src=$(cd "$E2E_DIR/tools/$dir" && go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	mkdir -p "$out/crds"
	cp "$src"/config/crd/bases/*.yaml "$out/crds/"
	chmod -R u+w "$out/crds"
}
build_flux_source() {
	build_flux "$1" flux-source github.com/fluxcd/source-controller "$FLUX_SOURCE_VERSION" source-controller
}
build_flux_helm() {
	build_flux "$1" flux-helm github.com/fluxcd/helm-controller "$FLUX_HELM_VERSION" helm-controller
}
build_flux_kustomize() {
	build_flux "$1" flux-kustomize github.com/fluxcd/kustomize-controller "$FLUX_KUSTOMIZE_VERSION" kustomize-controller
}
build_flux_image_reflector() {
	build_flux "$1" flux-image-reflector github.com/fluxcd/image-reflector-controller \
		"$FLUX_IMAGE_REFLECTOR_VERSION" image-reflector-controller
}
build_flux_image_automation() {
	build_flux "$1" flux-image-automation github.com/fluxcd/image-automation-controller \
		"$FLUX_IMAGE_AUTOMATION_VERSION" image-automation-controller
}

# Our Git server (smart HTTP, fetch and push) for the GitOps tests: tools/gitserver/main.go.
build_gitserver() {
	(cd "$E2E_DIR/tools/gitserver" && go build -trimpath -ldflags "-s -w" -o "$1/gitserver" .)
}

tools=("$@")
if [ ${#tools[@]} -eq 0 ]; then
	tools=(k8s etcd kwok helm prometheus crds flagger)
	[ "$FLUX" != 1 ] || tools+=(flux-source flux-helm)
	[ "$GITOPS" != 1 ] || tools+=(flux-kustomize flux-image-reflector flux-image-automation gitserver registry crane)
fi
for t in "${tools[@]}"; do
	case $t in
	k8s) build_once "$(k8s_bin)" build_k8s ;;
	etcd) build_once "$(etcd_bin)" build_etcd ;;
	kwok) build_once "$(kwok_bin)" build_kwok ;;
	helm) build_once "$(helm_bin)" build_helm ;;
	prometheus) build_once "$(prom_dir)" build_prometheus ;;
	crds) build_once "$(crds_dir)" build_crds ;;
	flagger) build_once "$(flagger_bin)" build_flagger ;;
	flux-source) build_once "$(flux_source_bin)" build_flux_source ;;
	flux-helm) build_once "$(flux_helm_bin)" build_flux_helm ;;
	flux-kustomize) build_once "$(flux_kustomize_bin)" build_flux_kustomize ;;
	flux-image-reflector) build_once "$(flux_image_reflector_bin)" build_flux_image_reflector ;;
	flux-image-automation) build_once "$(flux_image_automation_bin)" build_flux_image_automation ;;
	gitserver) build_once "$(gitserver_bin)" build_gitserver ;;
	registry) build_once "$(registry_bin)" build_registry ;;
	crane) build_once "$(crane_bin)" build_crane ;;
	*) die "unknown tool $t" ;;
	esac
done
