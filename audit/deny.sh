#!/usr/bin/env bash
# The dependency audit of `make lint` (and so of CI): cargo-deny checks the crates in Cargo.lock
# against the bans in deny.toml (no `backoff`) and against the RustSec advisories in
# audit/advisory-db/, offline: neither CI nor this machine can reach GitHub, where cargo-deny would
# fetch the database from.
set -euo pipefail
cd "$(dirname "$0")/.."

# Built from source once per machine into a cache outside the repository: 135 s on this project's
# 2-core machine with an empty cargo home (downloads included), then reused.
version=0.20.2
tools=$HOME/.cache/veer-tools
if [ "$("$tools/bin/cargo-deny" --version 2>/dev/null)" != "cargo-deny $version" ]; then
	echo "installing cargo-deny $version into $tools (built from source, a few minutes)"
	cargo install --locked --quiet --root "$tools" "cargo-deny@$version"
fi

# cargo-deny opens a database at <db-path>/<last URL segment>-<hash of the URL> (deny.toml's db-path
# and db-urls; the name is the one cargo-deny $version derives, as its `-L debug` prints), reads
# crates/**/*.md there, and takes the modification time of .git/FETCH_HEAD as the time of the last
# fetch, which --offline checks against maximum-db-staleness. Laid out anew on every run, so the
# audit always reads exactly the committed snapshot; FETCH_HEAD gets the snapshot's own date.
snapshot=audit/advisory-db
date=$(sed -n 's/^date=//p' "$snapshot/SNAPSHOT")
commit=$(sed -n 's/^commit=//p' "$snapshot/SNAPSHOT")
db=target/advisory-dbs/advisory-db-3157b0e258782691
rm -rf "$db"
mkdir -p "$db/.git"
cp -R "$snapshot/crates" "$db/crates"
touch -d "$date" "$db/.git/FETCH_HEAD"

age_days=$((($(date +%s) - $(date -d "$date" +%s)) / 86400))
echo "advisories: RustSec snapshot of ${date%%T*} (commit ${commit:0:12}, $age_days days old)"
if [ "$age_days" -gt 90 ]; then
	echo "warning: the advisory snapshot is older than 90 days; refresh it (audit/refresh-advisory-db.sh)" >&2
fi

# --offline keeps cargo-deny from fetching the database, and cargo metadata (which it runs) from the
# network too: every crate of Cargo.lock, for every target, must be downloaded first (a build
# downloads only the host's).
cargo fetch --locked --quiet
PATH="$tools/bin:$PATH" cargo deny --offline --locked check advisories bans

# cargo-deny checks the crates that the build can activate: it leaves out locked optional
# dependencies that no enabled feature pulls in (11 of the 335 entries of Cargo.lock on 2026-12-04).
# A crate banned outright must not be in Cargo.lock at all, so it is looked for there as well.
for banned in backoff; do
	if grep -qx "name = \"$banned\"" Cargo.lock; then
		echo "error: Cargo.lock has the banned crate $banned (deny.toml, [bans])" >&2
		exit 1
	fi
done
