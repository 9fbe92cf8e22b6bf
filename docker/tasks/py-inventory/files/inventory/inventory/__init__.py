"""A small warehouse inventory library."""

from inventory.models import Item, Inventory, OutOfStock
from inventory.pricing import apply_discount, order_total, parse_price

__all__ = ["Inventory", "Item", "OutOfStock", "apply_discount", "order_total", "parse_price"]
