import pytest

from inventory import apply_discount, order_total, parse_price


@pytest.mark.parametrize(
    "text,cents",
    [("12.34", 1234), ("$12.34", 1234), ("12", 1200), ("0.5", 50), (".99", 99), ("1,250.00", 125000)],
)
def test_parse_price(text, cents):
    assert parse_price(text) == cents


@pytest.mark.parametrize("text", ["1.234", "abc", "1.x"])
def test_parse_price_rejects(text):
    with pytest.raises(ValueError):
        parse_price(text)


@pytest.mark.parametrize(
    "cents,percent,expected",
    [(1000, 0, 1000), (1000, 10, 900), (999, 50, 500), (1000, 100, 0), (1, 50, 1)],
)
def test_apply_discount(cents, percent, expected):
    assert apply_discount(cents, percent) == expected


@pytest.mark.parametrize("percent", [-1, 101])
def test_apply_discount_range(percent):
    with pytest.raises(ValueError):
        apply_discount(100, percent)


def test_order_total(inv):
    assert order_total(inv, [("A100", 4), ("B200", 10)]) == 200


def test_order_total_discount(inv):
    assert order_total(inv, [("A100", 4), ("B200", 10)], discount=25) == 150


def test_order_total_many_lines(inv):
    lines = [("A100", 1), ("B200", 2), ("C300", 3)] * 1000
    assert order_total(inv, lines, discount=10) == 54000
