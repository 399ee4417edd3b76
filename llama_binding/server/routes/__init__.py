"""The server's routers: ``openai`` (``/v1/...``) and ``extras`` (health, tokenizer, metrics)."""
