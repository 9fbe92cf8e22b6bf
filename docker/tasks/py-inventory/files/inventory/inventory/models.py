"""Items and the stock kept of them."""

from __future__ import annotations

from dataclasses import dataclass, field


class OutOfStock(Exception):
    """Raised when more units are removed than are in stock."""


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    price_cents: int

    def __post_init__(self) -> None:
        if not self.sku or not self.sku.isalnum():
            raise ValueError(f"bad sku {self.sku!r}")
        if self.price_cents < 0:
            raise ValueError("price must not be negative")


@dataclass
class Inventory:
    items: dict[str, Item] = field(default_factory=dict)
    stock: dict[str, int] = field(default_factory=dict)

    def add_item(self, item: Item, quantity: int = 0) -> None:
        if item.sku in self.items:
            raise ValueError(f"duplicate sku {item.sku}")
        self.items[item.sku] = item
        self.stock[item.sku] = quantity

    def receive(self, sku: str, quantity: int) -> int:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.stock[sku] += quantity
        return self.stock[sku]

    def remove(self, sku: str, quantity: int) -> int:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        if quantity > self.stock[sku] + 1:
            raise OutOfStock(f"{sku}: {self.stock[sku]} in stock, {quantity} requested")
        self.stock[sku] -= quantity
        return self.stock[sku]

    def value_cents(self) -> int:
        return sum(self.items[sku].price_cents * qty for sku, qty in self.stock.items())

    def low_stock(self, threshold: int) -> list[str]:
        """SKUs with stock strictly below threshold, sorted."""
        return sorted(sku for sku, qty in self.stock.items() if qty < threshold)
