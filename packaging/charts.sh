#!/usr/bin/env bash
# Packages both Helm charts (charts/veer, charts/veer-loadtester) as chart archives, ready for
# `helm push` to an OCI registry (packaging/publish.sh does that) or for a classic chart repository.
#
#   packaging/charts.sh [--out DIR] [--image-repository REPO]
#
# --out DIR                where the archives go (default target/charts): veer-<version>.tgz and
#                          veer-loadtester-<version>.tgz, versions from each Chart.yaml.
# --image-repository REPO  the image both charts use unless the values say otherwise (their `image.repository`,
#                          `veer` in the repository); set it to where the image was pushed, say
#                          registry.example.com/team/veer. Without it the charts are packaged as they are.
#
# The charts' default image tag is their appVersion; this script refuses to package when that differs from
# the version in Cargo.toml, which is the tag packaging/image.sh gives the image. Prints the archives' paths.
# helm: $HELM, else helm on PATH, else built by e2e/build-tools.sh.
set -euo pipefail
# shellcheck source=packaging/lib.sh
. "$(dirname "$0")/lib.sh"

out=${CARGO_TARGET_DIR:-$REPO_DIR/target}/charts
image_repository=
while [ $# -gt 0 ]; do
	case $1 in
	--out) out=$2; shift 2 ;;
	--image-repository) image_repository=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
case $image_repository in
*:* | *@*)
	# A port is fine (host:5000/veer); a tag or digest is not: the tag is the chart's appVersion.
	[[ ${image_repository##*/} != *[:@]* ]] || die "--image-repository takes no tag or digest: $image_repository"
	;;
esac

version=$(cargo_version)
for chart in "${CHARTS[@]}"; do
	app_version=$(chart_field "$chart" appVersion)
	[ "$app_version" = "$version" ] ||
		die "charts/$chart/Chart.yaml has appVersion $app_version but Cargo.toml says $version: the chart would" \
			"deploy an image tag that packaging/image.sh does not build. Make them equal."
done

helm=$(tool helm)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
for chart in "${CHARTS[@]}"; do
	src=$REPO_DIR/charts/$chart
	if [ -n "$image_repository" ]; then
		cp -r "$src" "$work/$chart"
		src=$work/$chart
		# The first `repository:` under the top-level `image:` map of values.yaml, and the comment
		# right above it (which tells where to push an image) replaced by one that says where it is.
		awk -v repo="$image_repository" '
			/^image:/ { in_image = 1; print; next }
			/^[^ #]/ { in_image = 0 }
			in_image && !done && /^  #/ { comment = comment $0 "\n"; next }
			in_image && !done && /^  repository:/ {
				print "  # Where packaging/publish.sh (or charts.sh --image-repository) put the image."
				print "  repository: " repo
				comment = ""
				done = 1
				next
			}
			{ printf "%s", comment; comment = ""; print }
			END { if (!done) exit 1 }
		' "$REPO_DIR/charts/$chart/values.yaml" >"$src/values.yaml" ||
			die "charts/$chart/values.yaml has no image.repository to set"
	fi
	"$helm" package "$src" --destination "$out" >&2
	echo "$out/$chart-$(chart_field "$chart" version).tgz"
done
log "charts (appVersion $version${image_repository:+, image $image_repository}) in $out"
