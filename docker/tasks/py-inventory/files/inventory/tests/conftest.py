import pytest

from inventory import Inventory, Item


@pytest.fixture
def inv() -> Inventory:
    inv = Inventory()
    inv.add_item(Item("A100", "bolt", 25), 100)
    inv.add_item(Item("B200", "nut", 10), 250)
    inv.add_item(Item("C300", "washer", 5), 3)
    return inv
