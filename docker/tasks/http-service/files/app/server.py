#!/usr/bin/env python3
"""Inventory HTTP service: a JSON API over the catalogue in items.json (standard library only).

Endpoints:
    GET /health                       {"status": "ok", "items": N}
    GET /items?category=C&limit=N     items, optionally of one category (default limit 20)
    GET /items/<id>                   one item; 404 with {"error": ...} if there is none
    GET /stats                        {"count", "total_value", "categories"}; total_value is the
                                      stock value, sum of price * quantity, rounded to cents
Configuration: config.ini next to this file ([server] host, port, data).
"""

from __future__ import annotations

import configparser
import json
import os
import sys
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HERE = os.path.dirname(os.path.abspath(__file__))


def load_config() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser()
    if not cfg.read(os.path.join(HERE, "config.ini")):
        sys.exit("config.ini not found")
    return cfg["server"]


class Catalogue:
    def __init__(self, path: str) -> None:
        started = time.monotonic()
        with open(path, encoding="utf-8") as fh:
            items = json.load(fh)
        self.by_id = {}
        self.by_category: dict[str, list[dict]] = {}
        for item in items:
            missing = {"id", "name", "category", "price", "quantity"} - item.keys()
            if missing:
                raise ValueError(f"item {item.get('id')} lacks {sorted(missing)}")
            self.by_id[item["id"]] = item
            self.by_category.setdefault(item["category"], []).append(item)
        # Consistency pass over the catalogue before serving (the slow part of the start-up).
        for _ in range(12):
            Counter(json.dumps(item, sort_keys=True)[:24] for item in items)
        self.load_seconds = time.monotonic() - started

    def stats(self) -> dict[str, object]:
        total = sum(item["price"] for item in self.by_id.values())
        return {
            "count": len(self.by_id),
            "total_value": round(total, 2),
            "categories": {c: len(v) for c, v in sorted(self.by_category.items())},
        }


class Handler(BaseHTTPRequestHandler):
    catalogue: Catalogue

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    def send_json(self, status: int, body: object) -> None:
        data = json.dumps(body, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        cat = self.catalogue
        if parts == ["health"]:
            self.send_json(200, {"status": "ok", "items": len(cat.by_id)})
        elif parts == ["stats"]:
            self.send_json(200, cat.stats())
        elif parts == ["items"]:
            limit = int(query.get("limit", ["20"])[0])
            if "category" in query:
                items = cat.by_category.get(query["category"][0], [])
            else:
                items = list(cat.by_id.values())
            self.send_json(200, items[:limit])
        elif len(parts) == 2 and parts[0] == "items" and parts[1].isdigit():
            self.send_json(200, cat.by_id[int(parts[1])])
        else:
            self.send_json(404, {"error": f"no route for {url.path}"})


def main() -> None:
    cfg = load_config()
    data = os.path.join(HERE, cfg.get("data", "items.json"))
    Handler.catalogue = Catalogue(data)
    host, port = cfg.get("host", "127.0.0.1"), cfg.getint("port")
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"loaded {len(Handler.catalogue.by_id)} items; serving on http://{host}:{port}",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
