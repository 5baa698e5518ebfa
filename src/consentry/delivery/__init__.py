"""Channel adapters that carry messages to customers. Only email so far: ``models`` builds a
standard MIME message (pure), ``smtp`` hands it to an SMTP server (the adapter, wired in
``api.py``)."""
