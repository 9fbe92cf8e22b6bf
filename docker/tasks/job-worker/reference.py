"""Expected job results of task job-worker."""
import hashlib


def result(op, path):
    with open(path, "rb") as fh:
        data = fh.read()
    if op == "sha256":
        return hashlib.sha256(data).hexdigest()
    text = data.decode("utf-8")
    if op == "wordcount":
        return len(text.split())
    return len(text.splitlines())
