# syntax=docker/dockerfile:1
# pingora-gateway container image: a release build with the production
# profile (fat LTO), then a slim Debian runtime running as an unprivileged
# user. Build and run (Docker or Podman alike):
#
#   docker build --build-arg GATEWAY_GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t pingora-gateway:0.1.0 .
#   docker run --rm -p 6188:6188 -p 9090:9090 -e JWT_SECRET \
#     -v "$PWD/examples/container.yaml:/etc/pingora-gateway/gateway.yaml:ro" pingora-gateway:0.1.0
#
# The config is mounted at /etc/pingora-gateway/gateway.yaml; the metrics
# listener must bind 0.0.0.0 for its port to be published (see
# examples/container.yaml). tests/container.rs builds the runtime stage on a
# Debian base made locally and curls the gateway through the container.

ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-trixie
ARG RUNTIME_IMAGE=docker.io/library/debian:trixie-slim

FROM ${RUST_IMAGE} AS build
# cmake: Pingora's zlib-ng build.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake g++ make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# No .git in the build context: the commit `gateway --version` prints.
ARG GATEWAY_GIT_COMMIT=unknown
ENV GATEWAY_GIT_COMMIT=${GATEWAY_GIT_COMMIT}
RUN cargo build --locked --profile production --bin gateway \
 && install -D -m 0755 target/production/gateway /out/usr/local/bin/gateway \
 && install -D -m 0644 README.md /out/usr/share/doc/pingora-gateway/README.md

FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates: JWKS, introspection and ACME over https trust the system roots.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
 && install -d -m 0755 /etc/pingora-gateway \
 && install -d -o gateway -g gateway -m 0700 /var/lib/pingora-gateway
COPY --from=build /out/ /
USER 10001:10001
EXPOSE 6188 9090
# The admin listener's liveness answer, without a client binary in the image.
# GATEWAY_METRICS_PORT: the port of metrics.bind_address, if not 9090.
ENV GATEWAY_METRICS_PORT=9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${GATEWAY_METRICS_PORT} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# SIGTERM: /readyz 503 for server.shutdown_delay_seconds, then drain and exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["run", "--config", "/etc/pingora-gateway/gateway.yaml"]
