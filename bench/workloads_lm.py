"""Whole-model benchmarks: the Mamba-2 language model's prefill and decode step on ssm_triton's kernels
against the same model on the PyTorch references, and the transformers library's Mamba2ForCausalLM
forward with and without ``ssm_triton.integrations.transformers.enable()``.

The GPU model is the size of mamba2-130m: d_model 768, 24 layers, 24 heads of 64, d_state 128, vocab
50277, bf16; its Mamba-1 twin (``lm_mamba1_*``) has mamba-130m's 16 states a channel (128 before
2026-12-03). Bytes are the weights read once per call (plus the states a decode step reads and writes);
FLOPs are 2 per weight per token.
"""
import contextlib
import importlib
import sys

import torch
import torch.nn.functional as F

from . import counts
from .workloads import Workload

OURS = "ssm_triton"


def _lm(device, quick, layer="Mamba2"):
    """The demo's model: its tiny size for --quick, else the 130m-sized one in bf16."""
    from ssm_triton.models.demo import build

    torch.manual_seed(0)
    return build(layer, "tiny" if quick else "130m", device, torch.float32 if quick else torch.bfloat16)


def _state_update_torch(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, state_batch_indices=None):
    """The decode step in PyTorch, multi-head layout (what the Mamba2 block calls)."""
    dt = dt.float() + (dt_bias.float() if dt_bias is not None else 0)
    dt = F.softplus(dt) if dt_softplus else dt
    H, G = x.shape[1], B.shape[1]
    Bh, Ch = (t.float().repeat_interleave(H // G, dim=1)[:, :, None, :] for t in (B, C))
    new = state.float() * torch.exp(dt[..., None] * A) + (dt * x.float())[..., None] * Bh
    state.copy_(new)
    out = (new * Ch).sum(-1) + (D * x.float() if D is not None else 0)
    return (out * F.silu(z.float()) if z is not None else out).to(x.dtype)


def _state_update_from_log_torch(state, x, dt, A_log, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """:func:`_state_update_torch` given ``A_log`` (the block's composed step passes it since 2026-12-06)."""
    return _state_update_torch(state, x, dt, -torch.exp(A_log.float()), B, C, D, z, dt_bias, dt_softplus)


@contextlib.contextmanager
def reference_ops():
    """Runs the Mamba2 block and the LM's norms on the PyTorch references (fp32 SSD) instead of the kernels."""
    from ssm_triton.modules import mamba2, norm
    from ssm_triton.ops import combined, fused_step
    from ssm_triton.reference import causal_conv1d_torch, causal_conv1d_update_torch, rmsnorm_torch, ssd_quadratic_torch

    def conv_update(x, conv_state, weight, bias=None, activation=None):
        out, new = causal_conv1d_update_torch(x, conv_state, weight, bias, activation)
        conv_state.copy_(new)
        return out

    def ssd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, dt_softplus=False, dt_limit=(0.0, float("inf")),
            return_final_states=False, **_):
        f = lambda t: t.float() if t is not None else None  # noqa: E731
        out, final = ssd_quadratic_torch(f(x), f(dt), f(A), f(B), f(C), D=f(D), z=f(z), dt_bias=f(dt_bias),
                                         dt_softplus=dt_softplus, dt_limit=dt_limit)
        return (out.to(x.dtype), final) if return_final_states else out.to(x.dtype)

    # the block's forward is ops.combined's function; its step calls the decode ops and the norm module
    swaps = [(combined, "causal_conv1d_fn", causal_conv1d_torch), (mamba2, "causal_conv1d_update", conv_update),
             (combined, "rmsnorm_fn", rmsnorm_torch), (norm, "rmsnorm_fn", rmsnorm_torch),
             (combined, "mamba_chunk_scan_combined", ssd),
             (mamba2, "state_update_from_log", _state_update_from_log_torch),
             (fused_step, "ENABLED", False)]   # the step composed of the ops above, not the fused kernels
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in swaps]
    try:
        for mod, name, fn in swaps:
            setattr(mod, name, fn)
        yield
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)


def _param_bytes(model):
    return sum(p.numel() * p.element_size() for p in model.parameters())


def lm_workloads(device, quick: bool, notes: set) -> list[Workload]:
    """The Mamba2 LM's rows (``lm_*``: ours and the PyTorch-ops reference), then the Mamba-1 LM's
    (``lm_mamba1_*``: ours; its reference ops are not swapped in)."""
    return _lm_rows(device, quick, "Mamba2", "lm_", notes) + _lm_rows(device, quick, "Mamba1", "lm_mamba1_", notes)


def lm_mamba3_workloads(device, quick: bool, notes: set) -> list[Workload]:
    """The same rows for an LM of ``Mamba3`` (SISO) mixers (``lm_mamba3_*``; its composed step: the modules and
    the public step op, ``SSM_TRITON_FUSED_STEP=0``)."""
    return _lm_rows(device, quick, "Mamba3", "lm_mamba3_")


