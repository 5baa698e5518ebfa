"""Consent: the hash-chained ledger of choices, the current state, and the one policy that
decides every use of customer data (``consent.service`` is the public facade)."""
