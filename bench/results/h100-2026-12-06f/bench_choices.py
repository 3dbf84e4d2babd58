"""``python bench_choices.py PREFIX bench-args...``: ``python -m ssm_triton bench`` with these arguments, then the
tuner's choices whose names start with PREFIX (what each A/B process took)."""
import sys

from ssm_triton.cli import main
from ssm_triton.kernels import tuning

rc = main(sys.argv[2:])
for entry, kw in sorted(tuning.choices().items()):
    if entry.startswith(sys.argv[1]):
        print(f"  chosen: {entry} -> {kw}")
sys.exit(rc)
