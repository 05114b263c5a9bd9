"""Static checks of the Dockerfiles, .dockerignore and skaffold.yaml (no Docker here to build them)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "flink" / "Dockerfile"]


@dataclass
class Stage:
    image: str
    name: str | None
    user: str | None = None
    copies: list[str] = field(default_factory=list)  # build-context sources
    copied_from: list[str] = field(default_factory=list)  # stages this one copies from


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def parse(path: Path) -> list[Stage]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for word, rest in instructions(path.read_text()):
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args.setdefault(key, value)
        elif word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            base = next((s for s in stages if s.name == image), None)
            stage = Stage(image=image, name=parts[2] if len(parts) > 2 else None, user=base.user if base else None)
            stages.append(stage)
        elif word == "USER":
            stages[-1].user = rest
        elif word == "COPY" and "--from=" in rest:
            stages[-1].copied_from.append(rest.split("--from=", 1)[1].split()[0])
        elif word == "COPY":
            stages[-1].copies.extend(p for p in rest.split()[:-1] if not p.startswith("--"))
    return stages


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; `!` re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        regex = fnmatch.translate(pattern).replace(".*.*", ".*")
        if re.match(regex, path) or (pattern.endswith("/**") and path == pattern[:-3]):
            result = not negate
    return result


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_is_pinned_non_root_and_copies_what_exists(dockerfile: Path) -> None:
    stages = parse(dockerfile)
    names = {s.name for s in stages}
    for stage in stages:
        if stage.image in names:
            continue
        assert "$" not in stage.image, f"unresolved base image {stage.image}"
        repo, _, tag = stage.image.rpartition(":")
        assert (repo and tag and tag != "latest") or "@sha256:" in stage.image, f"unpinned base image {stage.image}"
        for source in stage.copies:
            assert (ROOT / source).exists(), f"{dockerfile.name} copies missing {source}"
            assert not ignored(source.rstrip("/"), dockerignore()), f".dockerignore excludes {source}"
    used = {x.image for x in stages} | {f for x in stages for f in x.copied_from}
    finals = [s for s in stages if s.name not in used]
    assert finals
    for stage in finals:
        assert stage.user and stage.user.split(":")[0] not in ("root", "0"), f"stage {stage.name} runs as root"


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = dockerignore()
    for path in (".venv/bin/python", ".git/HEAD", "tests/unit/test_spec.py", "bench/results.json",
                 "components/adnomaly/__pycache__/spec.cpython-311.pyc"):
        assert ignored(path, patterns), path
    assert not ignored("components/adnomaly/spec.py", patterns)


def test_components_image_has_every_entry_point() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    for module in ("generator", "ingest", "processor", "sinks.lake", "sinks.features", "serving", "detector"):
        assert module in text
        package = ROOT / "components" / "adnomaly" / module.replace(".", "/")
        assert (package / "__main__.py").is_file(), f"python -m adnomaly.{module} has no __main__"


def test_skaffold_builds_the_three_images_and_deploys_the_chart() -> None:
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    artifacts = config["build"]["artifacts"]
    assert len(artifacts) == 3
    for artifact in artifacts:
        dockerfile = ROOT / artifact["context"] / artifact["docker"]["dockerfile"]
        assert dockerfile.is_file()
        target = artifact["docker"].get("target")
        assert target is None or target in {s.name for s in parse(dockerfile)}
    (release,) = config["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    values = yaml.safe_load((ROOT / release["chartPath"] / "values.yaml").read_text())
    kind = next(p for p in config["profiles"] if p["name"] == "kind")
    overrides = {**release["setValueTemplates"], **kind["patches"][0]["value"]}
    for key in overrides:
        node = values
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"skaffold sets unknown chart value {key}"
            node = node[part]
    assert kind["build"]["local"]["push"] is False
