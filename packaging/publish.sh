#!/usr/bin/env bash
# Publishes Veer to an OCI registry: the image built by packaging/image.sh, and both Helm charts as OCI
# artifacts, packaged so that they deploy that image by default.
#
#   packaging/publish.sh --registry REGISTRY [--image-dir DIR] [--plain-http]
#
# REGISTRY is a registry host with an optional path, say registry.example.com/team. It receives
#   REGISTRY/veer:<version>                  the image (its tag: the version in Cargo.toml)
#   REGISTRY/charts/veer:<chart version>     charts/veer, image.repository set to REGISTRY/veer
#   REGISTRY/charts/veer-loadtester:<chart version>
# so Flux installs from a HelmRepository of `type: oci` with `url: oci://REGISTRY/charts`.
#
# --image-dir DIR  the OCI image layout to push (default target/oci/veer, as image.sh writes it).
# --plain-http     talk HTTP, not HTTPS, to the registry (a registry on 127.0.0.1 for tests).
#
# Credentials are crane's and helm's own: `crane auth login REGISTRY -u USER -p ...` and
# `helm registry login REGISTRY` (or a docker config.json, which both read).
# crane and helm: $CRANE and $HELM, else on PATH, else built by e2e/build-tools.sh.
# Prints the pushed image by digest (REGISTRY/veer:<version>@sha256:...) on stdout.
set -euo pipefail
# shellcheck source=packaging/lib.sh
. "$(dirname "$0")/lib.sh"

registry=
layout=${CARGO_TARGET_DIR:-$REPO_DIR/target}/oci/veer
plain_http=0
while [ $# -gt 0 ]; do
	case $1 in
	--registry) registry=${2%/}; shift 2 ;;
	--image-dir) layout=$2; shift 2 ;;
	--plain-http) plain_http=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[ -n "$registry" ] || die "--registry is required (say registry.example.com/team)"
[[ $registry != *://* ]] || die "--registry takes a host and path, no scheme: $registry"
[ -f "$layout/index.json" ] || die "no image layout in $layout: run packaging/image.sh (make image) first"
command -v jq >/dev/null || die "jq is missing (apt-get install jq)"

tag=$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$layout/index.json")
digest=$(jq -r '.manifests[0].digest' "$layout/index.json")
version=$(cargo_version)
[ "$tag" = "$version" ] ||
	die "the image in $layout is tagged $tag but this checkout is version $version: rebuild it (make image)"

crane=$(tool crane)
helm=$(tool helm)
crane_flags=()
helm_flags=()
if [ "$plain_http" = 1 ]; then
	crane_flags+=(--insecure)
	helm_flags+=(--plain-http)
fi

image=$registry/veer
log "pushing $layout to $image:$tag"
pushed=$("$crane" push "${crane_flags[@]}" "$layout" "$image:$tag")
[ "${pushed##*@}" = "$digest" ] || die "the registry reports $pushed, but the layout's manifest is $digest"

charts=$(mktemp -d)
trap 'rm -rf "$charts"' EXIT
"$REPO_DIR/packaging/charts.sh" --out "$charts" --image-repository "$image" >/dev/null
for archive in "$charts"/*.tgz; do
	log "pushing $(basename "$archive") to oci://$registry/charts"
	"$helm" push "${helm_flags[@]}" "$archive" "oci://$registry/charts" >&2
done
echo "$image:$tag@$digest"
