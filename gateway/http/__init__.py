"""The thin HTTP layer (FastAPI)."""

from gateway.http.app import GatewayServices, create_http_app, read_limited_body

__all__ = ["GatewayServices", "create_http_app", "read_limited_body"]
