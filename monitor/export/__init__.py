"""What Prometheus sees: the metric catalogue, the scrape-time collector, the HTTP
endpoint and the generated README reference."""
