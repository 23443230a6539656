"""Checks of docker/ (image, compose, Kubernetes manifests, start scripts) without a Docker engine.

Shared helpers: where the repository and the image's app directory are, which environment
variables the code reads, and which start script a container command runs.
"""

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
K8S = DOCKER / "k8s"
# The image's WORKDIR: the repository's layout is kept below it (docker/ included).
APP_DIR = PurePosixPath("/app")
START_SCRIPTS = ("start-web", "start-worker", "start-beat", "start-inventory")

_SETTINGS_READ = re.compile(r"""\b(?:env(?:\.\w+)?|_required)\(\s*["']([A-Z][A-Z0-9_]*)["']""")
_OS_ENVIRON_READ = re.compile(r"""os\.environ(?:\.get|\.setdefault)?[(\[]\s*["']([A-Z][A-Z0-9_]*)["']""")
_SHELL_READ = re.compile(r"\$\{([A-Z][A-Z0-9_]*)")


def settings_env_names() -> set[str]:
    """Names portal/settings reads through django-environ (`env.str("NAME", ...)`, ...)."""
    names: set[str] = set()
    for path in (REPO / "portal" / "settings").glob("*.py"):
        names |= set(_SETTINGS_READ.findall(path.read_text()))
    return names


def start_script_env_names() -> set[str]:
    names: set[str] = set()
    for script in START_SCRIPTS:
        names |= set(_SHELL_READ.findall((DOCKER / script).read_text()))
    return names


def process_env_names() -> set[str]:
    """Names the project's code reads straight from os.environ (settings module, metrics, ...)."""
    names: set[str] = set()
    for package in ("portal", "policies", "integrations"):
        for path in (REPO / package).rglob("*.py"):
            names |= set(_OS_ENVIRON_READ.findall(path.read_text()))
    return names


def known_env_names() -> set[str]:
    return settings_env_names() | start_script_env_names() | process_env_names()


def script_for_command(command: str | Sequence[str]) -> Path | None:
    """The repository file a container command runs, when it is one of docker/'s start scripts."""
    argv = command.split() if isinstance(command, str) else list(command)
    if not argv:
        return None
    program = PurePosixPath(argv[0])
    if program.is_absolute():
        try:
            program = program.relative_to(APP_DIR)
        except ValueError:
            return None
    if program.parent != PurePosixPath("docker") or program.name not in START_SCRIPTS:
        return None
    return REPO / program
