"""The per-container monitor (containerd-shim's / conmon's role).

``client.start_shim(ShimConfig)`` launches ``berth-shim`` (``main.py``) detached; the shim
runs ``<runtime> create``, holds the container's stdio or pty, writes the json-file log,
serves ``protocol.py`` requests on its unix socket (attach, resize, kill, pause, exec, ...),
records the exit in ``<bundle>/exit.json`` and deletes the runtime state.
``client.ShimClient`` / ``client.AsyncShimClient`` talk to it. berthd forks its shims from a
``forkserver`` (no interpreter start-up per container); with berth's own runtime the shim calls
it in-process (``runtime_inproc``) instead of running ``berth-runtime`` commands.
"""
