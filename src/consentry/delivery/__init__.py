"""Channel adapters and the outbox that carry messages out: ``models`` builds a standard MIME
message (pure), ``smtp`` hands it to an SMTP server, ``webhook`` signs and posts JSON (shared
with privacy's erasure notifications); ``destinations`` are the endpoints bound to registered
processors, ``outbox`` delivers each message once with retries, ``suppressions`` is the global
suppression list (docs/delivery.md)."""
