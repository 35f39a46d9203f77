#!/usr/bin/env bash
# Builds Veer's container image without a container engine: an OCI image layout directory (oci-layout,
# index.json, blobs/sha256/...) that crane, oras, skopeo or `packaging/publish.sh` push to any registry.
#
#   packaging/image.sh [--out DIR] [--binaries DIR]
#
# The image is the Dockerfile's, built another way: the static `veer` and `veer-loadtester` in
# /usr/local/bin, a CA bundle at /etc/ssl/certs/ca-certificates.crt (SSL_CERT_FILE), /tmp (1777), user
# 65532:65532, entrypoint /usr/local/bin/veer; one layer, nothing else (no shell, no libraries).
#
# The binaries are linked statically against glibc (`-C target-feature=+crt-static`; the toolchain's
# x86_64-unknown-linux-gnu target, no musl needed). glibc 2.34 and later carry the `files` and `dns` host
# lookups inside libc, so a static binary resolves Service names through /etc/resolv.conf and /etc/hosts
# without NSS modules (tests/e2e_artifacts.rs runs the controller from the image in a chroot and checks it).
#
# Reproducible: the same binaries and CA package give the same manifest digest. Every mtime is
# SOURCE_DATE_EPOCH (default: the last commit's time; also the config's `created`), tar entries are
# sorted and owned by 0:0 numerically, modes are set explicitly (the umask does not matter), gzip
# writes no name or time (-n), and jq writes the JSON in a fixed key order. The paths of the checkout
# and of CARGO_HOME are remapped in the binaries (--remap-path-prefix), so that they do not depend on
# where the checkout is.
#
# --out DIR       where the layout goes (default target/oci/veer; replaced).
# --binaries DIR  take veer and veer-loadtester from DIR instead of building them (they must be static).
#
# Prints the manifest digest (sha256:...) on stdout; everything else goes to stderr.
# Needs: cargo, GNU tar, gzip, sha256sum, jq, ldd, git; apt-get and dpkg for the CA bundle (or
# VEER_CA_BUNDLE=FILE to use that file instead, for example /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail

# shellcheck source=packaging/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=packaging/versions.env
. "$PACKAGING_DIR/versions.env"

out=${CARGO_TARGET_DIR:-$REPO_DIR/target}/oci/veer
binaries=
while [ $# -gt 0 ]; do
	case $1 in
	--out) out=$2; shift 2 ;;
	--binaries) binaries=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done

# command -> Debian package, for the message.
declare -A needs=([tar]=tar [gzip]=gzip [sha256sum]=coreutils [jq]=jq [ldd]=libc-bin [git]=git)
for cmd in "${!needs[@]}"; do
	command -v "$cmd" >/dev/null || die "$cmd is missing (apt-get install ${needs[$cmd]})"
done
tar --version | grep -q 'GNU tar' || die "GNU tar is needed (--sort=name, --mtime)"

cd "$REPO_DIR"
# Not exported: cc-rs (ring's build script) rebuilds when SOURCE_DATE_EPOCH changes, and with ring
# everything above it; the binaries do not depend on it.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
revision=$(git rev-parse HEAD)
# Changes to what the binaries are built from, not yet committed: say so in the label.
git diff --quiet HEAD -- Cargo.toml Cargo.lock src || revision="$revision-dirty"

if [ -z "$binaries" ]; then
	log "building veer and veer-loadtester (release, static, $IMAGE_RUST_TARGET)"
	# The target is named explicitly so that these flags reach only the binaries, not build scripts
	# or proc macros (which must stay dynamic). getrandom 0.3 finds getrandom(2) with dlsym, which a
	# static binary cannot do, and then reads /dev/urandom, which an image need not have (a chroot has
	# none): linux_getrandom calls glibc's getrandom directly. CARGO_ENCODED_RUSTFLAGS: paths may hold
	# spaces.
	flags=(-Ctarget-feature=+crt-static --cfg 'getrandom_backend="linux_getrandom"'
		"--remap-path-prefix=$REPO_DIR=/veer" "--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo")
	(
		# Run from `cargo test` (tests/e2e_artifacts.rs), cargo's variables for the test would reach
		# this cargo, whose build scripts (ring's) rebuild when they change: leave them out.
		for var in $(compgen -e); do
			case $var in
			CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_* | CARGO_PRIMARY_PACKAGE | \
				CARGO_TARGET_TMPDIR | CARGO_CFG_* | CARGO_RUSTC_CURRENT_DIR | OUT_DIR) unset "$var" ;;
			esac
		done
		CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; echo "${flags[*]}") \
			cargo build --release --locked --target "$IMAGE_RUST_TARGET" --bin veer --bin veer-loadtester >&2
	)
	binaries=${CARGO_TARGET_DIR:-$REPO_DIR/target}/$IMAGE_RUST_TARGET/release
fi
for bin in veer veer-loadtester; do
	[ -x "$binaries/$bin" ] || die "$binaries/$bin is missing"
	# ldd prints "statically linked" (or "not a dynamic executable") for a binary without an interpreter.
	if ldd "$binaries/$bin" 2>&1 | grep -q '=>'; then
		die "$binaries/$bin is dynamically linked; the image has no libraries (build it with +crt-static)"
	fi
