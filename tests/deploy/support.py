"""Readers for the deployment files, shared by the tests of tests/deploy.

Everything here is offline and pure: it parses files under deploy/ (YAML,
the Dockerfile, the nginx configuration, .dockerignore) and the environment
variable names the code reads. A file that cannot be parsed fails the test that
reads it, with the parser's message.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="add pyyaml to the dev dependencies")

from consumers.detection import detection_settings_from_env  # noqa: E402
from consumers.fanout.settings import fanout_settings_from_env  # noqa: E402
from consumers.runtime.settings import consumer_settings_from_env  # noqa: E402
from infra.env import SettingsError  # noqa: E402
from ingest.settings import ingest_settings_from_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
NGINX_CONF = DEPLOY / "nginx" / "ingest.conf"
S3_LIFECYCLE = DEPLOY / "s3-lifecycle.json"

# --- YAML ----------------------------------------------------------------------


def load_yaml_documents(path: Path) -> list[Any]:
    """Every non-empty document of a YAML file (a fresh copy: callers may change it)."""
    return copy.deepcopy(_parsed_yaml(path, path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _parsed_yaml(path: Path, mtime_ns: int) -> list[Any]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def deploy_yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def k8s_objects(*, include_template: bool = False) -> list[tuple[Path, dict[str, Any]]]:
    """(file, object) for every Kubernetes object under deploy/k8s, the kustomization excluded."""
    objects: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        if path.name.endswith(".example.yaml") and not include_template:
            continue
        objects.extend((path, doc) for doc in load_yaml_documents(path))
    return objects


def find_objects(kind: str, **filters: str) -> list[dict[str, Any]]:
    found = []
    for _, obj in k8s_objects(include_template=True):
        if obj.get("kind") != kind:
            continue
        if all(obj["metadata"].get(k) == v for k, v in filters.items()):
            found.append(obj)
    return found


def one_object(kind: str, name: str) -> dict[str, Any]:
    found = find_objects(kind, name=name)
    assert len(found) == 1, f"expected one {kind} named {name!r}, found {len(found)}"
    return found[0]


# --- Environment variables the code reads ---------------------------------------


class _RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.names.add(key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.names.add(key)
        return default

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.names.add(key)
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


# Functions building a process's settings from an environment mapping: `ingest
# serve` and `provision`, and every `ingest consume NAME`.
def _fanout_settings_names(environ: Mapping[str, str]) -> None:
    """The live service's reader; an environment without a JWT key is refused after reading."""
    with contextlib.suppress(SettingsError):
        fanout_settings_from_env(environ)


SETTINGS_READERS = (
    ingest_settings_from_env,
    consumer_settings_from_env,
    detection_settings_from_env,
    _fanout_settings_names,
)

# Direct reads elsewhere (the CLI's INGEST_LOG_LEVEL, the local stack's directories).
_ENVIRON_READ = re.compile(
    r"""os\.(?:environ\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
    r"""|os\.environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]"""
)
_SCANNED_FOR_ENVIRON = ("cli", "ingest", "consumers", "infra", "deploy/stack")


def environment_names_read() -> frozenset[str]:
    """Every environment variable name the processes built from this repository read."""
    names: set[str] = set()
    for reader in SETTINGS_READERS:
        recorder = _RecordingEnv()
        reader(recorder)
        names |= recorder.names
    for folder in _SCANNED_FOR_ENVIRON:
        for source in (ROOT / folder).rglob("*.py"):
            for match in _ENVIRON_READ.finditer(source.read_text(encoding="utf-8")):
                names.add(match.group(1) or match.group(2))
    return frozenset(names)


# --- Durations and quantities -------------------------------------------------------

_COMPOSE_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_COMPOSE_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def compose_duration(value: str) -> float:
    """Seconds in a Compose duration such as `1m30s`."""
    text = str(value)
    parts = _COMPOSE_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{value!r} is not a Compose duration")
    return sum(float(n) * _COMPOSE_UNITS[u] for n, u in parts)


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)([KMGTPE]i?|m|k)?$")
_QUANTITY_FACTORS = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def k8s_quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a number (bytes, or cores)."""
    match = _QUANTITY.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    return float(match.group(1)) * _QUANTITY_FACTORS[match.group(2)]


