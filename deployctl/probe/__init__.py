"""Talk to a running endpoint in its engine's HTTP API (TGI's routes or OpenAI's): health checks and the load generator."""
