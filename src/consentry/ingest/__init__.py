"""Collect: the Segment/RudderStack-compatible ingestion API, validation, de-duplication."""
