# The collector image: `collector serve` with the CPU build of torch and transformers.
#
#   docker build -t transformers-perf-collector:local .
#
# GPU variant (NVIDIA): the same Dockerfile with the CUDA wheel index of the same torch
# version; the CUDA runtime comes inside the wheels, the driver from the host through the
# NVIDIA Container Toolkit. docker-compose.gpu.yml passes these build args for you:
#
#   docker build -t transformers-perf-collector:gpu \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 \
#     --build-arg COLLECTOR_EXTRAS=nvml .
#
# Pick the cuXYZ index that matches your driver (see docs/measuring.md, "GPU machines").

ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# torch is pinned here and in requirements/worker-cpu.txt (tests/integration/test_compose.py
# checks that both agree). From the CPU index, `torch==X` is the CPU wheel; an unpinned torch
# from PyPI would pull a multi-GB CUDA build.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Optional extras of the package, comma separated (nvml: GPU clocks/throttling in the noise probe).
ARG COLLECTOR_EXTRAS=

LABEL org.opencontainers.image.title="transformers-perf-collector" \
      org.opencontainers.image.description="Continuous performance monitoring for Hugging Face transformers models" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/collector \
    PATH=/opt/collector/bin:$PATH

# g++: torch.compile (backend: compile) builds its CPU kernels with a C++ compiler, and
# Triton needs a C compiler on GPU. Nothing else is needed: every wheel is prebuilt.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv "$VIRTUAL_ENV"

# torch first, on its own layer: it is the big download and changes least often. Only the
# chosen index is consulted (it also hosts torch's dependencies), so no other torch can win.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

COPY requirements/ /tmp/requirements/
# The rest with the project's tested versions. The constraints file pins torch to the CPU
# wheel's local version (+cpu), so its torch line is left out: the torch installed above,
# CPU or CUDA, already satisfies worker-cpu.txt's `torch==X`.
RUN grep -v '^torch==' /tmp/requirements/constraints.txt > /tmp/constraints-no-torch.txt \
 && pip install -c /tmp/constraints-no-torch.txt -r /tmp/requirements/worker-cpu.txt

COPY pyproject.toml README.md /src/
COPY collector/ /src/collector/
RUN pip install -c /tmp/constraints-no-torch.txt "/src${COLLECTOR_EXTRAS:+[${COLLECTOR_EXTRAS}]}" \
 && pip check \
 && python -c "import sys, torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__); sys.exit(torch.__version__.split('+')[0] != '${TORCH_VERSION}')" \
 && case "${TORCH_INDEX_URL}" in */cpu) python -c "import sys, torch; sys.exit(torch.version.cuda is not None)" ;; esac \
 && collector --version \
 && rm -rf /src /tmp/requirements /tmp/constraints-no-torch.txt

# A non-root user that owns the data and cache directories. Named volumes mounted there
# start with this ownership, so the container never needs root.
RUN groupadd --system --gid 10001 collector \
 && useradd --system --uid 10001 --gid collector --create-home --home-dir /home/collector \
      --shell /usr/sbin/nologin collector \
 && mkdir -p /var/lib/collector /var/cache/huggingface /etc/collector \
 && chown collector:collector /var/lib/collector /var/cache/huggingface

# The stack's default configuration; docker-compose.yml mounts deploy/collector.yml (or your
# COLLECTOR_CONFIG_FILE) over it, so editing it needs no rebuild.
COPY deploy/collector.yml /etc/collector/collector.yml

ENV COLLECTOR_CONFIG=/etc/collector/collector.yml \
    COLLECTOR_DATA_DIR=/var/lib/collector \
    HF_HOME=/var/cache/huggingface

USER collector:collector
WORKDIR /home/collector

# /metrics and /healthz (serve.port in the configuration).
EXPOSE 9464

# /healthz answers 200 while the scheduler runs, 503 once it stops: urlopen raises on 503.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]

ENTRYPOINT ["collector"]
CMD ["serve", "--config", "/etc/collector/collector.yml"]
