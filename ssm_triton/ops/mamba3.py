"""``mamba3_siso_combined``: Mamba-3's single-input single-output scan, drop-in for mamba_ssm's
``mamba_ssm.ops.triton.mamba3.mamba3_siso_combined``."""
import os
from typing import Optional

import torch
from torch import Tensor

from .. import _runtime, _validate
from ..kernels import replay as _replay
from ..kernels.mamba3 import launch as _k
from .ssd import _route as _ssd_route
from .mamba3_packed import add_input_states, final_ssm
from . import _plans
from ._layout import contiguous, records_graph, step_strided
from ._spec import OpSpec, build, compiling

IO_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_DIM = 256
CHUNK_SIZES = (16, 32, 64, 128, 256)
_INPUTS = ("Q", "K", "V", "ADT", "DT", "Trap", "Q_bias", "K_bias", "Angles", "D", "Z",
           "angle_state", "ssm_state", "k_state", "v_state")
_STATES = ("angle_state", "ssm_state", "k_state", "v_state")
_KEPT = ("qr", "kr", "dtp", "cum", "diag", "qk", "theta_b", "hs", "y", "off")
# a call with no backward to come reads V, Z (step strided) and Angles (head stride 0, any float dtype) where they
# lie, and the Mamba3 block hands its projection's columns as views; "0" copies them contiguous (and the block casts
# its angle rates), the A/B. The 130M-size Mamba3 LM's prefill on an H100 (2026-12-07, call 44, one process each):
# eager 13.31 / 11.50 ms against 25.78 with "0", replayed 4.627 / 4.636 against 4.674
IN_PLACE = os.environ.get("SSM_TRITON_M3_IN_PLACE", "1") != "0"


def _route(x) -> tuple:
    """The SSD's route switches (``ops/ssd._route``) and the prep backward's steps per program."""
    return (*_ssd_route(x), _k.PREP_BWD_STEPS, _k.PREP_AHEAD, _k.PREP_MERGE, IN_PLACE)


def _states(a: dict):
    return None if a["ssm_state"] is None else tuple(a[n] for n in _STATES)


def _forward(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, angle_state, ssm_state, k_state, v_state,
             cu_seqlens, chunk_size, deterministic, finals, for_backward=True):
    states = None if ssm_state is None else (angle_state, ssm_state, k_state, v_state)
    # finals: whether the caller asked for the final states (else the last k~ and v come back empty)
    out, states_out, saved = _k.siso_forward(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, states,
                                             chunk_size, for_backward, cu_seqlens, finals=finals)
    # an absent output is a fresh empty tensor each: outputs may not alias one another
    return (out, *states_out, *(t if t is not None else V.new_empty(0) for t in saved))


