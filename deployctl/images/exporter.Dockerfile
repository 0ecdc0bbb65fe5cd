# The GPU exporter (`deployctl exporter`, deployctl/monitoring/exporter.py): NVML readings for Prometheus.
# The build context holds the exporter's own modules and the packages it imports, copied from the
# Python that runs deployctl (deployctl/images/build.py build_exporter): nothing is downloaded here.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
COPY site /opt/deployctl-exporter
ENV PYTHONPATH=/opt/deployctl-exporter PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
ARG VERSION=dev
LABEL ai.deployctl.image="gpu-exporter" ai.deployctl.version="${VERSION}"
EXPOSE 9401
# nobody: reading NVML needs no privilege (the NVIDIA runtime mounts the driver's library and devices).
USER 65534:65534
ENTRYPOINT ["python3", "-m", "deployctl.monitoring.exporter"]
