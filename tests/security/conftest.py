"""A real SoftHSM2 token for the PKCS#11 tests, made in a temporary directory (SOFTHSM2_CONF).

SoftHSM2 is Debian's `softhsm2` package (scripts/test-setup.sh installs it); the tests skip, saying why, when its
module or `softhsm2-util` is missing. A PKCS#11 module is initialised once per process, so the whole session
shares one token directory and one token; each test isolates itself with its own key-label prefix.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SOFTHSM_MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")


@dataclass(frozen=True)
class SoftHsm:
    module: str
    conf: Path
    token: str
    pin: str

    def url(self, prefix: str) -> str:
        return f"pkcs11://{self.module}?token={self.token}&prefix={prefix}"

    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf), "VEIL_PKCS11_PIN": self.pin}


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    module = next((m for m in SOFTHSM_MODULES if Path(m).is_file()), None)
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        pytest.skip("SoftHSM2 is not installed (Debian package softhsm2; scripts/test-setup.sh installs it)")
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        pytest.skip("python-pkcs11 is not installed (pip install python-pkcs11)")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin = secrets.token_hex(4)
    subprocess.run(
        [util, "--init-token", "--free", "--label", "veil-test", "--pin", pin, "--so-pin", secrets.token_hex(4)],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )
    yield SoftHsm(module=module, conf=conf, token="veil-test", pin=pin)
    if saved is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = saved


@pytest.fixture
def hsm_prefix() -> str:
    """A key-label prefix of this test's own, so tests sharing the session's token never see each other's keys."""
    return f"t{secrets.token_hex(4)}"
