"""docs/switches.md against the code: every ``SSM_TRITON_*`` variable the package reads is documented there, and
every variable documented there is read somewhere (a switch taken out leaves no row behind). No kernels run."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"SSM_TRITON_[A-Z0-9_]*[A-Z0-9]")


def _read_by_package() -> set[str]:
    names = set()
    for folder in ("ssm_triton", "kernels", "reference"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(NAME.findall(path.read_text()))
    return names


def _documented() -> set[str]:
    text = (ROOT / "docs" / "switches.md").read_text()
    return {m.group(1) for m in re.finditer(r"^\| `(SSM_TRITON_[A-Z0-9_]+)` \|", text, re.MULTILINE)}


def test_every_switch_the_package_reads_is_documented():
    missing = sorted(_read_by_package() - _documented())
    assert not missing, f"read by the package, no row in docs/switches.md: {missing}"


def test_every_documented_switch_is_read():
    stale = sorted(_documented() - _read_by_package())
    assert not stale, f"rows in docs/switches.md that no code reads: {stale}"