def _lm_rows(device, quick: bool, layer: str, prefix: str, notes: set | None = None) -> list[Workload]:
    """Prefill of b=1, L=2048 tokens (one forward, eager and replayed from the prefill graphs) and one
    decode step at b=1, 4 and 16, the step replayed from a CUDA graph (as ``generate`` runs it) and eager. On a
    GPU, mamba_ssm's own LM with our weights beside them (``bench/peer_lm.py``): its eager prefill, its decode
    step replayed from its own CUDA graph (as its ``generate(cg=True)``) and eager."""
    from ssm_triton import InferenceParams
    from ssm_triton.models import DecodeGraph

    model = _lm(device, quick, layer)
    with_reference = layer == "Mamba2"
    vocab = model.config.vocab_size
    n_params = sum(p.numel() for p in model.parameters())
    wbytes = _param_bytes(model)
    dtype = next(model.parameters()).dtype

    def on(fn, reference):
        def build(x, direction):
            def run():
                with torch.inference_mode(), (reference_ops() if reference else contextlib.nullcontext()):
                    return fn(x)
            return run
        return build

    out = []
    L = 16 if quick else 2048
    notes = set() if notes is None else notes
    peer_box = []

    def peer():
        """mamba_ssm's LM with our weights, built at its first row (so that ``--no-peers`` never builds it)."""
        if not peer_box:
            from .peer_lm import logits_gap, mamba_lm
            built, why = mamba_lm(model)
            peer_box.append(built)
            if built is None:
                notes.add(f"{prefix}: {why}")
            else:
                notes.add(prefix + logits_gap(model, built, torch.randint(0, vocab, (1, L), device=device)))
        if peer_box[0] is None:
            raise RuntimeError("mamba_ssm's LM is not available here (see the notes)")
        return peer_box[0]

    def peer_prefill(x, direction):
        theirs = peer()

        def run():
            with torch.inference_mode():
                return theirs(x["ids"], num_last_tokens=1)
        return run

    def peer_step(bsz, replayed):
        def build(x, direction):
            theirs = peer()
            if replayed:
                from .peer_lm import decode_graph
                with torch.inference_mode():
                    step = decode_graph(theirs, bsz, L + 1)

                def run():
                    with torch.inference_mode():
                        return step(x["tok"])
                return run
            from .peers import load_past_package_init
            gen, _ = load_past_package_init("mamba_ssm.utils.generation")
            params = gen.InferenceParams(max_seqlen=L + 1, max_batch_size=bsz, seqlen_offset=L,
                                         key_value_memory_dict=theirs.allocate_inference_cache(bsz, L + 1))

            def run():
                with torch.inference_mode():
                    return theirs(x["tok"], inference_params=params, num_last_tokens=1).logits
            return run
        return build

    peers_here = device.type == "cuda"   # mamba_ssm's Triton wrappers need a CUDA device
    def prefill(x):
        """Eager: every layer's launches issued from Python (the graphs are on by default)."""
        model.cuda_graph_prefill = False
        try:
            return model(x["ids"], num_last_tokens=1)
        finally:
            model.cuda_graph_prefill = True

    make = lambda: {"ids": torch.randint(0, vocab, (1, L), device=device)}  # noqa: E731
    impls = {OURS: on(prefill, False)}
    if with_reference:
        impls["torch_reference_ops"] = on(prefill, True)
    if peers_here:
        impls["mamba_ssm"] = peer_prefill
    out.append(Workload(prefix + "prefill", (1, L), dtype, "fwd", *counts.model_forward(wbytes, n_params, L), make,
                        impls, tokens=L))

    def graphed_prefill(x):
        """The same prefill replayed from the model's CUDA graph of its length bucket (models/prefill.py)."""
        model.cuda_graph_prefill = True
        try:
            return model(x["ids"], num_last_tokens=1)
        finally:
            model.cuda_graph_prefill = False

    if device.type == "cuda":
        out.append(Workload(prefix + "prefill_cuda_graph", (1, L), dtype, "fwd", *counts.model_forward(wbytes, n_params, L),
                            make, {OURS: on(graphed_prefill, False)}, tokens=L))

    def graphed(reference, bsz, composed=False, pdl=False):
        """A decode step replayed from a CUDA graph captured with the chosen ops (eager on CPU); ``composed``:
        our kernels op by op, without the fused steps (ops/fused_step.py); ``pdl``: the fused steps'
        launches as programmatic dependent launches (kernels/fused_step.py, off by default)."""
        def build(x, direction):
            if device.type != "cuda":
                return on(lambda x: model(x["tok"], inference_params=x["params"]), reference)(x, direction)
            with torch.inference_mode(), (reference_ops() if reference else contextlib.nullcontext()), \
                    _fused_step(not composed), (_pdl(True) if pdl else contextlib.nullcontext()):
                graph = DecodeGraph(model, x["params"], bsz, device)
            def run():
                with torch.inference_mode():  # the graph's buffers are inference tensors
                    return graph(x["tok"])
            return run
        return build

    for bsz in ((2,) if quick else (1, 4, 16)):
        def make_decode(bsz=bsz):
            params = InferenceParams(max_seqlen=L + 1, max_batch_size=bsz)
            params.key_value_memory_dict = model.allocate_inference_cache(bsz, L + 1)
            params.seqlen_offset = L  # decode from (zero) states as after a prefill of L tokens
            return {"tok": torch.randint(0, vocab, (bsz, 1), device=device), "params": params}

        step = lambda x: model(x["tok"], inference_params=x["params"])  # noqa: E731
        states = sum(t.numel() * t.element_size() for layer_states in model.allocate_inference_cache(bsz, 1).values()
                     for t in layer_states)
        impls = {OURS: graphed(False, bsz)}
        if device.type == "cuda":
            impls["ssm_triton_pdl"] = graphed(False, bsz, pdl=True)
            impls["ssm_triton_composed_step"] = graphed(False, bsz, composed=True)
        if with_reference:
            impls["torch_reference_ops"] = graphed(True, bsz)
        if peers_here:
            impls["mamba_ssm"] = peer_step(bsz, True)
            impls["mamba_ssm_eager"] = peer_step(bsz, False)
        if device.type == "cuda":  # elsewhere the "graphed" step already runs eagerly
            impls["ssm_triton_eager"] = on(_with_decode_graphs(model, step, False), False)
            impls["ssm_triton_eager_decode_graphs"] = on(_with_decode_graphs(model, step, True), False)
            if with_reference:
                impls["torch_reference_ops_eager"] = on(_with_decode_graphs(model, step, False), True)
        out.append(Workload(prefix + "decode_step", (bsz,), dtype, "fwd", *counts.model_forward(wbytes, n_params, bsz, states),
                            make_decode, impls, tokens=bsz))

    # generate as a user calls it (greedy), a prompt then new tokens; ms a call, tokens/s of the new tokens
    prompt_len, new = (8, 4) if quick else (128, 256)
    for bsz in ((2,) if quick else (1, 16)):
        make_gen = lambda bsz=bsz: {"ids": torch.randint(0, vocab, (bsz, prompt_len), device=device)}  # noqa: E731

        def ours_generate(keep):
            def build(x, direction):
                def run():
                    from ssm_triton.models import generation
                    was, generation.KEEP_STEP = generation.KEEP_STEP, keep
                    try:
                        with torch.inference_mode():
                            return model.generate(x["ids"], max_length=prompt_len + new)
                    finally:
                        generation.KEEP_STEP = was
                return run
            return build

        def peer_generate(x, direction):
            theirs = peer()

            def run():
                with torch.inference_mode():
                    return theirs.generate(x["ids"], max_length=prompt_len + new, cg=True)
            return run

        impls = {OURS: ours_generate(True)}   # the default: states and captured step kept between calls
        if peers_here:
            impls["ssm_triton_fresh_step"] = ours_generate(False)
            impls["mamba_ssm"] = peer_generate
        # the weights read once a decode step (and once by the prefill); a multiply-add per weight per token
        nbytes, flops = wbytes * (new + 1), 2 * n_params * bsz * (prompt_len + new)
        out.append(Workload(prefix + "generate", (bsz, prompt_len, new), dtype, "fwd", nbytes, flops, make_gen, impls,
                            tokens=bsz * new))
    return out


