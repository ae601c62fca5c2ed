"""The `assetlib` command: configuration, database checks and maintenance."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from assetlib import __version__
from assetlib.config import ConfigError, Settings, load_settings
from assetlib.logs import configure_logging

log = logging.getLogger("assetlib.cli")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.params)


def cmd_config(args: argparse.Namespace) -> int:
    """Print the resolved configuration (secrets masked); exit 2 with one line per invalid value."""
    settings = _settings(args)
    values = settings.masked()
    values["database"] = (
        "embedded" if settings.embedded else f"external {settings.db_host}:{settings.db_port}"
    )
    if args.json:
        print(json.dumps(values, indent=2, default=str))
    else:
        width = max(len(k) for k in values)
        for key, value in values.items():
            print(f"{key:<{width}}  {'(unset)' if value is None else value}")
    return 0


def cmd_db_check(args: argparse.Namespace) -> int:
    """Connect (starting the embedded server if needed), migrate, and report versions, tables and indexes."""
    from assetlib.store.db import Database
    from assetlib.store.report import database_report, format_report

    settings = _settings(args)
    with Database.open(settings) as db, db.connection() as conn:
        report = database_report(conn, db.where)
    print(format_report(report))
    return 1 if report.problems() else 0


def cmd_db_stop(args: argparse.Namespace) -> int:
    """Stop the embedded PostgreSQL server if it is running."""
    from assetlib.store.db import stop_embedded

    settings = _settings(args)
    if not settings.embedded:
        print(f"DB_HOST is set ({settings.db_host}): an external server is not assetlib's to stop")
        return 1
    stopped = stop_embedded(settings.pgdata)
    print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def cmd_db_drop_encoder(args: argparse.Namespace) -> int:
    """Drop every stored vector of one encoder (its tables and load records)."""
    from assetlib.store.db import Database
    from assetlib.store.schema import drop_encoder

    settings = _settings(args)
    with Database.open(settings) as db, db.connection() as conn:
        dropped = drop_encoder(conn, args.encoder)
    print(f"dropped {args.encoder}" if dropped else f"no stored vectors for {args.encoder}")
    return 0 if dropped else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="assetlib",
        description="Search 3D asset libraries by text and image (SigLIP vs Qwen, PostgreSQL + pgvector).",
    )
    parser.add_argument("--version", action="version", version=f"assetlib {__version__}")
    parser.add_argument("--params", help="params YAML file whose settings override the environment")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        parent: argparse._SubParsersAction, name: str, func: Callable, **kw: object
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=(func.__doc__ or "").splitlines()[0], **kw)
        p.set_defaults(func=func)
        return p

    config = add(sub, "config", cmd_config)
    config.add_argument("--json", action="store_true", help="print JSON instead of aligned text")

    db = sub.add_parser("db", help="database: check, stop, drop an encoder's vectors")
    db_sub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    add(db_sub, "check", cmd_db_check)
    add(db_sub, "stop", cmd_db_stop)
    drop = add(db_sub, "drop-encoder", cmd_db_drop_encoder)
    drop.add_argument("encoder", help="encoder name as stored, e.g. siglip:demo-v1")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `assetlib` console command."""
    from assetlib.store.db import DatabaseError

    args = build_parser().parse_args(argv)
    try:
        level = args.log_level or _settings(args).log_level
        configure_logging(level.upper())
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"assetlib: {exc}", file=sys.stderr)
        return 2
    except DatabaseError as exc:
        print(f"assetlib: database error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("assetlib: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
