"""Command line: ``python -m ssm_triton check`` (also the ``ssm-triton`` script), ``... bench`` and
``... generate``."""
import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssm-triton", description="ssm_triton: Triton kernels for selective SSMs")
    sub = parser.add_subparsers(dest="command", required=True)
    chk = sub.add_parser("check", help="run every kernel against its float64 reference on this machine")
    chk.add_argument("--only", metavar="TEXT", help="only the rows whose op name contains TEXT (e.g. mamba3)")
    chk.add_argument("--outputs", action="store_true",
                     help="a line per output of each row (its error and budget), not only the worst")
    bench = sub.add_parser("bench", help="benchmark kernels and peers (GPU; --quick runs anywhere)")
    from .bench.cli import add_arguments  # the bench harness is only imported when asked for

    add_arguments(bench)
    gen = sub.add_parser("generate", help="generate with a random Mamba LM and print tokens/s")
    from .models import demo

    demo.add_arguments(gen)
    args = parser.parse_args(argv)
    if args.command == "check":
        from . import check

        return check.main(only=args.only, outputs=args.outputs)
    if args.command == "generate":
        return demo.run(args)
    from .bench.cli import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
