#!/usr/bin/env bash
# End-to-end test of pull-secret-injector in a real Kubernetes cluster (kind).
#
# Usage:
#   tests/e2e-kind.sh
#
# Environment:
#   KIND_CLUSTER=psi-e2e   name of the kind cluster
#   REUSE_CLUSTER=1        use the cluster if it exists already (otherwise an existing cluster of
#                          that name is an error); a cluster this script did not create is never
#                          deleted by it
#   KEEP_CLUSTER=1         keep the cluster at the end (it is deleted otherwise)
#   SETUPS="..."           setups of examples/ to run (default: ibm-cloud-all-icr-io docker-hub runai)
#
# Needs: docker with a running engine, kind, kubectl (1.21 or newer: the overlay below lists a
# directory under `resources:`), python3.
#
# This script is NOT run in CI: the CI machines have no Docker engine. Its steps mirror
# tests/cluster_e2e.rs, which runs the same steps (examples' cluster/ manifests loaded, the
# example's config in the ConfigMap, one pod per `check` entry of examples/expectations.json,
# assertions on the stored objects) against an in-process fake API server, in `cargo test`.
#
# What it does: builds the image, loads it into kind, installs manifests/ with the image set to
# pull-secret-injector:e2e, waits for the rollout and for the webhook's caBundle (the base runs
# `serve --self-signed`), then for each setup applies its cluster/ manifests and config, waits
# until every injector replica has reloaded the config, creates one pod per expectation, and
# checks the stored pod, the secrets in its namespace and the namespace's default
# ServiceAccount. The pods' images are never pulled successfully (the examples' registries and
# credentials are fake): pods may stay in ImagePullBackOff or InvalidImageName. Only the stored
# objects are asserted on, never pulls.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd -P)"
KIND_CLUSTER="${KIND_CLUSTER:-psi-e2e}"
REUSE_CLUSTER="${REUSE_CLUSTER:-0}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
SETUPS="${SETUPS:-ibm-cloud-all-icr-io docker-hub runai}"

IMAGE="pull-secret-injector:e2e"
BASE_IMAGE="ghcr.io/pull-secret-injector/pull-secret-injector"
NS="pull-secret-injector"
NAME="pull-secret-injector"
RUNNER="e2e-runner"          # the pods' ServiceAccount: no imagePullSecrets of its own
MANAGED_BY="app.kubernetes.io/managed-by"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
k() { kubectl --context "kind-$KIND_CLUSTER" "$@"; }

# wait_until DESCRIPTION SECONDS COMMAND...: runs COMMAND every 2 s until it succeeds.
wait_until() {
  local what="$1" timeout="$2" start="$SECONDS"
  shift 2
  until "$@"; do
    if ((SECONDS - start >= timeout)); then
      fail "timed out after ${timeout}s waiting for: $what"
    fi
    sleep 2
  done
}

# ---------------------------------------------------------------------------------------------
step "prerequisites"
for cmd in docker kind kubectl python3; do
  command -v "$cmd" >/dev/null || fail "$cmd is not installed (needed: docker, kind, kubectl, python3)"
done
docker info >/dev/null 2>&1 || fail "docker cannot reach a Docker engine (is it running?)"
kind version
kubectl version --client

WORK="$(cd "$(mktemp -d)" && pwd -P)"   # physical path: see the overlay below
created_cluster=0

