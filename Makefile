# `make lint` then `make test` is what CI runs (.ci/run). `make lint`: formatting, clippy with
# warnings as errors, and the dependency audit (audit/deny.sh: RustSec advisories from the snapshot
# in audit/advisory-db/, the `backoff` ban), no cluster needed. `make test` starts the local
# Kubernetes control plane (e2e/up.sh), runs every test including the ones that need the cluster,
# and always stops the control plane again.
# `make up` / `make down` keep it running between manual test runs (then `. e2e/.run/env`).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:

# Flux's source-controller and helm-controller (tests/e2e_flux.rs) are part of the stack here; the first
# run builds them (about 3.5 minutes, see e2e/README.md). VEER_E2E_FLUX=0 leaves them out, and with them
# the tests that need Flux (each in a module named `flux`, so `--skip flux::` selects them).
export VEER_E2E_FLUX ?= 1
# The rest of the GitOps pipeline: an OCI registry, a Git server, and Flux's
# kustomize-controller, image-reflector-controller and image-automation-controller (see e2e/README.md;
# their first build takes several minutes more). On whenever Flux is; VEER_E2E_GITOPS=0 leaves them out,
# and with them the tests that need them (each in a module named `gitops`: `--skip gitops::`).
export VEER_E2E_GITOPS ?= $(VEER_E2E_FLUX)

.PHONY: lint test up down demo image charts publish

test:
	@# down.sh runs on every exit; with failed=1 it prints the component log tails. The exit status is
	# the first failing step's (an EXIT trap does not change it).
	failed=1
	trap 'VEER_E2E_FAILED=$$failed e2e/down.sh' EXIT
	trap 'exit 130' INT TERM
	# Debian's Chromium and chromedriver, for the dashboard's browser test (nothing when installed).
	e2e/install-chromium.sh
	e2e/up.sh
	. e2e/.run/env
	skip=""
	if [ "$$VEER_E2E_FLUX" != 1 ]; then
		echo "VEER_E2E_FLUX=$$VEER_E2E_FLUX: the tests that need Flux (flux::*) are left out"
		skip="--skip flux::"
	fi
	if [ "$$VEER_E2E_GITOPS" != 1 ]; then
		echo "VEER_E2E_GITOPS=$$VEER_E2E_GITOPS: the tests that need the GitOps stack (gitops::*) are left out"
		skip="$$skip --skip gitops::"
	fi
	cargo test --all-targets -- --include-ignored $$skip
	failed=0

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	audit/deny.sh

# The local demo: a canary rolled out and one rolled back, progress printed live; stops everything.
demo:
	VEER_E2E_FLUX=0 VEER_E2E_GITOPS=0 e2e/demo.sh

up:
	e2e/up.sh

down:
	e2e/down.sh

# Veer's image without a container engine: a release build of the static binaries and an OCI image
# layout in target/oci/veer (packaging/image.sh; reproducible, see docs/install.md).
image:
	packaging/image.sh

# Both Helm charts as archives in target/charts (packaging/charts.sh); IMAGE_REPOSITORY=REPO makes them
# deploy that image by default.
charts:
	packaging/charts.sh $(if $(IMAGE_REPOSITORY),--image-repository "$(IMAGE_REPOSITORY)")

# The image and both charts to a registry: make publish REGISTRY=registry.example.com/team
# (PLAIN_HTTP=1 for a registry without TLS). Run `crane auth login` and `helm registry login` first.
publish: image
	packaging/publish.sh --registry "$(REGISTRY)" $(if $(filter 1,$(PLAIN_HTTP)),--plain-http)
