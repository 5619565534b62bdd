"""docker-compose.yml is for users (no Docker engine runs here): validate it against the Compose
specification's JSON schema, and check the promises the documentation makes about it (docs/operations.md)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from runtime.settings import PROJECT_ROOT

# The Compose specification schema as shipped in the docker-compose 1.29.2 wheel on PyPI.
SPEC_WHEEL = "docker-compose==1.29.2"
SPEC_MEMBER = "compose/config/compose_spec.json"
SPEC_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"


@pytest.fixture(scope="module")
def compose_schema() -> dict:
    cache = PROJECT_ROOT / ".local" / "cache" / "compose-spec"
    target = cache / "compose_spec.json"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(cache), SPEC_WHEEL],
            check=True,
            capture_output=True,
        )
        wheel = next(cache.glob("docker_compose-1.29.2-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read(SPEC_MEMBER))
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert digest == SPEC_SHA256, f"unexpected compose schema content (sha256 {digest})"
    return json.loads(target.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(Path(PROJECT_ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_specification(compose_schema, compose):
    document = {key: value for key, value in compose.items() if key != "name"}  # `name` postdates this schema
    validator = jsonschema.Draft201909Validator(compose_schema)
    assert list(validator.iter_errors(document)) == []


def test_the_schema_check_catches_a_broken_file(compose_schema, compose):
    broken = {key: value for key, value in compose.items() if key != "name"}
    broken["services"] = {**broken["services"], "kafka": {**broken["services"]["kafka"], "healthcheck": "yes"}}
    broken["services"]["postgres"] = {**broken["services"]["postgres"], "portz": ["5432"]}
    errors = list(jsonschema.Draft201909Validator(compose_schema).iter_errors(broken))
    assert len(errors) == 2


def test_compose_services_are_what_the_readme_promises(compose):
    services = compose["services"]
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"postgres", "kafka", "metabase"}
    airflow = {name for name, service in services.items() if service.get("profiles") == ["airflow"]}
    assert airflow == {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"}
    assert set(services) == default | airflow
    assert re.fullmatch(r"postgres:16(\.\d+)?", services["postgres"]["image"])
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, one node
    for name, service in services.items():
        if "build" in service:  # Airflow: the official image with Cosmos, pinned in its Dockerfile
            dockerfile = (PROJECT_ROOT / service["build"]["dockerfile"]).read_text()
            image = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE).group(1)
        else:
            image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image"
        if name != "airflow-init":  # a one-shot job (migrate, create the admin), not a service to watch
            assert "healthcheck" in service, f"{name} has no healthcheck"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            # Airflow runs the project itself: the repository is mounted, everything else is a named volume.
            assert source in compose["volumes"] or (name in airflow and source == "."), f"{name}: {source}"


def test_compose_commits_no_secret(compose):
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    assert "${PGPASSWORD:?" in text
    for service in compose["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if "PASS" in key:
                assert str(value).startswith("${"), f"{key} must come from the environment"
