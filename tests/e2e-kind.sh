#!/usr/bin/env bash
# The end-to-end suite (tests/cluster/) against a real Kubernetes cluster made with kind.
#
# Usage:
#   tests/e2e-kind.sh [extra arguments for the test binary, e.g. a test name filter]
#
# Environment:
#   KIND_CLUSTER=psi-e2e   name of the kind cluster
#   REUSE_CLUSTER=1        use the cluster if it exists already; a cluster this script did not
#                          create is never deleted by it
#   KEEP_CLUSTER=1         keep the cluster at the end (it is deleted otherwise)
#
# Needs: docker with a running engine, kind, and the Rust toolchain. Not run in CI (no Docker
# engine there); CI runs the same suite against the fake API server, both in-process and
# through this same real-cluster path (see .ci/run).
#
# The suite runs the injector on this machine, registers it as the cluster's webhook by URL,
# and keeps to its own prefixed namespaces; it deletes them when each scenario ends, pass or
# fail. kube-apiserver, in a kind node container, reaches this machine at the kind network's
# gateway address, which is what PSI_E2E_WEBHOOK_HOST is set to.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd -P)"
KIND_CLUSTER="${KIND_CLUSTER:-psi-e2e}"
REUSE_CLUSTER="${REUSE_CLUSTER:-0}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"

created=0
if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  if [ "$REUSE_CLUSTER" != 1 ]; then
    echo "kind cluster $KIND_CLUSTER exists; set REUSE_CLUSTER=1 to use it" >&2
    exit 1
  fi
else
  kind create cluster --name "$KIND_CLUSTER" --wait 120s
  created=1
fi

cleanup() {
  if [ "$created" = 1 ] && [ "$KEEP_CLUSTER" != 1 ]; then
    kind delete cluster --name "$KIND_CLUSTER"
  fi
}
trap cleanup EXIT

kubeconfig="$(mktemp)"
kind get kubeconfig --name "$KIND_CLUSTER" > "$kubeconfig"
gateway="$(docker network inspect kind -f '{{range .IPAM.Config}}{{if .Gateway}}{{.Gateway}} {{end}}{{end}}' | tr ' ' '\n' | grep -E '^[0-9]+\.' | head -n 1)"
if [ -z "$gateway" ]; then
  echo "cannot find the kind network's IPv4 gateway" >&2
  exit 1
fi

cd "$REPO"
PSI_E2E_KUBECONFIG="$kubeconfig" PSI_E2E_WEBHOOK_HOST="$gateway" \
  cargo test --locked --test cluster -- --test-threads=1 "$@"
