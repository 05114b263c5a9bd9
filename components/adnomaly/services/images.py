"""The project's container images, built on this machine without a registry or a Docker engine.

Why this exists: the images are what a user's `helm install` runs, so the e2e suite must run *them*, not a
stand-in. Here there is no Docker daemon and no registry to pull `python:3.11-slim` from, but Debian's
packages are reachable. So:

- **Bases from Debian's packages.** `debootstrap --variant=minbase` builds a bookworm root filesystem with
  the few packages a base needs (Python for the project's images, a JRE for the test broker); it goes into
  a `buildah from scratch` image. The base stands in for the upstream image through the Dockerfile's own
  build argument (`PYTHON_IMAGE` in `docker/Dockerfile`), so the Dockerfiles stay the ones docker, skaffold
  and kind use elsewhere.
- **The Dockerfiles, built by buildah** (`buildah bud --pull=never --isolation=chroot`): pulls are
  disabled, so a `FROM` that is not a local base fails loudly instead of reaching for a registry. RUN steps
  reach PyPI and Debian's mirror like the host does; where the host trusts an extra CA (its
  `/etc/pip.conf` and CA bundle), those two files are mounted read-only into RUN steps only, never
  committed into a layer.
- **Cached by the digest of their inputs.** An image's tag is the digest of what it is made of: the
  recipe version, the Dockerfile, its target and build arguments (which name the base by *its* digest),
  and every file its COPY lines read from the build context. The OCI archive is kept under
  `CACHE_DIR/images/`; a warm run hashes a few hundred files and builds nothing. Debian's mirror moves
  with point releases, so the packages a base really holds are recorded (`dpkg-query`) in a label and a
  file beside the archive rather than being part of the key.

buildah keeps a private overlay store under the cache (nothing shared with a system podman); archives of
earlier builds are pruned by `python -m adnomaly.services.images`. `ImageArchive` is what the real node
imports (`adnomaly.services.node`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from adnomaly.services.base import CACHE_DIR, ServiceError, apt_install, file_lock, run_tool
from adnomaly.services.mounts import mounts_under, unmount

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
IMAGE_PREFIX = "localhost/adnomaly"
RECIPE = "4"  # bump when the way images are built changes: every tag changes with it
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BUILD_TIMEOUT = 1800.0

# Host files that make RUN steps trust what the host trusts (a proxy's CA), host path -> where RUN steps see
# it: mounted read-only, if present. The CA bundle and pip.conf go where pip and curl look; the Java
# truststore to a side path, since Debian's ca-certificates-java writes its own during an install (the
# local Maven base copies it over, docker/base/Dockerfile).
HOST_TRUST_FILES = {
    "/etc/ssl/certs/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pip.conf": "/etc/pip.conf",
    "/etc/ssl/certs/java/cacerts": "/run/adnomaly/host-cacerts",
}


@dataclass(frozen=True)
class ImageArchive:
    """An image as an OCI archive, and the fully qualified reference it runs as (`<prefix>/<name>:<digest>`)."""

    ref: str
    archive: Path
    digest: str


# Files .dockerignore keeps out of every build context, so they are not inputs of an image's digest either.
IGNORED_SUFFIXES = (".pyc", ".so", "_compiled.stamp")


def images_dir(cache: Path | None = None) -> Path:
    return (cache or CACHE_DIR) / "images"


def buildah(store: Path) -> list[str]:
    """buildah on a private overlay store (no clash with a system store). overlay, not vfs: vfs keeps a
    full copy of the root filesystem per layer, which made a components build copy gigabytes (20 GB of
    cache and minutes of copying per build, measured); overlay keeps each layer's difference only."""
    return ["buildah", f"--root={store / 'root'}", f"--runroot={store / 'runroot'}", "--storage-driver=overlay"]


def ensure_buildah() -> None:
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    if missing:
        apt_install(*missing)


