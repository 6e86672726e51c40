# Multi-stage build: compile in the Rust image, run on a slim Debian.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin fleetledger

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/fleetledger fleetledger && mkdir -p /var/lib/fleetledger \
    && chown fleetledger /var/lib/fleetledger
COPY --from=build /src/target/release/fleetledger /usr/local/bin/fleetledger
USER fleetledger
ENV FLEETLEDGER_DATA_DIR=/var/lib/fleetledger FLEETLEDGER_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["fleetledger"]
CMD ["serve"]
