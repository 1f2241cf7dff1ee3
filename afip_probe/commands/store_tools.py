"""`afip-probe verify STORE` and `afip-probe merge OUT SHARD...`: check and join trace stores."""

from __future__ import annotations

import argparse



def register(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("verify", help="check that every sample of a trace store reads back whole")
    v.add_argument("store", help="trace store folder")
    v.add_argument("--fix", action="store_true", help="remove the rows of damaged samples so --resume redoes them")
    v.set_defaults(func=run_verify)

    m = sub.add_parser("merge", help="merge shard stores (trace --shard i/N) into one store")
    m.add_argument("out", help="new store folder")
    m.add_argument("shards", nargs="+", help="shard store folders")
    m.set_defaults(func=run_merge)


def run_verify(args: argparse.Namespace) -> int:
    from ..store.verify import verify

    report = verify(args.store, fix=args.fix)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def run_merge(args: argparse.Namespace) -> int:
    from ..store.merge import merge

    n = merge(args.out, args.shards)
    print(f"merged {n} samples from {len(args.shards)} shards -> {args.out}")
    return 0
