"""`ddpm study SPEC.json|.yaml [--preset NAME] [--local] [--out DIR]`: a whole comparison in one command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ddpm.errors import InvalidOption
from ddpm.settings import data_dir

DEFAULT_URL = "http://127.0.0.1:8000"


def register(subparsers: argparse._SubParsersAction) -> None:
    study = subparsers.add_parser(
        "study",
        help="train, sample and score several variants alike, then write a report that ranks them (docs: README)",
        description="Run a study from a spec file (JSON or YAML: the body of POST /studies), a preset, or "
        "a preset with the file's fields over it. Through the service by default; --local runs it here.",
    )
    study.add_argument("spec", nargs="?", type=Path, help="spec file (.json, .yaml, .yml)")
    study.add_argument("--preset", help="start from a preset: report-table1, digits-smoke")
    study.add_argument(
        "--local", action="store_true", help="run here, in this process (no service, no Redis)"
    )
    study.add_argument(
        "--out", type=Path, help="where report.html, report.zip, table.csv go (default ./study-<name>)"
    )
    study.add_argument("--url", default=DEFAULT_URL, help="the service (without --local)")
    study.add_argument(
        "--api-key", default=os.environ.get("API_KEY"), help="X-API-Key for the service (env API_KEY)"
    )
    study.add_argument("--device", default="auto", help="--local: auto (CUDA when present), cpu or cuda[:N]")
    study.add_argument(
        "--poll", type=float, default=2.0, help="seconds between status requests to the service"
    )
    study.add_argument("--list-presets", action="store_true", help="print the presets as JSON and exit")
    study.set_defaults(handler=cmd_study)


def read_spec_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise InvalidOption(f"cannot read the spec file {path}: {err}") from err
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as err:  # pragma: no cover - pyyaml is a dependency
            raise InvalidOption(
                "YAML spec files need PyYAML (pip install pyyaml); or write the spec as JSON"
            ) from err
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise InvalidOption(f"{path} is not YAML: {err}") from err
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidOption(f"{path} is not JSON ({err}); YAML files end in .yaml or .yml") from err
    if not isinstance(data, dict):
        raise InvalidOption(f"{path}: a study spec is an object, got {type(data).__name__}")
    return data


def resolve_spec(data: dict[str, Any], preset_name: str | None) -> Any:
    """A full spec; or a preset (from --preset or the file's "preset") with the file's other fields over it."""
    from ddpm.study.spec import StudySpec, preset

    data = dict(data)
    name = preset_name or (data.pop("preset", None) if "variants" not in data else None)
    spec = preset(name, **data) if name else StudySpec.from_dict(data)
    spec.validate()
    return spec


def cmd_study(args: argparse.Namespace) -> int:
    from ddpm.study.spec import PRESETS

    if args.list_presets:
        print(json.dumps({name: spec.to_dict() for name, spec in PRESETS.items()}, indent=2))
        return 0
    if args.spec is None and args.preset is None:
        raise InvalidOption("give a spec file or --preset (report-table1, digits-smoke)")
    data = read_spec_file(args.spec) if args.spec else {}
    spec = resolve_spec(data, args.preset)
    out = args.out or Path(f"study-{spec.name.replace(' ', '-').replace('/', '-')}")
    started = time.monotonic()
    if args.local:
        from ddpm.study.local import REPORT_FILES, run_local

        report = run_local(spec, data_dir(args.data_dir), out, device=args.device)
        files = [out / name for name in REPORT_FILES]
        failed = [r.key for r in report.results if r.state != "done"]
    else:
        from ddpm.study.client import MemberBars, StudyClient

        client = StudyClient(args.url, args.api_key)
        study_id = client.submit(spec.to_dict())
        print(f"study {study_id} at {args.url}/studies/{study_id}", file=sys.stderr)
        bars = MemberBars()
        try:
            final = client.wait(study_id, args.poll, bars)
        finally:
            bars.close()
        files = client.download(study_id, out)
        failed = [] if final.get("state") in ("done", "succeeded") else [str(final.get("state"))]
    print("\n".join(str(path) for path in files))
    print(
        f"study {spec.name}: {time.monotonic() - started:.0f} s"
        + (f"; not done: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0