class Digest:
    """A sha256 over the parts of a recipe, fed in a fixed order."""

    def __init__(self, *parts: object) -> None:
        self._hash = hashlib.sha256(json.dumps([RECIPE, *parts], sort_keys=True).encode())

    def text(self, *parts: object) -> None:
        self._hash.update(json.dumps(parts, sort_keys=True).encode() + b"\0")

    def file(self, label: str, path: Path) -> None:
        self._hash.update(f"{label}\0{path.stat().st_mode & 0o111:o}\0".encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                self._hash.update(chunk)
        self._hash.update(b"\0")

    def tree(self, label: str, path: Path) -> None:
        """Every regular file under `path` (a file or a directory), skipping what .dockerignore keeps out of
        every context: Python's byte-code caches and the venv's compiled extensions (adnomaly.compiled)."""
        if path.is_file():
            self.file(label, path)
            return
        for child in sorted(path.rglob("*")):
            if child.is_file() and "__pycache__" not in child.parts and not child.name.endswith(IGNORED_SUFFIXES):
                self.file(f"{label}/{child.relative_to(path)}", child)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def cached_image(
    name: str, digest: str, build: Callable[[list[str], str], None], *, cache: Path | None = None,
    keep_in_store: bool = False,
) -> ImageArchive:
    """The archive of image `name` at `digest`, built by `build(buildah_argv, ref)` if it is not cached.

    `build` must leave `ref` in the store; it is then exported as an OCI archive. A base that later builds
    use with `FROM` stays in the store too (`keep_in_store`); everything else is removed from it, since the
    archive is what gets imported.
    """
    out_dir = images_dir(cache)
    ref = f"{IMAGE_PREFIX}/{name}:{digest[:16]}"
    archive = out_dir / f"{name}-{digest[:16]}.tar"
    store = out_dir / "buildah-overlay"
    tool = buildah(store)
    if archive.exists() and not keep_in_store:
        return ImageArchive(ref, archive, digest)
    ensure_buildah()  # a fresh machine: apt-get install buildah debootstrap before asking buildah anything
    if archive.exists() and _in_store(tool, ref):
        return ImageArchive(ref, archive, digest)
    out_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(out_dir / ".build.lock"):
        if archive.exists() and (not keep_in_store or _in_store(tool, ref)):
            return ImageArchive(ref, archive, digest)
        if not _in_store(tool, ref):
            log.info("building image %s", ref)
            build(tool, ref)
        with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=out_dir) as tmp:
            partial = Path(tmp) / "image.tar"
            run_tool([*tool, "push", "-q", ref, f"oci-archive:{partial}:{ref}"], f"buildah push ({name})")
            os.replace(partial, archive)
        if not keep_in_store:
            subprocess.run([*tool, "rmi", ref], capture_output=True, check=False)
    log.info("image %s is %s", ref, archive)
    return ImageArchive(ref, archive, digest)


def _in_store(tool: list[str], ref: str) -> bool:
    return subprocess.run([*tool, "inspect", "--type=image", ref], capture_output=True, check=False).returncode == 0


