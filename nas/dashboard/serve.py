"""optuna-dashboard on a run's Optuna study (study.journal, or an RDB URL), and the checks made
before serving it: the study is there, the port is free."""

from __future__ import annotations

from typing import Any

from nas.run.folder import RunError, RunFolder


def serve(run: RunFolder, host: str = "127.0.0.1", port: int = 8080, storage: str | None = None) -> None:
    """optuna-dashboard on the run's study (its journal, or an RDB URL); blocks until interrupted."""
    from optuna_dashboard import run_server

    if storage is None:
        require_study(run, storage)
        storage_obj: Any = run.storage()
    else:
        storage_obj = storage
    run_server(storage_obj, host=host, port=port)


def require_study(run: RunFolder, storage: str | None) -> None:
    """Refuse to serve a run that has no Optuna study (unless `storage` names another)."""
    if storage is None and not run.study_path.is_file():
        raise RunError(f"{run.path}: no Optuna study ({run.study_path.name}) to serve")


def port_in_use(host: str, port: int) -> str | None:
    """Why optuna-dashboard could not listen on host:port (None: it can), found by binding it."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return f"cannot serve on {host}:{port} ({e.strerror or e})"
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: a closed port may be reused
        try:
            s.bind(addr)
        except OSError as e:
            return f"cannot serve on {host}:{port} ({e.strerror or e})"
    return None
