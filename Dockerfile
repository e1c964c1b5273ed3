# syntax=docker/dockerfile:1
# Multi-stage: build a static-ish release binary, ship it on a slim base as a non-root user.
FROM rust:1-bookworm AS build
# BoringSSL (wreq's browser-grade TLS) builds from source with cmake and clang.
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, built against stub sources, so that a change under src/ reuses this (slow: BoringSSL)
# layer; it is rebuilt only when Cargo.toml, Cargo.lock or benches/ change (Cargo.toml names the benches).
# The stub's own artifacts are removed so the real crate is always rebuilt, whatever the files' mtimes.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src && echo 'fn main() {}' >src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --bin grok2api \
 && rm -rf src target/release/grok2api target/release/grok2api.d target/release/.fingerprint/grok2api-* \
      target/release/deps/grok2api-* target/release/deps/libgrok2api-*
COPY src ./src
COPY config.example.toml ./
RUN cargo build --release --locked --bin grok2api

# `apt-get clean` matters where the base has no docker-clean apt hook (~90 MB of caches otherwise).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home grok2api
COPY --from=build /src/target/release/grok2api /usr/local/bin/grok2api
COPY config.example.toml /etc/grok2api/config.example.toml
USER grok2api
WORKDIR /data
ENV GROK2API_LISTEN=0.0.0.0:8000 \
    GROK2API_MEDIA_DIR=/data/media \
    GROK2API_STATE_DIR=/data/state \
    GROK2API_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["grok2api", "healthcheck"]
ENTRYPOINT ["grok2api"]
