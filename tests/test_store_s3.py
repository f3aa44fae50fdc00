"""The store kept in S3 (``--perfsig-store s3://bucket/key``): downloaded before a session,
saved after it with a conditional PutObject, merged when another writer saved first, and never
losing what a session measured.

S3 is moto's, in-process: moto implements conditional PutObject (``IfMatch`` and
``IfNoneMatch: *`` answer 412 PreconditionFailed, ``IfMatch`` on a deleted object 404), so the
conflicts below are real round trips. What moto never answers, S3's 409
ConditionalRequestConflict (two conditional writes in flight at once), is checked with a botocore
Stubber against the real service model.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from pytest_perfsig.aws.s3 import S3Objects
from pytest_perfsig.cli import main as perfsig
from pytest_perfsig.errors import StoreError, UsageError
from pytest_perfsig.gate import GateOutcome
from pytest_perfsig.gate.storage import LocalStore, opened_store, store_location
from pytest_perfsig.lambdas import problem_handler, worker_handler
from pytest_perfsig.registry import new_request, open_registry
from pytest_perfsig.registry.dynamodb import DynamoDbRegistry, create_table
from pytest_perfsig.store import SCHEMA_VERSION, DeploymentEvent, RunRecord, SqliteStore
from pytest_perfsig.store.merge import merge_changes, snapshot
from pytest_perfsig.store.s3 import S3StoreFile, parse_s3_url

BUCKET = "perfsig-history"
KEY = "gates/perfsig.db"
URL = f"s3://{BUCKET}/{KEY}"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PERFSIG_STORE_WORKDIR": str(tmp_path / "work"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def session(tmp_path: Path, objects: Any = None, **kwargs: Any) -> S3StoreFile:
    """One writer's working copy (its own working directory, as on its own machine)."""
    return S3StoreFile(URL, objects or S3Objects(), tmp_path / "work", pause=lambda _: None, **kwargs)


def write_gate(path: Path, gate_id: str, status: str = "pass", *, samples: int = 3) -> None:
    """What a gate leaves: a gate, its run and the run's samples."""
    with SqliteStore(path) as store:
        store.create_gate(gate_id, "monspec.json", "Production", None)
        store.create_run(
            RunRecord(f"run-{gate_id}", "Svc", "Production", gate_id=gate_id, status="completed")
        )
        store.add_samples(
            [(f"run-{gate_id}", 1000.0 + k, "Svc", "Production", "/", 5.0, 1, 200) for k in range(samples)]
        )
        store.compact_run(f"run-{gate_id}")
        store.finish_gate(gate_id, GateOutcome(status, {}, planned=1, selected=1, judged=1))


def stored(s3: Any, tmp_path: Path) -> sqlite3.Connection:
    """The object as it is in S3 now, opened read-only."""
    target = tmp_path / "check.db"
    target.write_bytes(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())
    return sqlite3.connect(f"file:{target}?mode=ro", uri=True)


def gates_in(s3: Any, tmp_path: Path) -> dict[str, str]:
    with stored(s3, tmp_path) as db:
        return dict(db.execute("SELECT gate_id, status FROM gates").fetchall())


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "bucket", "key"),
    [("s3://b-1/perfsig.db", "b-1", "perfsig.db"), ("s3://bucket/a/b/c.db", "bucket", "a/b/c.db")],
)
def test_s3_urls(url: str, bucket: str, key: str) -> None:
    assert (parse_s3_url(url).bucket, parse_s3_url(url).key) == (bucket, key)
    assert str(parse_s3_url(url)) == url


@pytest.mark.parametrize("url", ["s3://", "s3://bucket", "s3://bucket/", "s3:///key", "s3://bucket/dir/"])
def test_bad_s3_urls(url: str) -> None:
    with pytest.raises(UsageError, match="s3://BUCKET/KEY"):
        parse_s3_url(url)


