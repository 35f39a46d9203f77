//go:build tools

// Package tools pins Flux's source-controller, which e2e/build-tools.sh builds when the Flux tests are
// on. It is a module of its own: its go-digest pin differs from helm-controller's.
package tools

import _ "github.com/fluxcd/source-controller"