def _fake(Q, V, Angles, Z, cu_seqlens, chunk_size, finals, **_):
    b, L, H, P = V.shape
    rows = b if cu_seqlens is None else cu_seqlens.shape[0] - 1
    N, S = Q.shape[3], Angles.shape[3]
    nc = -(-L // chunk_size)
    f32 = dict(dtype=torch.float32, device=V.device)
    from ..kernels.ssd.launch import make_plan
    dot = make_plan(V, N, chunk_size).torch_dot
    nblk = nc * chunk_size // _k.steps_per_block(V.device, chunk_size)
    return (torch.empty_like(V), V.new_empty((rows, H, S), **f32), V.new_empty((rows, H, P, N), **f32),
            V.new_empty((rows, H, N) if finals else 0, **f32), V.new_empty((rows, H, P) if finals else 0),
            V.new_empty((b, L, H, N), dtype=dot), V.new_empty((b, L, H, N), dtype=dot),
            V.new_empty((b, H, nc * chunk_size), **f32), V.new_empty((2, b, H, nc * chunk_size), **f32),
            V.new_empty((b, H, nc * chunk_size), **f32), V.new_empty((b, H, L), **f32),
            V.new_empty((b, H, nblk, S), **f32), V.new_empty((b, H, nc, P, N), dtype=dot),
            torch.empty_like(V) if Z is not None else V.new_empty(0),
            V.new_empty((rows, H, S), **f32) if cu_seqlens is not None else V.new_empty(0))


def _backward(saved, grads):
    y = saved["y"]
    off = saved["off"]
    kept = _k.SisoSaved(*(saved[n] for n in _KEPT[:-2]), y if y.numel() > 0 else None,
                        off if saved["cu_seqlens"] is not None else None)
    dout = grads["out"]
    dstates = tuple(grads[n] for n in ("angle", "ssm", "k", "v"))
    return _k.siso_backward(dout.contiguous() if dout is not None else None, dstates, kept,
                            *(saved[n] for n in ("Q", "K", "V", "DT", "Trap", "Q_bias", "K_bias", "Angles", "D", "Z")),
                            _states(saved), saved["chunk_size"], deterministic=saved["deterministic"],
                            cu_seqlens=saved["cu_seqlens"])


_siso = build(OpSpec(
    "mamba3_siso", "Q: Tensor, K: Tensor, V: Tensor, ADT: Tensor, DT: Tensor, Trap: Tensor, Q_bias: Tensor, "
    "K_bias: Tensor, Angles: Tensor, D: Tensor?, Z: Tensor?, angle_state: Tensor?, ssm_state: Tensor?, "
    "k_state: Tensor?, v_state: Tensor?, cu_seqlens: Tensor?, chunk_size: int, deterministic: bool, finals: bool",
    outputs=("out", "angle", "ssm", "k", "v", *_KEPT), forward=_forward, fake=_fake, grads=_INPUTS,
    grad_outputs=("out", "angle", "ssm", "k", "v"), saves=(*_INPUTS, "cu_seqlens", *_KEPT), backward=_backward,
    # switches: the SSD's route switches and the fp32 matmul precision (ops/ssd._route)
    inference=lambda **a: _forward(**a, for_backward=False), switches=_route))


def _check(name, t, shape, doc, dtypes=_validate.FLOAT_DTYPES[:3]):
    _validate.tensor(name, t, ndim=len(shape), dtypes=dtypes, shape_doc=doc)
    _validate.shape(name, t, shape, doc)


def check_input_states(Input_States, b: int, cu_seqlens, H: int, P: int, N: int, S: int, R: int | None = None):
    """The four input states (angle, ssm, k, v; MIMO's k has a rank dim ``R`` and its v is named x), one per batch
    row, or one per packed sequence with ``cu_seqlens``."""
    k_dims, v_name = ((), "v") if R is None else ((R,), "x")
    k_doc = "H, N" if R is None else "R, H, N"
    if not isinstance(Input_States, (tuple, list)) or len(Input_States) != 4:
        raise TypeError("Input_States must be a tuple (angle (batch, H, S), ssm (batch, H, P, N), "
                        f"k (batch, {k_doc}), {v_name} (batch, H, P)), got {type(Input_States).__name__}")
    rows, what = (b, "batch") if cu_seqlens is None else (cu_seqlens.shape[0] - 1, "sequences")
    for name, t, shape, doc in zip(("Input_States[0] (angle)", "Input_States[1] (ssm)", "Input_States[2] (k)",
                                    f"Input_States[3] ({v_name})"), Input_States,
                                   ((rows, H, S), (rows, H, P, N), (rows, *k_dims, H, N), (rows, H, P)),
                                   (f"({what}, H, S)", f"({what}, H, P, N)", f"({what}, {k_doc})",
                                    f"({what}, H, P)")):
        _check(name, t, shape, doc)


def check_packed(op: str, cu_seqlens, b: int, L: int, Input_States, states_per_sequence: bool = False):
    """``cu_seqlens (num_sequences + 1,)`` of a batch-1 packed row, checked on the device without a host sync;
    returns it where it must share the other tensors' device (a CPU copy need not), else None.
    ``states_per_sequence``: the op takes Input_States with it, one per sequence (checked by the caller)."""
    if cu_seqlens is None:
        return None
    _validate.tensor("cu_seqlens", cu_seqlens, ndim=1, dtypes=(torch.int32, torch.int64),
                     shape_doc="(num_sequences + 1,)")
    if b != 1:
        raise ValueError(f"cu_seqlens packs sequences along L of a single row; V must have batch 1, got {b}")
    if cu_seqlens.shape[0] < 2:
        raise ValueError(f"cu_seqlens must have at least 2 entries (0 and L), got shape {tuple(cu_seqlens.shape)}")
    if Input_States is not None and not states_per_sequence:
        raise NotImplementedError(f"{op}: Input_States with cu_seqlens is not supported yet "
                                  "(each packed sequence starts from zero states)")
    # the kernels clamp what they read into the row either way
    ok = torch.cat([cu_seqlens[:1] == 0, cu_seqlens[-1:] == L, cu_seqlens[1:] > cu_seqlens[:-1]])
    _validate.on_device("cu_seqlens", ok, f"must rise strictly from 0 to L = {L} (one entry per sequence boundary)")
    return cu_seqlens if cu_seqlens.device.type != "cpu" else None


def _validate_all(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, Input_States, chunk_size,
                  return_final_states, cu_seqlens):
    _validate.tensor("V", V, ndim=4, dtypes=IO_DTYPES, shape_doc="(batch, L, H, P)")
    b, L, H, P = V.shape
    if min(b, L, H, P) < 1:
        raise ValueError(f"V (batch, L, H, P) must have every size at least 1, got {tuple(V.shape)}")
    if P > MAX_DIM:
        raise ValueError(f"V has head dimension P = {P}; at most {MAX_DIM} is supported")
    _validate.tensor("Q", Q, ndim=4, dtypes=IO_DTYPES, shape_doc="(batch, L, Hqk, N)")
    Hqk, N = Q.shape[2], Q.shape[3]
    _validate.heads_and_state("Q", "Hqk", "heads", Hqk, H, N, "(batch, L, Hqk, N)", MAX_DIM)
    _check("Q", Q, (b, L, Hqk, N), "(batch, L, Hqk, N)", IO_DTYPES)
    _check("K", K, (b, L, Hqk, N), "(batch, L, Hqk, N) as Q", IO_DTYPES)
    _validate.same_dtype(("V", "Q", "K"), (V, Q, K))
    for name, t in (("ADT", ADT), ("DT", DT), ("Trap", Trap)):
        _check(name, t, (b, H, L), "(batch, H, L)")
    _check("Q_bias", Q_bias, (H, N), "(H, N)")
    _check("K_bias", K_bias, (H, N), "(H, N)")
    _validate.tensor("Angles", Angles, ndim=4, dtypes=IO_DTYPES, shape_doc="(batch, L, H, S)")
    S = Angles.shape[3]
    if 2 * S > N:
        raise ValueError(f"Angles has S = {S} rotated pairs (dim 3 of (batch, L, H, S)); 2 S must be at most N = {N}")
    _check("Angles", Angles, (b, L, H, S), "(batch, L, H, S)", IO_DTYPES)
    if D is not None:
        _check("D", D, (H,), "(H,)")
    if Z is not None:
        _check("Z", Z, (b, L, H, P), "(batch, L, H, P) as V", IO_DTYPES)
        _validate.same_dtype(("V", "Z"), (V, Z))
    states = ()
    if Input_States is not None:
        check_input_states(Input_States, b, cu_seqlens, H, P, N, S)
        states = tuple(Input_States)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size not in CHUNK_SIZES:
        raise ValueError(f"chunk_size must be one of {CHUNK_SIZES}, got {chunk_size!r}")
    _validate.flag("return_final_states", return_final_states)
    cu = check_packed("mamba3_siso_combined", cu_seqlens, b, L, Input_States, states_per_sequence=True)
    _validate.devices(("V", "Q", "K", "ADT", "DT", "Trap", "Q_bias", "K_bias", "Angles", "D", "Z", "Input_States",
                       "cu_seqlens"), (V, Q, K, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, *(states[:1] or (None,)), cu))


_PASSED = _validate.Passed()


def mamba3_siso_combined(Q: Tensor, K: Tensor, V: Tensor, ADT: Tensor, DT: Tensor, Trap: Tensor, Q_bias: Tensor,
                         K_bias: Tensor, Angles: Tensor, D: Optional[Tensor] = None, Z: Optional[Tensor] = None,
                         Input_States: Optional[tuple] = None, chunk_size: int = 64,
                         return_final_states: bool = False, cu_seqlens: Optional[Tensor] = None, *,
                         deterministic: Optional[bool] = None):
    """Mamba-3's SISO scan (trapezoidal update, rotated queries and keys), chunked on the SSD's stages.

    Per batch row, head ``h`` and step ``t``, with ``lam = sigmoid(Trap)``, a ``(P, N)`` state ``H_t`` and
    ``theta_t = theta_{t-1} + pi tanh(Angles_t) DT_t``::

        q~_t = Rot(theta_t) (Q_t + Q_bias[h]),  k~_t = Rot(theta_t) (K_t + K_bias[h])
        H_t = exp(ADT_t) H_{t-1} + (1 - lam_t) DT_t exp(ADT_t) v_{t-1} k~_{t-1}^T + lam_t DT_t v_t k~_t^T
        out_t = (H_t q~_t + D[h] v_t) * silu(Z_t)

    ``Rot`` turns the interleaved pairs ``(2i, 2i + 1)``, ``i < S``. Angles are summed in fp32 and reduced
    mod 2 pi. See ``ssm_triton.reference.mamba3_siso_loop`` for the float64 reference.

    Args:
        Q, K: ``(batch, L, Hqk, N)``, Hqk dividing H (head ``h`` reads ``h // (H / Hqk)``); N <= 256.
        V: ``(batch, L, H, P)``, P <= 256; same dtype as Q and K (fp32, bf16 or fp16).
        ADT: ``(batch, H, L)`` the log decay ``A_t DT_t`` (<= 0). DT, Trap: ``(batch, H, L)``.
        Q_bias, K_bias: ``(H, N)``. Angles: ``(batch, L, H, S)``, ``2 S <= N``.
        D: optional ``(H,)`` skip. Z: optional ``(batch, L, H, P)`` gate, V's dtype.
        Input_States: optional ``(angle (batch, H, S), ssm (batch, H, P, N), k~ (batch, H, N), v (batch, H, P))``,
            the state before the first step (zeros when None).
        chunk_size: 16, 32, 64, 128 or 256 (the result does not depend on it beyond rounding).
        return_final_states: also return the states after the last step, as ``Input_States`` takes them.
        cu_seqlens: ``(num_sequences + 1,)`` int boundaries of sequences packed along L of a batch-1 row: each
            starts from its own Input_States (``(num_sequences, H, ...)``) or from zeros, and the final states
            come one per sequence; gradients flow to every input, the input states included, and from every
            final state (the final ssm states are then rebuilt in PyTorch, O(L H P N) more work).
        deterministic: keyword only. The backward adds dQ's pair part (the SSD's dC) with fp32 atomics by
            default; True makes a second pass instead, so gradients repeat bit for bit. None follows
            ``torch.are_deterministic_algorithms_enabled()``.

    Returns:
        ``out (batch, L, H, P)`` in V's dtype, or ``(out, angle, ssm, k, v)`` with ``return_final_states``
        (angle, ssm and k in fp32, v in V's dtype). Differentiable in every tensor input, the input states
        included, with gradients flowing from the final states too.
    """
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    # the op's PyTorch and launches, replayed per signature where no graph is recorded (kernels/replay.py): the
    # arguments are keyed once, first, and a hit skips the checks, since a replay is made only after a call of its
    # key passed them. Packed rows (cu_seqlens, checked by value on every call) take no shortcut.
    four = isinstance(Input_States, (tuple, list)) and len(Input_States) == 4
    valid = four or Input_States is None
    args = (Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, *(Input_States if four else (None,) * 4),
            cu_seqlens, chunk_size, return_final_states, deterministic)
    key = None if cu_seqlens is not None or not valid or compiling() else _replay.key_of(args, _route(V))

    def check():   # the checks, remembered per signature
        passed_key = None if cu_seqlens is not None or not valid else _validate.signature(
            args[:15], (chunk_size, return_final_states, deterministic, Input_States is None))
        if _PASSED.get(passed_key) is None:
            _validate.flag("deterministic", deterministic)
            _validate_all(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, Input_States, chunk_size,
                          return_final_states, cu_seqlens)
            _PASSED.put(passed_key, True)
    return _BODY_REPLAYS.checked(key, args, check, _body)


_BODY_REPLAYS = _replay.Replays()


def _body(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, angle0, ssm0, k0, v0, cu_seqlens, chunk_size,
          return_final_states, deterministic):
    Input_States = None if ssm0 is None else (angle0, ssm0, k0, v0)
    cu = cu_seqlens.to(V.device) if cu_seqlens is not None else None
    # packed sequences with input states: the kernels run them from zero states, the states are added after
    per_sequence = cu is not None and Input_States is not None
    states = tuple(s.contiguous() for s in Input_States) if Input_States is not None and not per_sequence \
        else (None,) * 4
    if IN_PLACE and cu is None and not records_graph(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, *states):
        # no backward to come: V and Z as the kernels read them (a block's projection columns, step strided) and
        # Angles as they lie (launch.angle_rows: the heads' shared rates, any float dtype), not copied
        v, z, angles = step_strided(V), step_strided(Z), Angles
    else:
        v, z, angles = V.contiguous(), contiguous(Z), Angles.contiguous()
    outs = _siso(Q.contiguous(), K.contiguous(), v, ADT.contiguous(), DT.contiguous(),
                 Trap.contiguous(), Q_bias.contiguous(), K_bias.contiguous(), angles,
                 contiguous(D), z,
                 *states, cu, chunk_size, deterministic, return_final_states or per_sequence)
    out, finals = outs[0], tuple(outs[1:5])
    if cu is not None and return_final_states and torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z)):
        # the kernels' backward takes no gradient from a packed row's final ssm states: build them in PyTorch
        finals = (finals[0], final_ssm(K, V, ADT, DT, Trap, K_bias, Angles, cu), *finals[2:])
    if per_sequence:
        out, finals = add_input_states(out, finals, Q, V, ADT, DT, Trap, Q_bias, Angles, Z, Input_States, cu,
                                       return_final_states)
    return (out, *finals) if return_final_states else out


