"""slm-router gateway: OpenAI protocol, config, serving logic, HTTP layer and CLI."""

__version__ = "0.1.0"
