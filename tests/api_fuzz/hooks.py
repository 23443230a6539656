"""schemathesis hooks (loaded through `SCHEMATHESIS_HOOKS`): path parameters point at the objects
the test seeded, so operations on `{id}`, `{name}`, `{slug}`… reach real rows instead of 404s.

The seeds come in `MESHGATE_FUZZ_SEEDS`, JSON `{resource: {parameter: [values]}}` where the
resource is the first segment after `/api/v1/` (`changes`, `policies`, …). Three generated cases
in four get a seeded value (chosen by the generated one, so runs repeat with the same seed); the
rest keep what schemathesis generated, so unknown and malformed ids are still tried. A DELETE
only ever gets the first value, so the others outlive it for the operations that follow.

`after_call` appends `METHOD path-template status` per answer to `MESHGATE_FUZZ_LOG`, so the test
can tell that seeded objects were reached.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any

import schemathesis

SEEDS: dict[str, dict[str, list[Any]]] = json.loads(os.environ.get("MESHGATE_FUZZ_SEEDS", "{}"))


def _resource(path: str) -> str:
    parts = [part for part in path.split("/") if part]
    if "v1" in parts and parts.index("v1") + 1 < len(parts):
        return parts[parts.index("v1") + 1]
    return parts[0] if parts else ""


@schemathesis.hook
def map_path_parameters(context: Any, path_parameters: dict[str, Any]) -> dict[str, Any]:
    operation = getattr(context, "operation", None)
    if operation is None or not path_parameters:
        return path_parameters
    seeds = SEEDS.get(_resource(operation.path), {})
    mapped = dict(path_parameters)
    for name, generated in path_parameters.items():
        values = seeds.get(name)
        if not values:
            continue
        values = values[:1] if operation.method.upper() == "DELETE" else (values[1:] or values)
        pick = zlib.crc32(repr(generated).encode())
        if pick % 4:
            mapped[name] = values[pick % len(values)]
    return mapped


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    log = os.environ.get("MESHGATE_FUZZ_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"{case.operation.method.upper()} {case.operation.path} {response.status_code}\n")
