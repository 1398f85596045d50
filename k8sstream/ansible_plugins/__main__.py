"""``python -m k8sstream.ansible_plugins path`` prints the directory for
``ANSIBLE_CONNECTION_PLUGINS``; ``... collection DIR`` writes the collection under ``DIR``."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from . import connection_plugin_dir, write_collection


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k8sstream.ansible_plugins")
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("path", help="print the directory for ANSIBLE_CONNECTION_PLUGINS")
    collection = sub.add_parser("collection", help="write the k8sstream.kubernetes collection")
    collection.add_argument("directory", help="becomes an ANSIBLE_COLLECTIONS_PATH entry")
    args = parser.parse_args(argv)
    if args.verb == "path":
        print(connection_plugin_dir())
    else:
        print(write_collection(args.directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
