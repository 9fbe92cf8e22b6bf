import re
import unicodedata


def slugify(text: str, sep: str = "-") -> str:
    """'Hello, World!' -> 'hello-world'; accents are folded to ASCII."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    words = re.findall(r"[a-z0-9]+", text.lower())
    return sep.join(words)
