"""`headnode host create|list|show|delete|test`: the hosts VMs run on, like OpenNebula's onehost."""

from __future__ import annotations

import argparse
import sys

from engine.cli.context import CliContext, format_table
from engine.errors import OperationError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("host", parents=[common], help="hosts and how files reach them")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", parser_class=type(p))

    create = verbs.add_parser("create", parents=[common], help="add a host", description="Add a host record.")
    create.add_argument("name")
    create.add_argument("--address", help="address or ~/.ssh/config name to connect to (default: NAME)")
    create.add_argument("--port", help="SSH port (default: from ~/.ssh/config, else 22)")
    create.add_argument("--user", help="SSH user (default: from ~/.ssh/config, else yours)")
    create.add_argument("--identity", metavar="FILE", help="SSH private key (default: ssh-agent and ~/.ssh keys)")
    create.add_argument("--driver", required=True, help="transfer driver: shared, ssh, dummy or one in <home>/tm/")
    create.add_argument("--vm-dir", required=True, metavar="DIR", help="the host's VM directory (absolute)")
    create.add_argument("--max-transfers", metavar="N", help="concurrent transfers (default 4)")
    create.add_argument(
        "--cache-dir", metavar="DIR", help="the host's image cache (absolute; default: .headnode-cache in its VM dir)"
    )
    create.add_argument(
        "--cache-max-mb", metavar="MB", help="the cache's budget (default: the configuration's; 0: no cache)"
    )
    create.add_argument("--compress", metavar="zstd|no", help="compress streams on its link (default: the driver's)")
    create.set_defaults(handler=run_create)

    listing = verbs.add_parser("list", parents=[common], help="list hosts")
    listing.set_defaults(handler=run_list)

    show = verbs.add_parser("show", parents=[common], help="show one host")
    show.add_argument("name")
    show.set_defaults(handler=run_show)
    delete = verbs.add_parser("delete", parents=[common], help="delete a host record (refused while VMs are on it)")
    delete.add_argument("name")
    delete.add_argument("--force", action="store_true", help="delete it even with VMs on it")
    delete.set_defaults(handler=run_delete)

    test = verbs.add_parser(
        "test",
        parents=[common],
        help="connect, check the VM directory is writable, report free space and round-trip time",
    )
    test.add_argument("name")
    test.add_argument("--accept-new-key", action="store_true", help="record the host's key if known_hosts lacks it")
    test.set_defaults(handler=run_test)


def _hosts(ctx: CliContext):
    from engine.transfers.hosts import Hosts

    return Hosts(ctx.home)


def run_create(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.transfers.hosts import INPUT_FIELDS

    created = ctx.changes.create_host(_hosts(ctx), {field: getattr(args, field) for field in INPUT_FIELDS})
    if ctx.json:
        ctx.emit_json(created.record())
    else:
        print(f"host {created.name} created")
    return 0


def run_list(args: argparse.Namespace, ctx: CliContext) -> int:
    hosts = _hosts(ctx).list()
    if ctx.json:
        ctx.emit_json([h.record() for h in hosts])
        return 0
    rows = [
        (h.name, h.driver, h.address or h.name, h.port or "", h.user or "", h.max_transfers, h.vm_dir) for h in hosts
    ]
    sys.stdout.write(format_table(("NAME", "DRIVER", "ADDRESS", "PORT", "USER", "MAX", "VM_DIR"), rows, right=("MAX",)))
    return 0


def run_show(args: argparse.Namespace, ctx: CliContext) -> int:
    host = _hosts(ctx).get(args.name)
    if ctx.json:
        ctx.emit_json(host.record())
    else:
        for key, value in host.record().items():
            print(f"{key.upper():14} {'' if value is None else value}")
    return 0


def run_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.core import Engine

    with Engine(ctx.home) as engine:
        ctx.changes.delete_host(engine.vms, args.name, force=args.force)
    if not ctx.json:
        print(f"host {args.name} deleted")
    else:
        ctx.emit_json({"deleted": args.name})
    return 0


def run_test(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.presentation import host_test_lines
    from engine.transfers.host_check import check_host

    hosts = _hosts(ctx)
    report = check_host(ctx.home, hosts.resolve(args.name), accept_new_key=args.accept_new_key)
    if ctx.json:
        ctx.emit_json(report.as_json())
    else:
        for line in host_test_lines(report):
            print(line)
    if not report.ok:
        raise OperationError(report.error or "failed")
    return 0
