# The strata image for those with access to a container registry: builds the
# release binaries in the official Rust image and assembles the same
# FROM scratch layout as deploy/image/build (deploy/image/rootfs.sh), which
# is what this project's own tests use, since they cannot pull images.
#
#   docker build -t strata:latest .
#   docker run -p 9090:9090 -v strata:/data strata:latest
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p strata -p strata-bench \
 && deploy/image/rootfs.sh target/release /out

FROM scratch
COPY --from=build /out/rootfs/ /
COPY --from=build --chown=10001:10001 /out/data /data
ARG VERSION=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="strata" \
      org.opencontainers.image.description="Prometheus-compatible, multi-tenant, horizontally scaled time-series database" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION"
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 9090 9095
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=6s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/strata", "tool", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/strata"]
CMD ["--data-dir", "/data"]