def lm_compiled_workloads(device, quick: bool, notes: set) -> list[Workload]:
    """The 130M Mamba2 LM's prefill (b1, L2048) under ``torch.compile(fullgraph=True)``: the default mode and
    ``mode="reduce-overhead"`` (CUDA graphs), beside the eager forward and our own prefill graphs, in one
    process. GPU only (inductor's CPU path needs a C++ compiler, and the interpreter would take hours);
    each compiled form compiles on its first call, outside the timing."""
    if device.type != "cuda" or quick:
        notes.add("lm_compiled skipped: GPU only, and not with --quick")
        return []
    model = _lm(device, quick)
    n_params = sum(p.numel() for p in model.parameters())
    dtype = next(model.parameters()).dtype
    L = 2048
    model.cuda_graph_prefill = False   # the compiled forms and the eager row trace / run the plain forward
    forward = lambda ids: model(ids, num_last_tokens=1).logits  # noqa: E731
    compiled = {"ssm_triton_compile_default": torch.compile(forward, fullgraph=True),
                "ssm_triton_compile_reduce_overhead": torch.compile(forward, fullgraph=True, mode="reduce-overhead")}

    def on(fn, graphs=False):
        def build(x, direction):
            def run():
                model.cuda_graph_prefill = graphs
                try:
                    with torch.inference_mode():
                        return fn(x["ids"])
                finally:
                    model.cuda_graph_prefill = False
            return run
        return build

    impls = {OURS: on(forward), "ssm_triton_prefill_graphs": on(forward, True)}
    impls.update({name: on(fn) for name, fn in compiled.items()})
    make = lambda: {"ids": torch.randint(0, model.config.vocab_size, (1, L), device=device)}  # noqa: E731
    return [Workload("lm_prefill_compiled", (1, L), dtype, "fwd", *counts.model_forward(_param_bytes(model), n_params, L),
                     make, impls, tokens=L)]


