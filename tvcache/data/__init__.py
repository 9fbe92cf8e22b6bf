"""Public data helpers: the bundled Spider databases and tasks, InterCode's MySQL translation.

>>> from tvcache.data import spider_tasks, spider_database
>>> task = spider_tasks()[0]
>>> path = spider_database(task.db, "template")  # template/poker_player.sqlite, fresh
"""

from tvcache.data._mysql import translate_mysql
from tvcache.data._spider import (
    DATA_ARCHIVE,
    SpiderTask,
    UnknownDatabaseError,
    open_spider_database,
    spider_database,
    spider_databases,
    spider_tasks,
)

__all__ = [
    "DATA_ARCHIVE",
    "SpiderTask",
    "UnknownDatabaseError",
    "open_spider_database",
    "spider_database",
    "spider_databases",
    "spider_tasks",
    "translate_mysql",
]
