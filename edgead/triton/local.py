"""A Triton Inference Server on this machine, from the ``nvidia-pytriton`` wheel.

The wheel ships a real ``tritonserver`` (with its libraries in ``nvidia_pytriton.libs``) and
the Python backend, with one backend stub per Python version. The server needs a backend
folder holding ``python/`` with the stub of *this* interpreter's version, the libraries on
``LD_LIBRARY_PATH``, and this environment's ``bin`` first on ``PATH`` (the stub runs models
with the packages of the environment it finds there; PYTHONPATH alone is not enough).
PyTriton itself prepares its server the same way (pytriton/triton.py); its own API wraps
Python callables, not a model repository, so the server is started directly here.

The wheel's stub is built against numpy 1.x: under numpy 2 it garbles tensors (measured here:
an input [[1, 2]] arrived as [[1, 1]] and outputs came back empty), and nvidia-pytriton's own
metadata pins numpy<2, which the runtime's OpenCV 5 refuses. So the server runs its models in
an environment of its own (``python_env``: a virtual environment with numpy<2 and edgead's
runtime, e.g. ``.triton-env``, made by ``tools/triton-env.sh``); the start refuses an
environment with numpy 2 and says why.

Bound to 127.0.0.1 only, on free ports; stopped by its PID.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgead.errors import EdgeadError


@dataclass
class TritonDist:
    server: Path
    libs: Path
    python_backend: Path
    stub: Path


def find_dist() -> TritonDist:
    """The wheel's server, or EdgeadError saying what is missing."""
    # located, not imported: installed with --no-deps, pytriton's own __init__ cannot import
    # (its Python API needs packages the server binary does not)
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise EdgeadError(
            "no local Triton server: pip install --no-deps nvidia-pytriton (the wheel ships "
            "tritonserver; --no-deps keeps numpy 2, which its metadata would downgrade)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    dist = root / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = TritonDist(
        dist / "bin" / "tritonserver",
        root.parent / "nvidia_pytriton.libs",
        dist / "backends" / "python",
        dist / "python_backend_stubs" / version / "triton_python_backend_stub",
    )
    for what, path in (
        ("the tritonserver binary", found.server),
        ("the server's libraries", found.libs),
        ("the Python backend", found.python_backend),
        (f"the Python {version} backend stub", found.stub),
    ):
        if not path.exists():
            raise EdgeadError(f"nvidia-pytriton is installed but {what} is missing: {path}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV_VAR = "EDGEAD_TRITON_ENV"


def server_env(python_env: str | Path | None = None) -> Path:
    """The environment the server's Python models run in: ``python_env``, else
    $EDGEAD_TRITON_ENV, else this interpreter's; checked for edgead and numpy<2."""
    chosen = python_env or os.environ.get(ENV_VAR) or Path(sys.executable).parent.parent
    env = Path(chosen).resolve()
    python = env / "bin" / "python"
    if not python.exists():
        raise EdgeadError(f"{env}: not a Python environment (no bin/python)")
    probe = subprocess.run(
        [str(python), "-c", "import numpy, edgead.runtime.pipeline; print(numpy.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        raise EdgeadError(
            f"{env}: the server's Python environment needs numpy<2 and edgead's runtime "
            f"(tools/triton-env.sh makes one): {probe.stderr.strip().splitlines()[-1:]}"
        )
    version = probe.stdout.strip()
    if int(version.split(".")[0]) >= 2:
        raise EdgeadError(
            f"{env} has numpy {version}: the nvidia-pytriton wheel's Python backend stub is "
            "built against numpy 1.x and garbles tensors under numpy 2; give the server an "
            f"environment with numpy<2 (tools/triton-env.sh; ${ENV_VAR} or python_env)"
        )
    return env


class LocalTriton:
    """``tritonserver`` on REPO, HTTP/gRPC/metrics on 127.0.0.1; a context manager."""

    def __init__(
        self,
        repo: str | Path,
        python_env: str | Path | None = None,
        log: str | Path | None = None,
        verbose: bool = False,
    ):
        self.dist = find_dist()
        self.python_env = server_env(python_env)
        self.repo = Path(repo).resolve()
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.work = Path(tempfile.mkdtemp(prefix="edgead-triton-"))
        self.log_path = Path(log) if log else self.work / "tritonserver.log"
        self.verbose = verbose
        self.proc: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _backends(self) -> Path:
        backends = self.work / "backends"
        python = backends / "python"
        shutil.copytree(
            self.dist.python_backend, python, ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copy2(self.dist.stub, python / "triton_python_backend_stub")
        return backends

    def command(self) -> list[str]:
        return [
            str(self.dist.server),
            f"--model-repository={self.repo}",
            f"--backend-directory={self._backends()}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--exit-on-error=true",
            "--exit-timeout-secs=5",
            "--strict-readiness=true",
            f"--log-verbose={1 if self.verbose else 0}",
        ]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = str(self.dist.libs)
        env["LD_LIBRARY_PATH"] = (
            f"{libs}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else libs
        )
        env["PATH"] = f"{self.python_env / 'bin'}:{env.get('PATH', '')}"
        return env

    def start(self, timeout: float = 120.0) -> LocalTriton:
        import tritonclient.http as httpclient

        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=self.env()
        )
        client = httpclient.InferenceServerClient(self.http_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    tail = self.output()[-4000:]
                    raise EdgeadError(f"tritonserver exited with status {code}:\n{tail}")
                try:
                    if client.is_server_ready():
                        return self
                except Exception:  # not listening yet
                    pass
                time.sleep(0.25)
        finally:
            client.close()
        self.stop()
        raise EdgeadError(f"tritonserver not ready after {timeout:.0f} s:\n{self.output()[-4000:]}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM to our server's PID (Triton unloads its models and exits), SIGKILL after
        ``timeout``."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            code = self.proc.returncode
            self._log.close()
        # the work folder goes, unless it holds the log (read after a failure)
        keep_log = self.log_path.parent == self.work
        shutil.rmtree(self.work / "backends" if keep_log else self.work, ignore_errors=True)
        return code

    def __enter__(self) -> LocalTriton:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
