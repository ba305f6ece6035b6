"""`headnode cache list|warm|evict|pin|unpin`: the hosts' image caches (engine.transfers.cache).

SOURCE is `host:path`, a URL, or an absolute path on the front end. An entry is named by its source, its checksum
(`cksum:123`) or its key (`cksum-123`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from engine.cli.context import CliContext, format_table
from engine.cli.fanout import FanoutProgress, dry_run_warm, follow_warm
from engine.errors import InputError, OperationError, Problem

if TYPE_CHECKING:
    from engine.transfers.actions import Transfers
    from engine.transfers.cache.inventory import CacheReport
    from engine.transfers.cache.layout import Entry


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("cache", parents=[common], help="the hosts' image caches")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", parser_class=type(p))

    listing = verbs.add_parser("list", parents=[common], help="what each host's cache holds, its budget and usage")
    listing.add_argument("host", nargs="?", metavar="HOST", help="one host (default: every host with a cache)")
    listing.set_defaults(handler=run_list)

    warm = verbs.add_parser("warm", parents=[common], help="put an image into hosts' caches ahead of a deploy")
    warm.add_argument("source", metavar="SOURCE", help="host:path, a URL, or an absolute path on the front end")
    warm.add_argument("hosts", nargs="+", metavar="HOST")
    warm.add_argument("--dry-run", action="store_true", help="the fan-out's plan and estimate; nothing is sent")
    warm.add_argument("--bwlimit", type=float, metavar="MIB_S", help="what the head sends in all, MiB/s (BWLIMIT)")
    warm.add_argument(
        "--host-bwlimit", type=float, metavar="MIB_S", help="what each host receives and passes on (HOST_BWLIMIT)"
    )
    warm.set_defaults(handler=run_warm)

    evict = verbs.add_parser("evict", parents=[common], help="remove entries from a host's cache")
    evict.add_argument("host", metavar="HOST")
    evict.add_argument("what", nargs="?", metavar="SOURCE|CHECKSUM", help="one entry (default: all but pinned)")
    evict.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    evict.set_defaults(handler=run_evict)

    for verb, helptext in (("pin", "keep an entry through evictions"), ("unpin", "let an entry be evicted again")):
        parser = verbs.add_parser(verb, parents=[common], help=helptext)
        parser.add_argument("host", metavar="HOST")
        parser.add_argument("what", metavar="SOURCE|CHECKSUM")
        parser.set_defaults(handler=run_pin, pinned=verb == "pin")


@contextlib.contextmanager
def _transfers(ctx: CliContext) -> Iterator[Transfers]:
    """The home's transfers for one command, their SSH connections closed when it is done."""
    from engine.transfers.actions import Transfers
    from engine.transfers.ssh import SshPool

    transfers = Transfers(ctx.home, SshPool())
    try:
        yield transfers
    finally:
        transfers.pool.close()


def entry_json(entry: Entry) -> dict[str, Any]:
    s = entry.sidecar
    return {
        "host": entry.host,
        "source": s.source,
        "size": s.size,
        "checksum": s.checksum,
        "key": entry.key,
        "path": entry.path,
        "fetched": s.fetched,
        "last_used": s.last_used,
        "pinned": s.pinned,
        "busy": entry.busy,
    }


def report_json(report: CacheReport) -> dict[str, Any]:
    listing = report.listing
    return {
        "host": report.host,
        "caches": report.caches,
        "budget_rule": report.budget_rule,
        "directory": listing.directory if listing else None,
        "budget": listing.budget if listing else None,
        "usage": listing.usage if listing else None,
        "free": listing.free if listing else None,
        "entries": [entry_json(e) for e in listing.entries] if listing else [],
        "untrusted": listing.untrusted if listing else [],
        "error": report.error,
    }


