"""Which Dynatrace entities an environment is: its monspec tags as an entity selector (Metrics
and entities API v2) or as tag filters (Timeseries API v1).

Tags are written in Dynatrace's tag notation (``key:value`` for ``CONTEXTLESS``,
``[AWS]key:value`` for other contexts). Tags of context ``PROMETHEUS`` or ``CLOUDWATCH`` belong
to other sources and are ignored; a ``DYNATRACE`` tag is an entity-selector predicate
(``entityName.equals`` with value ``checkout`` → ``entityName.equals("checkout")``). An
environment without tags is an error: a query over every service of the tenant would be a guess.
"""

from __future__ import annotations

import re

from ..errors import SourceError
from ..windows import MetricQuery, Tags

__all__ = ["entity_selector", "quote", "service_selector", "tag_text", "v1_tags"]

OTHER_SOURCES_CONTEXTS = frozenset({"PROMETHEUS", "CLOUDWATCH"})
SELECTOR_CONTEXT = "DYNATRACE"
_PREDICATE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")


def quote(value: str) -> str:
    """An entity-selector string literal: ``~`` escapes ``~`` and ``"``."""
    return '"' + value.replace("~", "~~").replace('"', '~"') + '"'


def tag_text(context: str, key: str, value: str | None) -> str:
    prefix = "" if context.upper() == "CONTEXTLESS" else f"[{context}]"
    return prefix + key + (f":{value}" if value is not None else "")


def _no_tags(env: str) -> SourceError:
    return SourceError(
        f"no tag of {env} identifies its services in Dynatrace: add one such as "
        f'{{"context": "CONTEXTLESS", "key": "DeploymentGroup", "value": "{env}"}}'
    )


def service_selector(env: str, tags: Tags) -> str:
    """The environment's services: ``type(SERVICE),tag("DeploymentGroup:Staging"),...``."""
    predicates: list[str] = []
    for context, key, value in tags:
        if context.upper() in OTHER_SOURCES_CONTEXTS:
            continue
        if context.upper() == SELECTOR_CONTEXT:
            if not _PREDICATE_RE.match(key) or value is None:
                raise SourceError(
                    f"{env}: DYNATRACE tag {key!r} must name an entity-selector predicate "
                    "(e.g. entityName.equals) and give its value"
                )
            predicates.append(f"{key}({quote(value)})")
        else:
            predicates.append(f"tag({quote(tag_text(context, key, value))})")
    if not predicates:
        raise _no_tags(env)
    return "type(SERVICE)," + ",".join(predicates)


def entity_selector(query: MetricQuery) -> str:
    """The environment's services (or, for a service method, its key request)."""
    services = service_selector(query.env, query.tags)
    if query.method is None:
        return services
    return (
        f"type(SERVICE_METHOD),entityName.equals({quote(query.method)}),"
        f"fromRelationships.isServiceMethodOfService({services})"
    )


def v1_tags(query: MetricQuery) -> tuple[str, ...]:
    """The ``tag`` filters of a Timeseries API v1 query (it has no entity selectors)."""
    tags = tuple(
        tag_text(context, key, value)
        for context, key, value in query.tags
        if context.upper() not in OTHER_SOURCES_CONTEXTS | {SELECTOR_CONTEXT}
    )
    if not tags:
        raise _no_tags(query.env)
    return tags