def commit_rootfs(
    tool: list[str], ref: str, rootfs: Path, *, entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None, user: str | None = None, env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> None:
    """A `buildah from scratch` image whose only layer is the directory `rootfs`."""
    container = run_tool([*tool, "from", "--pull=never", "scratch"], "buildah from scratch").split()[-1]
    try:
        run_tool([*tool, "copy", container, f"{rootfs}/", "/"], f"buildah copy ({ref})", timeout=BUILD_TIMEOUT)
        config = [f"--label={key}={value}" for key, value in (labels or {}).items()]
        config += [f"--env={key}={value}" for key, value in (env or {}).items()]
        if entrypoint is not None:
            config.append(f"--entrypoint={json.dumps(list(entrypoint))}")
        if cmd is not None:
            config.append(f"--cmd={json.dumps(list(cmd))}")
        if user is not None:
            config.append(f"--user={user}")
        if config:
            run_tool([*tool, "config", *config, container], f"buildah config ({ref})")
        run_tool([*tool, "commit", "-q", "--format=oci", "--timestamp=0", "--rm", container, ref],
                 f"buildah commit ({ref})", timeout=BUILD_TIMEOUT)
    except BaseException:
        subprocess.run([*tool, "rm", container], capture_output=True, check=False)
        raise


def build_scratch_image(
    name: str,
    files: Mapping[str, Path | str],
    entrypoint: Sequence[str],
    *,
    user: str = "65534:65534",
    env: Mapping[str, str] | None = None,
    cache: Path | None = None,
) -> ImageArchive:
    """A `buildah from scratch` image holding `files` (image path -> host file, or -> "@target" for a
    symlink), cached like every other image by its inputs' digest (adnomaly.services.images)."""
    digest = Digest("scratch", name, list(entrypoint), user, dict(env or {}))
    for target, source in sorted(files.items()):
        if isinstance(source, str):
            digest.text(target, source)
        else:
            digest.file(target, source)
    value = digest.hexdigest()

    def build(tool: list[str], ref: str) -> None:
        with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=images_dir(cache)) as tmp:
            rootfs = Path(tmp) / "rootfs"
            for target, source in files.items():
                path = rootfs / target.lstrip("/")
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(source, str):
                    path.symlink_to(source.removeprefix("@"))
                else:
                    shutil.copy2(source, path)
            (rootfs / "tmp").mkdir(exist_ok=True)
            (rootfs / "tmp").chmod(0o1777)
            commit_rootfs(tool, ref, rootfs, entrypoint=entrypoint, user=user, env=env,
                          labels={"io.adnomaly.inputs": value})

    return cached_image(name, value, build, cache=cache)



# --- Debian bases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DebianBase:
    """A minbase bookworm root filesystem plus `packages`, as an image that Dockerfiles build `FROM`."""

    name: str
    packages: tuple[str, ...]

    def digest(self) -> str:
        return Digest("debian-base", DEBIAN_SUITE, DEBIAN_MIRROR, sorted(self.packages)).hexdigest()


# One debootstrap (the slow part of a cold build); the language bases are layers on it (docker/base).
DEBIAN_BASE = DebianBase("base-debian", ("ca-certificates",))


def debian_base(base: DebianBase, cache: Path | None = None) -> ImageArchive:
    def build(tool: list[str], ref: str) -> None:
        with tempfile.TemporaryDirectory(prefix=f"{base.name}-", dir=images_dir(cache)) as tmp:
            rootfs = Path(tmp) / "rootfs"
            run_tool(
                ["debootstrap", "--variant=minbase", f"--include={','.join(base.packages)}", DEBIAN_SUITE,
                 str(rootfs), DEBIAN_MIRROR],
                f"debootstrap {base.name}", timeout=BUILD_TIMEOUT,
            )
            installed = run_tool(
                ["chroot", str(rootfs), "dpkg-query", "-W", "-f=${Package}=${Version}\\n"], "dpkg-query",
            ).split()
            (images_dir(cache) / f"{base.name}-{base.digest()[:16]}.packages").write_text("\n".join(installed) + "\n")
            _trim_rootfs(rootfs)
            commit_rootfs(
                tool, ref, rootfs, cmd=["/bin/bash"],
                env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
                labels={"io.adnomaly.inputs": base.digest(), "io.adnomaly.debian": DEBIAN_SUITE},
            )

    return cached_image(base.name, base.digest(), build, cache=cache, keep_in_store=True)


def _trim_rootfs(rootfs: Path) -> None:
    """What a container image has no use for: apt's downloaded archives and lists, device nodes, logs.

    debootstrap mounts /proc (and may bind /dev) inside the target while it installs; anything still
    mounted is unmounted first, and nothing is deleted while a mount remains (rmtree through a bind mount
    of the host's /dev would delete the host's device nodes)."""
    unmount(mounts_under(rootfs))
    if left := mounts_under(rootfs):
        raise ServiceError(f"mounts left inside {rootfs} after debootstrap: {left}")
    for relative in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log", "dev", "proc", "sys", "run"):
        path = rootfs / relative
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)


