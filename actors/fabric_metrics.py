"""The fabric's metrics, declared once through the facade (Ray's backend inside actors)."""

from __future__ import annotations

from quadracode_ray import metrics


def envelopes():
    return metrics.counter("envelopes_total", "Envelopes logged by the event bus, by kind.", ("kind",))


def deliveries():
    return metrics.counter("deliveries_total", "Envelope deliveries by recipient and outcome "
                           "(accepted, duplicate, handled, retried, dead).", ("recipient", "outcome"))


def agents_alive():
    return metrics.gauge("agents_alive", "Agent actors alive (fleet) or registered and healthy (registry).",
                         ("source",))


def tasks():
    return metrics.counter("tasks_total", "Delegated tasks by outcome.", ("outcome",))



def agents_warm():
    return metrics.gauge("agents_warm", "Idle agents the fleet's warm pool holds ready.", ())


def warm_pool_spawns():
    return metrics.counter("warm_pool_spawns_total", "Agents the fleet's warm pool spawned, by outcome (ok, failed).",
                           ("outcome",))
