"""Deterministic synthetic warehouse data, Snowflake style: UPPERCASE keys, every value a string.

Everything derives from ``random.Random(f"{seed}:{tenant}:{entity}")`` (string seeds hash with SHA-512, so the
data is identical across processes and Python runs). Sizes: ``locations`` practices; per practice ~20-30
employees, biweekly payroll for two years, one KPI row per day for ``days`` days (8 x 1461 = 11,688 by default,
enough for the 10,000-record paging test), monthly financials and ~10 journal entries a month for four years.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from apev_mcpsim import documents

Record = dict[str, str]

# Field order matters: the first field is the entity's id.
ENTITY_FIELDS: dict[str, tuple[str, ...]] = {
    "locations": ("LOCATION_ID", "PRACTICE_LOCATION", "LOCATION_NAME", "CITY", "STATE", "OPENED_ON", "CHAIRS",
                  "PROVIDERS"),
    "employees": ("EMPLOYEE_ID", "WORKER_ID", "FIRST_NAME", "LAST_NAME", "PRACTICE_LOCATION", "JOB_TITLE",
                  "DEPARTMENT", "EMPLOYMENT_STATUS", "HIRE_DATE", "DATE_OF_BIRTH", "SSN_LAST_FOUR", "ANNUAL_SALARY",
                  "RISK_FLAG", "REVIEW_STATUS", "REVIEW_NOTE", "REVIEW_DATE"),
    "payroll_runs": ("PAYROLL_RUN_ID", "PRACTICE_LOCATION", "PAY_PERIOD_START", "PAY_PERIOD_END", "PAY_DATE",
                     "EMPLOYEE_COUNT", "GROSS_PAY", "NET_PAY", "TAXES_WITHHELD", "STATUS"),
    "production_kpis": ("KPI_ID", "PRACTICE_LOCATION", "KPI_DATE", "TOTAL_PRODUCTION", "TOTAL_COLLECTIONS",
                        "HYGIENE_PRODUCTION", "NEW_PATIENTS", "PATIENT_VISITS", "CASE_ACCEPTANCE_RATE"),
    "financials": ("FINANCIAL_ID", "PRACTICE_LOCATION", "PERIOD_START", "REVENUE", "EXPENSES", "PAYROLL_EXPENSE",
                   "SUPPLIES_EXPENSE", "NET_INCOME", "REVIEW_STATUS", "REVIEW_NOTE"),
    "journal_entries": ("JOURNAL_ENTRY_ID", "PRACTICE_LOCATION", "ENTRY_DATE", "ACCOUNT_NUMBER", "ACCOUNT_NAME",
                        "DEBIT", "CREDIT", "MEMO", "REVIEW_STATUS", "REVIEW_NOTE"),
    "documents": documents.FIELDS,
}  # fmt: skip
SYSTEM_FIELDS = ("UPDATED_AT", "VERSION")
ENTITY_ID_FIELDS = {entity: fields[0] for entity, fields in ENTITY_FIELDS.items()}
# Numeric fields a tick nudges (decimals scale by a few percent, ints move by one or two).
DECIMAL_FIELDS = {
    "ANNUAL_SALARY", "GROSS_PAY", "NET_PAY", "TAXES_WITHHELD", "TOTAL_PRODUCTION", "TOTAL_COLLECTIONS",
    "HYGIENE_PRODUCTION", "CASE_ACCEPTANCE_RATE", "REVENUE", "EXPENSES", "PAYROLL_EXPENSE", "SUPPLIES_EXPENSE",
    "NET_INCOME", "DEBIT", "CREDIT",
}  # fmt: skip
INT_FIELDS = {"CHAIRS", "PROVIDERS", "EMPLOYEE_COUNT", "NEW_PATIENTS", "PATIENT_VISITS", "VERSION"}
DATE_FIELDS = {"OPENED_ON", "HIRE_DATE", "DATE_OF_BIRTH", "PAY_PERIOD_START", "PAY_PERIOD_END", "PAY_DATE",
               "KPI_DATE", "PERIOD_START", "ENTRY_DATE", "REVIEW_DATE"}  # fmt: skip
# Fields that agents' insights write back (ADP's at-risk flag and review, NetSuite's review of a period or entry),
# with the values the source systems accept. Generated unset: no risk, no review, NULL note and date.
ENUM_FIELDS: dict[str, tuple[str, ...]] = {
    "RISK_FLAG": ("NONE", "LOW", "MEDIUM", "HIGH"),
    "REVIEW_STATUS": ("none", "pending", "in_review", "completed", "dismissed"),
}
REVIEW_NOTE_MAX = 2000

INTEGRATION_TYPES = ("adp", "netsuite", "dentalintel", "eaglesoft", "dentrix")
INTEGRATION_ENTITIES: dict[str, tuple[str, ...]] = {
    "adp": ("employees", "payroll_runs"),
    "netsuite": ("financials", "journal_entries", "documents"),  # documents: NetSuite's file cabinet
    "dentalintel": ("production_kpis", "locations"),
    "eaglesoft": ("production_kpis", "locations"),
    "dentrix": ("production_kpis", "locations"),
}

_AREAS = ["eastlake", "westgate", "northpark", "riverside", "lakeview", "hillcrest", "downtown", "midtown",
          "harbor", "oakwood", "pinecrest", "sunset"]  # fmt: skip
_CITIES = [("Seattle", "WA"), ("Portland", "OR"), ("Boise", "ID"), ("Denver", "CO"), ("Austin", "TX")]
_FIRST = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farah", "Gus", "Hana", "Ivan", "Jada", "Kofi", "Lena", "Mateo",
          "Nina", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wes", "Yuki", "Zoe"]  # fmt: skip
_LAST = ["Nguyen", "Garcia", "Smith", "Patel", "Kim", "Johnson", "Lopez", "Brown", "Chen", "Davis", "Khan",
         "Miller", "Silva", "Wilson", "Moore", "Taylor", "Clark", "Lewis", "Young", "Hall"]  # fmt: skip
_ROLES = [("Dentist", "clinical", 160_000, 260_000), ("Hygienist", "clinical", 75_000, 105_000),
          ("Dental Assistant", "clinical", 38_000, 55_000), ("Front Desk", "administrative", 34_000, 48_000),
          ("Office Manager", "administrative", 55_000, 80_000)]  # fmt: skip
_ACCOUNTS = [("4000", "Patient Revenue"), ("4100", "Insurance Revenue"), ("5000", "Clinical Supplies"),
             ("5100", "Lab Fees"), ("6000", "Payroll"), ("6100", "Rent"), ("6200", "Utilities"),
             ("6300", "Marketing")]  # fmt: skip


def ts(moment: datetime) -> str:
    """Timestamps as the warehouse sends them: UTC, seconds, ``Z``; their string order is their time order.

    A naive ``moment`` (e.g. an ``updated_since`` without offset) is taken as UTC, never as local time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def money(value: float | Decimal) -> str:
    return str(Decimal(str(value)).quantize(Decimal("0.01")))


