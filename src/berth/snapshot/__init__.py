"""Layer snapshots: safe unpacking, overlay mounts described as data, diffs of writable layers.

- ``archive``: ``apply_tar`` (layer tar → diff dir in overlay format), ``write_diff`` (upper dir →
  OCI layer tar), ``tar_directory``.
- ``layers``: ``LayerStore``, one unpacked diff dir per chain ID under ``<data-root>/layers``.
- ``overlay``: ``overlay_mounts`` (pure), ``prepare_rootfs``/``release_rootfs``.
- ``mount``: ``Mount`` records and the one mount(2)/umount2(2) wrapper that performs them.
"""
