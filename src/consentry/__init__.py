"""consentry: a self-hosted customer data platform for e-commerce, governed by consent."""

__version__ = "0.1.0"

__all__ = ["__version__"]
