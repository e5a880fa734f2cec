"""The deployment files under deploy/ (no container engine here): each is linted by the tool its ecosystem uses,
and what they run matches Veil's real command line. The same topology runs as processes in
tests/cluster/test_two_nodes.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from veil.cli import app as cli_app

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
YAMLLINT_CONFIG = (
    "{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: disable, "
    "braces: {max-spaces-inside: 1}}}"
)


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.edge"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    result = _run(_tool("hadolint"), "--no-color", str(DEPLOY / dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_is_valid_compose_spec() -> None:
    result = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_manifests_validate() -> None:
    result = _run(_tool("kubernetes-validate"), "--strict", str(DEPLOY / "k8s" / "veil.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_yaml_files_pass_yamllint() -> None:
    result = _run(_tool("yamllint"), "-d", YAMLLINT_CONFIG, str(DEPLOY))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_topology_is_the_one_documented() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    roles = sorted(name.rsplit("-", 1)[0] if name[-1].isdigit() else name for name in services)
    assert roles == ["api", "api", "mosquitto", "postgres", "seaweedfs", "worker", "worker"]
    for name in ("api-1", "api-2", "worker-1", "worker-2"):
        environment = services[name]["environment"]
        assert environment["VEIL_BLOB_URL"].startswith("s3://")  # no replica keeps blobs on its own disk
        assert environment["VEIL_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "VEIL_MASTER_KEY=" in (DEPLOY / "veil.env.example").read_text()


def test_what_the_images_run_are_real_veil_commands() -> None:
    """The ENTRYPOINTs and the arguments compose and Kubernetes add are options `veil` really has."""
    from typer.main import get_command

    command = get_command(cli_app)
    serve = command.commands["serve"]  # type: ignore[attr-defined]
    serve_options = {opt for p in serve.params for opt in [*p.opts, *getattr(p, "secondary_opts", [])]}
    assert {"--host", "--port", "--no-worker", "--workers", "--forwarded-allow-ips"} <= serve_options
    assert "worker" in command.commands and "edge" in command.commands  # type: ignore[attr-defined]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert '"veil", "serve", "--host", "0.0.0.0", "--port", "8080", "--no-worker"' in dockerfile
    manifests = list(yaml.safe_load_all((DEPLOY / "k8s" / "veil.yaml").read_text()))
    api = next(m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "veil-api")
    args = api["spec"]["template"]["spec"]["containers"][0]["args"]
    assert all(arg in serve_options for arg in args if arg.startswith("--"))
