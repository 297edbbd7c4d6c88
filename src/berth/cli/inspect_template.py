"""``inspect --format`` as the docker CLI runs it, in two passes.

The CLI first executes the template against the typed object it decoded (Go structs: a field
the struct lacks is an error; Go maps such as ``Labels``: a missing key prints ``<no value>``).
If that fails it executes the template again against the raw JSON with ``missingkey=error``,
and what still fails is reported as ``Template parsing error: ...`` (exit 1). So
``{{.Config.Labels.nope}}`` prints ``<no value>``, ``{{.Bogus}}`` fails with ``map has no
entry for key "Bogus"``, and ``{{.Config.StopSignal}}`` prints an empty string even though the
JSON omits an unset stop signal.
"""

from __future__ import annotations

from berth.cli.template import GoMap, Template, TemplateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Fields whose type is a Go map in the inspect structs (containers, images, volumes, networks).
_MAP_FIELDS = frozenset({"Labels", "Options", "Volumes", "ExposedPorts", "Ports", "Networks",
                         "Data", "Sysctls", "Tmpfs", "DriverOpts", "Containers", "StorageOpt",
                         "Status"})
_MAP_FIELDS_IN = frozenset({("LogConfig", "Config")})  # (parent field, field)

# Struct fields Docker leaves out of the JSON when empty (omitempty), with their Go zero values.
OMITTED_FIELDS: dict[str, Any] = {
    "SizeRw": None, "SizeRootFs": None, "Node": None, "ExposedPorts": GoMap(),
    "StopSignal": "", "StopTimeout": None, "Healthcheck": None, "ArgsEscaped": False,
    "NetworkDisabled": False, "MacAddress": "", "Shell": [], "Init": None, "Tmpfs": GoMap(),
    "Mounts": [], "Sysctls": GoMap(), "StorageOpt": GoMap(), "Health": None,
    "UsageData": None, "Status": GoMap(),
}


def typed_view(value: Any, field: str = "", parent: str = "") -> Any:
    """``value`` with the objects that are Go maps turned into ``GoMap``."""
    if isinstance(value, dict):
        is_map = field in _MAP_FIELDS or (parent, field) in _MAP_FIELDS_IN
        items = {k: typed_view(v, "" if is_map else k, field) for k, v in value.items()}
        return GoMap(items) if is_map else items
    if isinstance(value, list):
        return [typed_view(v, "", parent) for v in value]
    return value


def render(template: Template, item: Any) -> str:
    """The template's text for one inspected object; ``TemplateError`` as the CLI reports it."""
    try:
        return template.execute(typed_view(item), "struct", OMITTED_FIELDS)
    except TemplateError:
        pass
    return template.execute(item, "error")
