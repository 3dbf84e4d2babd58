"""Runs the transformers library's Mamba and Mamba-2 models on ssm_triton's kernels.

transformers' modeling files call module-level kernel functions (``causal_conv1d_fn``,
``causal_conv1d_update``, ``mamba2_chunk_scan``, ``mamba2_selective_state_update``,
``mamba2_split_conv1d_scan_combined``, ``mamba_selective_scan``, ``mamba_selective_state_update``,
``mamba_inner_fn``) that fall back to slow PyTorch code when mamba_ssm and causal-conv1d are not
installed. :func:`enable` rebinds those names, in the modeling modules of the chosen models, to adapters
over ssm_triton's ops; :func:`disable` puts the originals back.

    import ssm_triton.integrations.transformers as st_hf
    st_hf.enable()                      # Mamba2ForCausalLM, MambaForCausalLM, the hybrids... now use ssm_triton
    model = transformers.Mamba2ForCausalLM(config).cuda()

With no ``models`` argument it covers every family in :data:`FAMILIES` that the installed transformers has
(Mamba, Mamba-2, and the hybrids that carry their layers under the same function names: falcon_mamba,
jamba, bamba, granitemoehybrid, falcon_h1, zamba2, nemotron_h); the families it lacks are listed in a
warning and in :func:`unavailable`, not an error. transformers is an optional dependency: nothing here is
imported by ``import ssm_triton``.
"""
import importlib
import warnings

from .._paths import drop_checkout_root
from ..ops.combined import mamba_inner_fn, mamba_split_conv1d_scan_combined
from ..ops.conv1d import causal_conv1d_fn, causal_conv1d_update
from ..ops.selective_scan import selective_scan_fn
from ..ops.ssd import mamba_chunk_scan_combined
from ..ops.state_update import selective_state_update

# the model families whose modeling modules call these kernel functions (transformers 5.x)
FAMILIES = ("mamba", "mamba2", "falcon_mamba", "jamba", "bamba", "granitemoehybrid", "falcon_h1", "zamba2",
            "nemotron_h")
DEFAULT_MODELS = FAMILIES
_saved: dict = {}   # (module name, attribute) -> the function transformers defined
_unavailable: list = []


def _f32(t):
    return t.float() if t is not None else None


def _conv1d_fn(hidden_states, weight, bias=None, activation=None, seq_idx=None, **kwargs):
    """``hidden_states (b, d, L)``; transformers' fallback convolves in the weight's dtype and returns
    the input's: so does this."""
    out = causal_conv1d_fn(hidden_states.to(weight.dtype), weight, bias, seq_idx=seq_idx, activation=activation)
    return out.to(hidden_states.dtype)


def _conv1d_update(hidden_states, conv_state, weight, bias=None, activation=None, **kwargs):
    """``hidden_states (b, d, L)`` (L new tokens, usually 1); ``conv_state (b, d, W)`` rolled in place."""
    x = hidden_states.to(conv_state.dtype)
    out = causal_conv1d_update(x, conv_state, weight.to(conv_state.dtype),
                               bias.to(conv_state.dtype) if bias is not None else None, activation)
    return out.to(hidden_states.dtype)


def _state_update(state, hidden_states, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, z=None,
                  state_batch_indices=None, **kwargs):
    """One decode step, both layouts (Mamba-1 ``(b, d, N)`` states, Mamba-2 ``(b, H, P, N)``)."""
    return selective_state_update(state, hidden_states, dt, _f32(A), B, C, D=_f32(D), z=z, dt_bias=_f32(dt_bias),
                                  dt_softplus=dt_softplus, state_batch_indices=state_batch_indices)


def _chunk_scan(hidden_states, dt, A, B, C, chunk_size, D=None, dt_bias=None, initial_states=None, dt_softplus=False,
                dt_limit=(0.0, float("inf")), return_final_states=False, seq_idx=None, cu_seqlens=None, z=None,
                **kwargs):
    """Mamba-2's chunked scan, ``hidden_states (b, L, H, P)``."""
    return mamba_chunk_scan_combined(hidden_states, dt, _f32(A), B, C, chunk_size, D=_f32(D), z=z,
                                     dt_bias=_f32(dt_bias), initial_states=initial_states, seq_idx=seq_idx,
                                     cu_seqlens=cu_seqlens, dt_softplus=dt_softplus, dt_limit=tuple(dt_limit),
                                     return_final_states=return_final_states)


def _selective_scan(hidden_states, dt, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                    return_last_state=False, **kwargs):
    """Mamba-1's scan, ``hidden_states (b, d, L)``; transformers' options for its own PyTorch scans
    (``use_mambapy``, ``use_associative_scan``) do not apply and are ignored."""
    return selective_scan_fn(hidden_states, dt, _f32(A), B, C, D=_f32(D), z=z, delta_bias=_f32(delta_bias),
                             delta_softplus=delta_softplus, return_last_state=return_last_state)


