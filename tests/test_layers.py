"""Which package may import what, as tests (docs/architecture.md, "Layers").

    models  <-  ddpm  <-  jobs  <-  service (the API)
                               <-  workers (Celery)

Each package imports only those to its left. The API and the workers share the job plane (`jobs/`) and
never import each other; the engine and the variant library know nothing above them. Checked twice:
statically, on every import statement (function-level ones included), and by what a fresh interpreter
has loaded after importing a process's entry points.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "ddpm", "jobs", "service", "workers")
# What each package may import from the project (itself always).
ALLOWED = {
    "models": set(),
    "ddpm": {"models"},
    "jobs": {"models", "ddpm"},
    "service": {"models", "ddpm", "jobs"},
    "workers": {"models", "ddpm", "jobs"},
}


def _project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES}
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(bad)
        for path in sorted((ROOT / package).rglob("*.py"))
        if (bad := _project_imports(path) - ALLOWED[package] - {package})
    }
    assert wrong == {}, f"{package}/ may import only {sorted(ALLOWED[package])} from the project"


def _loaded_after(imports: str, watched: tuple[str, ...]) -> list[str]:
    code = f"import sys, json; {imports}; print(json.dumps([m for m in {watched!r} if m in sys.modules]))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_worker_process_loads_no_fastapi_and_no_service() -> None:
    imports = "import workers.app, workers.tasks, workers.batching, workers.health"
    assert _loaded_after(imports, ("fastapi", "starlette", "service")) == []


def test_the_job_plane_loads_no_fastapi_and_no_torch() -> None:
    modules = sorted(p.stem for p in (ROOT / "jobs").glob("*.py") if p.stem != "__init__")
    imports = "import " + ", ".join(f"jobs.{m}" for m in modules)
    assert _loaded_after(imports, ("fastapi", "starlette", "torch", "service", "workers")) == []


def test_every_service_module_loads_no_torch() -> None:
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in (ROOT / "service").rglob("*.py")
        if p.stem != "__init__"
    )
    imports = "import " + ", ".join(modules)
    assert _loaded_after(imports, ("torch", "workers", "models.unet", "ddpm.training")) == []
