"""Shared fixtures. Importing ssm_triton first selects compiled kernels or the interpreter.

Hypothesis profiles: ``ci`` (interpreter: few, small, derandomized) and ``gpu`` (many, large).
The default follows the device; ``SSM_TRITON_PROFILE=ci|gpu`` overrides it and
``SSM_TRITON_EXAMPLES=N`` sets the number of examples.
"""
import os

import pytest
import torch
from hypothesis import HealthCheck, Phase, settings

# Pin kernels to their default configs: tuning per random shape would dominate the run.
# tests/test_configs.py runs every config of every space explicitly instead.
os.environ.setdefault("SSM_TRITON_AUTOTUNE", "0")
import ssm_triton  # noqa: E402  (after the variable: kernels read it when they are defined)
from ssm_triton._paths import drop_checkout_root  # noqa: E402

drop_checkout_root()   # `python -m pytest` from the root: its kernels/ would shadow the hub's, which transformers imports

settings.register_profile(
    # no shrinking under the interpreter: one shrink can take many minutes there
    # no example database: derandomized runs replay nothing, and pytest-xdist workers would share it
    "ci", max_examples=50, deadline=None, derandomize=True, print_blob=True, database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "gpu", max_examples=100, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
from strategies import PROFILE  # noqa: E402

settings.load_profile(PROFILE)
if os.environ.get("SSM_TRITON_EXAMPLES"):  # e.g. fewer examples under compute-sanitizer
    # a smoke run: few examples and no shrinking (on a GPU each shrink step recompiles for its new shape)
    settings.register_profile("override", settings.get_profile(PROFILE), max_examples=int(os.environ["SSM_TRITON_EXAMPLES"]),
                              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    settings.load_profile("override")


@pytest.fixture(scope="session")
def device() -> torch.device:
    return ssm_triton._runtime.default_device()


def pytest_runtest_logreport(report):
    """With ``SSM_TRITON_FAILURES=path``, each failure's report (hypothesis's falsifying example included) is
    appended to ``path`` as it happens: a GPU run cut by its time limit keeps what failed and why (pytest prints
    the reports only at the end). Under xdist the controller writes them; its workers, which see the same
    reports first, do not."""
    path = os.environ.get("SSM_TRITON_FAILURES")
    if path and report.failed and "PYTEST_XDIST_WORKER" not in os.environ:
        with open(path, "a") as f:
            f.write(f"==== {report.nodeid} ({report.when})\n{report.longreprtext}\n\n")


@pytest.fixture(autouse=True)
def _no_replays_from_earlier_tests():
    """Each test starts with no replay (``kernels/replay.py``): one recorded by an earlier test would skip the
    launcher code a test patches or spies on. Calls repeated inside a test still replay."""
    from ssm_triton.kernels import replay
    replay.clear_all()
    yield