def test_the_store_url_is_chosen_in_one_place(tmp_path: Path) -> None:
    assert isinstance(store_location(tmp_path / "s.db"), LocalStore)
    remote = store_location(URL, workdir=tmp_path, objects=S3Objects(client=object()))
    assert isinstance(remote, S3StoreFile) and remote.remote and remote.url == URL
    assert remote.path.parent == tmp_path / BUCKET and remote.path.suffix == ".db"
    with pytest.raises(UsageError, match="unknown store 'gs://b/k'"):
        store_location("gs://b/k")


# --------------------------------------------------------------------------- round trips


def test_a_missing_object_is_a_new_store_created_only_if_still_missing(s3: Any, tmp_path: Path) -> None:
    first = session(tmp_path)
    path = first.open()
    assert first.etag is None
    with SqliteStore(path) as store:
        assert store.gates() == [] and store.schema_version == SCHEMA_VERSION
    write_gate(path, "g1")
    assert first.save() == f"store saved to {URL}"
    assert first.saved and first.etag == s3.head_object(Bucket=BUCKET, Key=KEY)["ETag"]
    assert gates_in(s3, tmp_path) == {"g1": "pass"}
    # The next session (another CodeBuild container) starts from that history.
    second = session(tmp_path)
    with SqliteStore(second.open()) as store:
        assert [g.gate_id for g in store.gates()] == ["g1"]
        (run,) = store.baseline_runs("Svc", "Production", 1, passed_only=True)
        assert run.run_id == "run-g1" and len(store.run_samples(run)) == 3
    assert second.etag == first.etag


def test_working_files_are_per_session_and_discarded_once_saved(s3: Any, tmp_path: Path) -> None:
    one, two = session(tmp_path), session(tmp_path)
    assert one.path != two.path
    one.open()
    write_gate(one.path, "g1")
    one.save()
    one.discard()
    assert not any((tmp_path / "work").rglob("*.db*")), list((tmp_path / "work").rglob("*"))


