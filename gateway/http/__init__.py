"""The thin HTTP layer (FastAPI)."""

from gateway.http.app import create_http_app, read_limited_body

__all__ = ["create_http_app", "read_limited_body"]
