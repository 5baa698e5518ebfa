"""Unify: customers, identifiers, the identity graph, merge and unmerge."""
