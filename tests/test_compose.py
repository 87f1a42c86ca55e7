"""docker-compose.yml, the Dockerfile and everything they mount, checked without a Docker daemon.

The stack itself is never started here (no daemon on CI). Instead every piece is checked with the
real tool that will read it (docker-compose, promtool, amtool, the exporter's own config parser,
pip), and ``COVERED_BY`` names, for each compose service, the test that runs the same thing for real.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

import exporter
from devtools.pgcluster import free_port
from devtools.prefect_env import PREFECT_VERSIONS
from exporter.config import Config, parse_config

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
ALERTS_FILE = REPO_ROOT / "alerts" / "prefect-db-alerts.yml"
FLOWS_DIR = REPO_ROOT / "deploy" / "compose" / "flows"
EXPORTER_SERVICE = "prefect-db-exporter"

# Each compose service and the test that runs the same program, configuration or script for real.
COVERED_BY: dict[str, str] = {
    "postgres": "tests/conftest.py (a real PostgreSQL cluster with pg_stat_statements)",
    "prefect-server": "tests/test_e2e.py (prefect server start, Prefect 3.9.1)",
    "prefect-deploy": "tests/test_e2e.py (deploy/compose/flows/register.py)",
    "prefect-worker": "tests/test_e2e.py (two prefect process workers)",
    "exporter-role": "tests/conftest.py (deploy/exporter-role.sql on every test database)",
    EXPORTER_SERVICE: "tests/test_e2e.py (compose exporter.yaml); test_image_install_runs_the_exporter",
    "prometheus": "tests/test_e2e.py (Debian's prometheus) and test_prometheus_config_passes_promtool",
    "alertmanager": "tests/test_e2e.py, tests/test_alertmanager.py (Debian's alertmanager)",
    "grafana": "tests/test_dashboards.py and test_grafana_provisioning_loads_the_dashboards",
}

# An exact version: v2.55.1, 15.10-bookworm, 3.9.1-python3.11, 11.6.0 (not 15, 3-latest or latest).
PINNED_TAG = re.compile(r"^v?\d+\.\d+(\.\d+)?([-.][A-Za-z0-9.]+)*$")
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as YAML (variables not interpolated)."""
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return document


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services of the compose file."""
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def interpolate(text: str) -> str:
    """Resolve ``${VAR:-default}`` to its default (or the variable's value) and ``$$`` to ``$``."""
    resolved = INTERPOLATION.sub(lambda m: os.environ.get(m.group(1)) or m.group(2) or "", text)
    return resolved.replace("$$", "$")


@dataclass(frozen=True)
class Mount:
    """A bind mount: a repository path seen at ``target`` inside the container."""

    source: Path
    target: str
    read_only: bool


def bind_mounts(service: dict[str, Any]) -> list[Mount]:
    """The bind mounts of a service (named volumes are left out)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            if not source.startswith((".", "/")):
                continue
            mounts.append(Mount((REPO_ROOT / source).resolve(), target, "ro" in mode))
        elif volume.get("type") == "bind":
            source = REPO_ROOT / volume["source"]
            mounts.append(Mount(source.resolve(), volume["target"], bool(volume.get("read_only"))))
    return mounts


def secret_files(compose: dict[str, Any], service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> repository file of each secret a service uses."""
    result = {}
    for entry in service.get("secrets", []):
        name = entry if isinstance(entry, str) else entry["source"]
        target = f"/run/secrets/{name}" if isinstance(entry, str) else entry.get("target", name)
        if not target.startswith("/"):
            target = f"/run/secrets/{target}"
        result[target] = (REPO_ROOT / compose["secrets"][name]["file"]).resolve()
    return result


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The repository path behind a path inside a service's container (via its bind mounts)."""
    for mount in sorted(bind_mounts(service), key=lambda m: -len(m.target)):
        if container_path == mount.target:
            return mount.source
        if container_path.startswith(mount.target.rstrip("/") + "/"):
            return mount.source / container_path[len(mount.target.rstrip("/")) + 1 :]
    raise AssertionError(f"{container_path} is not bind-mounted")


def command_option(service: dict[str, Any], option: str) -> str:
    """The value of ``--option=value`` or ``--option value`` in a service's command."""
    argv = service["command"]
    argv = shlex.split(argv) if isinstance(argv, str) else [str(a) for a in argv]
    for index, arg in enumerate(argv):
        if arg.startswith(f"{option}="):
            return arg.split("=", 1)[1]
        if arg == option:
            return argv[index + 1]
    raise AssertionError(f"{option} not in {argv}")


def container_ports(service: dict[str, Any]) -> set[int]:
    """The container-side ports a service publishes."""
    ports = set()
    for entry in service.get("ports", []):
        text = interpolate(str(entry)) if not isinstance(entry, dict) else str(entry["target"])
        ports.add(int(text.split(":")[-1].split("/")[0]))
    return ports


def exporter_config(compose: dict[str, Any]) -> tuple[Config, str]:
    """The exporter's compose config parsed by the exporter, and its text with secrets resolved."""
    service = services(compose)[EXPORTER_SERVICE]
    path = host_path(service, command_option(service, "--config"))
    text = path.read_text(encoding="utf-8")
    # The password file exists only inside the container: point it at the secret's source.
    for target, source in secret_files(compose, service).items():
        text = text.replace(target, str(source))
    return parse_config(text, str(path)), text


# docker-compose ----------------------------------------------------------------------------------


def docker_compose() -> str:
    """Path of docker-compose (make test installs it)."""
    found = shutil.which("docker-compose")
    if found:
        return found
    policy = subprocess.run(
        ["apt-cache", "policy", "docker-compose"], capture_output=True, text=True, check=False
    ).stdout
    if "Candidate:" not in policy or "Candidate: (none)" in policy:
        pytest.fail("docker-compose is missing and apt offers no docker-compose package")
    pytest.fail("docker-compose is missing: `apt-get install docker-compose` (make test does)")


def test_compose_file_is_valid() -> None:
    # Debian's docker-compose (1.29) validates against the Compose specification without a daemon.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    result = subprocess.run(
        [docker_compose(), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_is_covered_by_a_test(compose: dict[str, Any]) -> None:
    assert sorted(services(compose)) == sorted(COVERED_BY)
    for where in COVERED_BY.values():
        for path in re.findall(r"tests/\w+\.py", where):
            assert (REPO_ROOT / path).is_file(), path


def test_every_mounted_path_exists_in_the_repository(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for mount in bind_mounts(service):
            assert mount.source.exists(), f"{name}: {mount.source} does not exist"
            assert mount.source.is_relative_to(REPO_ROOT), f"{name}: {mount.source} is outside the repo"
            assert mount.read_only, f"{name}: mount {mount.target} should be read-only"
        if "build" in service:
            context = REPO_ROOT / service["build"]["context"]
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file()
    for name, secret in compose["secrets"].items():
        path = REPO_ROOT / secret["file"]
        assert path.is_file(), f"secret {name}: {path} does not exist"
        assert "change-me" in path.read_text(encoding="utf-8"), f"secret {name} should be a placeholder"


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        image = interpolate(service.get("image", ""))
        assert image or "build" in service, f"{name} has neither image nor build"
        repository, _, tag = image.rpartition(":")
        assert repository and PINNED_TAG.match(tag), f"{name}: image {image!r} is not pinned to a version"
        assert "latest" not in tag, f"{name}: {image}"
        if "build" in service:
            assert tag == exporter.__version__, f"{name}: tag the built image with the package version"


def test_prefect_image_is_a_tested_prefect_version(compose: dict[str, Any]) -> None:
    for name in ("prefect-server", "prefect-deploy", "prefect-worker"):
        tag = services(compose)[name]["image"].rpartition(":")[2]
        assert tag.split("-")[0] in PREFECT_VERSIONS, f"{name}: {tag} is not tested by tests/test_e2e.py"


def test_services_are_healthchecked_and_started_in_order(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    one_shot = {n for n, s in all_services.items() if s.get("restart") == "no"}
    assert one_shot == {"prefect-deploy", "exporter-role"}
    for name, service in all_services.items():
        if name not in one_shot:
            assert "healthcheck" in service, f"{name} has no healthcheck"
            assert service.get("restart") == "unless-stopped", name
        for dependency, rule in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in one_shot else "service_healthy"
            assert rule == {"condition": expected}, f"{name} -> {dependency}: {rule}"
    # The role script grants on Prefect's tables, which exist once the server has migrated.
    assert "prefect-server" in all_services["exporter-role"]["depends_on"]
    assert "exporter-role" in all_services[EXPORTER_SERVICE]["depends_on"]


def test_no_password_is_written_into_the_compose_file(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key) and not key.endswith("_FILE"):
                pytest.fail(f"{name}: {key} is set in the compose file; use a secret file")
            if "://" in str(value):
                userinfo = urlsplit(str(value)).netloc.rpartition("@")[0]
                password = userinfo.partition(":")[2]
                assert password in ("", "$${PREFECT_API_DATABASE_PASSWORD}"), f"{name}: {key}"


def test_role_step_runs_the_repository_role_script(compose: dict[str, Any]) -> None:
    service = services(compose)["exporter-role"]
    command = " ".join(service["command"])
    script = re.search(r"-f (\S+)", command)
    assert script is not None
    assert host_path(service, script.group(1)) == REPO_ROOT / "deploy" / "exporter-role.sql"
    assert "-h postgres" in command and "-d prefect" in command
    assert "/run/secrets/prefect_exporter_password" in command


# The exporter's config and what it points at ------------------------------------------------------


def test_exporter_config_parses_with_the_exporters_parser(compose: dict[str, Any]) -> None:
    config, _ = exporter_config(compose)
    (target,) = config.targets
    dsn = urlsplit(target.dsn)
    assert (dsn.hostname, dsn.port, dsn.path) == ("postgres", 5432, "/prefect")
    assert dsn.username == "prefect_exporter" and dsn.password is None
    assert target.password_file is not None and "change-me" in target.password_file.read_text()
    service = services(compose)[EXPORTER_SERVICE]
    assert config.listen_port in container_ports(service)
    assert "postgres" in services(compose)


def test_service_addresses_match_the_services(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    config, _ = exporter_config(compose)
    # The port each service listens on inside its container.
    listens = {name: container_ports(service) for name, service in all_services.items()}
    listens["postgres"] = {5432}
    listens[EXPORTER_SERVICE] = {config.listen_port}
    prometheus = all_services["prometheus"]
    prometheus_yml = yaml.safe_load(
        host_path(prometheus, command_option(prometheus, "--config.file")).read_text()
    )
    addresses = [
        (f"scrape job {job['job_name']}", target, job)
        for job in prometheus_yml["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    addresses += [
        ("alertmanagers", target, None)
        for alertmanager in prometheus_yml["alerting"]["alertmanagers"]
        for static in alertmanager["static_configs"]
        for target in static["targets"]
    ]
    for what, address, _ in addresses:
        host, _, port = address.rpartition(":")
        if host == "localhost":  # Prometheus scraping itself
            assert int(port) in listens["prometheus"], what
            continue
        assert host in all_services, f"{what}: {host} is not a compose service"
        assert int(port) in listens[host], f"{what}: {host} does not listen on {port}"
    # The alert rules name the scrape job of the exporter.
    jobs = {job["job_name"] for _, address, job in addresses if job and address.startswith(EXPORTER_SERVICE)}
    assert set(re.findall(r'up\{job="([^"]+)"\}', ALERTS_FILE.read_text())) == jobs == {"prefect-db"}
    # Prefect's clients and database URL.
    for name in ("prefect-deploy", "prefect-worker"):
        api = urlsplit(all_services[name]["environment"]["PREFECT_API_URL"])
        assert api.hostname == "prefect-server" and api.port in listens["prefect-server"], name
    database = urlsplit(all_services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"])
    assert (database.hostname, database.port) == ("postgres", 5432)


def test_worker_pool_and_deployments_match_the_flows_folder(compose: dict[str, Any]) -> None:
    worker, deploy = services(compose)["prefect-worker"], services(compose)["prefect-deploy"]
    register = FLOWS_DIR / "register.py"
    tree = ast.parse(register.read_text())
    (default,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "DEFAULT_CONFIG"
    ]
    config = ast.literal_eval(default)
    assert command_option(worker, "--pool") == config["pool"]
    # Deployments pull their code from the folder's path, so both containers must see it there.
    assert host_path(worker, "/opt/prefect/flows") == host_path(deploy, "/opt/prefect/flows") == FLOWS_DIR
    assert host_path(deploy, deploy["command"][-1]) == register
    flows_py = ast.parse((FLOWS_DIR / "flows.py").read_text())
    flows = {
        f"flows.py:{node.name}"
        for node in flows_py.body
        if isinstance(node, ast.FunctionDef)
        and any(getattr(d, "id", "") == "flow" for d in node.decorator_list)
    }
    assert {d["entrypoint"] for d in config["deployments"]} <= flows


# Prometheus, Alertmanager, Grafana ----------------------------------------------------------------


def test_prometheus_config_passes_promtool(compose: dict[str, Any], tmp_path: Path) -> None:
    # Rebuild the container's view of the files (config and rules at their mount points), so that
    # rule_files resolve exactly as they will inside the container.
    service = services(compose)["prometheus"]
    root = tmp_path / "root"
    for mount in bind_mounts(service):
        destination = root / mount.target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if mount.source.is_dir():
            shutil.copytree(mount.source, destination)
        else:
            shutil.copy(mount.source, destination)
    config = root / command_option(service, "--config.file").lstrip("/")
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (bash .ci/run does)"
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_alertmanager_config_passes_amtool(compose: dict[str, Any]) -> None:
    service = services(compose)["alertmanager"]
    config = host_path(service, command_option(service, "--config.file"))
    assert config.is_file(), config
    amtool = shutil.which("amtool")
    assert amtool, "amtool is missing: apt-get install prometheus-alertmanager (bash .ci/run does)"
    result = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_loads_the_dashboards(compose: dict[str, Any]) -> None:
    service = services(compose)["grafana"]
    provisioning = host_path(service, "/etc/grafana/provisioning")
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and url.port in container_ports(services(compose)["prometheus"])
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())["providers"]
    assert provider["type"] == "file"
    folder = host_path(service, provider["options"]["path"])
    assert folder == REPO_ROOT / "dashboards"
    boards = sorted(folder.glob("*.json"))
    assert boards, "no dashboards to provision"
    for path in boards:
        board = json.loads(path.read_text(encoding="utf-8"))
        variables = {v["name"]: v for v in board["templating"]["list"]}
        # The datasource variable starts on Grafana's default datasource of its type: this one.
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == datasource["type"]
        # Every datasource reference goes through the variable (or names the provisioned uid).
        refs = re.findall(r'"datasource":\s*\{[^{}]*"uid":\s*"([^"]*)"', json.dumps(board, sort_keys=True))
        assert refs and set(refs) <= {"${datasource}", datasource["uid"]}, path.name


# Dockerfile ------------------------------------------------------------------------------------------

LOCK_FILE = REPO_ROOT / "requirements.lock"
LIST_DISTRIBUTIONS = "import importlib.metadata as m\nfor d in m.distributions(): print(d.name, d.version)"
IMAGE_UID = 10001


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The stages of the Dockerfile, each a list of (INSTRUCTION, arguments), comments dropped."""
    stages: list[list[tuple[str, str]]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, arguments = text.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), arguments.strip()))
    return stages


def dockerignored(relative: str) -> bool:
    """Whether .dockerignore keeps a repository path out of the build context."""
    patterns = [
        p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
        for pattern in patterns
        for prefix in prefixes
    )


def labels(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The LABEL key="value" pairs of a stage (ARG defaults substituted)."""
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    found: dict[str, str] = {}
    for keyword, arguments in instructions:
        if keyword == "LABEL":
            for key, value in re.findall(r'(\S+?)="([^"]*)"', arguments):
                found[key] = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)
    return found


def test_image_is_pinned_unprivileged_labelled_and_healthchecked() -> None:
    build, final = dockerfile_stages()
    for stage in (build, final):
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm( AS \w+)?", stage[0][1]), stage[0][1]
    keywords = [k for k, _ in final]
    users = [a for k, a in final if k == "USER"]
    assert users == [f"{IMAGE_UID}:{IMAGE_UID}"], "the final stage must run as a numeric non-root user"
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert ("EXPOSE", "9650") in final
    assert ("ENTRYPOINT", '["prefect-db-exporter"]') in final
    (healthcheck,) = [a for k, a in final if k == "HEALTHCHECK"]
    assert "urllib.request" in healthcheck and "/healthz" in healthcheck
    oci = labels(final)
    assert oci["org.opencontainers.image.version"] == exporter.__version__
    for key in ("title", "description", "licenses", "base.name"):
        assert oci[f"org.opencontainers.image.{key}"], key
    assert oci["org.opencontainers.image.base.name"].endswith(final[0][1])
    for stage in (build, final):
        for keyword, arguments in stage:
            if keyword in ("ENV", "ARG", "LABEL"):
                assert not re.search(r"(?i)password|secret|token", arguments), arguments
    # Only the virtualenv reaches the final image: no source, no uv, no build tools.
    copies = [a for k, a in final if k == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]


def lock_pins() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as {name: (version, hashes)}."""
    pins: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in LOCK_FILE.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line):
            name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
            pins[name] = (match.group(2), [])
        elif match := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line):
            pins[name][1].append(match.group(1))
    return pins


def test_image_dependencies_come_from_the_committed_lock() -> None:
    from packaging.requirements import Requirement

    pins = lock_pins()
    assert LOCK_FILE.read_text().startswith("# This file was autogenerated by uv")
    assert "#    make lock" in LOCK_FILE.read_text(), "write the lock with `make lock`"
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is a dependency but not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name][0]), f"{name}=={pins[name][0]} vs {text}: make lock"
    for name, (version, hashes) in pins.items():
        assert hashes, f"{name}=={version} has no hash"
    # No test or dev tool in the image's lock.
    assert not {"pytest", "mypy", "ruff", "grafana-foundation-sdk"} & set(pins)
    (build, final) = dockerfile_stages()
    (run,) = [a for k, a in build if k == "RUN"]
    steps = [shlex.split(step) for step in run.split("&&")]
    uv_steps = [argv[1:] for argv in steps if Path(argv[0]).name == "uv"]
    (image_venv,) = [a.split()[-1] for k, a in final if k == "COPY"]
    # The image's virtualenv is made by uv (no pip, no setuptools), then gets the lock and the package.
    assert [argv[0:2] for argv in uv_steps] == [["venv", "-q"], ["pip", "sync"], ["pip", "install"]]
    assert uv_steps[0][-1] == image_venv
    assert "--require-hashes" in uv_steps[1] and uv_steps[1][-1] == "requirements.lock"
    assert "--no-deps" in uv_steps[2] and uv_steps[2][-1] == "."
    # The image's uv is the one the test extras pin (the one `make lock` and this suite use).
    (uv_pin,) = [argv[-1] for argv in steps if argv[-1].startswith("uv==")]
    assert uv_pin in project["optional-dependencies"]["test"]


def test_compose_secrets_are_readable_by_the_image_user(compose: dict[str, Any]) -> None:
    # Compose mounts file secrets as they are on the host (uid/gid/mode are ignored without swarm):
    # the exporter, running as uid 10001, reads its password only when the file is world-readable.
    service = services(compose)[EXPORTER_SERVICE]
    for target, source in secret_files(compose, service).items():
        assert source.stat().st_mode & 0o004, f"{source} ({target}) is not readable by uid {IMAGE_UID}"
        tracked = subprocess.run(
            ["git", "ls-files", "-s", str(source)], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout
        assert tracked.startswith("100644"), f"{source} is committed as {tracked[:6]}: a fresh clone differs"


def test_dockerfile_copies_only_the_package_and_dockerignore_keeps_the_rest_out() -> None:
    build, _ = dockerfile_stages()
    copies = [a.split() for k, a in build if k in ("COPY", "ADD")]
    sources = [source for *sources, _ in copies for source in sources]
    assert sorted(s.rstrip("/") for s in sources) == [
        "README.md",
        "exporter",
        "pyproject.toml",
        "queries",
        "requirements.lock",
    ]
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert not dockerignored(source.rstrip("/")), f".dockerignore excludes {source}"
    for private in (
        ".venv",
        ".cache",
        ".git",
        "tests",
        "tests/data",
        "deploy/compose/secrets",
        "x/__pycache__",
    ):
        assert dockerignored(private), f".dockerignore should exclude {private}"


def test_image_install_runs_the_exporter(tmp_path: Path) -> None:
    # Repeat the build stage without Docker: the COPY layout under WORKDIR, then its RUN as written
    # (a virtualenv, uv from PyPI, the locked dependencies with their hashes, the package without
    # dependencies, the import check from /), with /opt/venv moved under tmp_path. Then what the final
    # stage keeps: the virtualenv alone, its entry point and the HEALTHCHECK against the running exporter.
    build, final = dockerfile_stages()
    (workdir,) = [a for k, a in build if k == "WORKDIR"]
    app = tmp_path / workdir.lstrip("/")
    app.mkdir(parents=True)
    for keyword, arguments in build:
        if keyword == "COPY":
            *sources, destination = arguments.split()
            for source in sources:
                path = REPO_ROOT / source
                if path.is_dir():  # Docker copies a directory's contents into the destination
                    shutil.copytree(path, app / destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target = app / destination / path.name if destination.endswith("/") else app / destination
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, target)
    (run,) = [a for k, a in build if k == "RUN"]
    (copied,) = [a.split() for k, a in final if k == "COPY"]
    image_venv = copied[-1]
    venv = tmp_path / "venv"
    # The base image's `python` is the interpreter the suite runs on (3.11 as well).
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "python").symlink_to(sys.executable)
    env = {
        **os.environ,
        **dict(a.split("=", 1) for k, a in build if k == "ENV" for a in shlex.split(a)),
        "PATH": f"{shims}:{os.environ['PATH']}",
    }
    env.pop("VIRTUAL_ENV", None)
    built = subprocess.run(
        ["sh", "-c", run.replace(image_venv, str(venv)).replace("/opt/uv", str(tmp_path / "uv"))],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    # Exactly the lock and the package itself: no pip, no setuptools, no uv.
    python = str(venv / "bin" / "python")
    listing = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m\nfor d in m.distributions(): print(d.name, d.version)",
        ],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in (line.split() for line in listing.splitlines())
    }
    locked = {name: version for name, (version, _) in lock_pins().items()}
    assert installed == {**locked, "prefect-postgres-exporter": exporter.__version__}
    # The final stage takes only the virtualenv: the source is gone.
    shutil.rmtree(app)
    site = next(venv.glob("lib/python*/site-packages"))
    located = subprocess.run(
        [python, "-c", "import exporter.config as c; print(c.__file__)"],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert located.stdout.strip() == str(site / "exporter" / "config.py")
    # Every collector, data file and diagnostic query of the repository, and nothing else.
    shipped = site / "exporter" / "queries"
    source = REPO_ROOT / "queries"
    assert sorted(
        str(p.relative_to(shipped)) for p in shipped.rglob("*") if p.suffix in (".sql", ".yaml")
    ) == sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.suffix in (".sql", ".yaml"))

    port = free_port()
    argv = [str(venv / "bin" / "prefect-db-exporter"), "--dsn", "postgresql://nobody@127.0.0.1:1/prefect"]
    server = subprocess.Popen(
        [*argv, "--web.listen-address", f"127.0.0.1:{port}"],
        cwd="/",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "the exporter did not answer /healthz"
                time.sleep(0.2)
        (healthcheck,) = [a for k, a in final if k == "HEALTHCHECK"]
        probe = json.loads(healthcheck.split(" CMD ", 1)[1])
        assert probe[0] == "python"
        probe = [python, *(arg.replace(":9650/", f":{port}/") for arg in probe[1:])]
        assert subprocess.run(probe, env=env, timeout=30, check=False).returncode == 0
    finally:
        server.kill()
        server.wait(timeout=10)
    # With nothing listening, the probe fails.
    assert subprocess.run(probe, env=env, capture_output=True, timeout=30, check=False).returncode != 0
