"""Other implementations, each an optional import. A missing peer is skipped with a printed note."""
import importlib
import importlib.util
import sys
import types


def load(module: str):
    """The module, or (None, why) when it does not import here."""
    try:
        return importlib.import_module(module), None
    except Exception as e:  # a peer may fail with anything from ImportError to a CUDA build error
        return None, f"{type(e).__name__}: {e}".splitlines()[0][:160]


def load_past_package_init(module: str):
    """Like :func:`load`, but when the top-level package's ``__init__`` fails (mamba_ssm's imports its
    CUDA extension, absent when it was not compiled), import the submodule with an empty stand-in for
    the package: its pure-Triton parts need nothing from that ``__init__``."""
    mod, why = load(module)
    if mod is not None:
        return mod, None
    top = module.split(".")[0]
    spec = importlib.util.find_spec(top) if top not in sys.modules else None
    if spec is None or not spec.submodule_search_locations:
        return None, why
    stand_in = types.ModuleType(top)
    stand_in.__path__ = list(spec.submodule_search_locations)
    sys.modules[top] = stand_in
    mod, why2 = load(module)
    return (mod, None) if mod is not None else (None, f"{why}; past its __init__: {why2}")