def run_list(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.presentation import cache_summary, size_text, time_text
    from engine.transfers.cache.inventory import cache_reports

    with _transfers(ctx) as transfers:
        reports = cache_reports(transfers, [args.host] if args.host else None)
    if ctx.json:
        ctx.emit_json(
            {"hosts": [report_json(r) for r in reports], "entries": [entry_json(e) for r in reports for e in _of(r)]}
        )
    else:
        for report in reports:
            print(cache_summary(report))
        rows = [
            (
                e.host,
                e.sidecar.source,
                size_text(e.sidecar.size),
                e.sidecar.checksum,
                time_text(e.sidecar.last_used),
                "yes" if e.sidecar.pinned else "",
                e.path,
            )
            for r in reports
            for e in _of(r)
        ]
        if rows:
            headers = ("HOST", "SOURCE", "SIZE", "CHECKSUM", "LAST_USED", "PINNED", "PATH")
            sys.stdout.write(format_table(headers, rows, right=("SIZE",)))
    failed = [r for r in reports if r.error]
    if failed:
        raise OperationError("; ".join(f"{r.host}: {r.error}" for r in failed))
    return 0


def _of(report: CacheReport) -> list[Entry]:
    return report.listing.entries if report.listing else []


def run_warm(args: argparse.Namespace, ctx: CliContext) -> int:
    """The service runs the warm (it runs every transfer: `headnode transfers` and the console's Transfers screen
    show a fan-out as one run with a line per host); this command follows it."""
    from engine.language.script import source_argument
    from engine.presentation import size_text

    source = source_argument(args.source, ctx.home.config.frontend_name)
    for flag, value in (("--bwlimit", args.bwlimit), ("--host-bwlimit", args.host_bwlimit)):
        if value is not None and value <= 0:
            raise InputError(Problem(f"{flag} must be a rate in MiB/s above 0, not {value:g}"))
    if args.dry_run:
        with _transfers(ctx) as transfers:
            return dry_run_warm(ctx, transfers, source, args)
    request = {"source": args.source, "hosts": args.hosts, "head_mib": args.bwlimit, "host_mib": args.host_bwlimit}
    outcomes = follow_warm(ctx, request)
    if ctx.json:
        FanoutProgress.document(outcomes)
    else:
        for o in outcomes:
            key, sent = o["key"], size_text(o["sent"])
            print(f"{o['host']}: {o['state']}" + (f" {key}, {sent} sent" if key else f": {o['detail']}"))
    failed = [o["host"] for o in outcomes if o["state"] == "failed"]
    if failed:
        raise OperationError("the image is not in every host's cache: " + ", ".join(failed))
    return 0


def run_evict(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.presentation import size_text

    with _transfers(ctx) as transfers:
        outcome = ctx.changes.evict_cache(transfers, args.host, args.what, args.dry_run)
    if ctx.json:
        ctx.emit_json(
            {
                "host": args.host,
                "dry_run": args.dry_run,
                "evicted": [entry_json(e) for e in outcome.evicted],
                "kept": [{**entry_json(e), "why": why} for e, why in outcome.kept],
            }
        )
        return 0
    verb = "would evict" if args.dry_run else "evicted"
    for entry in outcome.evicted:
        print(f"{verb} {entry.key} {entry.sidecar.source} ({size_text(entry.sidecar.size)})")
    for entry, why in outcome.kept:
        print(f"kept {entry.key} {entry.sidecar.source}: {why}")
    total = sum(e.sidecar.size for e in outcome.evicted)
    print(f"{args.host}: {verb} {len(outcome.evicted)} entries, {size_text(total)}")
    return 0


def run_pin(args: argparse.Namespace, ctx: CliContext) -> int:
    with _transfers(ctx) as transfers:
        done = ctx.changes.pin_cache(transfers, args.host, args.what, args.pinned)
    verb = "pinned" if args.pinned else "unpinned"
    if ctx.json:
        ctx.emit_json([entry_json(e) for e in done])
    else:
        for entry in done:
            print(f"{verb} {entry.key} {entry.sidecar.source} on {args.host}")
    return 0
