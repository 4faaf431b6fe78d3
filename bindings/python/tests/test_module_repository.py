"""Modules from a signed module repository: Channel(module_repository=...) verifies the
repository and loads the manifest's modules, and a refusal raises libTMC.Error naming the
step."""

from __future__ import annotations

import os
import pathlib

import pytest

import libTMC
from libTMC import Channel

REPO = os.environ.get("TMC_TEST_MODULE_REPO", "")

pytestmark = pytest.mark.skipif(
    not REPO or not os.path.isdir(REPO), reason="the build's signed test repository (TMC_TEST_MODULE_REPO) is absent"
)


def manifest() -> dict[str, object]:
    return {"id": "py-repo", "modules": ["tally"], "stages": {"tally.count": {}}}


def test_a_channel_loads_its_modules_from_the_repository(tmp_path: pathlib.Path) -> None:
    repo = {"dir": REPO, "trust": REPO + "-key/trust.yaml", "state": tmp_path / "state.yaml"}
    with Channel(manifest(), module_repository=repo) as ch:
        kinds = [s.kind for s in ch.plan.stages]
        assert "tally.count" in kinds
        reason = next(s.reason for s in ch.plan.stages if s.kind == "tally.count")
        assert "module tally 1.0.0, sha256 " in reason


def test_an_untrusted_repository_is_refused(tmp_path: pathlib.Path) -> None:
    trust = tmp_path / "trust.yaml"
    # A valid trust file listing a key that did not sign the repository.
    trust.write_text('keys:\n  - id: "66687aadf862bd77"\n    ed25519: "' + "00" * 32 + '"\n')
    repo = {"dir": REPO, "trust": trust, "state": tmp_path / "state.yaml"}
    with pytest.raises(libTMC.Error) as err:
        Channel(manifest(), module_repository=repo)
    assert err.value.code == "MODULE_ERROR"
    assert "refused at step 'trust'" in str(err.value)


def test_module_repository_must_name_dir_and_trust() -> None:
    with pytest.raises(ValueError, match="'dir' and 'trust' are required"):
        Channel(manifest(), module_repository={"dir": REPO})
    with pytest.raises(TypeError, match="must be a dict"):
        Channel(manifest(), module_repository=REPO)