# ---- the decode step ----

# steps that update the caller's states in place (the blocks' decoding): one bound launch per input signature
# (ops/_plans.py); the inputs the kernel could not read as they lay when the plan was made are copied each call
_STEP_PLANS = _plans.Plans()
_MIMO_STEP_PLANS = _plans.Plans()


def _step_lookup(plans, inputs, Input_States, inplace, plain=(0.0, 0.0)):
    """``(planned step or None, key or None)`` for a decode step: in place, keyed by the caller's four states;
    otherwise by the given states (or their absence), which the planned step reads into new ones. Anything else
    (a malformed ``Input_States``, a non-bool ``inplace``) takes the checks. ``plain``: the block step's
    ``(A_floor, eps)``."""
    if inplace is True:
        if not isinstance(Input_States, (tuple, list)) or len(Input_States) != 4:
            return None, None
        return _plans.lookup(plans, (*inputs, *Input_States), (_runtime.INTERPRET, True, *plain))
    if inplace is not False:
        return None, None
    if Input_States is None:
        return _plans.lookup(plans, inputs, (_runtime.INTERPRET, False, *plain))
    if not isinstance(Input_States, (tuple, list)) or len(Input_States) != 4:
        return None, None
    return _plans.lookup(plans, (*inputs, *Input_States), (_runtime.INTERPRET, False, *plain))


