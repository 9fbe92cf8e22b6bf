"""SkyRL-gym's SQL environment with its tool calls served by tvcache: one line changes.

Run: python examples/skyrl_sql.py      (needs: pip install 'tvcache[skyrl]')

A GRPO group of 8 rollouts of one Spider task. Each rollout runs on the plain env and on the
wrapped one; the script prints whether every observation and reward is byte-identical, and
how many SQL executions the cache saved.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from skyrl_gym.envs.sql.env import SQLEnv

from tvcache import Settings
from tvcache.adapters.skyrl import CachedTextEnv, skyrl_engine
from tvcache.data import spider_database, spider_tasks


def make_env(data: Path, db: str, gold: str) -> SQLEnv:
    extras = {"db_id": db, "reward_spec": {"ground_truth": gold}, "data": "spider", "max_turns": 4}
    return SQLEnv(DictConfig({"db_path": str(data)}), extras)


def rollout(env: Any, actions: list[str]) -> list[Any]:
    seen = [env.init([{"role": "user", "content": "answer with SQL"}])]
    for action in actions:
        out = env.step(action)
        seen.append(dict(out))
        if out["done"]:
            break
    env.close()
    return seen


def main() -> None:
    task = spider_tasks()[0]
    with tempfile.TemporaryDirectory(prefix="tvcache-example-") as tmp:
        data = Path(tmp) / "data"
        spider_database(task.db, data / "spider" / "database" / task.db)
        env = make_env(data, task.db, task.gold)  # its tool groups run in this process
        engine = skyrl_engine(env, Settings(home=Path(tmp) / "home"), persist=False)
        think = "<think>Look at the data first.</think>\n"
        tables = [think + "<sql>SELECT name FROM sqlite_master WHERE type = 'table'</sql>"]
        probes = [think + "<sql>SELECT * FROM people LIMIT 3</sql>", think + "<sql>SELECT 1</sql>"]
        answers = [f"<solution>{task.gold}</solution>", "<solution>SELECT 1</solution>"]
        answers = [think + answer for answer in answers]
        rng = random.Random(0)
        identical = True
        for _ in range(8):
            plan = tables + rng.sample(probes, rng.randint(0, 2)) + [rng.choice(answers)]
            plain = rollout(make_env(data, task.db, task.gold), plan)
            env = make_env(data, task.db, task.gold)
            env = CachedTextEnv(env, engine, task.task_id)  # the one line a SkyRL user adds
            cached = rollout(env, plan)
            identical = identical and cached == plain
            print(
                f"reward {cached[-1]['reward']:.0f}  steps {len(plan)}  identical {cached == plain}"
            )
        runs, hits = engine.stats()["misses"], engine.stats()["hits"]
        print(f"byte-identical: {identical}; SQL runs {runs}, served from cache {hits}")
        engine.close()


if __name__ == "__main__":
    main()