def test_the_upload_is_self_contained(s3: Any, tmp_path: Path) -> None:
    """Whatever is still in the working file's WAL is in the uploaded object."""
    writer = session(tmp_path)
    writer.open()
    keep_open = SqliteStore(writer.path)  # like the gate's own connection at the end of a session
    write_gate(writer.path, "g1", samples=500)
    writer.save()
    keep_open.close()
    with stored(s3, tmp_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert db.execute("SELECT SUM(n) FROM sample_batches").fetchone()[0] == 500


# --------------------------------------------------------------------------- two writers at once


def test_two_gates_saving_at_once_keep_each_others_history(s3: Any, tmp_path: Path) -> None:
    seed = session(tmp_path)
    seed.open()
    write_gate(seed.path, "g0")
    seed.save()
    # Two gates start from the same version of the store...
    staging, production = session(tmp_path), session(tmp_path)
    staging.open()
    production.open()
    write_gate(staging.path, "g-staging", "violation")
    write_gate(production.path, "g-production", "pass", samples=7)
    # ...the first to finish saves; the second finds the object changed (412), downloads it,
    # adds its own rows and saves that.
    assert staging.save() == f"store saved to {URL}"
    assert production.save() == f"store saved to {URL}, merged with 1 newer version(s) written meanwhile"
    assert gates_in(s3, tmp_path) == {"g0": "pass", "g-staging": "violation", "g-production": "pass"}
    with stored(s3, tmp_path) as db:
        per_run = dict(db.execute("SELECT run_id, SUM(n) FROM sample_batches GROUP BY run_id").fetchall())
        blocks = {row[0] for row in db.execute("SELECT run_id FROM sample_chunks")}
    assert per_run == {"run-g0": 3, "run-g-staging": 3, "run-g-production": 7}
    assert blocks == set(per_run)


def test_a_collection_saved_after_another_writer_leaves_no_collected_samples(s3: Any, tmp_path: Path) -> None:
    seed = session(tmp_path)
    seed.open()
    write_gate(seed.path, "g0")
    write_gate(seed.path, "g1")
    seed.save()
    # `perfsig gc` on one copy while a gate saves another: the gate's save lands first.
    collecting, gate = session(tmp_path), session(tmp_path)
    collecting.open()
    gate.open()
    write_gate(gate.path, "g2", samples=5)
    assert gate.save() == f"store saved to {URL}"
    with SqliteStore(collecting.path) as store:
        done = store.collect_samples(keep_gates=1)
    assert done.collected == ["run-g0"]
    assert collecting.save() == f"store saved to {URL}, merged with 1 newer version(s) written meanwhile"
    with stored(s3, tmp_path) as db:
        chunks = {row[0] for row in db.execute("SELECT DISTINCT run_id FROM sample_chunks")}
        rows = {row[0] for row in db.execute("SELECT DISTINCT run_id FROM sample_batches")}
        collected = dict(db.execute("SELECT run_id, samples_collected_at IS NOT NULL FROM runs").fetchall())
    assert chunks | rows == {"run-g1", "run-g2"}
    assert collected == {"run-g0": 1, "run-g1": 0, "run-g2": 0}


def test_two_writers_creating_the_store_at_once(s3: Any, tmp_path: Path) -> None:
    one, two = session(tmp_path), session(tmp_path)
    one.open()
    two.open()
    assert one.etag is two.etag is None
    write_gate(one.path, "g1")
    with SqliteStore(two.path) as store:
        store.add_deployment_event(DeploymentEvent(env="Production", deployment_id="d-1"))
    one.save()
    assert "merged with 1" in two.save()  # its IfNoneMatch: * failed: the object exists now
    with stored(s3, tmp_path) as db:
        assert db.execute("SELECT gate_id FROM gates").fetchall() == [("g1",)]
        assert db.execute("SELECT deployment_id FROM deployment_events").fetchall() == [("d-1",)]


def test_rows_a_session_changed_are_carried_over(s3: Any, tmp_path: Path) -> None:
    """A gate opened in the base and finished in this session: the finished row wins."""
    seed = session(tmp_path)
    with SqliteStore(seed.open()) as store:
        store.create_gate("g1", "monspec.json", "Production", None)
    seed.save()
    finisher, other = session(tmp_path), session(tmp_path)
    finisher.open()
    other.open()
    with SqliteStore(finisher.path) as store:
        store.finish_gate("g1", GateOutcome("pass", {}, planned=1, selected=1, judged=1))
    write_gate(other.path, "g2")
    other.save()
    finisher.save()
    assert gates_in(s3, tmp_path) == {"g1": "pass", "g2": "pass"}


def test_an_object_deleted_meanwhile_gets_the_whole_working_file(s3: Any, tmp_path: Path) -> None:
    seed = session(tmp_path)
    seed.open()
    write_gate(seed.path, "g0")
    seed.save()
    writer = session(tmp_path)
    writer.open()
    write_gate(writer.path, "g1")
    s3.delete_object(Bucket=BUCKET, Key=KEY)  # IfMatch on a missing object: 404 NoSuchKey
    assert writer.save() == f"store saved to {URL}"
    assert gates_in(s3, tmp_path) == {"g0": "pass", "g1": "pass"}


def test_merging_twice_adds_nothing_twice(tmp_path: Path) -> None:
    """A retry after an answer that got lost must not duplicate samples (they have no key)."""
    base, ours, target = tmp_path / "base.db", tmp_path / "ours.db", tmp_path / "target.db"
    write_gate(base, "g0")
    snapshot(base, ours)
    snapshot(base, target)
    write_gate(ours, "g1")
    write_gate(target, "g2")
    assert merge_changes(target, base=base, ours=ours) > 0
    merge_changes(target, base=base, ours=ours)
    with sqlite3.connect(target) as db:
        counts = dict(db.execute("SELECT run_id, SUM(n) FROM sample_batches GROUP BY run_id").fetchall())
        assert counts == {"run-g0": 3, "run-g1": 3, "run-g2": 3}
        assert db.execute("SELECT COUNT(*) FROM gates").fetchone()[0] == 3


def test_a_newer_store_in_s3_is_refused_before_anything_is_measured(s3: Any, tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=newer.read_bytes())
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade pytest-perfsig"):
        session(tmp_path).open()


# --------------------------------------------------------------------------- nothing is lost


class AlwaysChanged:
    """S3 as a crowd of writers: every conditional write loses."""

    def __init__(self) -> None:
        self.uploads = 0

    def download(self, bucket: str, key: str, path: Path) -> str | None:
        if not path.exists():
            SqliteStore(path).close()
        return f'"etag-{self.uploads}"'

    def upload(self, bucket: str, key: str, path: Path, *, if_match: str | None) -> str | None:
        self.uploads += 1
        return None


def test_a_store_that_keeps_changing_fails_and_keeps_the_working_file(tmp_path: Path) -> None:
    objects = AlwaysChanged()
    writer = session(tmp_path, objects, attempts=3)
    writer.open()
    write_gate(writer.path, "g1")
    with pytest.raises(StoreError) as failed:
        writer.save()
    assert objects.uploads == 3 and not writer.saved
    message = str(failed.value)
    assert f"the store {URL} was not saved: it changed 3 times" in message
    assert (
        f"Nothing is lost: this session's results, with the history it started from, are in {writer.path}"
        in message
    )
    with SqliteStore(writer.path) as store:
        assert [g.gate_id for g in store.gates()] == ["g1"]


def test_an_aws_error_on_upload_names_the_call_and_keeps_the_working_file(s3: Any, tmp_path: Path) -> None:
    writer = session(tmp_path)
    writer.open()
    write_gate(writer.path, "g1")
    s3.delete_bucket(Bucket=BUCKET)
    with pytest.raises(StoreError) as failed:
        writer.save()
    message = str(failed.value)
    assert f"S3 PutObject {URL} (us-east-1) failed: NoSuchBucket" in message
    assert "create the bucket" in message and str(writer.path) in message
    assert writer.path.exists()


def test_access_denied_on_download_is_a_store_error_with_the_iam_action(tmp_path: Path) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_client_error("get_object", "AccessDenied", "Access Denied", 403)
        with pytest.raises(StoreError, match=r"cannot read the store .*AccessDenied.*needs s3:GetObject"):
            session(tmp_path, S3Objects(client)).open()


@pytest.mark.parametrize(
    ("code", "status"), [("ConditionalRequestConflict", 409), ("PreconditionFailed", 412), ("NoSuchKey", 404)]
)
def test_a_lost_condition_is_an_answer_not_an_error(tmp_path: Path, code: str, status: int) -> None:
    """S3 answers 409 when another conditional write is in flight: moto never does, so a
    Stubber checks that the request carries the condition and that the answer means retry."""
    client = boto3.client("s3", region_name="us-east-1")
    body = tmp_path / "body.db"
    body.write_bytes(b"store")
    with Stubber(client) as stubber:
        expected = {"Bucket": BUCKET, "Key": KEY, "Body": ANY, "ContentType": ANY, "IfMatch": '"abc"'}
        stubber.add_client_error("put_object", code, "lost", status, expected_params=expected)
        stubber.add_response(
            "put_object",
            {"ETag": '"new"'},
            {"Bucket": BUCKET, "Key": KEY, "Body": ANY, "ContentType": ANY, "IfNoneMatch": "*"},
        )
        objects = S3Objects(client)
        assert objects.upload(BUCKET, KEY, body, if_match='"abc"') is None
        assert objects.upload(BUCKET, KEY, body, if_match=None) == '"new"'
        stubber.assert_no_pending_responses()


# --------------------------------------------------------------------------- the faces


def test_opened_store_saves_writes_and_leaves_no_working_file(s3: Any, tmp_path: Path) -> None:
    with opened_store(URL, write=True) as store:
        store.add_deployment_event(DeploymentEvent(env="Staging", deployment_id="d-1"))
    with opened_store(URL, write=False) as store:
        assert [e.deployment_id for e in store.deployment_events()] == ["d-1"]
        store.add_deployment_event(DeploymentEvent(env="Staging", deployment_id="d-2"))  # read only: dropped
    with opened_store(URL, write=False) as store:
        assert [e.deployment_id for e in store.deployment_events()] == ["d-1"]
    assert not any((tmp_path / "work").rglob("*.db*"))


def test_work_that_fails_is_still_saved(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), opened_store(URL, write=True) as store:
        store.add_deployment_event(DeploymentEvent(env="Staging", deployment_id="d-1"))
        raise RuntimeError("boom")
    with opened_store(URL, write=False) as store:
        assert [e.deployment_id for e in store.deployment_events()] == ["d-1"]


def test_perfsig_commands_read_and_write_the_s3_store(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    revision = json.dumps({"revisionType": "S3", "s3Location": {"bucket": "b", "key": "app.zip"}})
    args = [
        "deployment-event",
        "--stage",
        "Production",
        "--pipeline",
        "demo",
        "--codedeploy-deployment-id",
        "d-9",
        "--application",
        "app",
        "--deployment-group",
        "Production",
        "--revision",
        revision,
    ]
    assert perfsig([*args, "--store", URL]) == 0
    assert perfsig(["gates", "--store", URL]) == 0
    with opened_store(URL, write=False) as store:
        (event,) = store.deployment_events()
    assert (event.env, event.pipeline, event.deployment_id) == ("Production", "demo", "d-9")
    # A looping worker would save only when it stops: refused, with what to do instead.
    assert perfsig(["worker", "--store", URL, "--no-approve"]) == 4
    assert "with an S3 store, schedule --once" in capsys.readouterr().err


def test_the_sqlite_registry_refuses_an_s3_store(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"needs a local store file.*use dynamodb:TABLE"):
        open_registry(None, URL)
    assert str(open_registry(None, tmp_path / "a.db")) == f"sqlite:{tmp_path / 'a.db'}"


def test_the_worker_lambda_judges_the_persisted_store(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PERFSIG_STORE=s3://...: the worker judges the samples the gates saved, and its gate is
    saved back; its working copy (under PERFSIG_STORE_WORKDIR) is gone afterwards."""
    monspec = {
        "Svc": {
            "environments": {"Staging": {}, "Production": {}},
            "comparisons": [{"name": "StagingToProduction", "source": "Staging", "compare": "Production"}],
            "perfsignature": [{"timeseries": "service.failurerate", "aggregate": "avg"}],
        }
    }
    start = time.time() - 3600
    with opened_store(URL, write=True) as store:
        for env, failures in (("Staging", 40), ("Production", 0)):
            store.create_run(
                RunRecord(run_id=env, service="Svc", env=env, started_at=start, status="completed")
            )
            store.add_samples(
                [(env, start + 2.0 * k, "Svc", env, "/", 10.0, int(k >= failures), 200) for k in range(100)]
            )
    monkeypatch.setenv("PERFSIG_STORE", URL)
    registry = DynamoDbRegistry(create_table(boto3.resource("dynamodb", region_name="us-east-1")))
    registry.register(new_request("demo", "StagingToProduction", 5, json.dumps(monspec), now=start))
    answer = worker_handler({}, None, registry=registry, approve=lambda *_: "not sent")
    assert len(answer["processed"]) == 1 and "violation" in answer["processed"][0]
    assert list(gates_in(s3, tmp_path).values()) == ["violation"]
    assert not any((tmp_path / "work").rglob("*.db*"))


def test_the_problem_handler_refuses_an_s3_store() -> None:
    """Its claims and replay memory need one shared file: an S3 store is refused, saying why."""
    answer = problem_handler({"httpMethod": "POST", "body": "{}"}, None, secret="s3cret", store_path=URL)
    assert answer["statusCode"] == 500
    assert "the problem handler needs a store file" in answer["body"]