_NO_STATES = (None, None, None, None)


class _PlannedStep:
    """A decode step's one-launch plan (``kernels/mamba3/step.py``) with the states around it: in place the
    caller's; else new fp32 ones the launch writes from the caller's (or from zeros), with ``V`` as the last."""
    __slots__ = ("plan", "inplace")

    def __init__(self, plan, inplace: bool):
        self.plan, self.inplace = plan, inplace

    def __call__(self, inputs, Input_States, V):
        if self.inplace:
            return self.plan((*inputs, *Input_States))[0], list(Input_States)
        out, angle, ssm, k = self.plan((*inputs, *(Input_States if Input_States is not None else _NO_STATES)))
        return out, [angle, ssm, k, V]


def _remember_step(plans, key, make, inputs, states, inplace, plain) -> None:
    """After a checked call: its planned step, made from the tensors the kernel was given (the caller's inputs and
    the states it read, or updated in place)."""
    if key is not None:
        _plans.remember(plans, key, lambda: _planned(make((*inputs, *states), not inplace, *plain), inplace))


def _planned(plan, inplace):
    return _PlannedStep(plan, inplace) if plan else plan


def _checked_step(op, inputs, states, inplace, V, plans, plan_key, make, plain, angles: int) -> tuple:
    """A decode step after its checks: ``op`` (the in-place one, or the one writing new states) on the inputs
    (those the kernel cannot read as they lie copied; ``angles``: the angles' place among them) and packed
    states (``plain``: the block step's ``(A_floor, eps)``), its plan remembered for the next call of this
    signature; returns ``(out, states)``."""
    from ..kernels.mamba3.step import to_read
    copy = to_read(inputs, angles, len(inputs))
    given = (t.contiguous() if i in copy else t for i, t in enumerate(inputs))
    outs = op(*given, *(states if inplace else (contiguous(t) for t in states)), *plain)
    _remember_step(plans, plan_key, make, inputs, states, inplace, plain)
    return outs[0], (list(states) if inplace else [*outs[1:], V])


