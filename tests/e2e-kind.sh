#!/usr/bin/env bash
# The end-to-end suite (tests/cluster/) against a real Kubernetes cluster made with kind, and the
# Helm path: the chart of this checkout installed in the cluster with an image built from the
# Dockerfile, and a pod that gets its pull secret through it.
#
# Usage:
#   tests/e2e-kind.sh [extra arguments for the test binary, e.g. a test name filter]
#
# Environment:
#   KIND_CLUSTER=psi-e2e   name of the kind cluster
#   REUSE_CLUSTER=1        use the cluster if it exists already; a cluster this script did not
#                          create is never deleted by it
#   KEEP_CLUSTER=1         keep the cluster at the end (it is deleted otherwise)
#   E2E_SUITE=0            skip the end-to-end suite
#   E2E_HELM=0             skip the Helm path
#   KUBECTL, HELM          the kubectl and helm to use (default: target/ci-tools/bin's, which
#                          .ci/run installs, else the PATH's)
#
# Needs: docker with a running engine (BuildKit), kind, and the Rust toolchain; helm for the
# Helm path. Not run in CI (no Docker engine there); CI runs the same suite against the fake API
# server, both in-process and through this same real-cluster path, and renders the chart in
# every certificate mode (see .ci/run).
#
# The suite runs the injector on this machine, registers it as the cluster's webhook by URL,
# and keeps to its own prefixed namespaces; it deletes them when each scenario ends, pass or
# fail. kube-apiserver, in a kind node container, reaches this machine at the kind network's
# gateway address, which is what PSI_E2E_WEBHOOK_HOST is set to.
#
# The Helm path installs release psi-e2e in namespace psi-e2e-system (self-signed
# certificate, the default), a fake pull secret in psi-e2e-src, and checks that namespace
# psi-e2e-app's default ServiceAccount and a new pod there reference the copy, that the copy
# exists, and that the injector's pods run with no fixed UID. It uninstalls all of it at the end.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd -P)"
KIND_CLUSTER="${KIND_CLUSTER:-psi-e2e}"
REUSE_CLUSTER="${REUSE_CLUSTER:-0}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
E2E_SUITE="${E2E_SUITE:-1}"
E2E_HELM="${E2E_HELM:-1}"

tool() {
  if [ -x "$REPO/target/ci-tools/bin/$1" ]; then
    echo "$REPO/target/ci-tools/bin/$1"
  else
    echo "$1"
  fi
}
KUBECTL="${KUBECTL:-$(tool kubectl)}"
HELM="${HELM:-$(tool helm)}"

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

