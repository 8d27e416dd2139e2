"""What the pipeline knows about each MCP entity type: business key, typed silver columns, PII.

Names are the MCP simulator's (and the DentalERP server's) entity types; bronze keeps MCP's UPPERCASE
string fields as they arrive, silver lower-cases them and gives them these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MONEY = "DECIMAL(14,2)"


@dataclass(frozen=True)
class Entity:
    name: str
    key: str
    columns: dict[str, str]  # silver column (lower case) -> Databricks type, in order; the key first
    pii: frozenset[str] = field(default_factory=frozenset)  # masked in silver, never in gold

    @property
    def source_fields(self) -> list[str]:
        """The MCP fields, UPPERCASE, plus MCP's own UPDATED_AT and VERSION."""
        return [c.upper() for c in self.columns] + ["UPDATED_AT", "VERSION"]


def _entity(name: str, pii: tuple[str, ...] = (), **columns: str) -> Entity:
    return Entity(name=name, key=next(iter(columns)), columns=columns, pii=frozenset(pii))


ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        _entity(
            "employees",
            ("date_of_birth", "ssn_last_four", "annual_salary"),
            employee_id="STRING", worker_id="STRING", first_name="STRING", last_name="STRING",
            practice_location="STRING", job_title="STRING", department="STRING", employment_status="STRING",
            hire_date="DATE", date_of_birth="DATE", ssn_last_four="STRING", annual_salary="DECIMAL(12,2)",
        ),
        _entity(
            "payroll_runs",
            payroll_run_id="STRING", practice_location="STRING", pay_period_start="DATE", pay_period_end="DATE",
            pay_date="DATE", employee_count="INT", gross_pay=MONEY, net_pay=MONEY, taxes_withheld=MONEY,
            status="STRING",
        ),
        _entity(
            "production_kpis",
            kpi_id="STRING", practice_location="STRING", kpi_date="DATE", total_production=MONEY,
            total_collections=MONEY, hygiene_production=MONEY, new_patients="INT", patient_visits="INT",
            case_acceptance_rate="DECIMAL(5,2)",
        ),
        _entity(
            "locations",
            location_id="STRING", practice_location="STRING", location_name="STRING", city="STRING",
            state="STRING", opened_on="DATE", chairs="INT", providers="INT",
        ),
        _entity(
            "financials",
            financial_id="STRING", practice_location="STRING", period_start="DATE", revenue=MONEY,
            expenses=MONEY, payroll_expense=MONEY, supplies_expense=MONEY, net_income=MONEY,
        ),
        _entity(
            "journal_entries",
            journal_entry_id="STRING", practice_location="STRING", entry_date="DATE", account_number="STRING",
            account_name="STRING", debit=MONEY, credit=MONEY, memo="STRING",
        ),
        _entity(
            "documents",
            document_id="STRING", doc_type="STRING", title="STRING", practice_location="STRING", author="STRING",
            body="STRING",
        ),
    )
}  # fmt: skip

PII_MASKS = {"STRING": "pii_string", "DATE": "pii_date", "DECIMAL(12,2)": "pii_decimal"}
"""Mask function (in the tenant's silver schema) per PII column type."""


@dataclass(frozen=True)
class GoldTable:
    name: str
    requires: tuple[str, ...]  # silver tables (entity names) it is built from; absent ones: not built
    file: str  # under tasks/gold/


GOLD_TABLES: tuple[GoldTable, ...] = (
    GoldTable("monthly_kpis", ("production_kpis",), "monthly_kpis.sql"),
    GoldTable("payroll_summary", ("payroll_runs", "employees"), "payroll_summary.sql"),
    GoldTable("financial_summary", ("financials",), "financial_summary.sql"),
    GoldTable("labor_cost_share", ("payroll_runs", "production_kpis"), "labor_cost_share.sql"),
    GoldTable("knowledge_chunks", ("documents",), "knowledge_chunks.sql"),
)

CHUNK_WORDS, CHUNK_STEP = 50, 40
"""`gold.knowledge_chunks`: CHUNK_WORDS-word windows starting every CHUNK_STEP words (`gold/knowledge_chunks.sql`)."""


def chunk_words(body: str) -> list[str]:
    """The chunks `knowledge_chunks.sql` makes of one document body, in order (the same rule, in Python)."""
    words = body.split()
    count = max(len(words) - (CHUNK_WORDS - CHUNK_STEP) - 1, 0) // CHUNK_STEP + 1
    return [" ".join(words[n * CHUNK_STEP : n * CHUNK_STEP + CHUNK_WORDS]) for n in range(count)] if words else []
