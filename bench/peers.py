"""Other implementations, each an optional import. A missing peer is skipped with a printed note."""
import importlib


def load(module: str):
    """The module, or (None, why) when it does not import here."""
    try:
        return importlib.import_module(module), None
    except Exception as e:  # a peer may fail with anything from ImportError to a CUDA build error
        return None, f"{type(e).__name__}: {e}".splitlines()[0][:160]