def _split_conv1d_scan(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, chunk_size, initial_states=None,
                       seq_idx=None, dt_limit=(0.0, float("inf")), return_final_states=False, activation="silu",
                       rmsnorm_weight=None, rmsnorm_eps=1e-6, outproj_weight=None, outproj_bias=None, headdim=None,
                       ngroups=1, norm_before_gate=True, **kwargs):
    return mamba_split_conv1d_scan_combined(
        zxbcdt, conv1d_weight, conv1d_bias, _f32(dt_bias), _f32(A), _f32(D), chunk_size, initial_states=initial_states,
        seq_idx=seq_idx, dt_limit=tuple(dt_limit), return_final_states=return_final_states, activation=activation,
        rmsnorm_weight=rmsnorm_weight, rmsnorm_eps=rmsnorm_eps, outproj_weight=outproj_weight,
        outproj_bias=outproj_bias, headdim=headdim, ngroups=ngroups, norm_before_gate=norm_before_gate)


def _inner_fn(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias, A,
              B=None, C=None, D=None, delta_bias=None, delta_softplus=True, b_rms_weight=None, c_rms_weight=None,
              dt_rms_weight=None, b_c_dt_rms_eps=1e-6, **kwargs):
    return mamba_inner_fn(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight,
                          out_proj_bias, _f32(A), B, C, D=_f32(D), delta_bias=_f32(delta_bias),
                          delta_softplus=delta_softplus, b_rms_weight=b_rms_weight, c_rms_weight=c_rms_weight,
                          dt_rms_weight=dt_rms_weight, b_c_dt_rms_eps=b_c_dt_rms_eps)


# transformers' name for each function -> ssm_triton's adapter
ADAPTERS = {
    "causal_conv1d_fn": _conv1d_fn,
    "causal_conv1d_update": _conv1d_update,
    "mamba2_chunk_scan": _chunk_scan,
    "mamba2_selective_state_update": _state_update,
    "mamba2_split_conv1d_scan_combined": _split_conv1d_scan,
    "mamba_selective_scan": _selective_scan,
    "mamba_selective_state_update": _state_update,
    "mamba_inner_fn": _inner_fn,
}


def _modeling_module(model: str):
    drop_checkout_root()   # else transformers may import this clone's kernels/ as the hub's `kernels`
    try:
        return importlib.import_module(f"transformers.models.{model}.modeling_{model}")
    except ImportError as e:
        raise ImportError(f"ssm_triton.integrations.transformers needs transformers with a '{model}' model "
                          f"(pip install transformers): {e}") from e


def enable(models=None) -> list[str]:
    """Routes the kernel functions of ``transformers.models.<m>.modeling_<m>`` for each ``m`` in ``models``
    (default: every family of :data:`FAMILIES` the installed transformers has) to ssm_triton. Idempotent.
    Returns the ``module.function`` names rebound. A family named in ``models`` that transformers lacks is
    an ``ImportError``; with the default, it is reported (a warning, and :func:`unavailable`)."""
    if isinstance(models, str):
        raise TypeError(f"models must be a sequence of model names such as ('mamba2',), got the string {models!r}")
    explicit = models is not None
    rebound = []
    _unavailable.clear()
    for model in (models if explicit else FAMILIES):
        try:
            mod = _modeling_module(model)
        except ImportError:
            if explicit:
                raise
            _unavailable.append(model)
            continue
        found = False
        for name, adapter in ADAPTERS.items():
            if not hasattr(mod, name):
                continue
            found = True
            _saved.setdefault((mod.__name__, name), getattr(mod, name))
            setattr(mod, name, adapter)
            rebound.append(f"{mod.__name__}.{name}")
        if not found and not explicit:
            _unavailable.append(model)
        elif not found:
            raise ValueError(f"transformers.models.{model} defines none of {sorted(ADAPTERS)}: this transformers "
                             "version names its kernel functions differently")
    if _unavailable:
        warnings.warn(f"ssm_triton.integrations.transformers: this transformers has no (kernel-calling) "
                      f"{', '.join(_unavailable)}; those families keep their own code", stacklevel=2)
    return rebound


def unavailable() -> list[str]:
    """The families of the last default :func:`enable` that the installed transformers lacks."""
    return list(_unavailable)


def disable() -> None:
    """Puts back every function :func:`enable` rebound."""
    for (mod_name, name), fn in list(_saved.items()):
        setattr(importlib.import_module(mod_name), name, fn)
        del _saved[(mod_name, name)]


def enabled(model: str = "mamba2") -> bool:
    mod = _modeling_module(model)
    return any(getattr(mod, name, None) is adapter for name, adapter in ADAPTERS.items())
