import argparse
import sys

from textkit import __version__
from textkit.slug import slugify
from textkit.stats import word_stats
from textkit.wrap import wrap_paragraphs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="textkit")
    parser.add_argument("--version", action="version", version=f"textkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_slug = sub.add_parser("slug", help="print the slug of TEXT")
    p_slug.add_argument("text", nargs="+")
    p_wrap = sub.add_parser("wrap", help="re-wrap the paragraphs of FILE")
    p_wrap.add_argument("--width", type=int, default=72)
    p_wrap.add_argument("file")
    p_stats = sub.add_parser("stats", help="word statistics of FILE")
    p_stats.add_argument("file")
    args = parser.parse_args(argv)

    if args.command == "slug":
        print(slugify(" ".join(args.text)))
    elif args.command == "wrap":
        with open(args.file, encoding="utf-8") as fh:
            sys.stdout.write(wrap_paragraphs(fh.read(), args.width))
    else:
        with open(args.file, encoding="utf-8") as fh:
            stats = word_stats(fh.read())
        print(f"words {stats['words']}")
        print(f"distinct {stats['distinct']}")
        for word, count in stats["top"]:
            print(f"top {word} {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
