"""The sequential gate's options through pytester (no load is driven)."""

from __future__ import annotations

import pytest

from pytest_perfsig.options import gate_options
from tests.test_plugin import SMALL_MONSPEC, closed_port


@pytest.fixture
def small(gate_dir: pytest.Pytester) -> pytest.Pytester:
    gate_dir.makefile(".json", monspec=SMALL_MONSPEC)
    return gate_dir


def test_sequential_from_the_ini_file(small: pytest.Pytester) -> None:
    port = closed_port()
    small.makeini(f"""
        [pytest]
        perfsig_sequential = true
        perfsig_alpha = 0.01
        perfsig_duration = 20
        perfsig_urls =
            Staging=http://127.0.0.1:{port}
    """)
    result = small.runpytest_subprocess("--monspec=monspec.json", "--stage=Staging")
    result.stdout.fnmatch_lines(["*3 checks, 10 users, at most 20 s of load, judged as it runs*"])


@pytest.mark.parametrize("alpha", ["0", "1", "1.5", "-0.1"])
def test_a_level_outside_zero_to_one_is_a_usage_error(small: pytest.Pytester, alpha: str) -> None:
    result = small.runpytest_subprocess(
        "--monspec=monspec.json", "--stage=Staging", "--perfsig-sequential", f"--perfsig-alpha={alpha}"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perfsig-alpha must be between 0 and 1 (exclusive)*"])


def test_the_comparison_level_must_be_a_probability(small: pytest.Pytester) -> None:
    small.makefile(
        ".json",
        monspec=SMALL_MONSPEC.replace('"scalefactorperc": {"default": 30}}', '"sequential": {"alpha": 2}}'),
    )
    result = small.runpytest_subprocess("--monspec=monspec.json", "--stage=Staging", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*sequential.alpha*"])


@pytest.mark.parametrize(
    ("args", "warmup"),
    [
        ((), 2.0),
        (("--perfsig-sequential",), 0.5),
        (("--perfsig-sequential", "--perfsig-warmup=3"), 3.0),
        (("--perfsig-warmup=0",), 0.0),
    ],
)
def test_the_warm_up_defaults_by_the_kind_of_gate(
    pytester: pytest.Pytester, args: tuple[str, ...], warmup: float
) -> None:
    config = pytester.parseconfig(*args)
    assert gate_options(config, "Staging").warmup == warmup


def test_the_warm_up_from_the_ini_file_holds_for_a_sequential_gate(pytester: pytest.Pytester) -> None:
    pytester.makeini("""
        [pytest]
        perfsig_sequential = true
        perfsig_warmup = 1.5
    """)
    assert gate_options(pytester.parseconfig(), "Staging").warmup == 1.5