@dataclass(frozen=True)
class Shape:
    seed: int
    start: datetime  # the simulated "now" at start; every generated UPDATED_AT is before it
    locations: int = 8
    days: int = 1461


def _location_codes(shape: Shape) -> list[str]:
    return [f"{_AREAS[i % len(_AREAS)]}_{i + 1:03d}" for i in range(shape.locations)]


def _stamp(rng: random.Random, record: Record, before: datetime, *, within_days: int = 365) -> Record:
    record["UPDATED_AT"] = ts(before - timedelta(seconds=rng.randrange(60, within_days * 86400)))
    record["VERSION"] = "1"
    return record


def _unreviewed() -> Record:
    """The review fields of a record nobody has reviewed (no rng draw: the rest of the data is unchanged)."""
    return {"REVIEW_STATUS": "none", "REVIEW_NOTE": None}  # type: ignore[dict-item]  # NULL in the warehouse


def _locations(rng: random.Random, shape: Shape) -> list[Record]:
    out = []
    for i, code in enumerate(_location_codes(shape)):
        city, state = _CITIES[i % len(_CITIES)]
        out.append(_stamp(rng, {
            "LOCATION_ID": f"LOC{i + 1:04d}", "PRACTICE_LOCATION": code,
            "LOCATION_NAME": f"{code.split('_')[0].title()} Family Dental", "CITY": city, "STATE": state,
            "OPENED_ON": (date(2005, 1, 1) + timedelta(days=rng.randrange(6000))).isoformat(),
            "CHAIRS": str(rng.randint(6, 18)), "PROVIDERS": str(rng.randint(2, 8)),
        }, shape.start))  # fmt: skip
    return out


