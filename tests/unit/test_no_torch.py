"""The runtime must import and run where torch is not installed."""

import subprocess
import sys
import textwrap

BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('torch', 'torchvision', 'timm'):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
    sys.meta_path.insert(0, Block())
""")


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_blocker_really_blocks():
    result = run_without_torch("import torch")
    assert result.returncode != 0 and "blocked by the test" in result.stderr


def test_runtime_modules_import_without_torch():
    result = run_without_torch("""
        import pkgutil, importlib, sys
        import edgead, edgead.runtime, edgead.bundle, edgead.data, edgead.metrics, edgead.cli
        import edgead.serve
        for pkg in (edgead.runtime, edgead.bundle, edgead.data, edgead.metrics, edgead.serve):
            for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):
                importlib.import_module(mod.name)
        from edgead.runtime.backends import BACKENDS
        from edgead.runtime.scorers import SCORERS
        assert 'onnxruntime' in BACKENDS and 'knn' in SCORERS
        assert not any(m.split('.')[0] == 'torch' for m in sys.modules)
        print('ok')
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
