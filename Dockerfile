# syntax=docker/dockerfile:1
# armorm images. CPU (default):        docker build -t armorm:cpu .
#                CUDA (H100/H200):     docker build --target cuda --build-arg CUDA_COMPUTE_CAP=90 -t armorm:cuda .
#                serve only:           add --build-arg ARMORM_SERVE_ONLY=1 (no `train`/`eval`, nor their crates)
# The build steps live in deploy/docker/build.sh, which CI also runs.

ARG RUST_VERSION=1.95
ARG CUDA_VERSION=12.6.3
ARG CUDA_UBUNTU=ubuntu22.04

# ---------- CUDA build ----------
FROM nvidia/cuda:${CUDA_VERSION}-devel-${CUDA_UBUNTU} AS build-cuda
ARG RUST_VERSION
# Compute capability the kernels are compiled for: 90 = H100/H200, 80 = A100, 89 = L4/L40.
ARG CUDA_COMPUTE_CAP=90
ARG ARMORM_SERVE_ONLY=
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl build-essential pkg-config \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain "${RUST_VERSION}"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP} ARMORM_FEATURES=cuda ARMORM_SERVE_ONLY=${ARMORM_SERVE_ONLY} \
    deploy/docker/build.sh /out

# ---------- CUDA runtime ----------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${CUDA_UBUNTU} AS cuda
RUN useradd --system --uid 10001 --home-dir /data armorm && mkdir -p /data/hf && chown -R armorm /data
COPY --from=build-cuda /out/armorm /usr/local/bin/armorm
COPY --from=build-cuda /out/demo-model /opt/armorm/demo-model
ENV ARMORM_HOST=0.0.0.0 ARMORM_PORT=8080 ARMORM_DEVICE=cuda HF_HOME=/data/hf
VOLUME ["/data"]
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 CMD ["armorm", "healthcheck"]
ENTRYPOINT ["armorm"]
CMD ["serve"]

# ---------- CPU build ----------
FROM rust:${RUST_VERSION}-bookworm AS build-cpu
# Portable SIMD level (AVX2/FMA); matmul kernels also dispatch at run time.
ARG ARMORM_CPU_TARGET=x86-64-v3
ARG ARMORM_SERVE_ONLY=
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    ARMORM_CPU_TARGET=${ARMORM_CPU_TARGET} ARMORM_SERVE_ONLY=${ARMORM_SERVE_ONLY} deploy/docker/build.sh /out \
 && mkdir -p /out/data/hf

# ---------- CPU runtime (default target) ----------
# distroless/cc: glibc and libgcc only, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS cpu
COPY --from=build-cpu /out/armorm /usr/local/bin/armorm
COPY --from=build-cpu /out/demo-model /opt/armorm/demo-model
COPY --from=build-cpu --chown=65532:65532 /out/data /data
ENV ARMORM_HOST=0.0.0.0 ARMORM_PORT=8080 HF_HOME=/data/hf
VOLUME ["/data"]
USER 65532
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 CMD ["armorm", "healthcheck"]
ENTRYPOINT ["armorm"]
CMD ["serve"]
