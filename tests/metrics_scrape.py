"""Scraping a real server's ``/metrics`` in the tests, parsed by prometheus_client."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient, base: str, path: str = "/metrics/") -> Samples:
    response = await client.get(base + path)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` (0 when absent: a labelled child not used yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
