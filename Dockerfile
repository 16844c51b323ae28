# syntax=docker/dockerfile:1
#
# pull-secret-injector container image.
#
#   docker build -t pull-secret-injector:dev .
#   docker build --build-arg VERSION=0.2.0 -t ghcr.io/pull-secret-injector/pull-secret-injector:0.2.0 .
#
# Build stage: the official Rust image on Debian 12 (bookworm), so that the binary links
# against the same glibc as the distroless runtime below (also Debian 12). TLS is rustls with
# ring: no OpenSSL, and ring's C/assembly parts need only the gcc that the slim image ships.
FROM rust:1.95.0-slim-bookworm AS build

WORKDIR /src

# Only what the build reads (.dockerignore lists it): Cargo.toml, Cargo.lock, src/ and benches/
# (Cargo.toml declares the benches, and cargo refuses a manifest whose targets are missing).
COPY . .

# Dependency caching: BuildKit cache mounts keep the crate registry and the compiled
# dependencies between builds, so a source change recompiles only this crate. The target
# directory is a cache mount, so the binary is copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin pull-secret-injector \
    && install -D -m 0755 target/release/pull-secret-injector /out/pull-secret-injector

# Runtime: glibc and libgcc (the binary is dynamically linked), CA certificates, no shell, no
# package manager; runs as the distroless nonroot user (65532).
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
