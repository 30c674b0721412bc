# syntax=docker/dockerfile:1
# The dbmesh proxy as a container image (used by docker-compose.yml):
#   docker build -t dbmesh .
#   docker run --rm -p 3307:3307 -p 9307:9307 -v "$PWD/my-rules.toml:/etc/dbmesh/rules.toml:ro" dbmesh
# In a container the rule file must listen on 0.0.0.0 ([proxy] listen / admin_listen).

# Builder and runtime share one Debian release, so the binary finds the glibc it was linked
# against.
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock* ./
COPY crates crates
COPY sharding-rules sharding-rules
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release -p dbmesh --bin dbmesh \
    && install -m 0755 target/release/dbmesh /usr/local/bin/dbmesh

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin dbmesh
COPY --from=builder /usr/local/bin/dbmesh /usr/local/bin/dbmesh
COPY sharding-rules /etc/dbmesh/examples
USER dbmesh
EXPOSE 3307 9307
ENTRYPOINT ["dbmesh"]
CMD ["serve", "--config", "/etc/dbmesh/rules.toml"]