def _step_run(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, dt_bias, Q_norm, K_norm, angle_state, ssm_state,
              k_state, v_state, A_floor, eps, new_states=False):
    from ..kernels.mamba3.step import siso_step
    out = siso_step(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, dt_bias, Q_norm, K_norm, angle_state,
                    ssm_state, k_state, v_state, new_states=new_states, A_floor=A_floor, eps=eps)
    return out if new_states else (out,)


# the block step's parameters (None from the public steps) after the token's inputs, its plain values last
_BLOCK_ARGS = "dt_bias: Tensor?, Q_norm: Tensor?, K_norm: Tensor?"
_BLOCK_PLAIN = "A_floor: float, eps: float"
_NO_BLOCK = (None, None, None)

_step = build(OpSpec(
    "mamba3_siso_step", "Q: Tensor, K: Tensor, V: Tensor, ADT: Tensor, DT: Tensor, Trap: Tensor, Q_bias: Tensor, "
    f"K_bias: Tensor, Angles: Tensor, D: Tensor?, Z: Tensor?, {_BLOCK_ARGS}, angle_state: Tensor, "
    f"ssm_state: Tensor, k_state: Tensor, v_state: Tensor, {_BLOCK_PLAIN}", outputs=("out",), mutates=_STATES,
    forward=lambda **a: _step_run(**a), fake=lambda V, **_: (torch.empty_like(V),)))


def _new_states_fake(V, Q, Angles, ranks=0):
    from ..kernels.mamba3.step import new_state_shapes
    return tuple(V.new_empty(s, dtype=torch.float32) for s in new_state_shapes(V, Q, Angles, ranks))


# the step that leaves the caller's states as they are: new fp32 (angle, ssm, k~) from them, or from zeros
_step_new = build(OpSpec(
    "mamba3_siso_step_new", "Q: Tensor, K: Tensor, V: Tensor, ADT: Tensor, DT: Tensor, Trap: Tensor, Q_bias: Tensor, "
    f"K_bias: Tensor, Angles: Tensor, D: Tensor?, Z: Tensor?, {_BLOCK_ARGS}, angle_state: Tensor?, "
    f"ssm_state: Tensor?, k_state: Tensor?, v_state: Tensor?, {_BLOCK_PLAIN}", outputs=("out", "angle", "ssm", "k"),
    forward=lambda **a: _step_run(**a, new_states=True),
    fake=lambda V, Q, Angles, **_: (torch.empty_like(V), *_new_states_fake(V, Q, Angles))))


def _check_token(Angles, D, Z, b, H, P, N) -> int:
    """A decode step's ``Angles (b, H, S)`` (returns S), ``D (H,)`` and ``Z (b, H, P)``."""
    _validate.tensor("Angles", Angles, ndim=3, shape_doc="(batch, H, S)")
    S = Angles.shape[2]
    if 2 * S > N:
        raise ValueError(f"Angles has S = {S} rotated pairs (dim 2 of (batch, H, S)); 2 S must be at most N = {N}")
    _check("Angles", Angles, (b, H, S), "(batch, H, S)")
    if D is not None:
        _check("D", D, (H,), "(H,)")
    if Z is not None:
        _check("Z", Z, (b, H, P), "(batch, H, P) as V", IO_DTYPES)
    return S


def _step_states(Input_States, inplace, V, shapes, docs, last: str) -> list:
    """The states a decode step reads: the caller's (checked; contiguous with ``inplace``, where they are updated),
    or four None (zeros) when there are none."""
    _validate.flag("inplace", inplace)
    names = ("Input_States[0] (angle)", "Input_States[1] (ssm)", "Input_States[2] (k)", f"Input_States[3] ({last})")
    if Input_States is None:
        if inplace:
            raise ValueError("inplace=True needs Input_States to update")
        return list(_NO_STATES)
    if not isinstance(Input_States, (tuple, list)) or len(Input_States) != 4:
        raise TypeError(f"Input_States must be a tuple (angle {docs[0]}, ssm {docs[1]}, k {docs[2]}, {last} {docs[3]}), "
                        f"got {type(Input_States).__name__}")
    for name, t, shape, doc in zip(names, Input_States, shapes, docs):
        _check(name, t, shape, doc, IO_DTYPES)
        if inplace and not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous to be updated in place")
    return list(Input_States)


