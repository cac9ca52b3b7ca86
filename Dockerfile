# Confab's container image: the `confab` binary (the web client is built into it) on Debian
# slim, running as an unprivileged user.
#
#   docker build -t confab --build-arg CONFAB_GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
#   docker run --rm confab --version
#
# The image has no PostgreSQL of its own: give it DATABASE_URL (compose.yaml runs one), or
# build your own image with Debian's `postgresql` package added for the private cluster.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# The image has gcc; aws-lc (TLS, SRTP) falls back to cmake where its own build cannot do.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# No .git in the build context: the commit comes in as a build argument (build.rs reads it).
ARG CONFAB_GIT_COMMIT=unknown
ENV CONFAB_GIT_COMMIT=${CONFAB_GIT_COMMIT}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p confab-signaling --bin confab \
 && install -m 0755 target/release/confab /usr/local/bin/confab

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 confab \
 && useradd --system --uid 10001 --gid confab --home-dir /var/lib/confab --shell /usr/sbin/nologin confab \
 && install -d -o confab -g confab -m 0700 /var/lib/confab
COPY --from=build /usr/local/bin/confab /usr/local/bin/confab
USER confab:confab
WORKDIR /var/lib/confab
ENV CONFAB_BIND=0.0.0.0:3000 \
    CONFAB_DATA_DIR=/var/lib/confab \
    CONFAB_UDP_PORT=3000 \
    CONFAB_LOG_FORMAT=json
VOLUME ["/var/lib/confab"]
# HTTP(S) and the gateway; voice media (UDP, the same number).
EXPOSE 3000/tcp 3000/udp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/confab"]