# --- Dockerfile images --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DockerfileImage:
    """An image built from a Dockerfile (`target` of it) with its bases passed as build arguments."""

    name: str
    dockerfile: Path
    target: str | None
    # (build argument, local base) pairs: e.g. ("PYTHON_IMAGE", PYTHON_BASE) stands in for python:3.11-slim
    bases: tuple[tuple[str, DebianBase | DockerfileImage], ...] = ()
    context: Path = ROOT
    is_base: bool = False  # later builds use it with FROM, so it stays in buildah's store


def copied_sources(dockerfile: Path) -> list[str]:
    """The build-context paths a Dockerfile's COPY/ADD lines read (not those copied from another stage)."""
    sources: list[str] = []
    for line in _logical_lines(dockerfile.read_text()):
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        arguments = [word for word in words[1:] if not word.startswith("--")]
        if any(word.startswith("--from=") for word in words[1:]) or len(arguments) < 2:
            continue
        sources.extend(arguments[:-1])
    return sources


def base_arguments(dockerfile: Path) -> set[str]:
    """The build arguments a Dockerfile's FROM lines name (`FROM ${PYTHON_IMAGE} AS build` -> PYTHON_IMAGE):
    each must be given a local base here, or buildah (pulls disabled) fails on the upstream default."""
    names: set[str] = set()
    for line in _logical_lines(dockerfile.read_text()):
        words = line.split()
        if len(words) >= 2 and words[0].upper() == "FROM" and words[1].startswith("${") and words[1].endswith("}"):
            names.add(words[1][2:-1])
    return names


def _logical_lines(text: str) -> Iterable[str]:
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") and not pending:
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def dockerfile_inputs_digest(image: DockerfileImage, build_args: Mapping[str, str]) -> str:
    """The digest of everything the build reads: Dockerfile, target, build arguments (the base by its
    own digest-tagged name) and each file its COPY/ADD lines take from the context."""
    digest = Digest("dockerfile", image.name, image.target, dict(build_args))
    digest.file("Dockerfile", image.dockerfile)
    for source in copied_sources(image.dockerfile):
        for path in sorted(image.context.glob(source.rstrip("/"))) or [image.context / source]:
            if not path.exists():
                raise ServiceError(f"{image.dockerfile} copies {source}, which is not in {image.context}")
            digest.tree(str(path.relative_to(image.context)), path)
    return digest.hexdigest()


def _base_image(base: DebianBase | DockerfileImage, cache: Path | None) -> ImageArchive:
    return debian_base(base, cache) if isinstance(base, DebianBase) else dockerfile_image(base, cache)


def dockerfile_image(image: DockerfileImage, cache: Path | None = None) -> ImageArchive:
    build_args = {arg: _base_image(base, cache).ref for arg, base in image.bases}
    value = dockerfile_inputs_digest(image, build_args)

    def build(tool: list[str], ref: str) -> None:
        volumes = [f"--volume={host}:{inside}:ro" for host, inside in HOST_TRUST_FILES.items() if Path(host).is_file()]
        argv = [
            *tool, "bud", "--pull=never", "--isolation=chroot", "--format=oci", "--layers",
            "--timestamp=0", f"--file={image.dockerfile}", f"--tag={ref}",
            f"--label=io.adnomaly.inputs={value}", *volumes,
            *[f"--build-arg={key}={val}" for key, val in build_args.items()],
        ]
        if image.target:
            argv.append(f"--target={image.target}")
        run_tool([*argv, str(image.context)], f"buildah bud ({image.name})", timeout=BUILD_TIMEOUT)

    return cached_image(image.name, value, build, cache=cache, keep_in_store=image.is_base)


DOCKERFILE = ROOT / "docker" / "Dockerfile"
TEST_DOCKERFILES = ROOT / "docker" / "test"
BASE_DOCKERFILE = ROOT / "docker" / "base" / "Dockerfile"
FLINK_DOCKERFILE = ROOT / "flink" / "Dockerfile"
FLINK_BASE_DOCKERFILES = BASE_DOCKERFILE.parent / "flink"
PYTHON_BASE = DockerfileImage("base-python", BASE_DOCKERFILE, "python", (("DEBIAN_IMAGE", DEBIAN_BASE),),
                              context=BASE_DOCKERFILE.parent, is_base=True)