def mamba3_siso_step(Q: Tensor, K: Tensor, V: Tensor, ADT: Tensor, DT: Tensor, Trap: Tensor, Q_bias: Tensor,
                     K_bias: Tensor, Angles: Tensor, D: Optional[Tensor] = None, Z: Optional[Tensor] = None,
                     Input_States: Optional[tuple] = None, inplace: bool = False):
    """One decode step of :func:`mamba3_siso_combined` (drop-in for mamba_ssm's Triton ``mamba3_siso_step``).

    Args:
        Q, K: ``(batch, Hqk, N)``; V, Z: ``(batch, H, P)``; ADT, DT, Trap: ``(batch, H)``; Q_bias, K_bias:
            ``(H, N)``; Angles: ``(batch, H, S)``, ``2 S <= N``; D: ``(H,)``.
        Input_States: ``(angle (batch, H, S), ssm (batch, H, P, N), k~ (batch, H, N), v (batch, H, P))``, the
            state before this token (zeros when None); any float dtypes.
        inplace: update ``Input_States`` where they lie (they must be contiguous; the step then allocates
            nothing but ``out``) and return them; otherwise new fp32 states are returned and the inputs kept.

    Returns:
        ``(out (batch, H, P) in V's dtype, [angle, ssm, k~, v])``, the new states (``v`` is V itself unless
        ``inplace``). Not differentiable.
    """
    return _siso_step((Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z), _NO_BLOCK, Input_States, inplace)


def siso_block_step(Q: Tensor, K: Tensor, V: Tensor, dd_A: Tensor, dd_dt: Tensor, Trap: Tensor, Q_bias: Tensor,
                    K_bias: Tensor, Angles: Tensor, D: Optional[Tensor], Z: Optional[Tensor], states: tuple,
                    dt_bias: Tensor, A_floor: float, Q_norm: Tensor, K_norm: Tensor, eps: float) -> Tensor:
    """The ``Mamba3`` block's decode step in one launch (internal): :func:`mamba3_siso_step` in place on
    ``states``, with the step sizes from the projection's logits, ``DT = softplus(dd_dt + dt_bias)``, ``ADT =
    min(-softplus(dd_A), -A_floor) DT`` (``dd_A, dd_dt (batch, H)``, ``dt_bias (H,)``), and ``Q, K`` normalised
    (RMSNorm over N, weights ``Q_norm, K_norm (N,)``, ``eps``) before their biases, all inside the kernel. The
    inputs may be slices of the projection's row (each packed after its batch dim; ``Angles`` shared by the
    heads through a stride of 0). Returns ``out (batch, H, P)``."""
    return _siso_step((Q, K, V, dd_A, dd_dt, Trap, Q_bias, K_bias, Angles, D, Z), (dt_bias, Q_norm, K_norm), states,
                      True, (float(A_floor), float(eps)))[0]


def _check_block(block, plain, H: int, N: int, like) -> None:
    """The block step's ``dt_bias (H,)``, norms' weights ``(N,)`` and ``(A_floor, eps)``."""
    dt_bias, Q_norm, K_norm = block
    _check("dt_bias", dt_bias, (H,), "(H,)")
    _check("Q_norm", Q_norm, (N,), "(N,)")
    _check("K_norm", K_norm, (N,), "(N,)")
    _validate.devices(("V", "dt_bias", "Q_norm", "K_norm"), (like, *block))
    if not all(v >= 0 for v in plain):   # floats: the block step converts them
        raise ValueError(f"A_floor and eps must be floats >= 0, got {plain}")


def _siso_step(inputs, block, Input_States, inplace, plain=(0.0, 0.0)):
    """:func:`mamba3_siso_step` (``block``: three None) or :func:`siso_block_step` (``block``: ``(dt_bias,
    Q_norm, K_norm)``, ``plain``: ``(A_floor, eps)``, where ``ADT, DT`` are the logits)."""
    inputs = (*inputs, *block)
    V = inputs[2]
    plan, plan_key = _step_lookup(_STEP_PLANS, inputs, Input_States, inplace, plain)
    if plan:   # made after a call of this very signature passed the checks
        return plan(inputs, Input_States, V)
    Q, K, _, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z = inputs[:11]
    _validate.tensor("V", V, ndim=3, dtypes=IO_DTYPES, shape_doc="(batch, H, P)")
    b, H, P = V.shape
    _validate.tensor("Q", Q, ndim=3, dtypes=IO_DTYPES, shape_doc="(batch, Hqk, N)")
    Hqk, N = Q.shape[1], Q.shape[2]
    if Hqk < 1 or H % Hqk:
        raise ValueError(f"Q has Hqk = {Hqk} heads (dim 1 of (batch, Hqk, N)), which must divide H = {H}")
    if not 1 <= N <= MAX_DIM or P > MAX_DIM:
        raise ValueError(f"N = {N} and P = {P} must be between 1 and {MAX_DIM}")
    _check("Q", Q, (b, Hqk, N), "(batch, Hqk, N)", IO_DTYPES)
    _check("K", K, (b, Hqk, N), "(batch, Hqk, N) as Q", IO_DTYPES)
    _check_scalars(ADT, DT, Trap, block, b, H)
    _check("Q_bias", Q_bias, (H, N), "(H, N)")
    _check("K_bias", K_bias, (H, N), "(H, N)")
    S = _check_token(Angles, D, Z, b, H, P, N)
    if block[0] is not None:
        _check_block(block, plain, H, N, V)
    shapes = ((b, H, S), (b, H, P, N), (b, H, N), (b, H, P))
    states = _step_states(Input_States, inplace, V, shapes,
                          ("(batch, H, S)", "(batch, H, P, N)", "(batch, H, N)", "(batch, H, P)"), "v")
    _validate.devices(("V", "Q", "K", "ADT", "DT", "Trap", "Q_bias", "K_bias", "Angles", "D", "Z", "Input_States"),
                      (V, Q, K, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, states[1]))
    from ..kernels.mamba3.step import ANGLES, siso_step_plan
    return _checked_step(_step if inplace else _step_new, inputs, states, inplace, V, _STEP_PLANS, plan_key,
                         siso_step_plan, plain, ANGLES)


