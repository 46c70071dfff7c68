# Image with both binaries: /usr/local/bin/epp (the picker) and /usr/local/bin/epp-sim (the simulated vLLM fleet
# used by deploy/kubernetes/overlays/demo).
#   docker build -t endpoint-picker:dev .
# The build stage matches the runtime's Debian release (bookworm), so the C libraries linked at build time
# (module maps under Sources/C*) are the ones installed at run time.

ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${SWIFT_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnghttp2-dev libssl-dev libhiredis-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Manifest first: the dependency checkout is cached until Package.swift changes.
COPY Package.* ./
RUN swift package resolve
COPY Sources ./Sources
# SwiftPM checks every declared target's directory, test targets included.
COPY Tests ./Tests
# Static Swift runtime: the runtime image needs only the C libraries below.
RUN swift build -c release --static-swift-stdlib --product epp \
 && swift build -c release --static-swift-stdlib --product epp-sim \
 && mkdir -p /out \
 && cp "$(swift build -c release --show-bin-path)/epp" "$(swift build -c release --show-bin-path)/epp-sim" /out/

FROM ${RUNTIME_IMAGE}
# One runtime package per library in the module maps: nghttp2, ssl+crypto, hiredis, curl (+ CA certificates for
# https scrapes and the Kubernetes API).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnghttp2-14 libssl3 libhiredis0.14 libcurl4 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/epp /out/epp-sim /usr/local/bin/
# Non-root; the same uid as the manifests' runAsUser.
RUN groupadd --system --gid 65532 epp && useradd --system --uid 65532 --gid 65532 --no-create-home epp
USER 65532:65532
# ext_proc gRPC, gRPC health, Prometheus metrics (epp defaults).
EXPOSE 9002 9003 9090
ENTRYPOINT ["/usr/local/bin/epp"]
