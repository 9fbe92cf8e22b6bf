"""InterCode's MySQL-dialect SQL actions, translated to the SQLite they mean.

InterCode recorded agents against MySQL; replaying them on SQLite needs the schema
introspection they relied on (``SHOW TABLES``, ``DESCRIBE``, ``information_schema``) mapped.
"""

from __future__ import annotations

import re

_EXECUTE = re.compile(r"execute\[(.*)\]", re.I | re.S)
_SET_PREFIX = re.compile(r"SET\s[^;]*;\s*", re.I)
_SQL_VERB = re.compile(
    r"\(?\s*(SELECT|WITH|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|SHOW|DESC|DESCRIBE"
    r"|EXPLAIN|PRAGMA|VALUES)\b",
    re.I,
)
_IDENT = r"`?([A-Za-z_][\w$]*)`?"
_QUALIFIED = rf"(?:`?\w+`?\s*\.\s*)?{_IDENT}"
_SHOW_TABLES = re.compile(
    r"SHOW\s+(?:FULL\s+)?TABLES(?:\s+(?:FROM|IN)\s+`?\w+`?)?(?:\s+LIKE\s+('[^']*'))?", re.I
)
_SHOW_DATABASES = re.compile(r"SHOW\s+(?:DATABASES|SCHEMAS)", re.I)
_SHOW_COLUMNS = re.compile(
    rf"SHOW\s+(?:FULL\s+)?(?:COLUMNS|FIELDS)\s+(?:FROM|IN)\s+{_QUALIFIED}"
    r"(?:\s+(?:FROM|IN)\s+`?\w+`?)?",
    re.I,
)
_SHOW_CREATE = re.compile(rf"SHOW\s+CREATE\s+TABLE\s+{_QUALIFIED}", re.I)
_SHOW_INDEX = re.compile(rf"SHOW\s+(?:INDEX|INDEXES|KEYS)\s+(?:FROM|IN)\s+{_QUALIFIED}", re.I)
_DESCRIBE = re.compile(rf"(?:DESC|DESCRIBE|EXPLAIN)\s+{_QUALIFIED}", re.I)
_INFO_SCHEMA = re.compile(r"`?information_schema`?\s*\.\s*`?(tables|columns)\b`?", re.I)
_DATABASE_FN = re.compile(r"\b(?:DATABASE|SCHEMA)\s*\(\s*\)", re.I)

USER_TABLES = "type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"


def _info_schema_ctes(schema: str) -> dict[str, str]:
    """information_schema views as CTEs over sqlite_master and pragma_table_info."""
    lit = "'" + schema.replace("'", "''") + "'"
    return {
        "tables": (
            f"information_schema_tables AS (SELECT 'def' AS table_catalog, {lit} AS table_schema,"
            " name AS table_name, 'BASE TABLE' AS table_type, 'SQLite' AS engine"
            f" FROM sqlite_master WHERE {USER_TABLES})"
        ),
        "columns": (
            "information_schema_columns AS (SELECT 'def' AS table_catalog,"
            f" {lit} AS table_schema, m.name AS table_name, p.name AS column_name,"
            " p.cid + 1 AS ordinal_position, p.dflt_value AS column_default,"
            " CASE p.\"notnull\" WHEN 0 THEN 'YES' ELSE 'NO' END AS is_nullable,"
            " lower(p.type) AS data_type, lower(p.type) AS column_type,"
            " CASE WHEN p.pk > 0 THEN 'PRI' ELSE '' END AS column_key"
            " FROM sqlite_master AS m, pragma_table_info(m.name) AS p"
            " WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\')"
        ),
    }


def is_submit(action: str) -> bool:
    """Whether ``action`` is InterCode's ``submit`` (the end of an episode, not SQL)."""
    return action.strip().rstrip(";").strip().lower() == "submit"


def translate_mysql(action: str, *, schema: str = "main") -> str | None:
    """Turn one recorded MySQL-dialect action into the SQLite statement to run, or None.

    The recordings were made against MySQL; the benchmark replays them on SQLite, so the schema
    introspection the agents relied on is mapped to its SQLite equivalent:

    - ``execute[...]`` (ReAct) is unwrapped; trailing semicolons and leading ``SET ...;`` go;
    - ``SHOW TABLES [LIKE p]`` -> a sorted ``sqlite_master`` query; ``SHOW DATABASES`` ->
      ``PRAGMA database_list``; ``DESC t`` / ``DESCRIBE t`` / ``SHOW COLUMNS FROM t`` ->
      ``PRAGMA table_info(t)`` (a ``db.`` qualifier is dropped: there is one database);
      ``SHOW CREATE TABLE t`` -> its ``sqlite_master.sql``; ``SHOW INDEX FROM t`` ->
      ``PRAGMA index_list(t)``;
    - ``information_schema.tables`` / ``.columns`` become CTEs with MySQL's column names, and
      ``DATABASE()`` becomes ``schema`` (InterCode named each MySQL database after the Spider db).

    Anything else SQL-like passes through unchanged: if SQLite rejects it, that error is a
    legitimate observation. None means the action is not a SQL call (``submit``, ``USE db``, a
    bare ``SET``, prose, an unterminated ``execute[``): InterCode never sent those to the database.
    """
    text = action.strip()
    wrapped = _EXECUTE.fullmatch(text)
    if wrapped:
        text = wrapped.group(1).strip()
    elif text.lower().startswith("execute["):
        return None
    while match := _SET_PREFIX.match(text):
        text = text[match.end() :]
    text = text.strip().rstrip(";").strip()
    if not _SQL_VERB.match(text):
        return None

    if match := _SHOW_TABLES.fullmatch(text):
        like = f" AND name LIKE {match.group(1)}" if match.group(1) else ""
        return f"SELECT name FROM sqlite_master WHERE type='table'{like} ORDER BY name"
    if _SHOW_DATABASES.fullmatch(text):
        return "PRAGMA database_list"
    if match := (_DESCRIBE.fullmatch(text) or _SHOW_COLUMNS.fullmatch(text)):
        return f"PRAGMA table_info({match.group(1)})"
    if match := _SHOW_CREATE.fullmatch(text):
        return f"SELECT name, sql FROM sqlite_master WHERE name = '{match.group(1)}' COLLATE NOCASE"
    if match := _SHOW_INDEX.fullmatch(text):
        return f"PRAGMA index_list({match.group(1)})"

    views = {m.group(1).lower() for m in _INFO_SCHEMA.finditer(text)}
    if views:
        text = _INFO_SCHEMA.sub(lambda m: f"information_schema_{m.group(1).lower()}", text)
        text = _DATABASE_FN.sub("'" + schema.replace("'", "''") + "'", text)
        ctes = ", ".join(cte for name, cte in _info_schema_ctes(schema).items() if name in views)
        head = re.match(r"WITH(\s+RECURSIVE)?\s+", text, re.I)
        text = (
            f"{text[: head.end()]}{ctes}, {text[head.end() :]}" if head else f"WITH {ctes} {text}"
        )
    return text
