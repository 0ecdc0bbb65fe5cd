# The TGI-protocol simulator. It takes TGI's launcher flags and listens where TGI does.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
# Needs python3 with aiohttp, and curl for the healthcheck the engine uses too. A base made by
# `deployctl image build-base` has both; a python:*-slim base gets them here (needs a network).
RUN set -e; \
    command -v curl >/dev/null || (apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*); \
    python3 -c "import aiohttp" 2>/dev/null || pip install --no-cache-dir "aiohttp>=3.9"
COPY deployctl /opt/deployctl-sim/deployctl
ENV PYTHONPATH=/opt/deployctl-sim PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PORT=80
EXPOSE 80
ARG VERSION=dev
LABEL ai.deployctl.image="tgi-simulator" ai.deployctl.version="${VERSION}"
# nobody: the simulator needs no privilege. Port 80 binds through the namespaced sysctl
# net.ipv4.ip_unprivileged_port_start=0 (Docker's default; the rendered stack sets it too).
USER 65534:65534
ENTRYPOINT ["python3", "-m", "deployctl.sim"]
