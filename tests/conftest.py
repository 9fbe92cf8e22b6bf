"""Shared test set-up: the fake environment is importable as ``fake_env``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