# --- Compose ---------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class MissingVariable(LookupError):
    """A required (`${NAME:?message}`) variable is not set."""


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?err}` and `$$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
        current = variables.get(name)
        unset_or_empty = current is None or (
            operator is not None and operator.startswith(":") and current == ""
        )
        if operator in (":?", "?") and unset_or_empty:
            raise MissingVariable(f"{name}: {argument}")
        if operator in (":-", "-") and unset_or_empty:
            return argument
        return current or ""

    return _INTERPOLATION.sub(replace, value)


def service_environment(service: Mapping[str, Any], variables: Mapping[str, str]) -> dict[str, str]:
    """A service's environment as the container sees it (map or list form)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {
        name: interpolate(
            "" if value is None else str(value).lower() if isinstance(value, bool) else str(value),
            variables,
        )
        for name, value in raw.items()
    }


# --- Dockerfile --------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def dockerfile_stages(text: str) -> list[Stage]:
    """The build stages of a Dockerfile, with global ARG defaults substituted into FROM."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        arguments = arguments.strip()
        if keyword == "ARG" and not stages:
            name, _, default = arguments.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--")]
            base = re.sub(
                r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                lambda m: global_args.get(m.group(1), ""),
                words[0],
            )
            stage = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=stage))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return stages


# --- .dockerignore -------------------------------------------------------------------


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


class DockerIgnore:
    """Docker's .dockerignore matching: the last pattern that matches a path or a parent wins."""

    def __init__(self, text: str) -> None:
        self._rules: list[tuple[bool, re.Pattern[str]]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = line[1:].strip() if negated else line
            pattern = pattern.strip("/")
            self._rules.append((negated, _glob_to_regex(pattern)))

    def excluded(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for negated, regex in self._rules:
            if any(regex.match(candidate) for candidate in candidates):
                result = not negated
        return result


# --- nginx configuration ---------------------------------------------------------------


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None

    def children(self, name: str) -> list[Directive]:
        return [d for d in self.block or [] if d.name == name]

    def value(self, name: str) -> list[str] | None:
        found = self.children(name)
        return found[-1].args if found else None


_NGINX_TOKEN = re.compile(r"""#[^\n]*|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|[{};]|[^\s{};"'#]+""")


def parse_nginx(text: str) -> list[Directive]:
    """nginx configuration as a tree of directives (a small parser: no includes, no variables)."""
    tokens = [t for t in _NGINX_TOKEN.findall(text) if not t.startswith("#")]
    position = 0

    def parse_block() -> list[Directive]:
        nonlocal position
        directives: list[Directive] = []
        words: list[str] = []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == ";":
                directives.append(Directive(words[0], words[1:]))
                words = []
            elif token == "{":
                directives.append(Directive(words[0], words[1:], parse_block()))
                words = []
            elif token == "}":
                if words:
                    raise ValueError(f"directive {words} is not terminated")
                return directives
            else:
                words.append(token[1:-1] if token[0] in "\"'" else token)
        if words:
            raise ValueError(f"directive {words} is not terminated")
        return directives

    tree = parse_block()
    if position != len(tokens):
        raise ValueError("unbalanced braces")
    return tree


def nginx_location_for(server: Directive, uri: str) -> Directive:
    """The location nginx chooses for a URI: exact, then longest prefix (^~ stops), then regex."""
    locations = server.children("location")
    for location in locations:
        if location.args[0] == "=" and location.args[1] == uri:
            return location
    prefixes = [
        (location.args[-1], location)
        for location in locations
        if location.args[0] in ("^~",) or len(location.args) == 1
    ]
    matching = [(p, loc) for p, loc in prefixes if uri.startswith(p)]
    longest = max(matching, key=lambda item: len(item[0]), default=None)
    if longest is not None and longest[1].args[0] == "^~":
        return longest[1]
    for location in locations:
        if location.args[0] in ("~", "~*"):
            flags = re.IGNORECASE if location.args[0] == "~*" else 0
            if re.search(location.args[1], uri, flags):
                return location
    if longest is None:
        raise LookupError(f"no location of the server takes {uri}")
    return longest[1]


def proxy_upstream(location: Directive) -> str | None:
    """The upstream a location passes to (`proxy_pass http://NAME` -> NAME)."""
    target = location.value("proxy_pass")
    if target is None:
        return None
    match = re.fullmatch(r"https?://([^/:]+).*", target[0])
    return match.group(1) if match else target[0]


def nginx_seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    if match is None:
        raise ValueError(f"{value!r} is not an nginx time")
    factor = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return int(match.group(1)) * factor
