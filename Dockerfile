# The weir binary in a small image; docker-compose.yml runs it as a
# `weir serve` host. Build with `docker build -t weir .`.

# The toolchain rust-toolchain.toml pins (1.95.0), so rustup uses the image's.
FROM rust:1.95.0-bookworm AS builder
# librdkafka is built from source by rdkafka-sys (its configure script and
# make, no cmake), with zlib as its only optional library (host/Cargo.toml
# turns on `libz` alone: no TLS, SASL, zstd or curl).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# host/build.rs compiles the bundled guest functions for wasm32-wasip2 and
# adds that target with rustup when it is missing; adding it in a layer of
# its own keeps it out of every rebuild.
COPY rust-toolchain.toml ./
RUN rustup target add wasm32-wasip2
COPY . .
RUN cargo build --release --locked -p weir \
    && install -m 0755 target/release/weir /usr/local/bin/weir

FROM debian:bookworm-slim
# Runtime libraries: glibc, libgcc and zlib, all in the base image.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home weir \
    && mkdir /data \
    && chown weir:weir /data
COPY --from=builder /usr/local/bin/weir /usr/local/bin/weir
USER weir
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8081
ENTRYPOINT ["weir"]
CMD ["serve", "--listen", "0.0.0.0:8081", "--data-dir", "/data"]