done
version=$("$binaries/veer" --version | awk '{print $2}')
[ -n "$version" ] || die "$binaries/veer --version printed no version"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The CA bundle: Mozilla's roots from Debian's ca-certificates package, concatenated in name order (what
# update-ca-certificates writes, without local additions), or the file VEER_CA_BUNDLE names.
ca_bundle() {
	if [ -n "${VEER_CA_BUNDLE:-}" ]; then
		log "CA bundle: $VEER_CA_BUNDLE (VEER_CA_BUNDLE)"
		cat "$VEER_CA_BUNDLE"
		return
	fi
	local cache=${XDG_CACHE_HOME:-$HOME/.cache}/veer-packaging deb
	deb="$cache/ca-certificates_${CA_CERTIFICATES_DEB_VERSION}_all.deb"
	if [ ! -f "$deb" ]; then
		mkdir -p "$cache"
		(
			cd "$work"
			apt-get download "ca-certificates=$CA_CERTIFICATES_DEB_VERSION" >/dev/null 2>&1 && exit 0
			apt-get update >/dev/null # a fresh machine may have no package lists yet
			apt-get download "ca-certificates=$CA_CERTIFICATES_DEB_VERSION" >/dev/null 2>&1 && exit 0
			log "WARNING: ca-certificates=$CA_CERTIFICATES_DEB_VERSION is no longer in the archive; using" \
				"$(apt-cache policy ca-certificates | sed -n 's/ *Candidate: //p') (the image's digest changes)"
			apt-get download ca-certificates >/dev/null
		)
		local got
		got=$(ls "$work"/ca-certificates_*.deb)
		# Cache only the pinned version: a fallback is fetched again until versions.env names it.
		if [ "$(dpkg-deb --field "$got" Version)" = "$CA_CERTIFICATES_DEB_VERSION" ]; then
			mv "$got" "$deb"
		else
			deb=$got
		fi
	fi
	dpkg -x "$deb" "$work/ca"
	local f
	find "$work/ca/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort | while read -r f; do
		cat "$f"
		[ -z "$(tail -c1 "$f")" ] || echo
	done
}

# The root filesystem, every mode set explicitly.
root=$work/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
cp "$binaries/veer" "$binaries/veer-loadtester" "$root/usr/local/bin/"
ca_bundle >"$root/etc/ssl/certs/ca-certificates.crt"
grep -q 'BEGIN CERTIFICATE' "$root/etc/ssl/certs/ca-certificates.crt" || die "the CA bundle is empty"
find "$root" -type d -exec chmod 0755 {} +
chmod 0755 "$root/usr/local/bin/veer" "$root/usr/local/bin/veer-loadtester"
chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$root/tmp"

# The layer: ustar (the names are short), sorted, fixed mtime, owner 0:0 by number.
tar --create --file="$work/layer.tar" --directory="$root" --format=ustar --sort=name \
	--mtime="@$epoch" --owner=0 --group=0 --numeric-owner etc tmp usr
gzip -n -9 <"$work/layer.tar" >"$work/layer.tar.gz"

rm -rf "$out"
mkdir -p "$out/blobs/sha256"
# blob FILE MEDIATYPE: stores FILE under its digest, prints its descriptor.
blob() {
	local digest size
	digest=$(sha256sum "$1" | cut -d' ' -f1)
	size=$(stat -c %s "$1")
	cp "$1" "$out/blobs/sha256/$digest"
	jq -cn --arg mt "$2" --arg d "sha256:$digest" --argjson s "$size" '{mediaType: $mt, digest: $d, size: $s}'
}

diff_id=sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
jq -cjn --arg diff_id "$diff_id" --arg created "$created" --arg version "$version" --arg revision "$revision" '{
	created: $created,
	architecture: "amd64",
	os: "linux",
	config: {
		User: "65532:65532",
		Env: ["PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
		Entrypoint: ["/usr/local/bin/veer"],
		WorkingDir: "/",
		Labels: {
			"org.opencontainers.image.title": "veer",
			"org.opencontainers.image.description": "Veer, a Flagger-compatible progressive-delivery controller for Kubernetes, and its load tester (veer-loadtester)",
			"org.opencontainers.image.version": $version,
			"org.opencontainers.image.revision": $revision,
			"org.opencontainers.image.created": $created,
			"org.opencontainers.image.licenses": "Apache-2.0"
		}
	},
	rootfs: {type: "layers", diff_ids: [$diff_id]},
	history: [{created: $created, created_by: "packaging/image.sh"}]
}' >"$work/config.json"

config=$(blob "$work/config.json" application/vnd.oci.image.config.v1+json)
layer=$(blob "$work/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)
jq -cjn --argjson config "$config" --argjson layer "$layer" --arg created "$created" \
	--arg version "$version" --arg revision "$revision" '{
	schemaVersion: 2,
	mediaType: "application/vnd.oci.image.manifest.v1+json",
	config: $config,
	layers: [$layer],
	annotations: {
		"org.opencontainers.image.created": $created,
		"org.opencontainers.image.version": $version,
		"org.opencontainers.image.revision": $revision
	}
}' >"$work/manifest.json"
manifest=$(blob "$work/manifest.json" application/vnd.oci.image.manifest.v1+json)
# The index names the image by its tag (the version, which is the charts' appVersion).
jq -cjn --argjson m "$manifest" --arg tag "$version" '{
	schemaVersion: 2,
	mediaType: "application/vnd.oci.image.index.v1+json",
	manifests: [$m + {
		platform: {architecture: "amd64", os: "linux"},
		annotations: {"org.opencontainers.image.ref.name": $tag}
	}]
}' >"$out/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"

digest=$(jq -r .digest <<<"$manifest")
log "image veer:$version ($revision) in $out: manifest $digest, layer $(jq -r .size <<<"$layer") bytes"
echo "$digest"