def _employees(rng: random.Random, shape: Shape) -> list[Record]:
    out, n = [], 0
    for code in _location_codes(shape):
        for _ in range(rng.randint(20, 30)):
            n += 1
            title, dept, low, high = rng.choice(_ROLES)
            out.append(_stamp(rng, {
                "EMPLOYEE_ID": f"E{n:05d}", "WORKER_ID": f"ADP-{rng.getrandbits(40):010X}",
                "FIRST_NAME": rng.choice(_FIRST), "LAST_NAME": rng.choice(_LAST), "PRACTICE_LOCATION": code,
                "JOB_TITLE": title, "DEPARTMENT": dept,
                "EMPLOYMENT_STATUS": rng.choices(["active", "on_leave", "terminated"], [90, 4, 6])[0],
                "HIRE_DATE": (date(2012, 1, 1) + timedelta(days=rng.randrange(4700))).isoformat(),
                "DATE_OF_BIRTH": (date(1960, 1, 1) + timedelta(days=rng.randrange(14600))).isoformat(),
                "SSN_LAST_FOUR": f"{rng.randrange(10000):04d}",
                "ANNUAL_SALARY": money(rng.randrange(low, high, 500)),
                "RISK_FLAG": "NONE", **_unreviewed(), "REVIEW_DATE": None,  # type: ignore[dict-item]  # NULL
            }, shape.start))  # fmt: skip
    return out


def _payroll_runs(rng: random.Random, shape: Shape) -> list[Record]:
    out = []
    first_end = shape.start.date() - timedelta(days=14 * 52)
    for li, code in enumerate(_location_codes(shape)):
        headcount = rng.randint(20, 30)
        for p in range(52):
            end = first_end + timedelta(days=14 * p)
            gross = Decimal(headcount) * Decimal(rng.randrange(2600, 3400))
            taxes = (gross * Decimal("0.22")).quantize(Decimal("0.01"))
            pay_date = end + timedelta(days=5)
            out.append({
                "PAYROLL_RUN_ID": f"PR-{li + 1:03d}-{p + 1:04d}", "PRACTICE_LOCATION": code,
                "PAY_PERIOD_START": (end - timedelta(days=13)).isoformat(), "PAY_PERIOD_END": end.isoformat(),
                "PAY_DATE": pay_date.isoformat(), "EMPLOYEE_COUNT": str(headcount), "GROSS_PAY": money(gross),
                "NET_PAY": money(gross - taxes), "TAXES_WITHHELD": money(taxes), "STATUS": "processed",
                "UPDATED_AT": ts(min(datetime.combine(pay_date, datetime.min.time(), UTC) + timedelta(hours=6),
                                     shape.start - timedelta(seconds=1))),
                "VERSION": "1",
            })  # fmt: skip
    return out


def _production_kpis(rng: random.Random, shape: Shape) -> list[Record]:
    out = []
    first_day = shape.start.date() - timedelta(days=shape.days)
    for li, code in enumerate(_location_codes(shape)):
        scale = rng.uniform(0.7, 1.6)
        for d in range(shape.days):
            day = first_day + timedelta(days=d)
            open_day = day.weekday() < 5 or (day.weekday() == 5 and rng.random() < 0.5)
            production = scale * rng.uniform(9_000, 16_000) if open_day else 0.0
            visits = int(production / rng.uniform(280, 360)) if open_day else 0
            loaded = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=2)
            out.append({
                "KPI_ID": f"KPI-{li + 1:03d}-{day.isoformat()}", "PRACTICE_LOCATION": code,
                "KPI_DATE": day.isoformat(), "TOTAL_PRODUCTION": money(production),
                "TOTAL_COLLECTIONS": money(production * rng.uniform(0.9, 0.99)),
                "HYGIENE_PRODUCTION": money(production * rng.uniform(0.2, 0.3)),
                "NEW_PATIENTS": str(rng.randint(0, 6) if open_day else 0), "PATIENT_VISITS": str(visits),
                "CASE_ACCEPTANCE_RATE": money(rng.uniform(0.45, 0.85)) if open_day else "0.00",
                "UPDATED_AT": ts(min(loaded, shape.start - timedelta(seconds=1))), "VERSION": "1",
            })  # fmt: skip
    return out


