# syntax=docker/dockerfile:1
# The ordersaga image: built with the Rust toolchain, run on a slim Debian as a non-root user.
#   docker build -t ordersaga:0.1.0 .
#   docker run --rm -p 8080:8080 ordersaga:0.1.0          # embedded SQLite in /var/lib/ordersaga
# Settings come from ORDERSAGA_* variables (see the README); a SIGTERM stops it gracefully within
# shutdown_timeout_seconds.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ordersaga \
 && install -D target/release/ordersaga /out/ordersaga

FROM debian:bookworm-slim
# curl answers the HEALTHCHECK; ca-certificates for TLS endpoints.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/ordersaga --create-home ordersaga
COPY --from=build /out/ordersaga /usr/local/bin/ordersaga
USER 10001:10001
WORKDIR /var/lib/ordersaga
VOLUME ["/var/lib/ordersaga"]
ENV ORDERSAGA_BIND=0.0.0.0:8080
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health/ready"]
ENTRYPOINT ["ordersaga"]
CMD ["serve"]
