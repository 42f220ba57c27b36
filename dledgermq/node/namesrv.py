"""Run one NameServer process until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging

from dledgermq.config import ClusterConfig
from dledgermq.node.process import stop_on_signals

log = logging.getLogger(__name__)


def run_namesrv(config: ClusterConfig, namesrv_id: str) -> int:
    from dledgermq.namesrv.app import run_namesrv as serve_namesrv

    ns = config.namesrv(namesrv_id)

    async def main() -> None:
        stop = stop_on_signals()
        await serve_namesrv(
            ns.host,
            ns.port,
            expiry_ms=ns.broker_expiry_ms,
            scan_interval_ms=ns.scan_interval_ms,
            stop=stop,
        )

    asyncio.run(main())
    return 0