def _check_scalars(ADT, DT, Trap, block, b: int, H: int) -> None:
    """A step's ``(batch, H)`` inputs, named as the caller passed them (the block step's logits)."""
    names = ("dd_A", "dd_dt") if block[0] is not None else ("ADT", "DT")
    for name, t in ((names[0], ADT), (names[1], DT), ("Trap", Trap)):
        _check(name, t, (b, H), "(batch, H)")


def _mimo_step_run(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z, dt_bias, Q_norm,
                   K_norm, angle_state, ssm_state, k_state, v_state, A_floor, eps, new_states=False):
    from ..kernels.mamba3.mimo_step import mimo_step
    out = mimo_step(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z, dt_bias, Q_norm,
                    K_norm, angle_state, ssm_state, k_state, v_state, new_states=new_states, A_floor=A_floor, eps=eps)
    return out if new_states else (out,)


def _mimo_out_fake(V, Q, MIMO_Out):
    return torch.empty_like(V) if MIMO_Out is not None else V.new_empty((V.shape[0], Q.shape[1], *V.shape[1:]))


_mimo_step_op = build(OpSpec(
    "mamba3_mimo_step", "Q: Tensor, K: Tensor, V: Tensor, ADT: Tensor, DT: Tensor, Trap: Tensor, Q_bias: Tensor, "
    "K_bias: Tensor, MIMO_V: Tensor, MIMO_Z: Tensor, MIMO_Out: Tensor?, Angles: Tensor, D: Tensor?, Z: Tensor?, "
    f"{_BLOCK_ARGS}, angle_state: Tensor, ssm_state: Tensor, k_state: Tensor, v_state: Tensor, {_BLOCK_PLAIN}",
    outputs=("out",), mutates=_STATES,
    forward=lambda **a: _mimo_step_run(**a), fake=lambda V, Q, MIMO_Out, **_: (_mimo_out_fake(V, Q, MIMO_Out),)))

# the MIMO step that leaves the caller's states as they are
_mimo_step_new = build(OpSpec(
    "mamba3_mimo_step_new", "Q: Tensor, K: Tensor, V: Tensor, ADT: Tensor, DT: Tensor, Trap: Tensor, Q_bias: Tensor, "
    "K_bias: Tensor, MIMO_V: Tensor, MIMO_Z: Tensor, MIMO_Out: Tensor?, Angles: Tensor, D: Tensor?, Z: Tensor?, "
    f"{_BLOCK_ARGS}, angle_state: Tensor?, ssm_state: Tensor?, k_state: Tensor?, v_state: Tensor?, {_BLOCK_PLAIN}",
    outputs=("out", "angle", "ssm", "k"),
    forward=lambda **a: _mimo_step_run(**a, new_states=True),
    fake=lambda V, Q, MIMO_Out, Angles, **_: (_mimo_out_fake(V, Q, MIMO_Out),
                                              *_new_states_fake(V, Q, Angles, Q.shape[1]))))

MAX_RANK = 16


def check_mimo_qk(Q, K, lead: tuple, lead_doc: str, H: int) -> tuple:
    """MIMO's ``Q, K (*lead, R, Hqk, N)``: rank 1 to 16, Hqk dividing H, N even and at most 256. Returns
    ``(R, Hqk, N)``."""
    doc = f"({lead_doc}, R, Hqk, N)"
    d = len(lead)
    _validate.tensor("Q", Q, ndim=d + 3, dtypes=IO_DTYPES, shape_doc=doc)
    R, Hqk, N = Q.shape[d], Q.shape[d + 1], Q.shape[d + 2]
    if not 1 <= R <= MAX_RANK:
        raise ValueError(f"Q has rank R = {R} (dim {d} of {doc}); 1 to {MAX_RANK} are supported")
    if Hqk < 1 or H % Hqk:
        raise ValueError(f"Q has Hqk = {Hqk} heads (dim {d + 1} of {doc}), which must divide H = {H}")
    if N % 2 or not 2 <= N <= MAX_DIM:
        raise ValueError(f"Q has N = {N} (dim {d + 2} of {doc}); it must be even and at most {MAX_DIM}")
    _check("Q", Q, (*lead, R, Hqk, N), doc, IO_DTYPES)
    _check("K", K, (*lead, R, Hqk, N), f"{doc} as Q", IO_DTYPES)
    return R, Hqk, N


