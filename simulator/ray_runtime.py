"""Ray, started or joined once per process: a local instance by default, or the cluster named by
`--ray-address` / `RAY_ADDRESS`; a failure to start or reach it is a one-line user error."""

from __future__ import annotations

import logging
import os
from typing import Any

from societas.errors import SocietasError


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start (or join) Ray once per process; a failure is a one-line user error."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "ignore_reinit_error": True,
        "logging_level": logging.ERROR,
        "configure_logging": True,
    }
    if address:
        _check_reachable(address)
        kwargs["address"] = address
    else:
        # "local": a fresh instance of our own, even when `ray start --head` runs on this machine
        # (plain ray.init() would join that one, and refuse num_cpus).
        kwargs["address"] = "local"
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
    try:
        ray.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 - Ray raises many types; all mean "could not start"
        where = f"the cluster at {address}" if address else "a local Ray instance"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SocietasError(
            f"could not start or join {where}: {first}",
            hint="check --ray-address / RAY_ADDRESS, or run `ray stop` to clear a stale local instance",
        ) from None


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Ray retries an unreachable head for minutes; a quick TCP probe fails in seconds instead."""
    import socket

    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SocietasError(f"invalid Ray address {address!r}",
                            hint="give host:port (e.g. 10.0.0.5:6379), ray://host:10001, or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise SocietasError(
            f"could not start or join the cluster at {address}: {exc.strerror or exc}",
            hint="check that the head node runs (`ray start --head`) and the address is right",
        ) from None
