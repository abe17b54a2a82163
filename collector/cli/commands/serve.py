"""`collector serve`: run suites on their schedules and serve /metrics for Prometheus."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from collector.cli import options
from collector.cli.common import open_stores, refuse_placeholders
from collector.cli.exits import Exit
from collector.domain.errors import CollectorError, ConfigError, ConfigProblem

if TYPE_CHECKING:
    from collector.usecases.service import Service

NAME = "serve"
HELP = "run suites on their schedules and serve /metrics for Prometheus"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.config(parser)
    parser.add_argument("--port", type=options.integer_between(0, 65535),
                        help="port for /metrics and /healthz (default: serve.port, 9464; 0 "
                             "picks a free one)")
    parser.add_argument("--run-at-start", action="store_true",
                        help="run every scheduled suite once at start-up")
    options.local_store(parser)
    options.host(parser)
    options.isolation(parser)


def _stop_on_signals(service: Service) -> None:
    """SIGTERM, SIGINT and SIGHUP (a closed terminal, a service manager) stop serve
    gracefully: a config change takes a restart, never a half-applied reload. Under nohup
    (SIGHUP ignored when serve starts) a hangup stays ignored, as asked."""
    import signal

    stopping = [signal.SIGTERM, signal.SIGINT]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        stopping.append(signal.SIGHUP)
    for signum in stopping:
        signal.signal(signum, lambda number, _: service.request_stop(
            signal.Signals(number).name))


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging

    from collector.adapters.config import load_config
    from collector.adapters.http import token_from_environment
    from collector.adapters.locks import AlreadyServing, ServeLock
    from collector.adapters.store import resolve_database_url
    from collector.usecases.service import Service

    config = load_config(args.config)
    alerts_token = token_from_environment()
    if args.run_at_start:
        config = dataclasses.replace(config, serve=config.serve.model_copy(
            update={"run_at_start": True}))
    if not any(s.schedule for s in config.suites):
        raise ConfigError([ConfigProblem(config.path, None, "suites",
                                         "no suite has a schedule; add schedule: {cron: ...} "
                                         "or {interval_s: ...} to at least one suite")])
    _keep_secrets(alerts_token)  # and logging.basicConfig
    for note in config.notes:  # e.g. more threads than this host has cores
        logging.getLogger("collector.serve").warning("%s", note)
    refuse_placeholders(resolve_database_url(config.storage.database_url_env,
                                             config.storage.database_url_file),
                        COLLECTOR_ALERTS_TOKEN_FILE=(alerts_token.decode("utf-8", "replace")
                                                     if alerts_token else None))
    stores = open_stores(config.storage, args.local_store)
    try:
        # One serve per local store, for the life of this process (the kernel drops it).
        serving = ServeLock(stores.local.path).acquire()
    except AlreadyServing:
        stores.close()
        raise
    try:
        # /metrics' address, tried before anything starts: a port in use or a host that is
        # not this machine's is one line and exit 2, with nothing left running.
        _try_listening(config.serve.host,
                       args.port if args.port is not None else config.serve.port, config.path)
    except CollectorError:
        serving.release()
        stores.close()
        raise
    service = Service(config, stores, host=args.host, start_method=args.isolation,
                      port=args.port, alerts_token=alerts_token)
    _stop_on_signals(service)
    try:
        try:
            service.start()
        except OSError as exc:  # /metrics cannot listen there: one line, exit 2
            service.request_stop("a failed start")
            service.stopped.wait()
            raise CollectorError(_listen_error(exc, config.serve.host, args.port if
                                               args.port is not None else config.serve.port,
                                               config.path)) from None
        while not service.stopped.wait(0.5):
            pass
    finally:
        if not service.abandoned:
            stores.close()
        serving.release()
    if service.abandoned:  # a thread stuck in a database call must not hold the exit
        logging.getLogger("collector.serve").info("stopped")
        logging.shutdown()
        os._exit(Exit.OK)
    logging.getLogger("collector.serve").info("stopped")
    return Exit.OK


def _listen_error(exc: OSError, host: str, port: int, config_path: str) -> str:
    """Why /metrics cannot listen on host:port, in one line, with what to change."""
    import errno
    import socket

    where = f"cannot serve /metrics on {host}:{port}"
    if isinstance(exc, socket.gaierror):
        return (f"{where}: {host!r} is not an address or a host name this machine resolves "
                f"({exc.strerror or exc}); set serve.host in {config_path}")
    if exc.errno == errno.EADDRINUSE:
        return (f"{where}: the port is in use (another collector serve, or another "
                "program); choose another with --port or serve.port")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: not an address of this machine; set serve.host in {config_path}"
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges); use --port"
    return f"{where}: {exc.strerror or exc}; check serve.host and serve.port in {config_path}"


def _try_listening(host: str, port: int, config_path: str) -> None:
    """Bind host:port once and let it go (as the server will, with SO_REUSEADDR): the
    usual reasons it cannot listen are found before the service starts."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise CollectorError(_listen_error(exc, host, port, config_path)) from None


def _keep_secrets(alerts_token: bytes | None) -> None:
    """Set up logging (INFO, with time and level) so that no line shows a secret, whatever
    it quotes (collector.adapters.redact.ScrubFilter; the alerts token is one), and make
    this process non-dumpable: its environment holds the secrets, not for its workers to
    read from /proc/<pid>/environ (collector.adapters.measure.scrub.hide_environment)."""
    import logging

    from collector.adapters.measure.scrub import hide_environment
    from collector.adapters.redact import ScrubFilter, remember

    hide_environment()
    remember(alerts_token.decode("utf-8", "replace") if alerts_token else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(ScrubFilter())
