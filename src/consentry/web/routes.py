"""Dashboard pages. Filled in by the dashboard slice."""

from __future__ import annotations

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Mount the dashboard pages and static files on ``app``."""
    del app
