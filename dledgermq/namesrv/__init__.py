"""The NameServer: a stateless route registry (pure) and its aiohttp app."""

from dledgermq.namesrv.app import make_namesrv_app, run_namesrv
from dledgermq.namesrv.registry import (
    BrokerGroup,
    BrokerRegistration,
    QueueData,
    RouteRegistry,
    TopicQueues,
    TopicRoute,
)

__all__ = [
    "BrokerGroup",
    "BrokerRegistration",
    "QueueData",
    "RouteRegistry",
    "TopicQueues",
    "TopicRoute",
    "make_namesrv_app",
    "run_namesrv",
]
