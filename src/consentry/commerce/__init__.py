"""Commerce: products, carts and orders, filled from e-commerce events and CSV imports."""