helm_installed=0
cleanup() {
  if [ "$helm_installed" = 1 ]; then
    "$HELM" --kubeconfig "$kubeconfig" uninstall psi-e2e --namespace psi-e2e-system --wait || true
    "$KUBECTL" --kubeconfig "$kubeconfig" delete namespace psi-e2e-app psi-e2e-src psi-e2e-system \
      --ignore-not-found --wait=false || true
  fi
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
if [ "$E2E_SUITE" = 1 ]; then
  PSI_E2E_KUBECONFIG="$kubeconfig" PSI_E2E_WEBHOOK_HOST="$gateway" \
    cargo test --locked --test cluster -- --test-threads=1 "$@"
fi

# Waits up to 120 s for a command's output to contain a string.
wait_for() {
  local what=$1 want=$2
  shift 2
  for _ in $(seq 1 60); do
    if "$@" 2>/dev/null | grep -q -- "$want"; then
      echo "ok: $what"
      return 0
    fi
    sleep 2
  done
  echo "timed out waiting for $what (wanted $want in: $*)" >&2
  "$@" >&2 || true
  return 1
}

helm_path() {
  local k=("$KUBECTL" --kubeconfig "$kubeconfig")
  local image=pull-secret-injector-e2e tag
  tag="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo dev)"
  echo "== Helm path: build $image:$tag and load it into kind"
  DOCKER_BUILDKIT=1 docker build --build-arg VERSION=0.0.0-e2e -t "$image:$tag" "$REPO"
  kind load docker-image --name "$KIND_CLUSTER" "$image:$tag"

  # A fake credential for a registry that does not exist: the pod will not pull, but its
  # imagePullSecrets and the copy show what the injector did.
  "${k[@]}" create namespace psi-e2e-src
  "${k[@]}" -n psi-e2e-src create secret docker-registry e2e-pull \
    --docker-server=registry.example.com --docker-username=e2e --docker-password=fake-password-e2e
  local config
  config="$(mktemp)"
  cat > "$config" <<'YAML'
credentials:
  - name: e2e
    secret: psi-e2e-src/e2e-pull
    registries: ["registry.example.com"]
    namespaces:
      include: ["psi-e2e-app"]
serviceAccounts: ["default"]
pods: true
prune: true
YAML

  echo "== Helm path: helm install"
  helm_installed=1
  "$HELM" --kubeconfig "$kubeconfig" install psi-e2e "$REPO/charts/pull-secret-injector" \
    --namespace psi-e2e-system --create-namespace \
    --set image.repository="$image" --set image.tag="$tag" --set image.pullPolicy=Never \
    --set-file config.configYaml="$config" --wait --timeout 5m
  rm -f "$config"
  "${k[@]}" -n psi-e2e-system rollout status deploy/psi-e2e-pull-secret-injector --timeout=120s
  wait_for "the self-signed CA in caBundle" "LS0t" \
    "${k[@]}" get mutatingwebhookconfiguration psi-e2e-pull-secret-injector \
    -o jsonpath='{.webhooks[0].clientConfig.caBundle}'
  wait_for "the prune grant follows prune: true" "psi-e2e-pull-secret-injector-prune" \
    "${k[@]}" get clusterrole psi-e2e-pull-secret-injector-prune -o name
  # No fixed UID: kubelet ran the image's USER.
  local uid
  uid="$("${k[@]}" -n psi-e2e-system get pods -l app.kubernetes.io/instance=psi-e2e \
    -o jsonpath='{.items[0].spec.securityContext.runAsUser}')"
  [ -z "$uid" ] || { echo "the injector's pod has a fixed runAsUser $uid" >&2; return 1; }

  echo "== Helm path: a new namespace and a pod get the pull secret"
  "${k[@]}" create namespace psi-e2e-app
  wait_for "the default ServiceAccount references e2e-pull" "e2e-pull" \
    "${k[@]}" -n psi-e2e-app get serviceaccount default -o jsonpath='{.imagePullSecrets}'
  "${k[@]}" -n psi-e2e-app run probe --image=registry.example.com/e2e/app:1.0 --restart=Never
  wait_for "the pod's imagePullSecrets" "e2e-pull" \
    "${k[@]}" -n psi-e2e-app get pod probe -o jsonpath='{.spec.imagePullSecrets}'
  wait_for "the injected annotation" "e2e-pull" \
    "${k[@]}" -n psi-e2e-app get pod probe \
    -o jsonpath='{.metadata.annotations.pull-secret-injector/injected}'
  wait_for "the copy" "e2e-pull" \
    "${k[@]}" -n psi-e2e-app get secrets -l app.kubernetes.io/managed-by=pull-secret-injector -o name
  "${k[@]}" -n psi-e2e-system logs deploy/psi-e2e-pull-secret-injector --tail=20

  echo "== Helm path: helm uninstall"
  "$HELM" --kubeconfig "$kubeconfig" uninstall psi-e2e --namespace psi-e2e-system --wait
  "${k[@]}" delete namespace psi-e2e-app psi-e2e-src psi-e2e-system --wait=false
  helm_installed=0
  echo "Helm path: passed"
}

if [ "$E2E_HELM" = 1 ]; then
  helm_path
fi
