"""Command line: `python -m mnist_pairs {fetch-data,verify-data,train,study} …`

    python -m mnist_pairs fetch-data
    python -m mnist_pairs verify-data                 # exit 0 only if all four md5 match
    python -m mnist_pairs train --params params/seed_siamese.yaml --set epochs=3 --set seed=1
    python -m mnist_pairs train --resume experiments/siamese_20261127_101500
    python -m mnist_pairs study                       # notebooks 01→02→03 for both seed configs
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from .config import Config, ConfigError, load_config, parse_override


def _defaults_table() -> str:
    lines = ["config keys (default) — set with --set key=value:"]
    for f in dataclasses.fields(Config):
        lines.append(f"  {f.name:<20} {f.default!r}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mnist_pairs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("fetch-data", "obtain and verify the four MNIST IDX files"),
                        ("verify-data", "check the four MNIST IDX files against their published md5")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--root", default=None, help="data root (default: $MNIST_PAIRS_DATA or <project>/data)")
    t = sub.add_parser("train", help="train one model; prints the run folder",
                       epilog=_defaults_table(), formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--params", default=None, help="YAML params file (default: none, i.e. the seed's settings)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (repeatable)")
    t.add_argument("--resume", default=None, metavar="RUN", help="continue the run folder RUN from its last.pt")
    s = sub.add_parser("study", help="the full study: notebooks 01→02→03 for both seed configs, then the report")
    s.add_argument("--params", nargs="+", default=["params/seed_siamese.yaml", "params/seed_concat.yaml"])
    s.add_argument("--report-only", action="store_true", help="regenerate the report from existing runs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("fetch-data", "verify-data"):
            from .data import ensure_mnist, verify_mnist

            if args.command == "fetch-data":
                print(ensure_mnist(args.root))
            status = verify_mnist(args.root)
            for name, s in status.items():
                print(f"{s:<8} {name}")
            return 0 if all(s == "ok" for s in status.values()) else 1
        if args.command == "train":
            from .train import fit

            overrides = dict(parse_override(o) for o in args.overrides)
            if args.resume:
                cfg = load_config(f"{args.resume}/config.yaml", **overrides) if overrides else None
                print(fit(cfg, resume=args.resume))
            else:
                print(fit(load_config(args.params, **overrides)))
            return 0
        if args.command == "study":
            from .study import run_study

            run_study(args.params, report_only=args.report_only)
            return 0
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1
