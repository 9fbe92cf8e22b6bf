"""Prices: parsing, discounts, order totals. All amounts are integer cents."""

from __future__ import annotations

from collections.abc import Iterable

from inventory.models import Inventory


def parse_price(text: str) -> int:
    """'12.34' / '$12.34' / '12' -> 1234 / 1234 / 1200."""
    text = text.strip().removeprefix("$").replace(",", "")
    if "." in text:
        whole, frac = text.split(".", 1)
        if len(frac) > 2 or not frac.isdigit():
            raise ValueError(f"bad price {text!r}")
        return int(whole or "0") * 100 + int(frac.ljust(2, "0"))
    return int(text) * 100


def apply_discount(cents: int, percent: float) -> int:
    """Price after a percentage discount, rounded half up to a cent."""
    if not 0 <= percent <= 100:
        raise ValueError("percent must be within 0..100")
    return int(cents * percent / 100 + 0.5)


def order_total(inv: Inventory, lines: Iterable[tuple[str, int]], discount: float = 0.0) -> int:
    """Total of an order in cents: sum of price * quantity, then the discount."""
    total = 0
    for sku, qty in lines:
        total += inv.items[sku].price_cents * qty
    return apply_discount(total, discount)
