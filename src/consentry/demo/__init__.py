"""Deterministic demo-shop data: Segment-spec messages for a fictional multi-channel store."""
