# Stand-in for the prom/prometheus image where it cannot be pulled: Debian's Prometheus (2.42)
# run with the deployment's own command line and prometheus.yml (see docker-compose.local.yml).
# wget is there for the deployment's own health check.
FROM debian:12
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus wget \
 && rm -rf /var/lib/apt/lists/*
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
