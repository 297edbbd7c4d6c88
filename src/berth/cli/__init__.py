"""The ``berth`` command-line client.

It speaks only the Docker Engine API (``client.py``: HTTP/1.1 over a unix socket or TCP, with
``101`` upgrades for attach/exec), parses docker's command lines (``flags.py``, ``runconfig.py``)
and prints docker's output (``render.py``, ``template.py``, ``listing.py``). Each verb lives in
``commands/<module>.py`` and is imported only when invoked (see ``main.py``).

The daemon address is ``-H/--host``, else ``$BERTH_HOST``, else ``unix:///run/berth/berth.sock``.
TCP hosts may use TLS with docker's ``--tls*`` flags (``tls.py``).
``DOCKER_HOST`` is deliberately not consulted, so that a berth command never drives another
engine by accident (point berth at dockerd explicitly with ``-H`` if you mean to).
"""
