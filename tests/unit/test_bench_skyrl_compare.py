"""How ``bench skyrl`` compares a mode's observations with the unwrapped env's."""

from __future__ import annotations

from tvcache.bench.skyrl import TRUNCATED, Answer, _differences

REMINDER = "<reminder>You have 3 turns left to complete the task.</reminder></observation>\n\n"


def step(key: int, body: str, reward: float = 0.0) -> Answer:
    content = f"\n\n<observation>{body}\n{REMINDER}"
    return ((0, 0, key), [{"role": "user", "content": content}], reward, False, 0.001, None)


def test_only_the_envs_own_row_order_is_set_apart() -> None:
    truth = [
        step(0, " a\n 1\n 2"),
        step(1, " a\n 1"),
        step(2, TRUNCATED + "x\n 1\n 2"),
        step(3, ""),
    ]
    ours = [
        step(0, " a\n 2\n 1"),  # the same rows in another order
        step(1, " a\n 9"),  # another row: a real difference
        step(2, TRUNCATED + "y\n 3\n 4"),  # another cut of the same shape
        step(3, "", reward=1.0),  # another reward
    ]
    assert _differences(ours, truth) == {
        "observation_differences": 3,
        "env_order_only": 2,
        "reward_differences": 1,
    }
    assert _differences(ours[:3], truth)["observation_differences"] == 4  # a step went missing
    assert _differences(truth, truth) == dict.fromkeys(_differences(truth, truth), 0)