JAVA_BASE = DockerfileImage("base-java", BASE_DOCKERFILE, "java", (("DEBIAN_IMAGE", DEBIAN_BASE),),
                            context=BASE_DOCKERFILE.parent, is_base=True)
MAVEN_BASE = DockerfileImage("base-maven", BASE_DOCKERFILE, "maven", (("DEBIAN_IMAGE", DEBIAN_BASE),),
                             context=BASE_DOCKERFILE.parent, is_base=True)
COMPONENTS = DockerfileImage("adnomaly", DOCKERFILE, "components", (("PYTHON_IMAGE", PYTHON_BASE),))
OPERATOR = DockerfileImage("adnomaly-operator", DOCKERFILE, "operator", (("PYTHON_IMAGE", PYTHON_BASE),))
# Stand-ins for the upstream images the e2e suite would pull elsewhere (same contracts, Debian's packages).
TEST_POSTGRES = DockerfileImage("test-postgres", TEST_DOCKERFILES / "postgres" / "Dockerfile", None,
                                (("DEBIAN_IMAGE", DEBIAN_BASE),), context=TEST_DOCKERFILES / "postgres")
TEST_REDIS = DockerfileImage("test-redis", TEST_DOCKERFILES / "redis" / "Dockerfile", None,
                             (("DEBIAN_IMAGE", DEBIAN_BASE),), context=TEST_DOCKERFILES / "redis")


def assembled_context(name: str, files_from: Path, trees: Mapping[str, Path], cache: Path | None = None) -> Path:
    """A build context made of `files_from`'s files (a Dockerfile and its scripts) plus `trees` (context
    path -> a directory in the cache, hard-linked, not copied: hundreds of MB of jars cost nothing)."""
    context = images_dir(cache) / "context" / name
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    for target, tree in trees.items():
        if tree.is_dir():
            shutil.copytree(tree, context / target, copy_function=os.link)
        else:
            shutil.copy2(tree, context / target)
    for source in files_from.iterdir():
        if source.is_file():
            shutil.copy2(source, context / source.name)
    return context


def kafka_context(cache: Path | None = None) -> Path:
    """The test broker's build context: docker/test/kafka's files plus the jars the local broker runs
    (resolved from Maven Central by adnomaly.services.kafka)."""
    from adnomaly.services.kafka import ensure_kafka

    home = ensure_kafka()
    return assembled_context("kafka", TEST_DOCKERFILES / "kafka",
                             {"libs": home / "libs", "log4j2.properties": home / "log4j2.properties"}, cache)


def kafka_image(cache: Path | None = None) -> ImageArchive:
    """The e2e suite's plain KRaft broker (docker/test/kafka)."""
    context = kafka_context(cache)
    image = DockerfileImage("test-kafka", context / "Dockerfile", None, (("JAVA_IMAGE", JAVA_BASE),), context=context)
    return dockerfile_image(image, cache)


# What of PyFlink's bundled Flink home makes a Flink distribution (the rest of the package is Python).
FLINK_DISTRIBUTION = ("bin", "conf", "lib", "opt", "plugins")


def flink_base_context(cache: Path | None = None) -> Path:
    """The local Flink base's build context: docker/base/flink's Dockerfile plus the Flink distribution in
    the local PyFlink install (adnomaly.services.flink; the release flink/requirements.lock pins)."""
    from adnomaly.services.flink import ensure_flink, pyflink_home

    home = pyflink_home(ensure_flink())
    return assembled_context("flink-base", FLINK_BASE_DOCKERFILES,
                             {f"flink/{part}": home / part for part in FLINK_DISTRIBUTION}, cache)


