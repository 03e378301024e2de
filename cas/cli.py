"""The ``cas`` command line (more commands arrive with the CLI issue)."""

from __future__ import annotations

import argparse
import sys

import cas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cas", description="A content-addressed artifact store.")
    parser.add_argument("--version", action="version", version=f"cas {cas.__version__}")
    parser.add_argument("--store", help="store URL or path (default: $CAS_STORE, else the nearest .cas)")
    sub = parser.add_subparsers(dest="command")
    init = sub.add_parser("init", help="create a store")
    init.add_argument("url", nargs="?", default=None)
    put = sub.add_parser("put", help="store a file or folder")
    put.add_argument("path")
    put.add_argument("--name")
    get = sub.add_parser("get", help="restore an artifact's files")
    get.add_argument("ref")
    get.add_argument("-o", "--output", required=True)
    sub.add_parser("demo", help="show what the store does, on a scratch store")
    args = parser.parse_args(argv)
    try:
        if args.command == "init":
            with cas.open(args.url or args.store or ".cas") as store:
                print(f"initialized cas store at {store.url}")
        elif args.command == "put":
            from pathlib import Path

            with cas.open(args.store) as store:
                ref = store.put(Path(args.path), args.name)
                print(f"{ref} {ref.short}")
        elif args.command == "get":
            with cas.open(args.store, create=False) as store:
                print(store.get(args.ref, path=args.output))
        elif args.command == "demo":
            from cas import demo

            demo.run()
        else:
            parser.print_help()
            return 2
    except cas.CasError as exc:
        print(f"cas: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
