"""The guard's remembered verdicts equal fresh ones, accepted or refused, and a repeated statement is not parsed
again (what made a cache hit cost a sqlglot parse)."""

from __future__ import annotations

import pytest

from apev_serving import sqlguard
from apev_serving.sqlguard import Refusal, check, check_memo

CATALOG = "agentprovision_t1"
STATEMENTS = [
    ("SELECT location_id, SUM(production) FROM gold.monthly_kpis GROUP BY 1", {}),
    ("SELECT * FROM agentprovision_t1.gold.monthly_kpis WHERE month = :m", {"m": None}),
    ("SELECT * FROM agentprovision_t2.gold.monthly_kpis", {}),  # another tenant's catalog
    ("DROP TABLE gold.monthly_kpis", {}),
    ("SELECT * FROM gold.t WHERE a = :a", {}),  # a marker without its parameter
    ("SELECT 1; SELECT 2", {}),
    ("SELECT * FROM read_files('/Volumes/x')", {}),
]


def _verdict(fn: object, text: str, params: dict[str, object]) -> tuple[str, ...]:
    try:
        got = fn(text, catalog=CATALOG, parameters=params)  # type: ignore[operator]
    except Refusal as r:
        return ("refused", str(r.status), r.error, r.reference, r.why)
    return ("checked", got.statement, *got.tables, "|", *got.parameters)


@pytest.mark.parametrize(("text", "params"), STATEMENTS)
def test_a_remembered_verdict_is_the_fresh_one(text: str, params: dict[str, object]) -> None:
    fresh = _verdict(check, text, params)
    assert _verdict(check_memo, text, params) == fresh
    assert _verdict(check_memo, text, params) == fresh  # the second answer comes from memory


def test_a_repeated_statement_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real = sqlguard._parse
    monkeypatch.setattr(sqlguard, "_parse", lambda text: parsed.append(text) or real(text))
    sqlguard._verdict.cache_clear()
    text = "SELECT location_id FROM gold.monthly_kpis WHERE production > 100"
    for _ in range(5):
        check_memo(text, catalog=CATALOG, parameters={})
        with pytest.raises(Refusal) as refused:
            check_memo("DELETE FROM gold.monthly_kpis", catalog=CATALOG, parameters={})
    assert parsed == [text, "DELETE FROM gold.monthly_kpis"]
    assert refused.value.status == 403


def test_the_catalog_and_parameter_names_are_part_of_the_key() -> None:
    text = "SELECT * FROM agentprovision_t1.gold.x WHERE a = :a"
    assert check_memo(text, catalog=CATALOG, parameters={"a": "1"}).parameters == ("a",)
    with pytest.raises(Refusal, match=r"is outside the tenant's catalog agentprovision_t2"):
        check_memo(text, catalog="agentprovision_t2", parameters={"a": "1"})
    with pytest.raises(Refusal, match=r"give it in `parameters`"):
        check_memo(text, catalog=CATALOG, parameters={})


def test_a_long_statement_is_checked_without_memory() -> None:
    text = "SELECT " + ", ".join(f"c{i}" for i in range(2000)) + " FROM gold.wide"
    assert len(text) > sqlguard.MEMO_MAX_CHARS
    before = sqlguard._verdict.cache_info().currsize
    assert check_memo(text, catalog=CATALOG, parameters={}).statement.startswith("SELECT c0")
    assert sqlguard._verdict.cache_info().currsize == before
