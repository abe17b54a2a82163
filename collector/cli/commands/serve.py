"""`collector serve`: run suites on their schedules and serve /metrics for Prometheus."""

from __future__ import annotations

import argparse
import os

from collector.cli import options
from collector.cli.common import open_stores, refuse_placeholders
from collector.cli.exits import Exit
from collector.domain.errors import ConfigError, ConfigProblem

NAME = "serve"
HELP = "run suites on their schedules and serve /metrics for Prometheus"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.config(parser)
    parser.add_argument("--port", type=int, help="port for /metrics and /healthz (default: "
                                                 "serve.port, 9464; 0 picks a free one)")
    parser.add_argument("--run-at-start", action="store_true",
                        help="run every scheduled suite once at start-up")
    options.local_store(parser)
    options.host(parser)
    options.isolation(parser)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging
    import signal

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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
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
    service = Service(config, stores, host=args.host, start_method=args.isolation,
                      port=args.port, alerts_token=alerts_token)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.request_stop())
    try:
        service.start()
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