def _with_decode_graphs(model, step, graphs: bool):
    """``step`` called eagerly with the model's decode graphs on or off (models/decode_graphs.py; on by default
    since 2026-12-04d: the ``ssm_triton_eager`` rows are the launches one by one, as before)."""
    def run(x):
        saved, model.cuda_graph_decode = getattr(model, "cuda_graph_decode", False), graphs
        try:
            return step(x)
        finally:
            model.cuda_graph_decode = saved
    return run


@contextlib.contextmanager
def _fused_step(on: bool):
    from ssm_triton.ops import fused_step

    saved, fused_step.ENABLED = fused_step.ENABLED, on and fused_step.ENABLED
    try:
        yield
    finally:
        fused_step.ENABLED = saved


@contextlib.contextmanager
def _pdl(on: bool):
    from ssm_triton.kernels import fused_step

    saved, fused_step.PDL_ENABLED = fused_step.PDL_ENABLED, on
    try:
        yield
    finally:
        fused_step.PDL_ENABLED = saved


@contextlib.contextmanager
def _unimportable(*packages):
    """Imports of ``packages`` fail inside the block; their loaded modules come back after it."""
    saved = {k: v for k, v in sys.modules.items() if any(k == p or k.startswith(p + ".") for p in packages)}
    for k in saved:
        del sys.modules[k]
    sys.modules.update({p: None for p in packages})
    try:
        yield
    finally:
        for p in packages:
            del sys.modules[p]
        sys.modules.update(saved)


def _torch_fallback_modeling():
    """transformers' Mamba-2 modeling module with its kernel names bound to its own PyTorch code. It binds
    them at import, to mamba_ssm's kernels when mamba_ssm imports, and this benchmark's peers may have made
    mamba_ssm importable (bench/peers.py): so the module is re-imported with mamba_ssm and causal_conv1d
    hidden, and the peer measured is the fallback its name says."""
    import transformers.models.mamba2.modeling_mamba2 as modeling

    with _unimportable("mamba_ssm", "causal_conv1d"):
        return importlib.reload(modeling)


def hf_workloads(device, quick: bool, notes: set) -> list[Workload]:
    """transformers' Mamba2ForCausalLM forward (b=1, L=2048 and 8192) with enable() and on its fallback."""
    try:
        import transformers

        import ssm_triton.integrations.transformers as st_hf
    except ImportError as e:
        notes.add(f"transformers skipped: {e}")
        return []
    cfg = (dict(vocab_size=64, hidden_size=16, num_heads=4, head_dim=8, state_size=8, num_hidden_layers=2, chunk_size=16)
           if quick else dict(vocab_size=50288, hidden_size=768, num_heads=24, head_dim=64, state_size=128,
                              num_hidden_layers=24, chunk_size=256))
    dtype = torch.float32 if quick else torch.bfloat16
    modeling = _torch_fallback_modeling()
    torch.manual_seed(0)
    model = modeling.Mamba2ForCausalLM(transformers.Mamba2Config(expand=2, n_groups=1, **cfg)).to(device, dtype).eval()
    n_params = sum(p.numel() for p in model.parameters())
    wbytes = _param_bytes(model)

    def impl(use_ours):
        def build(x, direction):
            def run():
                (st_hf.enable if use_ours else st_hf.disable)()
                try:
                    with torch.inference_mode():
                        return model(x["ids"], logits_to_keep=1).logits
                finally:
                    st_hf.disable()
            return run
        return build

    out = []
    for L in ((32,) if quick else (2048, 8192)):
        make = lambda L=L: {"ids": torch.randint(0, cfg["vocab_size"], (1, L), device=device)}  # noqa: E731
        out.append(Workload("hf_mamba2_forward", (1, L), dtype, "fwd", *counts.model_forward(wbytes, n_params, L), make,
                            {OURS: impl(True), "transformers_torch": impl(False)}, tokens=L))
    return out
