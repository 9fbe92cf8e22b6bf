"""Long randomized runs: stock never goes negative and the books balance."""

import random

import pytest

from inventory import Inventory, Item, OutOfStock, order_total


@pytest.mark.parametrize("seed", range(6))
def test_ledger_balances(seed):
    rng = random.Random(seed)
    inv = Inventory()
    for i in range(500):
        inv.add_item(Item(f"P{i}", f"part {i}", rng.randint(1, 5000)), rng.randint(0, 50))
    received = removed = 0
    start = sum(inv.stock.values())
    for _ in range(300000):
        sku = f"P{rng.randrange(500)}"
        qty = rng.randint(1, 12)
        if rng.random() < 0.45:
            inv.receive(sku, qty)
            received += qty
        else:
            try:
                inv.remove(sku, qty)
                removed += qty
            except OutOfStock:
                pass
    assert min(inv.stock.values()) >= 0
    assert sum(inv.stock.values()) == start + received - removed


@pytest.mark.parametrize("percent", [0, 5, 12.5, 50, 99])
def test_discounted_orders_never_exceed_list_price(inv, percent):
    rng = random.Random(int(percent * 10))
    for _ in range(3000):
        lines = [(rng.choice(["A100", "B200", "C300"]), rng.randint(1, 9)) for _ in range(5)]
        full = order_total(inv, lines)
        assert order_total(inv, lines, discount=percent) <= full
