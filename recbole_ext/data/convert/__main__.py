"""``python -m recbole_ext.data.convert SOURCE --input RAW_DIR [--output OUT_DIR] [filters...]``."""

import sys

from recbole_ext.data.convert import build_parser, get_source, known_sources, run_conversion
from recbole_ext.data.convert.common import MissingRawFileError, RawFormatError


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print(__doc__.strip())
        print("sources (amazon-<category> and goodreads-<genre> accept any category/genre):")
        for name, source in sorted(known_sources().items()):
            print(f"  {name:22s} {source.description} Needs {source.needs}.")
        return 0
    source = get_source(argv[0])
    if source is None:
        print(f"error: unknown source {argv[0]!r}; known: {', '.join(sorted(known_sources()))}",
              file=sys.stderr)
        return 2
    args = build_parser(source).parse_args(argv[1:])
    try:
        run_conversion(source, args)
    except (MissingRawFileError, RawFormatError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
