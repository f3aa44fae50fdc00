"""Production judged from its monitoring: a compare environment whose numbers come from a remote
source gets no synthetic load unless asked for (``environments.<Env>.load: true``,
``--perfsig-load-env``); with the local source everything stays as before. The run list keeps a
"not loaded" entry, and the report shows where its numbers came from. The whole gate against a
real Prometheus: ``tests/test_source_prometheus_gate.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_perfsig.errors import LoadError, MonspecError, UsageError
from pytest_perfsig.gate import Gate, GateOptions
from pytest_perfsig.gate.plan import NOT_LOADED, not_loaded, plan_load
from pytest_perfsig.monspec import Monspec, parse_monspec
from pytest_perfsig.report.html import write_html_report
from pytest_perfsig.report.json_report import write_json_report
from pytest_perfsig.store import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
SVC = "Svc"
PROM = "prometheus://alice:pw@prom.internal:9090"


def monspec(production: dict[str, Any] | None = None, *, shift: int = 0) -> Monspec:
    environments = {
        "Staging": {"url": "http://127.0.0.1:8081"},
        "Production": {"url": "http://127.0.0.1:8082", **(production or {})},
    }
    text = json.dumps(
        {
            SVC: {
                "environments": environments,
                "comparisons": [
                    {
                        "name": "C",
                        "source": "Staging",
                        "compare": "Production",
                        "shiftcomparetimeframe": shift,
                    }
                ],
                "perfsignature": [{"timeseries": "service.failurerate", "aggregate": "avg"}],
            }
        }
    )
    return parse_monspec(text, "m.json")


def loaded(spec: Monspec, **options: Any) -> list[str]:
    gate_options = GateOptions(stage="Staging", loadtests_dir=ROOT / "loadtests", **options)
    gate = Gate(spec, gate_options, store=None)
    return [load.env for load in plan_load(spec, gate_options, gate.checks)]


def test_local_source_loads_the_compare_environment_as_before() -> None:
    assert loaded(monspec()) == ["Staging", "Production"]
    assert loaded(monspec({"url": None})) == ["Staging"]  # no URL: not loaded, as before
    assert loaded(monspec({"source": "local"})) == ["Staging", "Production"]
    assert loaded(monspec(shift=60)) == ["Staging"]  # another window: nothing to load


def test_a_remote_source_means_no_synthetic_load() -> None:
    assert loaded(monspec({"source": PROM})) == ["Staging"]
    assert loaded(monspec(), source_url=PROM) == ["Staging"]
    # The stage under test always takes load, whatever its source.
    assert loaded(monspec(), source_url="prometheus://p:1") == ["Staging"]


def test_load_can_be_asked_for_or_refused() -> None:
    assert loaded(monspec({"source": PROM, "load": True})) == ["Staging", "Production"]
    assert loaded(monspec({"source": PROM}), load_envs=("Production",)) == ["Staging", "Production"]
    assert loaded(monspec(), source_url=PROM, load_envs=("Production",)) == ["Staging", "Production"]
    assert loaded(monspec({"load": False})) == ["Staging"]
    with pytest.raises(LoadError, match="no URL for Production"):
        loaded(monspec({"source": PROM, "url": None, "load": True}))


def test_not_loaded_names_the_source() -> None:
    spec = monspec({"source": PROM})
    options = GateOptions(stage="Staging")
    gate = Gate(spec, options, store=None)
    assert not_loaded(spec, options, gate.checks) == [(SVC, "Production", PROM)]
    assert not_loaded(monspec(), options, gate.checks) == []


def test_unknown_load_env_and_bad_load_values_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="--perfsig-load-env names unknown environment"):
        Gate(monspec(), GateOptions(stage="Staging", load_envs=("Prod",)), store=None)
    with pytest.raises(MonspecError, match="load"):
        monspec({"load": "yes"})


def test_the_option_reaches_the_gate(pytester: pytest.Pytester) -> None:
    path = pytester.path / "m.json"
    path.write_text(
        json.dumps(
            {
                SVC: {
                    "environments": {"Staging": {}, "Production": {}},
                    "comparisons": [{"name": "C", "source": "Staging", "compare": "Production"}],
                    "perfsignature": [{"timeseries": "service.failurerate", "aggregate": "avg"}],
                }
            }
        )
    )
    result = pytester.runpytest_inprocess(
        f"--monspec={path}", "--stage=Staging", "--perfsig-load-env=Nope", "--co"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--perfsig-load-env names unknown environment(s): Nope" in result.stderr.str()


def test_the_run_list_and_the_reports_say_not_loaded(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    spec = monspec({"source": PROM})
    gate = Gate(spec, GateOptions(stage="Staging", store_path=store.path), store=store)
    gate.open()
    gate._record_not_loaded(gate.checks)
    (run,) = store.gate_runs(gate.gate_id)
    assert (run.env, run.status, run.detail, run.load_model) == (
        "Production",
        NOT_LOADED,
        "measured by prometheus://prom.internal:9090",  # never the credentials
        "none",
    )
    assert store.run_counts(run.run_id) == (0, 0)
    gate.finish()
    html = write_html_report(store, tmp_path / "r.html", gate_id=gate.gate_id).read_text()
    assert "not loaded: measured by prometheus://prom.internal:9090" in html
    assert "0 runs driven by this gate" in html and "pw@" not in html
    report = json.loads(write_json_report(store, tmp_path / "r.json", gate_id=gate.gate_id).read_text())
    (stored,) = report["gate"]["runs"]
    assert (stored["env"], stored["status"], stored["requests"]) == ("Production", NOT_LOADED, 0)
