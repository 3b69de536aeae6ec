# syntax=docker/dockerfile:1
# aepiot-stream container image: the Helm chart (helm/aepiot-stream) runs it as
#   aepiot-stream run --config /etc/aepiot-stream/config.toml
#
#   docker build -t <registry>/aepiot-stream:0.1.0 .
#
# NOTE: this image is not built in this repository's CI: the development machine has no Docker
# engine. The steps mirror what CI does natively (scripts/install-ci-deps.sh: cmake, pkg-config,
# libssl-dev for librdkafka built from source; `cargo build --release --locked`).

# ---- build ----
FROM rust:1-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin aepiot-stream \
 && cp target/release/aepiot-stream /usr/local/bin/aepiot-stream

# ---- runtime ----
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 aepiot \
 && useradd --system --uid 10001 --gid aepiot --no-create-home --shell /usr/sbin/nologin aepiot
COPY --from=builder /usr/local/bin/aepiot-stream /usr/local/bin/aepiot-stream
# Numeric user, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# /metrics, /healthz, /readyz (the chart sets metrics_addr = 0.0.0.0:9464).
EXPOSE 9464
ENTRYPOINT ["aepiot-stream"]
CMD ["run", "--config", "/etc/aepiot-stream/config.toml"]
