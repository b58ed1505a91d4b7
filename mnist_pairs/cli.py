"""Command line: `python -m mnist_pairs <command> …` (`--help` lists them; the most used below)

    python -m mnist_pairs fetch-data
    python -m mnist_pairs verify-data                 # exit 0 only if all four md5 match
    python -m mnist_pairs train --params params/seed_siamese.yaml --set epochs=3 --set seed=1
    python -m mnist_pairs train --resume experiments/siamese_20261127_101500
    python -m mnist_pairs sweep --params params/seed_siamese.yaml --protocol validation --seeds 0-4
    python -m mnist_pairs summarize                   # reports/summary.json from the sweeps, the report's figures
    python -m mnist_pairs calibrate                   # reports/calibration.json (temperature scaling)
    python -m mnist_pairs readme                      # reports/tables.md and the README's headline lines
    python -m mnist_pairs study                       # notebooks 01→02→03, then the report
    python -m mnist_pairs confirm-levers              # TTA and ensemble on the confirmation runs
    python -m mnist_pairs publish-improved            # the best confirmation run on seed 13 -> reports/runs/improved
    python -m mnist_pairs robustness                  # the published models on perturbed pictures -> reports/robustness.json
    python -m mnist_pairs demo                        # draw two digits in a page (Voila, 127.0.0.1, token)
    python -m mnist_pairs study --smoke               # the same with tiny settings, on a scratch copy of reports/
    python -m mnist_pairs export reports/runs/seed_siamese --onnx out/onnx
    python -m mnist_pairs compare a.png b.png [--onnx out/onnx] [--json]
    python -m mnist_pairs compare query.png --gallery photos/
    python -m mnist_pairs compare a.png b.png --ensemble    # the published ensemble (mean of its members' logits)

Bad input (a params file, an override, a damaged file, a missing run) prints one line
`error: …` and exits with code 2, before anything is written.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from .config import Config, load_config
from .paramfile import parse_override
from .errors import ConfigError, UserError
from .study.pipeline import STUDY_PARAMS


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
    t.add_argument("--resume", default=None, metavar="RUN",
                   help="continue the run folder RUN from its last.pt (--set may change epochs, device, precision)")
    t.add_argument("--resume-anyway", action="store_true",
                   help="resume even under another thread count, precision or CPU kernel set than last.pt's "
                        "(the run then differs from an uninterrupted one; env.json records the change)")
    w = sub.add_parser("sweep", help="one run per training seed, on Optuna (resumable, several workers)")
    w.add_argument("--params", required=True, help="YAML params file")
    w.add_argument("--protocol", choices=("validation", "test"), default=None,
                   help="selection protocol (default: the params file's)")
    w.add_argument("--seeds", default="0-4", help="training seeds: 0-4 or 1,5,9 (default 0-4)")
    w.add_argument("--workers", type=int, default=1, help="local worker processes (0: only enqueue the seeds)")
    w.add_argument("--storage", default=None,
                   help="Optuna RDB URL shared by workers on several nodes (default: a journal file under experiments/sweeps/)")
    for s in (t, w):
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config key (repeatable)")
    sub.add_parser("summarize", help="write reports/summary.json from the sweeps' run folders, the report figures, reports/tables.md and the README headline")
    sub.add_parser("calibrate", help="ECE before/after temperature scaling (fitted on validation) over the sweep's seeds")
    sub.add_parser("readme", help="re-render reports/tables.md and the README's headline lines from reports/ (benchmarks, summary)")
    e = sub.add_parser("export", help="ONNX graphs of a run's selected model (encoder, head), with a parity check")
    e.add_argument("run", nargs="?", default=None,
                   help="a finished run folder (Siamese model; default: the best published model, "
                        "reports/runs/improved, else reports/runs/seed_siamese)")
    e.add_argument("--onnx", required=True, metavar="DIR", help="folder for encoder.onnx, head.onnx, meta.json")
    e.add_argument("--pair", action="store_true", help="also write pair.onnx (both images in, one logit out)")
    e.add_argument("--ensemble", nargs="?", const="", default=None, metavar="DIR",
                   help="export an ensemble (default DIR: the published one, reports/runs/ensemble) instead of a run")
    c = sub.add_parser("compare", help="do two pictures show the same digit? (any format Pillow reads)")
    c.add_argument("images", nargs="+", metavar="IMAGE", help="two pictures, or one query with --gallery")
    c.add_argument("--gallery", metavar="DIR", help="rank every picture in DIR against the query")
    c.add_argument("--top", type=int, default=5, help="gallery matches to print (default 5)")
    c.add_argument("--run", default=None, help="run folder (default: the best published model, "
                                                 "reports/runs/improved, else reports/runs/seed_siamese)")
    c.add_argument("--onnx", default=None, metavar="DIR", help="score with an ONNX export instead of a run")
    c.add_argument("--ensemble", nargs="?", const="", default=None, metavar="DIR",
                   help="score with an ensemble: its members' mean logit (default DIR: the published one, "
                        "reports/runs/ensemble)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    pe = sub.add_parser("publish-ensemble", help="several finished Siamese runs as one model (their mean logit), "
                        "threshold chosen on their validation pairs -> DIR/ensemble.json and the members' files")
    pe.add_argument("runs", nargs="+", metavar="RUN", help="finished run folders selected on the same pairs")
    pe.add_argument("--out", default=None, metavar="DIR", help="default: reports/runs/ensemble")
    sub.add_parser("confirm-levers", help="TTA and the 5-seed ensemble on the improved model's confirmation runs "
                   "(experiments/sweeps/confirm_improved__validation) -> reports/confirmation_levers.json")
    r = sub.add_parser("robustness", help="the published models on held-out pairs drawn as pictures and perturbed "
                       "(thick/thin strokes, rotation, scale, placement, inversion, low resolution, JPEG, mouse strokes) "
                       "-> reports/robustness.json")
    r.add_argument("--runs", nargs="+", default=None, help="run folders (default: reports/runs/seed_siamese reports/runs/improved)")
    r.add_argument("--pairs", type=int, default=None, help="score only the first N held-out pairs (default: all)")
    r.add_argument("--stale", action="store_true", help="measure only the runs whose best.pt (sha256) is not "
                   "the file reports/robustness.json measured, keep the others' rows (make study)")
    d = sub.add_parser("demo", help="serve notebooks/04_draw (draw two digits, see whether they match) as a page "
                       "with Voila on 127.0.0.1, behind a token")
    d.add_argument("--port", type=int, default=8866)
    d.add_argument("--token", default=None, help="the page's token (default: a new random one, printed)")
    sub.add_parser("publish-improved", help="publish the plan's model, the `best` confirmation run on training seed 13, "
                   "as reports/runs/improved/ (notebook 03; make study trains the same model), then rewrite the report")
    s = sub.add_parser("study", help="the full study: notebooks 01→02→03 for each params file, then the report")
    s.add_argument("--params", nargs="+", default=None,
                   help="params files to train and publish (default: " + " ".join(STUDY_PARAMS) + ")")
    s.add_argument("--report-only", action="store_true", help="regenerate the report from published runs")
    s.add_argument("--smoke", action="store_true",
                   help="the same study with tiny settings on a scratch copy of reports/ (make study-smoke); "
                        "reports/ is never written")
    s.add_argument("--scratch", default=None, metavar="DIR", help="with --smoke: an empty folder (default: a new temporary one)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the run folder keeps its last finished epoch (resume it with --resume)", file=sys.stderr)
        return 130


def _run(args) -> int:
    if args.command in ("fetch-data", "verify-data"):
        from .mnist import ensure_mnist, verify_mnist

        if args.command == "fetch-data":
            print(ensure_mnist(args.root))
        status = verify_mnist(args.root)
        for name, s in status.items():
            print(f"{s:<8} {name}")
        return 0 if all(s == "ok" for s in status.values()) else 1
    if args.command == "train":
        from .train import fit

        overrides = dict(parse_override(o) for o in args.overrides)
        if args.resume_anyway and not args.resume:
            raise ConfigError("--resume-anyway needs --resume RUN")
        run = fit(resume=args.resume, overrides=overrides, resume_anyway=args.resume_anyway) if args.resume else \
            fit(load_config(args.params, **overrides))
        print(run.dir)
        return 0
    if args.command == "sweep":
        from .study.sweep import SweepSpec, parse_seeds, sweep

        overrides = tuple(parse_override(o) for o in args.overrides)
        protocol = args.protocol or load_config(args.params, **dict(overrides)).protocol
        spec = SweepSpec(args.params, protocol, overrides, args.storage)
        runs = sweep(spec, parse_seeds(args.seeds), args.workers)
        for r in runs:
            print(r.dir)
        return 0
    if args.command == "summarize":
        from .study.figures import write_report_figures
        from .study.report import update_readme
        from .study.summary import summarize

        s = summarize()
        for name, g in s["groups"].items():
            print(f"{name}: {g['n_runs']} runs, held-out acc {g['mean']['heldout_acc']:.4f}")
        for path in write_report_figures():
            print(path)
        update_readme()
        return 0
    if args.command == "calibrate":
        from .study.calibration import calibrate
        from .study.figures import write_report_figures

        c = calibrate()
        for path in write_report_figures():
            print(path)
        m = c["mean"]
        print(f"{c['n_runs']} runs: T {m['temperature']:.3f}; held-out ECE {m['heldout_ece']:.4f} -> "
              f"{m['heldout_ece_scaled']:.4f}; test ECE {m['test_ece']:.4f} -> {m['test_ece_scaled']:.4f}")
        return 0
    if args.command == "readme":
        from .study.report import update_readme

        print(update_readme())
        return 0
    if args.command == "export":
        from .data import load_data
        from .serve.deploy import default_run, export_onnx, parity
        from .runs import Run

        if args.ensemble is not None:
            from .serve.ensemble import EnsembleScorer, export_ensemble

            if args.run:
                raise ConfigError("give a run or --ensemble, not both")
            source = EnsembleScorer(args.ensemble or None)   # every member's weights checked here
            cfg = Run.open(source.model_dir / source.members[0]).cfg
            print(f"model: {source.source}")
            out = export_ensemble(args.ensemble or None, args.onnx, pair=args.pair)
        else:
            source = run = Run.open(args.run) if args.run else default_run()
            run.checkpoint("best")   # a damaged or edited checkpoint stops here, before anything is printed or written
            cfg = run.cfg
            print(f"model: {run.dir}")
            out = export_onnx(run, args.onnx, pair=args.pair)
        for p in sorted(out.iterdir()):
            print(p)
        check = parity(source, out, load_data(cfg, log=lambda m: None).sets["heldout"])
        print(f"parity on {check['pairs']:,} held-out pairs: max |Δ logit| {check['max_abs_logit_diff']:.2e}, "
              f"decisions {'identical' if check['decisions_identical'] else 'DIFFERENT'}"
              + (f"; pair.onnx on the first 4,096: {check['pair_graph_max_abs_logit_diff']:.2e}" if args.pair else ""))
        worst = max(check["max_abs_logit_diff"], check.get("pair_graph_max_abs_logit_diff", 0.0))
        return 0 if worst <= 1e-4 and check["decisions_identical"] else 1
    if args.command == "publish-ensemble":
        from .serve.ensemble import publish_ensemble

        print(publish_ensemble(args.runs, args.out))
        return 0
    if args.command == "confirm-levers":
        import json

        from .study.confirmation import PLAN, measure_levers
        from .paths import SWEEPS_DIR, Reports, atomic_write_text, resolve

        out = measure_levers(resolve(SWEEPS_DIR) / PLAN["improved"])
        print(atomic_write_text(Reports().confirmation_levers, json.dumps(out, indent=1)))
        return 0
    if args.command == "robustness":
        import json

        from .paths import PUBLISHED, Reports
        from .serve.robustness import measure, merged, stale, write

        runs = args.runs or [str(Reports().run(PUBLISHED[k])) for k in ("siamese", "improved")]
        if not args.stale:
            print(write(measure(runs, n_pairs=args.pairs)))
            return 0
        path = Reports().robustness
        previous = json.loads(path.read_text()) if path.is_file() else None
        todo = stale(runs, previous, n_pairs=args.pairs)
        if not todo:
            print(f"{path}: every run's weights are the ones it measured; nothing to do")
            return 0
        print(write(merged(previous, measure(todo, n_pairs=args.pairs))))
        return 0
    if args.command == "demo":
        import secrets
        import subprocess

        from .paths import NOTEBOOKS_DIR, resolve
        from .serve.deploy import default_run

        default_run().checkpoint("best")   # a missing or damaged published model stops here (exit 2), not in the page
        token = args.token or secrets.token_urlsafe(24)
        print(f"the demo: http://127.0.0.1:{args.port}/?token={token}", flush=True)
        return subprocess.call([sys.executable, "-m", "voila", "--no-browser", "--Voila.ip=127.0.0.1",
                                f"--port={args.port}", f"--token={token}", str(resolve(NOTEBOOKS_DIR) / "04_draw.ipynb")])
    if args.command == "publish-improved":
        from .study.pipeline import publish_improved

        print(publish_improved())
        return 0
    if args.command == "compare":
        from .serve.compare import compare

        return compare(args)
    if args.command == "study":
        from .study.pipeline import run_study, smoke

        if args.smoke:
            if args.report_only:
                raise ConfigError("--smoke and --report-only do not go together")
            smoke(args.scratch, args.params)
        elif args.scratch:
            raise ConfigError("--scratch goes with --smoke only")
        else:
            run_study(args.params, report_only=args.report_only)
        return 0
    return 1
