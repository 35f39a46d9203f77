# Veer's image: the controller (`veer`) and the load tester (`veer-loadtester`), statically linked
# against musl, on an empty base, running as user 65532 (no shell, no package manager, nothing else).
#
#   docker build -t <your registry>/veer:<tag> .
#
# charts/veer runs `/usr/local/bin/veer controller ...`; charts/veer-loadtester runs
# `/usr/local/bin/veer-loadtester ...`. Both charts set a read-only root filesystem.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-alpine AS build
# Alpine's Rust targets musl. ring (TLS) compiles C, hence gcc and musl-dev; the CA bundle is copied into
# the image for outgoing HTTPS (Slack, MS Teams, webhooks, Prometheus).
RUN apk add --no-cache gcc musl-dev ca-certificates
WORKDIR /src
# Only what the build needs (see .dockerignore): the manifest, the lock file and the sources.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked --bin veer --bin veer-loadtester \
	&& mkdir -p /out/usr/local/bin /out/etc/ssl/certs /out/tmp \
	&& cp target/release/veer target/release/veer-loadtester /out/usr/local/bin/ \
	&& cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
	&& chmod 1777 /out/tmp \
	&& /out/usr/local/bin/veer --version \
	&& /out/usr/local/bin/veer-loadtester --version

FROM scratch
COPY --from=build /out/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/veer"]
