import random

import pytest

from inventory import Inventory, Item, OutOfStock


def test_add_and_value(inv):
    assert inv.value_cents() == 100 * 25 + 250 * 10 + 3 * 5


def test_duplicate_sku(inv):
    with pytest.raises(ValueError):
        inv.add_item(Item("A100", "other", 1))


@pytest.mark.parametrize("sku", ["", "A-1", "a b"])
def test_bad_sku(sku):
    with pytest.raises(ValueError):
        Item(sku, "x", 1)


def test_negative_price():
    with pytest.raises(ValueError):
        Item("X1", "x", -1)


def test_receive(inv):
    assert inv.receive("C300", 7) == 10


@pytest.mark.parametrize("qty", [0, -3])
def test_receive_rejects_non_positive(inv, qty):
    with pytest.raises(ValueError):
        inv.receive("C300", qty)


def test_remove(inv):
    assert inv.remove("A100", 40) == 60


def test_remove_everything(inv):
    assert inv.remove("C300", 3) == 0


def test_remove_too_many(inv):
    with pytest.raises(OutOfStock):
        inv.remove("C300", 4)
    assert inv.stock["C300"] == 3


@pytest.mark.parametrize("threshold,expected", [(4, ["C300"]), (3, []), (101, ["A100", "C300"])])
def test_low_stock(inv, threshold, expected):
    assert inv.low_stock(threshold) == expected


def test_random_operations_keep_stock_non_negative():
    rng = random.Random(5)
    inv = Inventory()
    for i in range(200):
        inv.add_item(Item(f"S{i}", f"item {i}", rng.randint(1, 999)), rng.randint(0, 20))
    for _ in range(20000):
        sku = f"S{rng.randrange(200)}"
        if rng.random() < 0.5:
            inv.receive(sku, rng.randint(1, 5))
        else:
            try:
                inv.remove(sku, rng.randint(1, 8))
            except OutOfStock:
                pass
        assert inv.stock[sku] >= 0
