import textwrap


def wrap_paragraphs(text: str, width: int = 72) -> str:
    """Re-wraps each blank-line separated paragraph to `width` columns."""
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
    return "\n\n".join(textwrap.fill(p, width) for p in paragraphs if p) + "\n"
