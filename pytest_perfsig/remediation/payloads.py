"""Problem notifications: the two payload formats the receiver accepts, mapped to one model.

- **Dynatrace** problem notification (custom integration; the original system's format):
  ``PID``, ``ProblemID``, ``ProblemTitle``, ``State`` (``OPEN`` / ``RESOLVED`` / ``MERGED``),
  ``ImpactedEntities`` (``[{type, name, entity}]``), ``Tags`` (``"DeploymentGroup:Production,
  ..."``), ``ProblemDetailsJSON``.
- **Prometheus Alertmanager** webhook (``version`` ``"4"``): ``status`` (``firing`` /
  ``resolved``), ``groupKey``, ``alerts[]`` with ``labels``, ``annotations``, ``startsAt``,
  ``fingerprint``; ``commonLabels`` and ``groupLabels``.

Nothing here does I/O: :func:`decode_json` turns a body into a document (strict JSON: no NaN
or Infinity, at most :data:`MAX_JSON_DEPTH` levels deep) and :func:`parse_problem` a document
into a :class:`Problem`; both raise :class:`PayloadError` with a reason a sender can act on.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..errors import PerfsigError

__all__ = [
    "ALERTMANAGER_TEST_ALERTNAME",
    "DYNATRACE_TEST_PID",
    "DYNATRACE_TEST_TITLE",
    "MAX_JSON_DEPTH",
    "PayloadError",
    "Problem",
    "decode_json",
    "parse_problem",
]

#: the title of the notification Dynatrace sends from "Send test notification"
DYNATRACE_TEST_TITLE = "Dynatrace problem notification test run"
#: the PID of that test notification (its entities are ``HOST-XXXXXXXXXXXXX`` placeholders)
DYNATRACE_TEST_PID = "99999"
#: Alertmanager has no test button; an alert group made only of alerts with this name (what
#: Grafana's "test contact point" and the usual ``amtool alert add`` smoke test send) is a test
ALERTMANAGER_TEST_ALERTNAME = "TestAlert"

#: tag keys (Dynatrace) and label names (Alertmanager) that name the environment, in order
DYNATRACE_ENV_TAG_KEYS = ("deploymentgroup",)
ALERTMANAGER_ENV_LABELS = ("stage", "env", "environment", "deployment_group")

#: nesting allowed in a notification (real ones are under 10 levels deep); deeper documents
#: would exhaust the decoder's recursion
MAX_JSON_DEPTH = 64

State = Literal["OPEN", "RESOLVED"]


class PayloadError(PerfsigError):
    """A notification that is neither format, or one that is malformed (HTTP 400)."""


class _Unsafe(PayloadError):
    """JSON refused wherever it appears: too deep, NaN or Infinity, a number beyond a float."""


_SIGNIFICANT = re.compile(r'[\[\]{}"\\]')


def decode_json(text: str, *, what: str = "malformed JSON") -> Any:
    """Strict JSON: :class:`PayloadError` (``"<what>: <reason>"``) for a syntax error, NaN or
    Infinity, a number beyond a float's range, or nesting deeper than :data:`MAX_JSON_DEPTH`
    (checked before decoding: the decoder recurses once per level)."""
    try:
        if _depth_exceeds(text, MAX_JSON_DEPTH):
            raise _Unsafe(f"nested deeper than {MAX_JSON_DEPTH} levels")
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except _Unsafe as exc:
        raise _Unsafe(f"{what}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"{what}: {exc}") from None


def _depth_exceeds(text: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit``; one linear pass."""
    depth, in_string, skip_to = 0, False, -1
    for match in _SIGNIFICANT.finditer(text):
        char, at = match.group(), match.start()
        if at < skip_to:
            continue  # the character after a backslash
        if in_string:
            if char == "\\":
                skip_to = at + 2
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _no_constant(name: str) -> Any:
    raise _Unsafe(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Unsafe(f"number out of range: {text[:20]}")
    return number


@dataclass(frozen=True)
class Problem:
    """One problem notification, whatever sent it.

    ``state`` is ``OPEN`` for a problem that needs action and ``RESOLVED`` for everything else
    (``vendor_state`` keeps what the sender said, e.g. Dynatrace's ``MERGED``). ``env`` is the
    environment the problem is in (``None`` when the payload does not say); ``envs`` every
    environment it names. ``raw`` is the payload as received (what a remediation URL is sent).
    """

    problem_id: str
    title: str
    state: State
    env: str | None
    raw: dict[str, Any] = field(repr=False)
    source: Literal["dynatrace", "alertmanager"] = "dynatrace"
    envs: tuple[str, ...] = ()
    vendor_state: str = ""
    started_at: float | None = None
    test: bool = False

    def summary(self) -> dict[str, Any]:
        """The problem without its raw payload (safe for responses and logs)."""
        return {
            "problem_id": self.problem_id,
            "title": self.title,
            "state": self.state,
            "vendor_state": self.vendor_state,
            "env": self.env,
            "source": self.source,
        }


def parse_problem(
    payload: Any, *, known_envs: Iterable[str] = (), production_prefix: str = "Production"
) -> Problem:
    """Map a decoded notification to a :class:`Problem`.

    ``known_envs`` (e.g. the environments with deployment events) lets entity names identify
    the environment when no tag or label does. When a problem names several environments, the
    first whose name starts with ``production_prefix`` is its ``env``, else the first named.
    """
    if not isinstance(payload, dict):
        raise PayloadError(f"the payload must be a JSON object, not {_json_type(payload)}")
    if isinstance(payload.get("alerts"), list) or "groupKey" in payload:
        return _alertmanager(payload, production_prefix)
    if any(key in payload for key in ("PID", "ProblemID", "State")):
        return _dynatrace(payload, tuple(known_envs), production_prefix)
    raise PayloadError(
        "the payload is neither a Dynatrace problem notification (PID, State, ...) nor an "
        "Alertmanager webhook (version 4: status, groupKey, alerts)"
    )


# ------------------------------------------------------------------ Dynatrace


def _dynatrace(payload: dict[str, Any], known_envs: tuple[str, ...], prefix: str) -> Problem:
    for key in ("PID", "ProblemID"):
        value = payload.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            raise PayloadError(f"Dynatrace notification: {key} must be a string or an integer")
    pid = _text(payload.get("PID")) or _text(payload.get("ProblemID"))
    if not pid:
        raise PayloadError("Dynatrace notification without PID (or ProblemID)")
    vendor_state = _text(payload.get("State")).upper()
    if not vendor_state:
        raise PayloadError("Dynatrace notification without State")
    if vendor_state not in ("OPEN", "RESOLVED", "MERGED", "CLOSED"):
        raise PayloadError(f"Dynatrace notification with unknown State {vendor_state[:40]!r}")
    title = payload.get("ProblemTitle", "")
    if not isinstance(title, str):
        raise PayloadError("Dynatrace notification: ProblemTitle must be a string")
    entities = _impacted_entities(payload.get("ImpactedEntities"))
    details = _maybe_json(payload.get("ProblemDetailsJSON"), "ProblemDetailsJSON")
    details = details if isinstance(details, dict) else {}
    affected_tags = details.get("tagsOfAffectedEntities") or []
    if not isinstance(affected_tags, list):
        raise PayloadError("Dynatrace notification: ProblemDetailsJSON.tagsOfAffectedEntities must be a list")

    test = title == DYNATRACE_TEST_TITLE or (
        pid == DYNATRACE_TEST_PID and any("XXXXXXXXXXXXX" in str(e.get("entity", "")) for e in entities)
    )

    envs: list[str] = []
    for key, value in _dynatrace_tags(payload.get("Tags")):
        if key.lower() in DYNATRACE_ENV_TAG_KEYS and value:
            envs.append(value)
    for tag in affected_tags:
        if isinstance(tag, dict) and str(tag.get("key", "")).lower() in DYNATRACE_ENV_TAG_KEYS:
            value = _text(tag.get("value"))
            if value:
                envs.append(value)
    if not envs and known_envs:
        for entity in entities:
            env = _env_in_name(_text(entity.get("name")), known_envs)
            if env:
                envs.append(env)

    started = _epoch(payload.get("ProblemStartTime")) or _epoch(details.get("startTime"))
    return Problem(
        problem_id=pid,
        title=title,
        state="OPEN" if vendor_state == "OPEN" else "RESOLVED",
        env=_pick_env(envs, prefix),
        raw=payload,
        source="dynatrace",
        envs=tuple(dict.fromkeys(envs)),
        vendor_state=vendor_state,
        started_at=started,
        test=test,
    )


def _impacted_entities(value: Any) -> list[dict[str, Any]]:
    value = _maybe_json(value, "ImpactedEntities")
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise PayloadError("Dynatrace notification: ImpactedEntities must be a list of objects")
    return [entity for entity in value if isinstance(entity, dict)]


_TAG_CONTEXT = re.compile(r"^\[[^\]]*\]\s*")


def _dynatrace_tags(value: Any) -> list[tuple[str, str]]:
    """``"DeploymentGroup:Production, [AWS]Name:web, plain"`` -> ``[(key, value), ...]``."""
    if value is None:
        return []
    if isinstance(value, list):
        items = [str(item) for item in value]
    elif isinstance(value, str):
        items = value.split(",")
    else:
        raise PayloadError("Dynatrace notification: Tags must be a comma-separated string")
    tags = []
    for item in items:
        item = _TAG_CONTEXT.sub("", item.strip())
        key, _, tag_value = item.partition(":")
        if key.strip():
            tags.append((key.strip(), tag_value.strip()))
    return tags


def _env_in_name(name: str, known_envs: Sequence[str]) -> str | None:
    """The longest known environment named as a whole word in an entity name."""
    for env in sorted(known_envs, key=len, reverse=True):
        if env and re.search(rf"(?<![A-Za-z0-9]){re.escape(env)}(?![A-Za-z0-9])", name):
            return env
    return None


# ------------------------------------------------------------------ Alertmanager


def _alertmanager(payload: dict[str, Any], prefix: str) -> Problem:
    version = payload.get("version")
    if version is not None and str(version) != "4":
        raise PayloadError(f"Alertmanager webhook version {str(version)[:20]!r} is not supported (only 4)")
    status = _text(payload.get("status")).lower()
    if status not in ("firing", "resolved"):
        raise PayloadError("Alertmanager webhook: status must be 'firing' or 'resolved'")
    group_key = payload.get("groupKey")
    if not isinstance(group_key, str) or not group_key:
        raise PayloadError("Alertmanager webhook without groupKey")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts or not all(isinstance(a, dict) for a in alerts):
        raise PayloadError("Alertmanager webhook: alerts must be a non-empty list of objects")
    for alert in alerts:
        if not isinstance(alert.get("labels", {}), dict):
            raise PayloadError("Alertmanager webhook: an alert's labels must be an object")

    firing = [a for a in alerts if _text(a.get("status")).lower() == "firing"] or alerts
    # The group's oldest firing alert stands for the group: repeated notifications of the same
    # incident keep it (same problem id), a new incident after it resolved gets a new startsAt.
    primary = min(
        firing, key=lambda a: (_iso_epoch(_text(a.get("startsAt"))) or float("inf"), _fingerprint(a))
    )
    labels: dict[str, Any] = primary.get("labels") or {}

    test = all(_text((a.get("labels") or {}).get("alertname")) == ALERTMANAGER_TEST_ALERTNAME for a in alerts)
    envs: list[str] = []
    sources: list[Mapping[str, Any]] = [labels, *((a.get("labels") or {}) for a in firing)]
    for extra in ("commonLabels", "groupLabels"):
        if isinstance(payload.get(extra), dict):
            sources.append(payload[extra])
    for source in sources:
        for name in ALERTMANAGER_ENV_LABELS:
            value = _text(source.get(name))
            if value:
                envs.append(value)
                break

    annotations = primary.get("annotations") if isinstance(primary.get("annotations"), dict) else {}
    alertname = _text(labels.get("alertname")) or "alert"
    summary = _text((annotations or {}).get("summary"))
    starts_at = _text(primary.get("startsAt"))
    return Problem(
        problem_id=f"alertmanager:{group_key}:{_fingerprint(primary)}:{starts_at}",
        title=f"{alertname}: {summary}" if summary else alertname,
        state="OPEN" if status == "firing" else "RESOLVED",
        env=_pick_env(envs, prefix),
        raw=payload,
        source="alertmanager",
        envs=tuple(dict.fromkeys(envs)),
        vendor_state=status,
        started_at=_iso_epoch(starts_at),
        test=test,
    )


def _fingerprint(alert: Mapping[str, Any]) -> str:
    fingerprint = _text(alert.get("fingerprint"))
    if fingerprint:
        return fingerprint
    labels = alert.get("labels") or {}
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------ helpers


def _pick_env(envs: Sequence[str], prefix: str) -> str | None:
    for env in envs:
        if env.startswith(prefix):
            return env
    return envs[0] if envs else None


def _text(value: Any) -> str:
    if value is None or isinstance(value, dict | list | bool):
        return ""
    return str(value).strip()


def _maybe_json(value: Any, field: str) -> Any:
    """A field that Dynatrace may send as JSON text: decoded when it is well-formed JSON, kept
    as text when it is not; too deep or with NaN / Infinity, refused as the body would be."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return decode_json(value, what=field)
        except _Unsafe:
            raise
        except PayloadError:
            return value
    return value


def _epoch(value: Any) -> float | None:
    """Epoch seconds from seconds or milliseconds (Dynatrace sends ms)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: an integer beyond a float's range
        return None
    if not 0 < number < math.inf:
        return None
    return number / 1000 if number > 1e11 else number


def _iso_epoch(value: str) -> float | None:
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return stamp if stamp > 0 else None


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
