# syntax=docker/dockerfile:1
# Images of Norn, from one build stage:
#   docker build --target norn          -t norn:dev .
#   docker build --target norn-operator -t norn-operator:dev .
# Both run as UID/GID 10001, the user the operator's pod security contexts ask for.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# aws-lc-sys (TLS of the S3 client) builds C code.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang perl make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p norn -p norn-operator \
    && mkdir -p /out \
    && cp target/release/norn target/release/norn-operator target/release/crdgen /out/

FROM gcr.io/distroless/cc-debian12 AS norn
COPY --from=build /out/norn /usr/local/bin/norn
USER 10001:10001
EXPOSE 3100 9095
ENTRYPOINT ["/usr/local/bin/norn"]

FROM gcr.io/distroless/cc-debian12 AS norn-operator
COPY --from=build /out/norn-operator /out/crdgen /usr/local/bin/
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/norn-operator"]
