"""Benchmark harness, installed as ``ssm_triton.bench`` and driven by ``python -m ssm_triton bench``.

* ``roofline``: the machine's ceilings (copy bandwidth, bf16 matmul peak), measured in the same run;
* ``workloads``: per op, the shapes, the byte and FLOP counts, and how to call ours and each peer;
* ``peers``: optional imports of other libraries, skipped with a note when absent;
* ``timing``: medians of ``triton.testing.do_bench`` on GPU, wall-clock medians under the interpreter;
* ``cli``: the command line, the table and the JSON records.
"""
