"""The bench_smoke marker: quick runs of the benchmark harness (bench/), not benchmarks."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "bench_smoke: runs bench/swarm.py small and fast to check the harness (root, ~1 min)",
    )
