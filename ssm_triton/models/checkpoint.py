"""Loading and saving the language model's checkpoints: mamba_ssm's layout (``config.json`` with its
``MambaConfig`` fields, ``pytorch_model.bin`` or ``model.safetensors``) and transformers' (``model_type``
"mamba" / "mamba2", its config fields and weight names), from a directory or a hub id."""
import dataclasses
import json
import os
import warnings
from pathlib import Path

import torch

from ..modules.norm import RMSNorm
from .lm import MambaConfig

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(MambaConfig)}
# transformers' config keys that say nothing about the weights' shapes or the computation
_HF_IGNORED = {"transformers_version", "architectures", "output_hidden_states", "return_dict", "dtype", "torch_dtype",
               "chunk_size_feed_forward", "is_encoder_decoder", "id2label", "label2id", "problem_type",
               "pad_token_id", "bos_token_id", "eos_token_id", "hidden_act", "initializer_range",
               "time_step_min", "time_step_max", "time_step_floor", "time_step_scale", "time_step_init_scheme",
               "rescale_prenorm_residual", "use_cache", "use_mambapy", "use_associative_scan", "output_attentions",
               "model_type", "intermediate_size", "num_heads", "layer_norm_epsilon", "rms_norm"}


def resolve(name_or_path) -> Path:
    """A local directory as is; otherwise a hub id, through huggingface_hub's cache (downloading only
    what the cache lacks, and only when that package is installed and the network allows)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    text = str(name_or_path)
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text:
        raise ValueError(f"{name_or_path}: no such directory (and not a hub id of the form 'org/name')")
    try:
        import huggingface_hub
    except ImportError:
        raise ValueError(f"{name_or_path!r} is not a directory, and huggingface_hub (needed to resolve a hub id) "
                         "is not installed") from None
    patterns = ["config.json", *WEIGHT_FILES]
    try:
        return Path(huggingface_hub.snapshot_download(str(name_or_path), allow_patterns=patterns,
                                                      local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache: try the hub itself
        try:
            return Path(huggingface_hub.snapshot_download(str(name_or_path), allow_patterns=patterns))
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{name_or_path!r} is neither a directory nor a hub id that could be resolved: "
                             f"{type(e).__name__}: {e}") from None


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise ValueError(f"{path} is missing: a checkpoint directory holds config.json and the weights "
                         f"({' or '.join(WEIGHT_FILES)})")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def _float(v) -> float:
    # transformers 5 writes non-finite floats as {"__float__": "Infinity"}; older versions as bare Infinity
    return float(v["__float__"]) if isinstance(v, dict) and "__float__" in v else float(v)


def _from_transformers(cfg: dict) -> tuple[dict, dict]:
    """(our MambaConfig fields, things to set after construction) from a transformers config."""
    kind = cfg["model_type"]
    need = ["hidden_size", "num_hidden_layers", "vocab_size", "state_size"]
    missing = [k for k in need if k not in cfg]
    if missing:
        raise ValueError(f"config.json (model_type {kind!r}) lacks {', '.join(missing)}")
    ssm = {"d_state": cfg["state_size"], "d_conv": cfg.get("conv_kernel", 4), "expand": cfg.get("expand", 2),
           "bias": cfg.get("use_bias", False), "conv_bias": cfg.get("use_conv_bias", True)}
    if kind == "mamba":
        ssm.update(layer="Mamba1", dt_rank=cfg.get("time_step_rank", "auto"))
    else:
        heads = cfg.get("num_heads")
        head_dim = cfg.get("head_dim", 64)
        if heads is not None and heads * head_dim != ssm["expand"] * cfg["hidden_size"]:
            raise ValueError(f"config.json: num_heads * head_dim = {heads * head_dim} must equal expand * hidden_size "
                             f"= {ssm['expand'] * cfg['hidden_size']}")
        limit = cfg.get("time_step_limit", (0.0, float("inf")))
        ssm.update(layer="Mamba2", headdim=head_dim, ngroups=cfg.get("n_groups", 1),
                   chunk_size=cfg.get("chunk_size", 256), dt_limit=tuple(_float(v) for v in limit),
                   norm_before_gate=False)
    fields = {"d_model": cfg["hidden_size"], "n_layer": cfg["num_hidden_layers"], "vocab_size": cfg["vocab_size"],
              "ssm_cfg": ssm, "residual_in_fp32": cfg.get("residual_in_fp32", True),
              "tie_embeddings": cfg.get("tie_word_embeddings", kind == "mamba"), "pad_vocab_size_multiple": 1}
    return fields, {"eps": _float(cfg.get("layer_norm_epsilon", 1e-5))}


def _hf_key(key: str) -> str:
    return key.replace("backbone.embeddings.", "backbone.embedding.", 1)


def _read_weights(folder: Path) -> tuple[dict, Path]:
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if name.endswith(".safetensors"):
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise ValueError(f"{path} needs the safetensors package (pip install safetensors)") from None
            return load_file(str(path), device="cpu"), path
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True), path
    raise ValueError(f"{folder} holds no weights: expected {' or '.join(WEIGHT_FILES)}")


def load_pretrained(cls, name_or_path, device=None, dtype=None, **overrides):
    folder = resolve(name_or_path)
    raw = _read_config(folder)
    after = {}
    if raw.get("model_type") in ("mamba", "mamba2"):
        fields, after = _from_transformers(raw)
        unknown = sorted(set(raw) - _HF_IGNORED - {"hidden_size", "num_hidden_layers", "vocab_size", "state_size",
                                                   "conv_kernel", "expand", "use_bias", "use_conv_bias",
                                                   "time_step_rank", "head_dim", "n_groups", "chunk_size",
                                                   "time_step_limit", "residual_in_fp32", "tie_word_embeddings"})
        rename = _hf_key
    else:
        fields = {k: v for k, v in raw.items() if k in _CONFIG_FIELDS}
        unknown = sorted(set(raw) - _CONFIG_FIELDS)
        rename = lambda k: k  # noqa: E731
    if unknown:
        warnings.warn(f"{folder / 'config.json'}: ignored keys {', '.join(unknown)}", stacklevel=3)
    fields.update(overrides)
    config = MambaConfig(**fields)
    with torch.device("meta"):   # no weights are drawn: the checkpoint's are assigned below
        model = cls(config, dtype=dtype)
    state, path = _read_weights(folder)
    state = {rename(k): v for k, v in state.items()}
    target = model.state_dict()
    tied = config.tie_embeddings
    if tied:
        state.pop("lm_head.weight", None)
        target.pop("lm_head.weight", None)
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        raise ValueError(f"{path}: the weights do not match the config: "
                         + (f"missing {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}" if missing else "")
                         + ("; " if missing and unexpected else "")
                         + (f"unexpected {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
                            if unexpected else ""))
    device = torch.device(device) if device is not None else torch.device("cpu")
    loaded = {}
    for key, want in target.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise ValueError(f"{path}: {key} has shape {tuple(got.shape)}, the config needs {tuple(want.shape)}")
        # cast on the host, then move: no full-precision copy reaches the device
        loaded[key] = got.to(dtype=want.dtype).to(device)
    model.load_state_dict(loaded, strict=False, assign=True)
    if tied:
        model.lm_head.weight = model.backbone.embedding.weight
    if "eps" in after:
        for m in model.modules():
            if isinstance(m, RMSNorm):
                m.eps = after["eps"]
    return model.eval()


def save_pretrained(model, directory, safe_serialization=False):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(dataclasses.asdict(model.config), indent=2))
    state = model.state_dict()
    if safe_serialization:
        try:
            from safetensors.torch import save_file
        except ImportError:
            raise ValueError("safe_serialization=True needs the safetensors package (pip install safetensors)") from None
        if model.config.tie_embeddings:
            state.pop("lm_head.weight", None)   # safetensors stores no shared tensors; loading re-ties it
        save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"))
    else:
        torch.save(state, directory / "pytorch_model.bin")
    for stale in WEIGHT_FILES:   # one weights file per directory, so a load reads what was just saved
        if (directory / stale).exists() and stale != ("model.safetensors" if safe_serialization else "pytorch_model.bin"):
            os.remove(directory / stale)
