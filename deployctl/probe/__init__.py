"""Talk to a running endpoint over TGI's HTTP API: health checks and the load generator."""
