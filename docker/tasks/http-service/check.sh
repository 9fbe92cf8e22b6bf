#!/usr/bin/env bash
# Checker of task http-service: queries the service that must be running on 127.0.0.1:8080. Four
# equal parts: /health, /stats total_value, 404 for an unknown item, an existing item. Prints the
# score in [0,1] on its last line, always exits 0.
set -u
python3 - <<'PY'
import json
import urllib.error
import urllib.request

BASE = "http://127.0.0.1:8080"


def get(path):
    try:
        with urllib.request.urlopen(BASE + path, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (OSError, ValueError) as exc:
        return None, str(exc)


with open("/task/items.json") as fh:
    items = json.load(fh)
want_total = round(sum(i["price"] * i["quantity"] for i in items), 2)
parts = []
status, body = get("/health")
parts.append(status == 200 and isinstance(body, dict) and body.get("status") == "ok")
print("health:", "ok" if parts[-1] else f"no service on 8080 ({status}, {body})")
status, body = get("/stats")
parts.append(status == 200 and isinstance(body, dict)
             and abs(float(body.get("total_value", -1)) - want_total) <= 0.011)
print("stats:", "ok" if parts[-1] else "wrong total_value")
status, body = get("/items/987654")
parts.append(status == 404 and isinstance(body, dict) and "error" in body)
print("missing item:", "ok" if parts[-1] else f"answer {status}")
status, body = get("/items/17")
parts.append(status == 200 and body == items[16])
print("item 17:", "ok" if parts[-1] else f"answer {status}")
print(round(sum(parts) / len(parts), 3))
PY
