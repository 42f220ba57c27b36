"""What a broker tells the NameServers about itself (API.md, `POST /brokers`).

Owns the registration body: identity, role (broker_id 0 takes writes), zone, the broker
group's permission (6, or 4 while write-disabled for maintenance; the NameServer masks
every topic's perm with it, as RocketMQ's broker does with `brokerPermission`), whether
it creates unknown topics on a send (producers then send a topic without a route there,
RocketMQ's TBW102 idea) and the topic table. Pure: reads only what the actors publish,
sends nothing (node.py does).
"""

from __future__ import annotations

from typing import Any

from dledgermq.api.broker_app import BrokerContext


def registration(context: BrokerContext) -> dict[str, Any]:
    identity = context.identity
    topics = context.published.topics.value
    body: dict[str, Any] = {
        "cluster": identity.cluster,
        "broker_name": identity.broker_name,
        "broker_id": context.role.value.broker_id,
        "addr": identity.addr,
        "perm": context.published.broker_perm.value,
        "auto_create_topic": context.limits.auto_create_topic,
        "topics": [topics[name].to_wire() for name in sorted(topics)],
    }
    if identity.zone is not None:
        body["zone"] = identity.zone
    return body
