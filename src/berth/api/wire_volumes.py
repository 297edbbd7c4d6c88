"""Docker's JSON shapes for volumes and container mounts ↔ the engine's records."""

from __future__ import annotations

from typing import Any

from berth.engine.model import MountRequest
from berth.engine.mounts import MountPoint
from berth.errors import InvalidArgument
from berth.volume.store import VolumeRecord


def render_volume(v: VolumeRecord, mountpoint: str) -> dict[str, Any]:
    """One volume as ``GET /volumes/{name}`` answers (Docker 20.10: anonymous volumes have
    null labels and options, API-created ones objects)."""
    return {
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": None if v.anonymous and not v.labels else dict(v.labels),
        "Mountpoint": mountpoint,
        "Name": v.name,
        "Options": None if v.anonymous and not v.options else dict(v.options),
        "Scope": "local",
    }


def render_mount(mp: MountPoint) -> dict[str, Any]:
    """One entry of a container's ``Mounts`` (inspect and list)."""
    out: dict[str, Any] = {"Type": mp.type}
    if mp.type == "volume":
        out["Name"] = mp.name
    out["Source"] = mp.source
    out["Destination"] = mp.destination
    if mp.type == "volume":
        out["Driver"] = mp.driver
    out.update({"Mode": mp.mode, "RW": mp.rw, "Propagation": mp.propagation})
    return out


def _obj(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct "
                              f"field {field} of type object")
    return value


def _strmap(value: Any, field: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in _obj(value, field).items()}


def parse_mounts(value: Any) -> tuple[MountRequest, ...]:
    """``HostConfig.Mounts`` of a create body."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidArgument("json: cannot unmarshal into Go struct field HostConfig.Mounts "
                              "of type []mount.Mount")
    out = []
    for raw in value:
        m = _obj(raw, "HostConfig.Mounts")
        vol = _obj(m.get("VolumeOptions"), "Mount.VolumeOptions")
        drv = _obj(vol.get("DriverConfig"), "VolumeOptions.DriverConfig")
        bind = _obj(m.get("BindOptions"), "Mount.BindOptions")
        tmpfs = _obj(m.get("TmpfsOptions"), "Mount.TmpfsOptions")
        out.append(MountRequest(
            type=str(m.get("Type") or ""), source=str(m.get("Source") or ""),
            target=str(m.get("Target") or ""), read_only=bool(m.get("ReadOnly")),
            no_copy=bool(vol.get("NoCopy")), labels=_strmap(vol.get("Labels"), "Labels"),
            driver=str(drv.get("Name") or ""),
            driver_options=_strmap(drv.get("Options"), "DriverConfig.Options"),
            propagation=str(bind.get("Propagation") or ""),
            tmpfs_size=int(tmpfs.get("SizeBytes") or 0), tmpfs_mode=int(tmpfs.get("Mode") or 0)))
    return tuple(out)


def render_mount_requests(mounts: tuple[MountRequest, ...]) -> list[dict[str, Any]]:
    """``HostConfig.Mounts`` in inspect, as the client gave them."""
    out = []
    for m in mounts:
        entry: dict[str, Any] = {"Type": m.type, "Source": m.source, "Target": m.target}
        if m.read_only:
            entry["ReadOnly"] = True
        if m.type == "volume" and (m.no_copy or m.labels or m.driver or m.driver_options):
            vol: dict[str, Any] = {}
            if m.no_copy:
                vol["NoCopy"] = True
            if m.labels:
                vol["Labels"] = dict(m.labels)
            if m.driver or m.driver_options:
                vol["DriverConfig"] = {"Name": m.driver, "Options": dict(m.driver_options)}
            entry["VolumeOptions"] = vol
        if m.type == "bind" and m.propagation:
            entry["BindOptions"] = {"Propagation": m.propagation}
        if m.type == "tmpfs" and (m.tmpfs_size or m.tmpfs_mode):
            entry["TmpfsOptions"] = {k: v for k, v in (("SizeBytes", m.tmpfs_size),
                                                       ("Mode", m.tmpfs_mode)) if v}
        out.append(entry)
    return out
