"""Image recipes: what a Dockerfile reads from its context, and the digests that make a warm run build nothing."""

from __future__ import annotations

from pathlib import Path

from adnomaly.services.images import (
    COMPONENTS,
    DOCKERFILE,
    FLINK_BASE_DOCKERFILES,
    FLINK_DOCKERFILE,
    MAVEN_BASE,
    OPERATOR,
    PYTHON_BASE,
    TEST_POSTGRES,
    TEST_REDIS,
    Digest,
    DockerfileImage,
    base_arguments,
    copied_sources,
    dockerfile_inputs_digest,
)


def test_copied_sources_are_the_context_paths_not_other_stages(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM x AS build\n"
        "# COPY ignored.txt /nowhere\n"
        "COPY a.txt b/ /dst/\n"
        "COPY --chown=1:1 c.sh \\\n    /usr/local/bin/c.sh\n"
        "COPY --from=build /opt/x /opt/x\n"
        "ADD d.tar /\n"
        "RUN echo COPY e /f\n"
    )
    assert copied_sources(dockerfile) == ["a.txt", "b/", "c.sh", "d.tar"]


def test_the_project_dockerfile_reads_the_package_and_its_pins() -> None:
    assert copied_sources(DOCKERFILE) == ["requirements.lock", "pyproject.toml", "README.md", "components", "operator"]


def image_in(tmp_path: Path) -> DockerfileImage:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('hi')\n")
    (tmp_path / "other.txt").write_text("not copied\n")
    (tmp_path / "Dockerfile").write_text("FROM base\nCOPY app /app\n")
    return DockerfileImage("probe", tmp_path / "Dockerfile", None, context=tmp_path)


def test_digest_follows_what_the_image_copies_and_nothing_else(tmp_path: Path) -> None:
    image = image_in(tmp_path)
    first = dockerfile_inputs_digest(image, {})
    (tmp_path / "other.txt").write_text("changed, but never copied\n")
    (tmp_path / "app" / "__pycache__").mkdir()
    (tmp_path / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    # a checkout's compiled extensions and their stamp (adnomaly.compiled): .dockerignore keeps them out
    (tmp_path / "app" / "main.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\0")
    (tmp_path / "app" / "_compiled.stamp").write_text("{}")
    assert dockerfile_inputs_digest(image, {}) == first
    (tmp_path / "app" / "main.py").write_text("print('changed')\n")
    changed = dockerfile_inputs_digest(image, {})
    assert changed != first
    assert dockerfile_inputs_digest(image, {"BASE": "localhost/adnomaly/base:2"}) != changed
    (tmp_path / "app" / "main.py").chmod(0o755)  # the executable bit is part of the image
    assert dockerfile_inputs_digest(image, {}) != changed


def test_digest_parts_are_not_ambiguous() -> None:
    assert Digest("a", "bc").hexdigest() != Digest("ab", "c").hexdigest()


def test_components_and_operator_build_from_the_local_python_base() -> None:
    assert COMPONENTS.bases == (("PYTHON_IMAGE", PYTHON_BASE),) and PYTHON_BASE.is_base


def test_base_arguments_are_the_from_lines_build_arguments(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG A=x:1\nARG B=y:2\nFROM ${A} AS one\nFROM ${B}\nFROM one AS two\nFROM scratch\n")
    assert base_arguments(dockerfile) == {"A", "B"}


def test_every_upstream_base_has_a_local_stand_in() -> None:
    """With pulls disabled a FROM on an upstream default fails; each must be replaced by a local base."""
    for image in (COMPONENTS, OPERATOR, TEST_POSTGRES, TEST_REDIS, PYTHON_BASE, MAVEN_BASE):
        assert base_arguments(image.dockerfile) == {arg for arg, _ in image.bases}, image.name
    # the Flink job image needs a local Flink and a local Maven (its `jars` stage), the Flink base a JRE
    assert base_arguments(FLINK_DOCKERFILE) == {"FLINK_IMAGE", "MAVEN_IMAGE"}
    assert base_arguments(FLINK_BASE_DOCKERFILES / "Dockerfile") == {"JAVA_IMAGE", "MAVEN_IMAGE"}
