# OCPP 1.6 <-> MQTT connector (BEMCom). Build with ./build_docker_image.sh.
#
# Two stages: the builder installs into the virtualenv /opt/venv, the runtime image gets
# only that venv (no build tools, no sources). Both stages use the same base image, so the
# venv's interpreter links and script shebangs stay valid.
# source/connector/tests/test_docker.py reproduces the two `pip install` lines below on the
# host and runs the CMD from the result; keep them as single-command RUN lines.

FROM python:3.11.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /build

# Dependencies first: this layer is rebuilt only when the pinned requirements change.
COPY source/requirements.txt source/requirements.txt
RUN pip install --no-cache-dir -r source/requirements.txt

# Then the package itself, a regular (non-editable) install.
COPY source source
RUN pip install --no-cache-dir ./source


FROM python:3.11.11-slim-bookworm

ARG VERSION=unknown
LABEL org.opencontainers.image.title="ocpp-connector" \
      org.opencontainers.image.description="BEMCom connector between OCPP 1.6 charge points and MQTT" \
      org.opencontainers.image.version="${VERSION}"

# A fixed, unprivileged uid/gid so volume ownership is predictable on the host.
RUN groupadd --system --gid 10001 connector \
    && useradd --system --no-log-init --uid 10001 --gid connector \
       --home-dir /app --shell /usr/sbin/nologin connector \
    && mkdir -p /data/state \
    && chown -R connector:connector /data

COPY --from=builder /opt/venv /opt/venv

# Unbuffered output so log lines reach `docker logs` at once. STATE_DIR points into the
# volume below (transaction ids must survive a container being replaced).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    STATE_DIR=/data/state

# The connector loads ./.env without overriding set variables: these are the defaults,
# `docker run -e VAR=...` (or an .env mounted over this one) changes them.
WORKDIR /app
COPY .env .env

# Declared after the chown above, so a fresh named volume starts owned by the connector.
VOLUME ["/data"]

# Numeric, so runtimes that check runAsNonRoot (Kubernetes) can verify it.
USER 10001:10001

# OCPP (ws://) listening port; OCPP_PORT changes it. The operations HTTP server (/healthz,
# /readyz, /metrics, the status page at /); HTTP_PORT changes it.
EXPOSE 9000 8080

# /healthz: unhealthy while the broker connection or the OCPP server is down. In Python, as
# the image has no curl; the module reads HTTP_HOST/HTTP_PORT as the connector does (the
# environment, then .env), so it follows them (with HTTP_PORT off or 0 there is nothing to
# check: run with --no-healthcheck).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "connector.healthcheck"]

# Exec form: ocpp-connector is PID 1 and receives SIGTERM from `docker stop` itself; it
# installs its own SIGTERM/SIGINT handlers (close chargers with 1001, flush MQTT, exit 0).
CMD ["ocpp-connector"]
