"""Tests against a live ``consentry serve`` process (see tests/support/server.py)."""
