"""textkit: small text utilities."""

__version__ = "1.2.0"

from textkit.slug import slugify
from textkit.stats import word_stats
from textkit.wrap import wrap_paragraphs

__all__ = ["__version__", "slugify", "word_stats", "wrap_paragraphs"]
