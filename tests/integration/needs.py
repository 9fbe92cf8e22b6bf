"""What integration tests do when a part of the machine they need is missing."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """Skip, saying what is missing and how to get it; under CI (``$CI`` set) fail instead:
    CI must never pass by skipping."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