def _months(shape: Shape, count: int) -> list[date]:
    year, month = shape.start.year, shape.start.month
    out = []
    for _ in range(count):
        month -= 1
        if month == 0:
            year, month = year - 1, 12
        out.append(date(year, month, 1))
    return sorted(out)


def _financials(rng: random.Random, shape: Shape) -> list[Record]:
    out = []
    for li, code in enumerate(_location_codes(shape)):
        base = rng.uniform(250_000, 900_000)
        for month in _months(shape, 48):
            revenue = base * rng.uniform(0.85, 1.15)
            payroll, supplies = revenue * rng.uniform(0.28, 0.36), revenue * rng.uniform(0.05, 0.08)
            expenses = payroll + supplies + revenue * rng.uniform(0.2, 0.3)
            out.append(_stamp(rng, {
                "FINANCIAL_ID": f"FIN-{li + 1:03d}-{month:%Y-%m}", "PRACTICE_LOCATION": code,
                "PERIOD_START": month.isoformat(), "REVENUE": money(revenue), "EXPENSES": money(expenses),
                "PAYROLL_EXPENSE": money(payroll), "SUPPLIES_EXPENSE": money(supplies),
                "NET_INCOME": money(Decimal(money(revenue)) - Decimal(money(expenses))), **_unreviewed(),
            }, shape.start, within_days=1400))  # fmt: skip
    return out


def _journal_entries(rng: random.Random, shape: Shape) -> list[Record]:
    out, n = [], 0
    for code in _location_codes(shape):
        for month in _months(shape, 48):
            for _ in range(rng.randint(8, 12)):
                n += 1
                number, name = rng.choice(_ACCOUNTS)
                amount = money(rng.uniform(200, 40_000))
                revenue = number.startswith("4")
                out.append(_stamp(rng, {
                    "JOURNAL_ENTRY_ID": f"JE{n:07d}", "PRACTICE_LOCATION": code,
                    "ENTRY_DATE": (month + timedelta(days=rng.randrange(28))).isoformat(),
                    "ACCOUNT_NUMBER": number, "ACCOUNT_NAME": name,
                    "DEBIT": "0.00" if revenue else amount, "CREDIT": amount if revenue else "0.00",
                    "MEMO": f"{name} {month:%b %Y}", **_unreviewed(),
                }, shape.start, within_days=1400))  # fmt: skip
    return out


GENERATORS: dict[str, Callable[[random.Random, Shape], list[Record]]] = {
    "locations": _locations,
    "employees": _employees,
    "payroll_runs": _payroll_runs,
    "production_kpis": _production_kpis,
    "financials": _financials,
    "journal_entries": _journal_entries,
}


def generate(entity_type: str, tenant_code: str, shape: Shape) -> list[Record]:
    rng = random.Random(f"{shape.seed}:{tenant_code}:{entity_type}")
    if entity_type == "documents":  # ids carry the tenant, so the generator needs its code
        return documents.generate(rng, shape.start, _location_codes(shape), tenant_code)
    return GENERATORS[entity_type](rng, shape)


def nudge(rng: random.Random, record: Record) -> None:
    """Change a record the way a source system would between syncs: its numbers drift a little (a document
    gets a new revision paragraph)."""
    if "BODY" in record:
        documents.revise(rng, record)
        return
    for field in list(record):
        if field in DECIMAL_FIELDS and record[field] not in ("0.00",):
            record[field] = money(Decimal(record[field]) * Decimal(str(round(rng.uniform(0.95, 1.05), 4))))
        elif field in INT_FIELDS and field != "VERSION":
            record[field] = str(max(0, int(record[field]) + rng.choice((-1, 1, 2))))
