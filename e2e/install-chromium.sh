#!/usr/bin/env bash
# Installs Chromium and chromedriver (Debian's packages `chromium` and `chromium-driver`) for the
# dashboard's end-to-end test (tests/e2e_dashboard.rs), which drives a headless Chromium through
# chromedriver. Idempotent: does nothing when both are on PATH already. Needs root (or sudo) and
# the Debian archive; about 100 MB to download on a fresh machine.
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
	exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || {
		echo "install-chromium.sh: run as root (or install sudo): apt-get install chromium chromium-driver" >&2
		exit 1
	}
	SUDO=(sudo)
fi

install() {
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends chromium chromium-driver
}

echo "==> installing chromium and chromium-driver (for tests/e2e_dashboard.rs)" >&2
# The package lists of a fresh machine may be missing or stale: refresh them once on failure.
if ! install; then
	"${SUDO[@]}" apt-get update
	install
fi
chromium --version >&2
chromedriver --version >&2
