"""The validation registry in DynamoDB, in the original system's table and schema:
``BuildValidationRequests``, hash key ``PipelineName`` (S), range key ``Timestamp`` (N, ms).

Original attributes: Status, ComparisonName, Validationtimeframe, ReadyToValidateTimestamp,
Monspec, PipelineStage, PipelineAction, ApprovalAction. Ours beside them: Results, Reason,
Worker, LeaseUntil, Attempts, GateId, Fence. Every change is a conditional UpdateItem: a claim
increments Fence (the fencing token), and renewals and the outcome are written only while
Fence is still the claimer's, so a worker that lost a request to another one writes nothing.
Workers of earlier releases neither set nor check Fence: stop them before starting these. A
finished request's Status is its gate's (``pass``, ``violation``, ``error``); items written by
earlier releases with ``ok`` read as ``pass``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from ..aws.errors import aws_call, region_of
from ..errors import RegistryError
from .base import ERROR, LEGACY_STATUSES, RUNNING, WAITING, ValidationRequest

DEFAULT_TABLE = "BuildValidationRequests"

_ATTRIBUTES = {  # python field -> DynamoDB attribute
    "pipeline": "PipelineName",
    "timestamp_ms": "Timestamp",
    "comparison": "ComparisonName",
    "minutes": "Validationtimeframe",
    "monspec": "Monspec",
    "approval_action": "ApprovalAction",
    "stage": "PipelineStage",
    "action": "PipelineAction",
    "status": "Status",
    "ready_at": "ReadyToValidateTimestamp",
    "results": "Results",
    "reason": "Reason",
    "worker": "Worker",
    "lease_until": "LeaseUntil",
    "attempts": "Attempts",
    "gate_id": "GateId",
    "fence": "Fence",
}


def _to_item(request: ValidationRequest) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for name, attribute in _ATTRIBUTES.items():
        value = getattr(request, name)
        if value is None:
            continue
        if name == "results":
            value = json.dumps(value)
        elif isinstance(value, float):
            value = Decimal(repr(value))
        item[attribute] = value
    return item


def _from_item(item: dict[str, Any]) -> ValidationRequest:
    values: dict[str, Any] = {}
    for name, attribute in _ATTRIBUTES.items():
        if attribute not in item:
            continue
        value = item[attribute]
        if name == "results":
            value = json.loads(value)
        elif name in ("timestamp_ms", "attempts", "fence"):
            value = int(value)
        elif name == "status":
            value = LEGACY_STATUSES.get(value, value)
        elif isinstance(value, Decimal):
            value = float(value)
        values[name] = value
    return ValidationRequest(**values)


class DynamoDbRegistry:
    def __init__(self, table: Any) -> None:
        self.table = table  # a boto3 DynamoDB Table resource

    def __str__(self) -> str:
        return f"dynamodb:{self.table.name}"

    def _call(self, operation: str, call: Any, **kwargs: Any) -> Any:
        """One DynamoDB call; None when its condition did not hold (another worker was first)."""
        where = f"on table {self.table.name} ({region_of(self.table)})"
        try:
            return aws_call(f"dynamodb:{operation}", call, where=where, error=RegistryError, **kwargs)
        except RegistryError as exc:
            if exc.code == "ConditionalCheckFailedException":
                return None
            raise

    def register(self, request: ValidationRequest) -> None:
        done = self._call(
            "PutItem",
            self.table.put_item,
            Item=_to_item(request),
            ConditionExpression="attribute_not_exists(PipelineName)",
        )
        if done is None:
            raise RegistryError(f"a request for {request.pipeline} at {request.timestamp_ms} exists already")

    def get(self, pipeline: str, timestamp_ms: int) -> ValidationRequest | None:
        answer = self._call(
            "GetItem",
            self.table.get_item,
            Key={"PipelineName": pipeline, "Timestamp": timestamp_ms},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return _from_item(item) if item else None

    def recent(self, pipeline: str | None = None, limit: int = 50) -> list[ValidationRequest]:
        if pipeline is not None:
            from boto3.dynamodb.conditions import Key

            answer = self._call(
                "Query",
                self.table.query,
                KeyConditionExpression=Key("PipelineName").eq(pipeline),
                ScanIndexForward=False,
                Limit=limit,
            )
            return [_from_item(item) for item in answer["Items"]]
        items = self._scan()
        return sorted((_from_item(i) for i in items), key=lambda r: r.timestamp_ms, reverse=True)[:limit]

    def _scan(self, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            answer = self._call("Scan", self.table.scan, ConsistentRead=True, **kwargs)
            items += answer["Items"]
            if "LastEvaluatedKey" not in answer:
                return items
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def _update_if(
        self, request: ValidationRequest, update: str, condition: str, values: dict[str, Any], **extra: Any
    ) -> dict[str, Any] | None:
        """A conditional UpdateItem on the request's item (``#s`` is Status): its answer, or
        None when the condition did not hold (another worker was first, or took over)."""
        answer: dict[str, Any] | None = self._call(
            "UpdateItem",
            self.table.update_item,
            Key={"PipelineName": request.pipeline, "Timestamp": request.timestamp_ms},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames={"#s": "Status"},
            ExpressionAttributeValues=values,
            **extra,
        )
        return answer

    def due(self, now: float) -> list[ValidationRequest]:
        from boto3.dynamodb.conditions import Attr

        items = self._scan(
            FilterExpression=Attr("Status").eq(WAITING)
            & Attr("ReadyToValidateTimestamp").lte(Decimal(repr(now)))
        )
        return sorted((_from_item(i) for i in items), key=lambda r: r.ready_at)

    def claim(self, request: ValidationRequest, worker: str, now: float, lease_s: float) -> bool:
        lease = Decimal(repr(now + lease_s))
        answer = self._update_if(
            request,
            "SET #s = :running, Worker = :worker, LeaseUntil = :lease, "
            "Attempts = if_not_exists(Attempts, :zero) + :one, Fence = if_not_exists(Fence, :zero) + :one",
            "#s = :waiting",
            {
                ":running": RUNNING,
                ":waiting": WAITING,
                ":worker": worker,
                ":lease": lease,
                ":zero": 0,
                ":one": 1,
            },
            ReturnValues="UPDATED_NEW",
        )
        if answer is None:
            return False
        updated = answer.get("Attributes") or {}
        request.status, request.worker, request.lease_until = RUNNING, worker, float(lease)
        request.attempts = int(updated.get("Attempts", request.attempts + 1))
        request.fence = int(updated["Fence"])
        return True

    def renew(self, request: ValidationRequest, worker: str, fence: int, now: float, lease_s: float) -> bool:
        lease = Decimal(repr(now + lease_s))
        renewed = self._update_if(
            request,
            "SET LeaseUntil = :lease",
            "#s = :running AND Worker = :worker AND Fence = :fence",
            {":lease": lease, ":running": RUNNING, ":worker": worker, ":fence": fence},
        )
        if renewed is None:
            return False
        request.lease_until = float(lease)
        return True

    def finish(
        self,
        request: ValidationRequest,
        worker: str,
        status: str,
        *,
        results: list[dict[str, Any]],
        reason: str | None,
        gate_id: str | None,
        fence: int | None = None,
    ) -> bool:
        finished = self._update_if(
            request,
            "SET #s = :status, Results = :results, Reason = :reason, GateId = :gate REMOVE LeaseUntil",
            "#s = :running AND Worker = :worker AND Fence = :fence",
            {
                ":status": status,
                ":results": json.dumps(results),
                ":reason": reason or "",
                ":gate": gate_id or "",
                ":running": RUNNING,
                ":worker": worker,
                ":fence": request.fence if fence is None else fence,
            },
        )
        return finished is not None

    def release_expired(self, now: float, max_attempts: int) -> list[ValidationRequest]:
        from boto3.dynamodb.conditions import Attr

        items = self._scan(
            FilterExpression=Attr("Status").eq(RUNNING) & Attr("LeaseUntil").lt(Decimal(repr(now)))
        )
        released = []
        for request in map(_from_item, items):
            status = ERROR if request.attempts >= max_attempts else WAITING
            reason = f"worker {request.worker} stopped during validation ({request.attempts} attempts)"
            # Only as read: a worker that renewed its lease since the scan keeps the request.
            # Items of earlier releases may have no Fence (read as 0).
            released_one = self._update_if(
                request,
                "SET #s = :status, Reason = :reason REMOVE LeaseUntil",
                "#s = :running AND Worker = :worker AND LeaseUntil < :now "
                "AND (attribute_not_exists(Fence) OR Fence = :fence)",
                {
                    ":status": status,
                    ":reason": reason,
                    ":running": RUNNING,
                    ":worker": request.worker,
                    ":now": Decimal(repr(now)),
                    ":fence": request.fence,
                },
            )
            if released_one is not None:
                request.status, request.reason = status, reason
                released.append(request)
        return released


def create_table(dynamodb: Any, name: str = DEFAULT_TABLE) -> Any:
    """The original table (for tests and first-time setup; CloudFormation creates it in AWS)."""
    table = dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "PipelineName", "KeyType": "HASH"},
            {"AttributeName": "Timestamp", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "PipelineName", "AttributeType": "S"},
            {"AttributeName": "Timestamp", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()
    return table
