"""cgroup managers for containers: v1 (legacy and hybrid hosts) and v2 (unified)."""

from berth.runtime.cgroups.base import (
    CgroupManager,
    CgroupMode,
    detect_cgroup_mode,
    open_cgroup,
)
from berth.runtime.cgroups.resources import (
    CgroupResources,
    DeviceRule,
    shares_to_weight,
    v1_resource_files,
    v2_resource_files,
)
from berth.runtime.cgroups.v1 import CgroupV1Manager
from berth.runtime.cgroups.v2 import CgroupV2Manager

__all__ = [
    "CgroupManager",
    "CgroupMode",
    "CgroupResources",
    "CgroupV1Manager",
    "CgroupV2Manager",
    "DeviceRule",
    "detect_cgroup_mode",
    "open_cgroup",
    "shares_to_weight",
    "v1_resource_files",
    "v2_resource_files",
]
