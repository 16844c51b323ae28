# syntax=docker/dockerfile:1
#
# pull-secret-injector container image.
#
#   docker build -t pull-secret-injector:dev .
#   docker build --build-arg VERSION=0.2.0 -t registry.example.com/platform/pull-secret-injector:0.2.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=0.2.0 \
#     -t registry.example.com/platform/pull-secret-injector:0.2.0 --push .
#
# .github/workflows/release.yml builds and pushes both platforms to GHCR on a version tag.
#
# Build stage: the official Rust image on Debian 12 (bookworm), so that the binary links
# against the same glibc as the distroless runtime below (also Debian 12). TLS is rustls with
# ring: no OpenSSL, and ring's C/assembly parts need only a C compiler.
#
# Multi-platform (`docker buildx build --platform linux/amd64,linux/arm64`): this stage runs on
# the build machine's own platform and cross-compiles for the target's, with Debian's cross gcc
# for ring and the link, so that no stage runs under emulation (a Rust build under QEMU takes
# an hour). The runtime stage only copies files, which needs no emulation either.
FROM --platform=$BUILDPLATFORM rust:1.95.0-slim-bookworm AS build

ARG TARGETARCH
# What `pull-secret-injector version` reports: .git is not in the build context, so the
# commit comes from the build (the release workflow passes github.sha).
ARG PSI_GIT_COMMIT=unknown
ARG SOURCE_DATE_EPOCH

WORKDIR /src

# The cross toolchain for an arm64 image built on amd64 (and the reverse); nothing to install
# for the build machine's own architecture. The versions are those of the Debian release the
# pinned Rust image is built on.
# hadolint ignore=DL3008
RUN set -eux; \
    case "$TARGETARCH" in \
      amd64) triple="x86_64-unknown-linux-gnu"; linker_var="CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER"; gcc="x86_64-linux-gnu"; pkg="gcc-x86-64-linux-gnu"; libc="libc6-dev-amd64-cross" ;; \
      arm64) triple="aarch64-unknown-linux-gnu"; linker_var="CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER"; gcc="aarch64-linux-gnu"; pkg="gcc-aarch64-linux-gnu"; libc="libc6-dev-arm64-cross" ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    echo "$triple" > /build-triple; \
    : > /build-env; \
    if [ "$(dpkg --print-architecture)" != "$TARGETARCH" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends "$pkg" "$libc"; \
      rm -rf /var/lib/apt/lists/*; \
      rustup target add "$triple"; \
      echo "export ${linker_var}=${gcc}-gcc TARGET_CC=${gcc}-gcc" >> /build-env; \
    fi

# Only what the build reads (.dockerignore lists it): Cargo.toml, Cargo.lock, src/, benches/
# (Cargo.toml declares the benches, and cargo refuses a manifest whose targets are missing) and
# the workspace's crates/ (cargo loads every member's manifest).
COPY . .

# Dependency caching: BuildKit cache mounts keep the crate registry and the compiled
# dependencies between builds, one target directory per architecture, so a source change
# recompiles only this crate. The target directory is a cache mount, so the binary is copied
# out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,id=psi-target-$TARGETARCH,target=/src/target \
    set -eux; \
    triple="$(cat /build-triple)"; \
    . /build-env; \
    cargo build --release --locked --bin pull-secret-injector --target "$triple"; \
    install -D -m 0755 "target/$triple/release/pull-secret-injector" /out/pull-secret-injector

# Runtime: glibc and libgcc (the binary is dynamically linked), CA certificates, no shell, no
# package manager. It runs as the distroless nonroot user, numerically (65532), so that
# Kubernetes can check runAsNonRoot; on OpenShift the restricted-v2 SCC runs it under the
# namespace's UID instead, which works as well: the injector writes no file and needs no home.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="pull-secret-injector" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that injects registry pull secrets exactly as kubelet would use them" \
      org.opencontainers.image.source="https://github.com/pull-secret-injector/pull-secret-injector" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=build /out/pull-secret-injector /usr/local/bin/pull-secret-injector

USER 65532:65532

# 8443: HTTPS admission webhook (/mutate, /healthz, /readyz); 9090: plain-HTTP /metrics.
EXPOSE 8443 9090

ENTRYPOINT ["/usr/local/bin/pull-secret-injector"]
CMD ["serve", "--self-signed"]
