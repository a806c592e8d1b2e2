"""Fixtures for the error-model tests: every test starts and ends with the default handler."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import aiovirt


@pytest.fixture(autouse=True)
def default_handler() -> Iterator[None]:
    aiovirt.set_error_handler(None)
    aiovirt.reset_last_error()
    yield
    aiovirt.set_error_handler(None)
