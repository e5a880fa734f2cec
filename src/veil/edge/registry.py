"""The detector registry: the models shipped inside Veil's package, plus the ones a site added to its data
directory (`veil models add FILE --name NAME`), so a config names a model (`detector: {model: NAME}`) instead of a
path, and an air-gapped site installs a bigger model by copying one file.

Added models live in `<data_dir>/models/`: `NAME.onnx` (or `NAME.zip`, a Veil bundle) and `NAME.json` (kind,
sha256, licence, where it came from, when). Checking that a file loads and has a person class is the detectors'
job (`veil.edge.detect.identify_model`); this module only names, stores and finds.

Example::

    >>> [m.name for m in shipped_models()]
    ['yolox-nano']
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent / "models"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class RegistryError(ValueError):
    """An unknown name, a name already taken, or a name that is not a valid model name."""


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    kind: str  # a DetectorSpec kind: yolox, yolo, veil
    path: Path
    sha256: str
    licence: str
    source: str
    shipped: bool
    added: str = ""  # ISO time it was added (added models only)
    person_class: int | None = None


# Veil's own: the file, its licence (text beside it in LICENSE) and where it came from (NOTICE).
_SHIPPED = (
    RegisteredModel(
        name="yolox-nano",
        kind="yolox",
        path=SHIPPED_DIR / "yolox_nano.onnx",
        sha256="695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
        licence="Apache-2.0",
        source="Megvii YOLOX-Nano (COCO, 0.91 M parameters) via Kazuhito00/YOLOX-ONNX-TFLite-Sample",
        shipped=True,
    ),
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_models() -> list[RegisteredModel]:
    return list(_SHIPPED)


def models_dir(data_dir: Path) -> Path:
    return data_dir / "models"


def added_models(data_dir: Path) -> list[RegisteredModel]:
    found = []
    for record in sorted(models_dir(data_dir).glob("*.json")):
        fields = json.loads(record.read_text())
        fields["path"] = record.parent / fields["path"]
        found.append(RegisteredModel(**fields))
    return found


def all_models(data_dir: Path) -> list[RegisteredModel]:
    return shipped_models() + added_models(data_dir)


def find_model(name: str, data_dir: Path) -> RegisteredModel:
    models = all_models(data_dir)
    for model in models:
        if model.name == name:
            if not model.path.is_file():
                raise RegistryError(f"model {name!r} is registered but its file is missing: {model.path}")
            return model
    known = ", ".join(m.name for m in models)
    raise RegistryError(f"no model named {name!r} (registered: {known}; add one with `veil models add FILE --name`)")


def check_name(name: str, data_dir: Path) -> None:
    if not _NAME.match(name):
        raise RegistryError(f"model name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-'")
    if any(m.name == name for m in all_models(data_dir)):
        raise RegistryError(f"a model named {name!r} is already registered (see `veil models list`)")


def add_model(
    file: Path, name: str, kind: str, data_dir: Path, licence: str = "", person_class: int | None = None
) -> RegisteredModel:
    """Copy an already-checked model file into the data directory under `name` and record it."""
    check_name(name, data_dir)
    folder = models_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}{'.zip' if kind == 'veil' and file.suffix == '.zip' else '.onnx'}"
    partial = target.with_suffix(target.suffix + ".part")
    shutil.copyfile(file, partial)
    partial.replace(target)  # never a half-copied model under its real name
    model = RegisteredModel(
        name=name,
        kind=kind,
        path=target,
        sha256=sha256_of(target),
        licence=licence or "unknown (not given at `veil models add`)",
        source=file.name,
        shipped=False,
        added=datetime.now(UTC).isoformat(timespec="seconds"),
        person_class=person_class,
    )
    record = asdict(model) | {"path": target.name}
    (folder / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return model