def mamba3_mimo_step(Q: Tensor, K: Tensor, V: Tensor, ADT: Tensor, DT: Tensor, Trap: Tensor, Q_bias: Tensor,
                     K_bias: Tensor, MIMO_V: Tensor, MIMO_Z: Tensor, MIMO_Out: Optional[Tensor], Angles: Tensor,
                     D: Optional[Tensor] = None, Z: Optional[Tensor] = None, Input_States: Optional[tuple] = None,
                     inplace: bool = False):
    """One decode step of Mamba-3's MIMO scan (rank R; see ``ssm_triton.reference.mamba3_mimo_step_ref``).

    Args:
        Q, K: ``(batch, R, Hqk, N)``; V, Z: ``(batch, H, P)``; ADT, DT, Trap: ``(batch, H)``; Q_bias, K_bias:
            ``(H, R, N)``; MIMO_V, MIMO_Z, MIMO_Out: ``(H, R, P)`` (MIMO_Out None: the ranks' outputs come back
            apart); Angles: ``(batch, H, S)``, ``S <= N / 2``, turning the pairs ``(n, N/2 + n)``; D: ``(H,)``.
            N even, R <= 16.
        Input_States: ``(angle (batch, H, S), ssm (batch, H, P, N), k~ (batch, R, H, N), x (batch, H, P))`` (zeros
            when None); ``inplace=True`` updates them where they lie (contiguous) and returns them.

    Returns:
        ``(out, [angle, ssm, k, x])``: ``out (batch, H, P)``, or ``(batch, R, H, P)`` without MIMO_Out, in V's
        dtype. Not differentiable.
    """
    return _mimo_step((Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z), _NO_BLOCK,
                      Input_States, inplace)


def mimo_block_step(Q: Tensor, K: Tensor, V: Tensor, dd_A: Tensor, dd_dt: Tensor, Trap: Tensor, Q_bias: Tensor,
                    K_bias: Tensor, MIMO_V: Tensor, MIMO_Z: Tensor, MIMO_Out: Optional[Tensor], Angles: Tensor,
                    D: Optional[Tensor], Z: Optional[Tensor], states: tuple, dt_bias: Tensor, A_floor: float,
                    Q_norm: Tensor, K_norm: Tensor, eps: float) -> Tensor:
    """The ``Mamba3(is_mimo=True)`` block's decode step in one launch (internal): :func:`mamba3_mimo_step` in
    place on ``states``, with the step sizes from the logits and Q, K (each rank's row) normalised in the
    kernel, as :func:`siso_block_step`. Returns the output as :func:`mamba3_mimo_step`'s."""
    return _mimo_step((Q, K, V, dd_A, dd_dt, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z),
                      (dt_bias, Q_norm, K_norm), states, True, (float(A_floor), float(eps)))[0]


def _mimo_step(inputs, block, Input_States, inplace, plain=(0.0, 0.0)):
    """:func:`mamba3_mimo_step` or :func:`mimo_block_step`, as :func:`_siso_step`."""
    inputs = (*inputs, *block)
    V = inputs[2]
    plan, plan_key = _step_lookup(_MIMO_STEP_PLANS, inputs, Input_States, inplace, plain)
    if plan:   # made after a call of this very signature passed the checks
        return plan(inputs, Input_States, V)
    Q, K, _, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z = inputs[:14]
    _validate.tensor("V", V, ndim=3, dtypes=IO_DTYPES, shape_doc="(batch, H, P)")
    b, H, P = V.shape
    if P > MAX_DIM:
        raise ValueError(f"V has head dimension P = {P}; at most {MAX_DIM} is supported")
    R, Hqk, N = check_mimo_qk(Q, K, (b,), "batch", H)
    _check_scalars(ADT, DT, Trap, block, b, H)
    for name, t in (("Q_bias", Q_bias), ("K_bias", K_bias)):
        _check(name, t, (H, R, N), "(H, R, N)")
    for name, t in (("MIMO_V", MIMO_V), ("MIMO_Z", MIMO_Z), ("MIMO_Out", MIMO_Out)):
        if t is not None:
            _check(name, t, (H, R, P), "(H, R, P)")
    S = _check_token(Angles, D, Z, b, H, P, N)
    if block[0] is not None:
        _check_block(block, plain, H, N, V)
    shapes = ((b, H, S), (b, H, P, N), (b, R, H, N), (b, H, P))
    states = _step_states(Input_States, inplace, V, shapes,
                          ("(batch, H, S)", "(batch, H, P, N)", "(batch, R, H, N)", "(batch, H, P)"), "x")
    _validate.devices(("V", "Q", "K", "ADT", "DT", "Trap", "Q_bias", "K_bias", "MIMO_V", "MIMO_Z", "MIMO_Out", "Angles",
                       "D", "Z", "Input_States"),
                      (V, Q, K, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z, states[1]))
    from ..kernels.mamba3.mimo_step import ANGLES, mimo_step_plan
    return _checked_step(_mimo_step_op if inplace else _mimo_step_new, inputs, states, inplace, V, _MIMO_STEP_PLANS,
                         plan_key, mimo_step_plan, plain, ANGLES)
