"""docker/compose.yml, docker/env.example and the image they build (docker/Dockerfile).

No Docker engine here: the files are parsed and checked against the repository they package.
"""

import fnmatch
import re
import shlex
import subprocess
import tomllib
from graphlib import TopologicalSorter
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.docker import APP_DIR, DOCKER, REPO, known_env_names, script_for_command

APP_SERVICES = ("migrate", "web", "worker", "beat", "inventory")
START_SCRIPT_OF = {"web": "start-web", "worker": "start-worker", "beat": "start-beat", "inventory": "start-inventory"}
PRODUCTION_SECRETS = ("DJANGO_SECRET_KEY", "MESHGATE_FIELD_ENCRYPTION_KEY", "MESHGATE_AUDIT_KEY")


@pytest.fixture(scope="module")
def compose() -> dict:
    # safe_load resolves the anchors and `<<` merge keys the way compose does.
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _env_file(path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not NAME=value"
            values[name.strip()] = value
    return values


def _interpolated_names(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))


def _command(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else command


# --- compose.yml ------------------------------------------------------------------------------


def test_compose_follows_the_compose_spec_without_a_version_key(compose):
    assert "version" not in compose
    assert compose["name"] == "meshgate"
    assert set(compose["services"]) == {"postgres", "redis", *APP_SERVICES}


def test_backing_services_are_pinned_and_health_checked(services):
    postgres, redis = services["postgres"], services["redis"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert redis["image"] == "redis:7"
    assert "ping" in redis["healthcheck"]["test"]


def test_dependency_graph(services):
    depends = {name: service.get("depends_on", {}) for name, service in services.items()}
    for name in ("web", "worker"):
        assert depends[name] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    assert depends["migrate"] == {"postgres": {"condition": "service_healthy"}}
    assert depends["beat"] == {"redis": {"condition": "service_healthy"}}
    assert not depends["postgres"] and not depends["redis"]
    for name, needed in depends.items():
        assert set(needed) <= set(services), f"{name} depends on an unknown service"
    # Raises CycleError if a service waited, even indirectly, for itself.
    order = list(TopologicalSorter({name: set(needed) for name, needed in depends.items()}).static_order())
    assert order.index("migrate") < order.index("web")


def test_worker_beat_and_migrate_reuse_the_web_image_and_build(services):
    web = services["web"]
    assert web["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert (DOCKER / web["build"]["context"] / web["build"]["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    for name in ("migrate", "worker", "beat"):
        service = services[name]
        assert service["build"] == web["build"], name
        assert service["image"] == web["image"], name
        assert service["env_file"] == web["env_file"], name
        assert "ports" not in service, f"{name} publishes a port"
    assert web["ports"] == ["${MESHGATE_PORT:-8000}:8000"]


def test_each_process_runs_its_start_script(services):
    for name, script in START_SCRIPT_OF.items():
        command = _command(services[name])
        path = script_for_command(command)
        assert path == DOCKER / script, f"{name} runs {command}, not docker/{script}"
        assert path.is_file() and path.stat().st_mode & 0o111, f"{path} is not executable"
    assert _command(services["migrate"]) == ["python", "manage.py", "migrate", "--noinput"]
    assert services["migrate"]["restart"] == "no"


def test_the_image_health_check_is_off_where_nothing_listens(services):
    for name in ("migrate", "worker", "beat"):
        assert services[name]["healthcheck"] == {"disable": True}, name
    assert "healthcheck" not in services["web"]


def test_app_containers_are_read_only_with_writable_tmp_and_var(services):
    for name in APP_SERVICES:
        assert services[name]["read_only"] is True, name
        assert {"/tmp", str(APP_DIR / "var")} <= set(services[name]["tmpfs"]), name


def test_app_containers_set_only_variables_the_code_reads(services):
    known = known_env_names()
    for name in APP_SERVICES:
        unknown = set(services[name]["environment"]) - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which nothing reads"
        assert {"DATABASE_URL", "CELERY_BROKER_URL"} <= set(services[name]["environment"])


def test_interpolated_variables_are_documented_in_env_example():
    used = _interpolated_names((DOCKER / "compose.yml").read_text())
    assert "POSTGRES_PASSWORD" in used
    assert used <= set(_env_file(DOCKER / "env.example"))


# --- env.example ------------------------------------------------------------------------------


def test_env_example_names_only_variables_the_code_or_compose_reads():
    names = set(_env_file(DOCKER / "env.example"))
    compose_only = _interpolated_names((DOCKER / "compose.yml").read_text())
    unknown = names - known_env_names() - compose_only
    assert not unknown, f"env.example sets {sorted(unknown)}, which nothing reads"


def test_env_example_holds_no_secrets():
    values = _env_file(DOCKER / "env.example")
    for name in (*PRODUCTION_SECRETS, "POSTGRES_PASSWORD", "MESHGATE_METRICS_TOKEN"):
        assert values[name] == "", f"env.example gives {name} a value"


def test_local_env_file_stays_out_of_the_build_context():
    # docker/.env holds the real secrets: the build context must not carry it.
    assert any(fnmatch.fnmatch("docker/.env", p) for p in _dockerignore_patterns())


def test_local_env_file_is_ignored_by_git():
    result = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=REPO, check=False)
    assert result.returncode == 0, "docker/.env (the filled-in env.example) must be in .gitignore"


# --- docker/Dockerfile --------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def _dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip().removeprefix("**/") for line in lines if line.strip() and not line.startswith("#")]


def test_dockerfile_stages():
    stages = _stages()
    assert [s[0][1].split()[0] for s in stages] == ["node:20-slim", "python:3.11.14-slim", "python:3.11.14-slim"]
    assets = dict(stages[0])
    assert "npm ci" in assets["RUN"]
    assert "package-lock.json" in assets["COPY"]


def test_runtime_stage():
    runtime = _stages()[-1]
    by_keyword: dict[str, list[str]] = {}
    for keyword, rest in runtime:
        by_keyword.setdefault(keyword, []).append(rest)
    assert by_keyword["WORKDIR"] == [str(APP_DIR)]
    assert any("DJANGO_SETTINGS_MODULE=portal.settings.production" in env for env in by_keyword["ENV"])
    user = by_keyword["USER"][-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, "runs as root (or by name, which runAsNonRoot cannot verify)"
    assert by_keyword["EXPOSE"] == ["8000"]
    assert "/healthz" in by_keyword["HEALTHCHECK"][0]
    cmd = yaml.safe_load(by_keyword["CMD"][-1])  # exec form is a JSON list
    assert script_for_command(cmd) == DOCKER / "start-web"
    assert any("--from=assets" in c and "node_modules" in c for c in by_keyword["COPY"])
    assert any(c.split()[-1] == "./docker" for c in by_keyword["COPY"]), "start scripts must stay under /app/docker"
    assert any("collectstatic" in run for run in by_keyword["RUN"])


def test_the_project_is_installed_non_editable_from_pyproject():
    runs = " ".join(rest for stage in _stages()[1:] for keyword, rest in stage if keyword == "RUN")
    assert "pip install --no-deps ." in runs
    assert "-e " not in runs and "--editable" not in runs
    assert "pyproject.toml" in runs


def test_build_time_secrets_stay_out_of_the_image_environment():
    for keyword, rest in _dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            for name in (*PRODUCTION_SECRETS, "DATABASE_URL", "CELERY_BROKER_URL"):
                assert name not in rest, f"{keyword} {name} would let production start without its secret"


def test_copied_files_exist_and_are_in_the_build_context():
    patterns = _dockerignore_patterns()
    for keyword, rest in _dockerfile_instructions():
        if keyword != "COPY" or "--from=" in rest:
            continue
        sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such file"
            assert not any(fnmatch.fnmatch(source, p) for p in patterns), f"COPY {source}: in .dockerignore"


def test_build_context_leaves_out_local_state():
    patterns = set(_dockerignore_patterns())
    assert {".git", ".venv", "node_modules", "var", "staticfiles"} <= patterns


def test_collectstatic_dummies_are_what_production_settings_need():
    """The throwaway values given to collectstatic cover every variable production requires."""
    run = next(rest for keyword, rest in _dockerfile_instructions() if keyword == "RUN" and "collectstatic" in rest)
    given = set(re.findall(r"\b([A-Z][A-Z0-9_]*)=", run.split("python manage.py collectstatic")[0]))
    production = (REPO / "portal" / "settings" / "production.py").read_text()
    required = set(re.findall(r"""_required\(\s*["']([A-Z0-9_]+)""", production)) | {"DJANGO_ALLOWED_HOSTS"}
    assert required <= given


def test_runtime_dependencies_cover_the_redis_broker():
    """The image installs pyproject's dependencies without the test extra: the Redis transport
    must not rely on a package that only the test tools bring (kombu's `redis` extra)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    closure = _dependency_closure([Requirement(r) for r in project["dependencies"]])
    needed = {
        canonicalize_name(r.name)
        for r in map(Requirement, metadata.requires("kombu") or [])
        if r.marker and r.marker.evaluate({"extra": "redis"}) and not r.marker.evaluate({"extra": ""})
    }
    assert needed, "kombu declares no redis extra any more; update this test"
    missing = needed - closure
    assert not missing, f"declare kombu[redis] (or these) in pyproject.toml: {sorted(missing)}"


def _dependency_closure(requirements: list[Requirement]) -> set[str]:
    seen: set[str] = set()
    queue = [(r, frozenset(r.extras)) for r in requirements]
    expanded: set[tuple[str, frozenset]] = set()
    while queue:
        requirement, extras = queue.pop()
        name = canonicalize_name(requirement.name)
        if (name, extras) in expanded:
            continue
        expanded.add((name, extras))
        seen.add(name)
        try:
            children = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:  # not for this platform
            continue
        for child in map(Requirement, children):
            applies = not child.marker or any(child.marker.evaluate({"extra": e}) for e in (*extras, ""))
            if applies:
                queue.append((child, frozenset(child.extras)))
    return seen
