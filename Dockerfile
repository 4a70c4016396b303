# haproxy-log-exporter: one static binary on an empty base image.
#
#   docker build -t haproxy-log-exporter:0.1.0 --build-arg VERSION=0.1.0 .
#   docker run --rm --read-only --cap-drop ALL \
#     -p 9129:9129 -p 5140:5140/udp -p 5140:5140/tcp haproxy-log-exporter:0.1.0
#
# The runtime image holds nothing but the binary: no shell, no libc, no users.
# It runs as UID/GID 65532 (the "nonroot" user of distroless images), needs no
# capabilities (every port is above 1024) and writes nothing to its root
# filesystem, so it runs with a read-only root filesystem.

ARG RUST_VERSION=1.95

# --- builder: a fully static binary ------------------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder

WORKDIR /src
COPY . .

# glibc linked statically (crt-static) gives a static-pie binary that runs on
# `scratch`. The target is named explicitly: with --target, RUSTFLAGS apply to
# the binary only, not to build scripts and proc macros. `uname -m` picks the
# builder's own architecture (x86_64 or aarch64).
RUN target="$(uname -m)-unknown-linux-gnu" \
    && RUSTFLAGS='-C target-feature=+crt-static' \
       cargo build --release --locked --target "$target" --bin haproxy-log-exporter \
    && install -D -m 0755 "target/$target/release/haproxy-log-exporter" /out/haproxy-log-exporter \
    && /out/haproxy-log-exporter --version

# --- runtime -------------------------------------------------------------------
FROM scratch

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="haproxy-log-exporter" \
      org.opencontainers.image.description="Turns HAProxy's syslog stream into Prometheus metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/haproxy-log-exporter /haproxy-log-exporter

# In a container the syslog listeners must accept lines from other network
# namespaces; the binary's own default is loopback only. A sidecar that shares
# HAProxy's network namespace may set them back to 127.0.0.1:5140.
ENV HLE_SYSLOG_UDP_ADDR=0.0.0.0:5140 \
    HLE_SYSLOG_TCP_ADDR=0.0.0.0:5140 \
    HLE_WEB_LISTEN_ADDR=0.0.0.0:9129

# Metrics and probes (/metrics, /-/healthy, /-/ready); syslog over UDP and TCP.
EXPOSE 9129/tcp 5140/udp 5140/tcp

USER 65532:65532
ENTRYPOINT ["/haproxy-log-exporter"]