def flink_image(cache: Path | None = None) -> ImageArchive:
    """The features job image (flink/Dockerfile) on the local Flink and Maven bases."""
    context = flink_base_context(cache)
    flink_base = DockerfileImage("base-flink", context / "Dockerfile", None,
                                 (("JAVA_IMAGE", JAVA_BASE), ("MAVEN_IMAGE", MAVEN_BASE)), context=context,
                                 is_base=True)
    image = DockerfileImage("adnomaly-flink", FLINK_DOCKERFILE, None,
                            (("FLINK_IMAGE", flink_base), ("MAVEN_IMAGE", MAVEN_BASE)))
    return dockerfile_image(image, cache)


def minio_images(cache: Path | None = None) -> dict[str, ImageArchive]:
    """MinIO's server and client (`mc`), each a static binary from its Go module in a scratch image."""
    from adnomaly.services.minio import ensure_minio, ensure_minio_client

    return {
        "test-minio": build_scratch_image("test-minio", {"/usr/bin/minio": ensure_minio()}, ["/usr/bin/minio"],
                                          user="1000:1000", cache=cache),
        "test-mc": build_scratch_image("test-mc", {"/usr/bin/mc": ensure_minio_client()}, ["/usr/bin/mc"],
                                       user="1000:1000", env={"PATH": "/usr/bin"}, cache=cache),
    }


def _dockerfile_builder(image: DockerfileImage) -> Callable[[Path | None], dict[str, ImageArchive]]:
    return lambda cache: {image.name: dockerfile_image(image, cache)}


# name -> what builds it (a builder may make several images: MinIO's server and client come together).
BUILDERS: dict[str, Callable[[Path | None], dict[str, ImageArchive]]] = {
    COMPONENTS.name: _dockerfile_builder(COMPONENTS),
    OPERATOR.name: _dockerfile_builder(OPERATOR),
    TEST_POSTGRES.name: _dockerfile_builder(TEST_POSTGRES),
    TEST_REDIS.name: _dockerfile_builder(TEST_REDIS),
    "test-kafka": lambda cache: {"test-kafka": kafka_image(cache)},
    "adnomaly-flink": lambda cache: {"adnomaly-flink": flink_image(cache)},
    "test-minio": minio_images,
}
PROJECT_IMAGES = (COMPONENTS.name, OPERATOR.name)


def ensure_images(names: Iterable[str] | None = None, cache: Path | None = None) -> dict[str, ImageArchive]:
    """Build (or find cached) the named images, all of them by default: name -> archive."""
    wanted = list(names) if names is not None else list(BUILDERS)
    if unknown := [name for name in wanted if name not in BUILDERS]:
        raise ServiceError(f"unknown images {unknown}; known: {sorted(BUILDERS)}")
    built: dict[str, ImageArchive] = {}
    for name in wanted:
        built.update(BUILDERS[name](cache))
    return built


def prune_archives(current: Iterable[ImageArchive], cache: Path | None = None) -> list[Path]:
    """Delete the archives of earlier builds of the images in `current` (same name, another digest):
    each code change makes a new components image, and old ones would pile up in the cache."""
    keep = {image.archive for image in current}
    names = {image.archive.name.rsplit("-", 1)[0] for image in current}
    removed = []
    for archive in images_dir(cache).glob("*.tar"):
        name, _, digest = archive.stem.rpartition("-")
        if name in names and len(digest) == 16 and archive not in keep:
            archive.unlink()
            removed.append(archive)
    return removed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.services.images", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"images to build (default: all of {sorted(BUILDERS)})")
    parser.add_argument("--json", action="store_true", help="print name -> {ref, archive} as JSON")
    parser.add_argument("--skip-unless-root", action="store_true",
                        help="without root, say why and build nothing (make test: the e2e suite skips then too)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.skip_unless_root and os.geteuid() != 0:
        print("images: not built: debootstrap and buildah need root (the real-node e2e suite skips without it)")
        return 0
    try:
        built = ensure_images(args.names or None)
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for archive in prune_archives(built.values()):
        log.info("removed %s (an earlier build)", archive)
    if args.json:
        print(json.dumps({name: {"ref": image.ref, "archive": str(image.archive)} for name, image in built.items()}))
    else:
        for name, image in built.items():
            print(f"{name}\t{image.ref}\t{image.archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
