//go:build tools

// Package tools pins Flux's image-reflector-controller, which e2e/build-tools.sh builds when the GitOps stack is on
// (VEER_E2E_GITOPS=1). It is a module of its own, like tools/flux-source and tools/flux-helm: each
// controller's replace pins differ.
package tools

import _ "github.com/fluxcd/image-reflector-controller"