cleanup() {
  local rc=$?
  if ((rc != 0)) && kubectl config get-contexts "kind-$KIND_CLUSTER" >/dev/null 2>&1; then
    printf '\n==> diagnostics (exit %s)\n' "$rc"
    k -n "$NS" get deploy,pods -o wide || true
    k -n "$NS" logs "deploy/$NAME" --tail=100 || true
  fi
  rm -rf "$WORK"
  if ((created_cluster)) && [ "$KEEP_CLUSTER" != 1 ]; then
    step "deleting kind cluster $KIND_CLUSTER (KEEP_CLUSTER=1 keeps it)"
    kind delete cluster --name "$KIND_CLUSTER" || true
  elif kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    printf '\nkind cluster %s kept: kind delete cluster --name %s\n' "$KIND_CLUSTER" "$KIND_CLUSTER"
  fi
  exit "$rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
step "kind cluster $KIND_CLUSTER"
if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  [ "$REUSE_CLUSTER" = 1 ] ||
    fail "kind cluster $KIND_CLUSTER exists: set REUSE_CLUSTER=1 to use it, or delete it"
  echo "reusing it"
  kind export kubeconfig --name "$KIND_CLUSTER"
else
  created_cluster=1
  kind create cluster --name "$KIND_CLUSTER" --wait 120s
fi
k cluster-info

step "docker build -t $IMAGE"
docker build -t "$IMAGE" "$REPO"

step "kind load docker-image $IMAGE"
kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"

# ---------------------------------------------------------------------------------------------
step "install manifests/ with image $IMAGE"
# A throwaway overlay on the repository's manifests/: the image and its pull policy.
# kustomize refuses an absolute path to a base directory: the path is made relative (from
# physical paths, so that a symlinked temp directory such as macOS's /var cannot skew it).
mkdir -p "$WORK/overlay"
manifests="$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' \
  "$REPO/manifests" "$WORK/overlay")"
cat >"$WORK/overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $manifests
images:
  - name: $BASE_IMAGE
    newName: ${IMAGE%%:*}
    newTag: ${IMAGE##*:}
patches:
  - target:
      kind: Deployment
      name: $NAME
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/imagePullPolicy
        value: IfNotPresent
EOF
k kustomize "$WORK/overlay" >"$WORK/install.yaml"
grep -q "image: $IMAGE" "$WORK/install.yaml" || fail "the rendered manifests do not use $IMAGE"
k apply -k "$WORK/overlay"

step "wait for deploy/$NAME"
k -n "$NS" rollout status "deploy/$NAME" --timeout=180s

step "wait for the self-signed CA: Secret $NS/$NAME-tls and the webhook's caBundle"
ca_bundle_set() {
  k -n "$NS" get secret "$NAME-tls" >/dev/null 2>&1 || return 1
  local bundles
  bundles="$(k get mutatingwebhookconfiguration "$NAME" \
    -o jsonpath='{range .webhooks[*]}{.clientConfig.caBundle}{"\n"}{end}' 2>/dev/null)" || return 1
  [ -n "$bundles" ] && ! grep -qx '' <<<"$bundles"
}
wait_until "caBundle of MutatingWebhookConfiguration $NAME" 120 ca_bundle_set

# The injector's pods, by the Deployment's selector.
selector="$(k -n "$NS" get deploy "$NAME" -o json | python3 -c '
import json, sys
labels = json.load(sys.stdin)["spec"]["selector"]["matchLabels"]
print(",".join(f"{k}={v}" for k, v in sorted(labels.items())))')"

# Prints "pod count" per running injector pod: how often it has loaded a config.
reload_counts() {
  local pod n
  for pod in $(k -n "$NS" get pods -l "$selector" --field-selector=status.phase=Running -o name); do
    n="$(k -n "$NS" logs "$pod" | grep -c 'config loaded from ConfigMap' || true)"
    echo "$pod $n"
  done
}

# True once every running injector pod has logged more config loads than in $WORK/counts.
all_reloaded() {
  local pod n before pods=0
  while read -r pod n; do
    before="$(awk -v p="$pod" '$1 == p { print $2 }' "$WORK/counts")"
    ((n > ${before:-0})) || return 1
    pods=$((pods + 1))
  done < <(reload_counts)
  ((pods > 0))
}

# The names in a pod's spec.imagePullSecrets (JSON on stdin), comma-separated, in order.
pull_secrets() {
  python3 -c 'import json, sys
print(",".join(s["name"] for s in json.load(sys.stdin)["spec"].get("imagePullSecrets") or []))'
}

# True when a server-side dry run of $WORK/pod.json comes back naming exactly $expected.
dry_run_matches() {
  local got
  got="$(k create --dry-run=server -f "$WORK/pod.json" -o json | pull_secrets)" || return 1
  [ "$got" = "$expected" ] || { echo "dry run: [$got], waiting for [$expected]"; return 1; }
}

# True when ServiceAccount $ns/default lists $secret in its imagePullSecrets.
sa_references() {
  k -n "$ns" get serviceaccount default \
    -o jsonpath='{range .imagePullSecrets[*]}{.name}{"\n"}{end}' | grep -qx "$secret"
}

# ---------------------------------------------------------------------------------------------
checked=0
for setup in $SETUPS; do
  dir="$REPO/examples/$setup"
  [ -d "$dir/cluster" ] || fail "no such setup: examples/$setup"

  step "$setup: apply cluster/ (namespaces, secrets, ServiceAccounts)"
  # `apply` updates what exists already (kube-system, default, the ServiceAccounts that the
  # cluster creates). A namespace's default ServiceAccount may be created by the controller
  # between apply's read and its create: retry once.
  k apply -f "$dir/cluster/" || { sleep 2; k apply -f "$dir/cluster/"; }
  # Secrets the example declares: local secrets are referenced in place, the others are copies.
  k get -f "$dir/cluster/secrets.yaml" --no-headers \
    -o custom-columns=NAMESPACE:.metadata.namespace,NAME:.metadata.name |
    awk '{ print $1 "/" $2 }' >"$WORK/declared"

  step "$setup: load config.yaml into ConfigMap $NS/$NAME"
  reload_counts >"$WORK/counts"
  if grep -Eq '^kind:[[:space:]]*ConfigMap' "$dir/config.yaml"; then
    out="$(k apply -f "$dir/config.yaml")"   # a full ConfigMap manifest
  else
    out="$(k -n "$NS" create configmap "$NAME" --from-file=config.yaml="$dir/config.yaml" \
      --dry-run=client -o yaml | k apply -f -)"   # raw config
  fi
  echo "$out"
  if grep -q unchanged <<<"$out"; then
    echo "config unchanged: no reload to wait for"
  else
    wait_until "every injector replica to reload the config of $setup" 90 all_reloaded
  fi

  # One line per `check` expectation: namespace, labels (JSON), images, expected secrets.
  python3 - "$REPO/examples/expectations.json" "$setup" >"$WORK/expectations" <<'PY'
import json, sys
path, setup = sys.argv[1], sys.argv[2]
for e in json.load(open(path)):
    if e["setup"] == setup and e["kind"] == "check":
        print("\t".join([e["namespace"], json.dumps(e.get("namespaceLabels") or {}),
                         ",".join(e["images"]), ",".join(e["expectInjected"])]))
PY

  while IFS=$'\t' read -r -u 3 ns labels images expected; do
    what="$setup: $ns [$images]"
    step "$what: expect [${expected}]"

    if ! k get namespace "$ns" >/dev/null 2>&1; then
      echo "creating namespace $ns"
      python3 -c 'import json, sys; print(json.dumps({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": sys.argv[1], "labels": json.loads(sys.argv[2])}}))' "$ns" "$labels" |
        k apply -f -
    fi
    if [ "$(k get namespace "$ns" -o jsonpath='{.status.phase}')" = Terminating ]; then
      echo "namespace $ns is terminating: skipped"
      continue
    fi
    k -n "$ns" get serviceaccount "$RUNNER" >/dev/null 2>&1 ||
      k -n "$ns" create serviceaccount "$RUNNER"

    python3 - "$ns" "$images" "$RUNNER" >"$WORK/pod.json" <<'PY'
import json, sys
ns, images, runner = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
print(json.dumps({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"generateName": "e2e-", "namespace": ns},
    "spec": {
        "serviceAccountName": runner,
        "restartPolicy": "Never",
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
    },
}))
PY

    # Server-side dry runs first: the webhook answers them without writing anything. They
    # cover the moment between "config loaded" and the new sources' watches having listed.
    wait_until "$what: a dry run to name [$expected]" 60 dry_run_matches

    pod="$(k create -f "$WORK/pod.json" -o jsonpath='{.metadata.name}')"
    got="$(k -n "$ns" get pod "$pod" -o json | pull_secrets)"
    [ "$got" = "$expected" ] || fail "$what: pod $pod has imagePullSecrets [$got], expected [$expected]"
    echo "pod $ns/$pod: imagePullSecrets [$got]"

    IFS=',' read -r -a names <<<"$expected"
    for secret in "${names[@]}"; do
      wait_until "$what: secret $ns/$secret" 30 k -n "$ns" get secret "$secret" -o name
      type="$(k -n "$ns" get secret "$secret" -o jsonpath='{.type}')"
      case "$type" in
        kubernetes.io/dockerconfigjson | kubernetes.io/dockercfg) ;;
        *) fail "$what: secret $ns/$secret has type $type, not a pull secret" ;;
      esac
      if grep -qx "$ns/$secret" "$WORK/declared"; then
        echo "secret $ns/$secret: local (declared in cluster/), referenced in place"
      else
        label="$(k -n "$ns" get secret "$secret" -o jsonpath="{.metadata.labels['app\.kubernetes\.io/managed-by']}")"
        [ "$label" = "$NAME" ] || fail "$what: copy $ns/$secret lacks label $MANAGED_BY=$NAME"
        echo "secret $ns/$secret: copy, labelled $MANAGED_BY=$NAME"
      fi
      wait_until "$what: ServiceAccount $ns/default to reference $secret" 60 sa_references
      echo "serviceaccount $ns/default references $secret"
    done
    checked=$((checked + 1))
  done 3<"$WORK/expectations"
done

step "passed: $checked expectations checked in: $SETUPS"
