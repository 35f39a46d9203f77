#!/usr/bin/env bash
# Refreshes audit/advisory-db/ (the RustSec advisory database that `make lint` checks Cargo.lock
# against, offline) from a checkout of github.com/rustsec/advisory-db: a clone, or a bare or mirror
# repository. Usage: audit/refresh-advisory-db.sh PATH [REV]  (REV defaults to HEAD).
# Then update the snapshot's date in README.md ("Developing") and commit audit/advisory-db/.
set -euo pipefail
cd "$(dirname "$0")/.."

src=${1:?usage: audit/refresh-advisory-db.sh PATH-TO-ADVISORY-DB-CHECKOUT [REV]}
rev=${2:-HEAD}
commit=$(git -C "$src" rev-parse --verify "$rev^{commit}")
date=$(git -C "$src" show -s --format=%cI "$commit")
# A wrong path (another repository) must not replace the database with nothing.
git -C "$src" cat-file -e "$commit:crates" 2>/dev/null || {
	echo "$src at $rev has no crates/ directory: not the RustSec advisory database" >&2
	exit 1
}

dest=audit/advisory-db
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Only the advisories about crates (crates/) and the licence; cargo-deny reads nothing else.
git -C "$src" archive --format=tar "$commit" crates LICENSE.txt | tar -x -C "$tmp"
count=$(find "$tmp/crates" -name '*.md' | wc -l)
cat >"$tmp/SNAPSHOT" <<SNAP
# The RustSec advisory database (CC0-1.0, LICENSE.txt) as of this commit; written by
# audit/refresh-advisory-db.sh, read by audit/deny.sh.
commit=$commit
date=$date
advisories=$count
SNAP
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
chmod 755 "$dest"
echo "audit/advisory-db: $count advisories, commit $commit of $date"
