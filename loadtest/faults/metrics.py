"""Reading the gateway's ``/metrics``: the open-request gauge of every ingress replica.

``slm_router_open_requests`` is per replica (label ``replica``) and a scrape through Serve's
proxy lands on one replica, so :func:`open_requests` scrapes until it has heard from the
expected number of replicas.
"""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.http.open_requests import OPEN_REQUESTS_METRIC

__all__ = ["open_requests"]


async def open_requests(base_url: str, replicas: int, max_scrapes: int = 40) -> dict[str, float]:
    """Open requests by replica id, from up to ``max_scrapes`` scrapes (fewer replicas if some never answered)."""
    seen: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        for _ in range(max_scrapes):
            # A fresh connection per scrape, so the proxy may pick another replica.
            async with session.get(
                f"{base_url}/metrics", headers={"Connection": "close"}, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                text = await response.text()
            for family in text_string_to_metric_families(text):
                if family.name == OPEN_REQUESTS_METRIC:
                    for sample in family.samples:
                        seen[sample.labels.get("replica", "?")] = sample.value
            if len(seen) >= replicas:
                break
    return seen
