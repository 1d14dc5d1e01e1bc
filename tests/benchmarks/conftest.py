"""Fixtures shared by the benchmarks."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture
def loop():
    """A private event loop: pytest-benchmark calls the timed function synchronously."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()
