"""For operators: a Prometheus exporter and a health check fed by the status and result topics."""
