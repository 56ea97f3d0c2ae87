"""Every shipped UI workflow is a valid schema-0.4 graph of known nodes, and its API twin (same file name
under ``api/``) describes the same graph. Runs vacuously (skipped) until workflows are shipped.

Layout: ``workflows/<name>.json`` (UI format, for the template browser) and ``workflows/api/<name>.json``
(API format, for ``/prompt`` and tests). ``example_workflows/`` is accepted the same way.
"""

from __future__ import annotations

import pytest
import workflow_check as wc
from comfy_fixtures import load_pack_with_v3_api
from support import REPO_ROOT

ROOTS = ("workflows", "example_workflows")
UI_FILES = sorted(p for root in ROOTS for p in (REPO_ROOT / root).glob("*.json"))


@pytest.fixture(scope="module")
def specs():
    pack = load_pack_with_v3_api("c3mot_pack_for_shipped_workflows")
    return wc.node_specs(pack.nodes.NODE_CLASS_MAPPINGS)


@pytest.mark.parametrize("path", UI_FILES or [None], ids=[p.name for p in UI_FILES] or ["none-shipped"])
def test_shipped_workflow_and_twin(path, specs):
    if path is None:
        pytest.skip("no workflows shipped yet")
    ui = wc.load_json(path)
    wc.check_ui_workflow(ui, specs, name=str(path.relative_to(REPO_ROOT)))
    twin = path.parent / "api" / path.name
    assert twin.is_file(), f"{path.relative_to(REPO_ROOT)} has no API twin at {twin.relative_to(REPO_ROOT)}"
    api = wc.load_json(twin)
    wc.check_api_workflow(api, specs, name=str(twin.relative_to(REPO_ROOT)))
    wc.check_api_twin(ui, api, specs, name=str(twin.relative_to(REPO_ROOT)))


def test_every_api_twin_has_a_ui_workflow():
    for root in ROOTS:
        for twin in (REPO_ROOT / root / "api").glob("*.json"):
            assert (REPO_ROOT / root / twin.name).is_file(), f"{twin.relative_to(REPO_ROOT)} has no UI workflow"
