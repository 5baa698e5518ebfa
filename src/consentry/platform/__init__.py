"""Shared infrastructure: database, tenancy, and (later) crypto and audit."""
