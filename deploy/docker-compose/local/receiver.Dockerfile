# Stand-in for Jaeger where its image cannot be pulled: rotel (an OpenTelemetry collector, from
# PyPI) receiving OTLP on Jaeger's ports 4317 (gRPC) and 4318 (HTTP) and printing every span it
# gets in its log (`docker logs`), which the deployment test reads back.
FROM debian:12
ARG EXTRA_CA_CERTS=""
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates python3-venv libpython3.11 \
 && if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/extra-ca.crt \
      && update-ca-certificates; \
    fi \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /opt/rotel \
 && /opt/rotel/bin/pip install --quiet --disable-pip-version-check rotel==0.0.1a15 \
 && ln -s "$(ls /opt/rotel/lib/python3*/site-packages/rotel/rotel-agent)" /usr/local/bin/rotel-agent
EXPOSE 4317 4318
ENTRYPOINT ["rotel-agent", "start", "--exporter", "blackhole", \
            "--otlp-grpc-endpoint", "0.0.0.0:4317", "--otlp-http-endpoint", "0.0.0.0:4318", \
            "--debug-log", "traces", "--debug-log-verbosity", "detailed"]
