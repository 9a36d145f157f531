"""Fixtures shared by the API and map tests: a fixed clock, a runtime over the seeded district, a client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.runtime import Runtime
from store.ports import Store
from tests.integration.apphelpers import Clock, client_for, make_runtime, seed


@pytest.fixture
def clock() -> Clock:
    """A settable clock fixed at a Monday 10:00 in Shanghai (day shift on duty)."""
    return Clock()


@pytest.fixture
def rt(store_backend: Store, clock: Clock) -> Runtime:
    """A runtime over the seeded sample district, once per backend."""
    seed(store_backend)
    return make_runtime(store_backend, clock)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    """A TestClient of the app over `rt`."""
    with client_for(rt) as c:
        yield c
