//go:build tools

// Package tools pins the etcd server that e2e/build-tools.sh builds. It is a module of its own so that
// its dependency versions cannot move the Kubernetes ones.
package tools

import _ "go.etcd.io/etcd/server/v3"
