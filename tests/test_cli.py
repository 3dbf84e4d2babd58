"""The command line: ``check`` passes here and fails loudly on a wrong kernel; ``bench --quick`` runs."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ssm_triton import check


def test_check_command_passes_on_this_machine():
    # every row on a GPU; through the interpreter the rows of one op (the whole command took 76 s of CI's 30 min,
    # and CI runs the whole command on its own, from a plain install, before the tests: .ci/run)
    only = [] if torch.cuda.is_available() else ["--only", "discretize"]
    proc = subprocess.run([sys.executable, "-m", "ssm_triton", "check", *only], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split(" | ")[0].strip() == "op" and "max error" in lines[0]
    ops = {line.split(" | ")[0].strip() for line in lines[2:] if " | " in line}
    assert {"discretize[zoh] fwd", "discretize[bilinear] bwd"} <= ops
    if not only:
        assert {"linear_scan fwd", "linear_scan bwd", "mamba3_siso fwd/bwd", "ssd fwd"} <= ops, sorted(ops)


def test_check_reports_a_wrong_kernel_and_exits_non_zero(device, capsys):
    def off_by_a_little(dev, dtype):
        x = torch.ones(5, device=dev, dtype=dtype)
        return [("y", x * 1.01, np.ones(5))]

    def nan_result(dev, dtype):
        return [("y", torch.full((3,), float("nan"), device=dev, dtype=dtype), np.ones(3))]

    cases = [check.Case("wrong", off_by_a_little, (torch.float32,)), check.Case("nan", nan_result, (torch.float32,))]
    assert check.main(cases, device) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "0 passed, 2 failed" in out


def test_check_names_the_worst_output_and_lists_every_one_when_asked(device, capsys):
    def two_outputs(dev, dtype):
        x = torch.ones(4, device=dev, dtype=dtype)
        return [("close", x, np.ones(4)), ("far", x * 1.5, np.ones(4))]

    cases = [check.Case("pair", two_outputs, (torch.float32,)), check.Case("other", two_outputs, (torch.float32,))]
    assert check.main(cases, device, only="pai", outputs=True) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("pair"))
    assert row.rstrip().endswith("far") and "FAIL" in row
    assert "    close" in out and "    far" in out and "other" not in out
    assert check.main(cases, device, only="nothing") == 2


def test_bench_quick_writes_records(tmp_path):
    path = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "ssm_triton", "bench", "--quick", "--json", str(path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = json.loads(path.read_text())["results"]
    keys = {"op", "impl", "shape", "dtype", "direction", "ms", "bytes", "flops", "gbps", "tflops",
            "roofline_frac", "device", "date", "host_us", "peak_mb"}
    assert records and all(keys <= set(r) for r in records)
    if torch.cuda.is_available():   # measured on a GPU only; a replayed CUDA graph allocates nothing (peak 0)
        assert all(r["peak_mb"] >= 0 and r["host_us"] > 0 for r in records), \
            [(r["op"], r["impl"], r["peak_mb"], r["host_us"]) for r in records]
        assert any(r["peak_mb"] > 0 for r in records)
    else:
        assert all(r["peak_mb"] is None and r["host_us"] is None for r in records)
    assert {r["op"] for r in records} >= {"linear_scan", "discretize_zoh"}
    assert {r["direction"] for r in records} == {"fwd", "fwd+bwd"}
    assert all(r["ms"] > 0 for r in records)


def test_generate_command_prints_throughput():
    proc = subprocess.run([sys.executable, "-m", "ssm_triton", "generate", "--new-tokens", "3", "--prompt-len", "5"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Mamba2 LM") and "tokens/s" in lines[1] and "tokens/s" in lines[2]
    assert len(eval(lines[3].split(":", 1)[1].strip())) == 3  # the three new tokens


def test_report_turns_records_into_a_table(tmp_path):
    from ssm_triton.bench import report

    rec = dict(op="ssd", shape=[8, 4096], dtype="bfloat16", direction="fwd", device="GPU X", date="2026-01-01")
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"results": [dict(rec, impl="ssm_triton", ms=2.0, roofline_frac=0.5),
                                            dict(rec, impl="peer_a", ms=3.0), dict(rec, impl="peer_b", ms=1.0)]}))
    text = report.tables(report.load([str(path)]))
    assert "**GPU X, 2026-01-01**" in text
    assert "| ssd | 8×4096 | bfloat16 | fwd | 2.000 | 50% | peer_a | 3.000 | 1.50× |" in text
    assert "| peer_b | 1.000 | 0.50× (slower) |" in text


def test_bench_sweep_adds_lengths_and_batches(tmp_path):
    path = tmp_path / "sweep.json"
    proc = subprocess.run([sys.executable, "-m", "ssm_triton", "bench", "--quick", "--sweep", "--no-peers",
                           "--ops", "linear_scan", "selective_scan", "ssd", "--json", str(path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = json.loads(path.read_text())["results"]
    for op, batch_axis, length_axis in (("linear_scan", 0, 2), ("selective_scan", 0, 2), ("ssd", 0, 1)):
        shapes = [r["shape"] for r in records if r["op"] == op]
        assert len({s[length_axis] for s in shapes}) >= 2 and len({s[batch_axis] for s in shapes}) >= 2, op
        assert {r["direction"] for r in records if r["op"] == op} == {"fwd", "fwd+bwd"}


def test_report_rewrites_the_readme_section(tmp_path):
    from ssm_triton.bench import report

    rec = dict(op="ssd", shape=[8, 4096], dtype="bfloat16", direction="fwd", device="GPU X", date="2026-01-01")
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"results": [dict(rec, impl="ssm_triton", ms=2.0, roofline_frac=0.5),
                                            dict(rec, impl="peer_a", ms=3.0)]}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\nold table\n{report.END}\noutro\n")
    assert report.main([str(path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "| ssd | 8×4096 | bfloat16 | fwd | 2.000 | 50% | peer_a | 3.000 | 1.50× |" in text
    readme.write_text("no markers\n")
    assert report.main([str(path), "--readme", str(readme)]) == 1


def test_report_keeps_the_newest_record_of_each_case():
    from ssm_triton.bench import report

    rec = dict(op="ssd", shape=[8], dtype="bf16", direction="fwd", impl="ssm_triton")
    old, new, other = dict(rec, ms=2.0, date="2026-01-01"), dict(rec, ms=1.0, date="2026-02-01"), dict(rec, impl="p", ms=3.0, date="2026-01-01")
    assert sorted(r["ms"] for r in report.latest([old, new, other])) == [1.0, 3.0]
    assert [r["ms"] for r in report.latest([new, old])] == [1.0]


def test_plots_draw_sweeps_as_lines_and_the_rest_as_bars(tmp_path):
    from ssm_triton.bench import plots

    base = dict(op="linear_scan", dtype="float32", direction="fwd", device="GPU X", date="2026-01-01")
    records = [dict(base, impl=impl, shape=[1, 64, L], ms=ms, gbps=L / ms)
               for L in (1024, 4096, 16384) for impl, ms in (("ssm_triton", 1.0), ("peer", 2.0))]
    records.append(dict(base, impl="ssm_triton", shape=[8, 64, 4096], ms=3.0, gbps=1.0))
    found = plots.series(records)
    assert set(found) == {("linear_scan", "length", (1, 64, None), "float32", "fwd")}
    assert found[("linear_scan", "length", (1, 64, None), "float32", "fwd")]["peer"] == [(1024, 512.0), (4096, 2048.0), (16384, 8192.0)]
    written = plots.plot(records, str(tmp_path))
    assert sorted(p.rsplit("/", 1)[1] for p in written) == ["linear_scan.png", "linear_scan_sweep.png"]
    assert all(open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in written)


def test_generate_continues_a_prompt_from_a_checkpoint(tmp_path):
    """``generate --model DIR --prompt TEXT``: the checkpoint's tokenizer (a tiny word-level one built
    here, no download) encodes the prompt, the model continues it, and the text is printed."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from ssm_triton.models import MambaConfig, MambaLMHeadModel

    words = ["<eos>", "<unk>"] + [f"w{i}" for i in range(30)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>").save_pretrained(tmp_path)
    torch.manual_seed(0)
    MambaLMHeadModel(MambaConfig(d_model=16, n_layer=1, vocab_size=len(words),
                                 ssm_cfg={"layer": "Mamba2", "d_state": 8, "headdim": 8, "chunk_size": 16})
                     ).save_pretrained(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "ssm_triton", "generate", "--model", str(tmp_path),
                           "--prompt", "w1 w2 w3", "--max-length", "7"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout.splitlines()
    assert text[-2].startswith("w1 w2 w3") and "new tokens" in text[-1], proc.stdout
