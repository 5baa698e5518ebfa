"""Audiences: segments (a JSON rule language compiled to SQL), computed traits and
membership kept up to date as events arrive (docs/segments.md)."""
