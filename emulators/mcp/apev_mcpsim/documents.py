"""Synthetic office documents per tenant: office policies, payer contract summaries and meeting notes.

Deterministic from the seed and the tenant code (like every entity), 240 per tenant by default (80 of each type),
50 to 120 words each (longer ones split into several chunks in the pipeline). Ids carry a short digest of the
tenant code (`DOC-1a2b3c-0001`), so two tenants' documents never share an id. A tick revises a share of
them: the body gets a new "Revision" paragraph (replacing an earlier one), a new version and a later `UPDATED_AT`.
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta

FIELDS = ("DOCUMENT_ID", "DOC_TYPE", "TITLE", "PRACTICE_LOCATION", "AUTHOR", "BODY")
DOC_TYPES = ("office_policy", "payer_contract", "meeting_notes")
PER_TYPE = 80
BODY_MAX = 20_000
REVISION = "\n\nRevision: "

_PAYERS = ["Delta Dental", "Cigna Dental", "Aetna Dental", "MetLife", "Guardian", "United Concordia", "Humana",
           "BlueCross Dental", "Ameritas", "Principal"]  # fmt: skip
_PROCEDURES = [("crowns", 50), ("implants", 40), ("root canals", 70), ("fillings", 80), ("cleanings", 100),
               ("orthodontics", 50), ("bitewing x-rays", 100), ("extractions", 70), ("veneers", 0),
               ("night guards", 60), ("sealants", 90), ("bridges", 50)]  # fmt: skip
_POLICIES = [
    ("Cancellation and no-show policy", "Appointments cancelled with less than {n} hours notice incur a {fee} dollar "
     "fee; a third missed appointment in a year moves the patient to same-day scheduling only."),
    ("Hygiene recall policy", "Hygiene patients are recalled every {months} months; the front desk sends a text "
     "reminder {days} days before the recall date and a second reminder the day before."),
    ("Infection control policy", "Instruments are sterilised in the autoclave after every patient; spore tests run "
     "every {days} days and the results are logged in the sterilisation binder."),
    ("Paid time off policy", "Full-time staff accrue {n} hours of paid time off per pay period; requests for more "
     "than three consecutive days need {days} days of notice and the office manager's approval."),
    ("Records retention policy", "Patient charts and radiographs are kept for {n} years after the last visit; "
     "records of minors are kept until the patient turns {age}."),
    ("Late payment policy", "Balances older than {days} days receive a reminder statement; after {months} months "
     "the account is referred to the collections agency."),
    ("Emergency appointment policy", "Each provider keeps {n} emergency slots open every day; patients in pain are "
     "seen the same day and triaged by the lead hygienist."),
    ("Opioid prescribing policy", "Opioids are prescribed for at most {n} days after extractions; every prescription "
     "is checked against the state monitoring database."),
    ("Dress code policy", "Clinical staff wear scrubs in the practice colour; closed-toe shoes are required in "
     "operatories and jewellery is limited to {n} pieces."),
    ("Patient privacy policy", "Protected health information is discussed only in private rooms; screens lock after "
     "{n} minutes and every privacy incident is reported within {days} days."),
]  # fmt: skip
_TOPICS = ["the new scheduling software", "hygiene recall rates", "insurance verification backlog",
           "the parking lot repaving", "holiday hours", "the coffee machine", "new patient forms",
           "sterilisation room layout", "the patient satisfaction survey", "supply ordering",
           "the charity cleaning day", "front desk phone coverage"]  # fmt: skip
_NAMES = ["Ava Nguyen", "Ben Garcia", "Chloe Smith", "Dev Patel", "Elena Kim", "Farah Khan", "Gus Miller",
          "Hana Silva", "Ivan Chen", "Jada Lopez", "Kofi Brown", "Lena Davis"]  # fmt: skip
_REVISIONS = ["the waiting period was shortened after renegotiation", "the fee schedule now follows the 2026 rates",
              "the front desk script was updated to match", "the office manager approved the change on review",
              "reminders now go out by email as well as text", "the coverage limit was raised for adults"]  # fmt: skip


def tenant_tag(tenant_code: str) -> str:
    return hashlib.sha256(tenant_code.encode()).hexdigest()[:6]


def _policy(rng: random.Random, location: str) -> tuple[str, str]:
    title, rule = rng.choice(_POLICIES)
    values = {
        "n": rng.choice([2, 3, 4, 6, 8, 10, 24, 48]),
        "fee": rng.choice([25, 40, 50, 75]),
        "months": rng.choice([3, 4, 6]),
        "days": rng.choice([7, 14, 30, 60, 90]),
        "age": rng.choice([21, 25]),
    }
    where = "all locations" if location == "all" else f"the {location.split('_')[0].title()} office"
    body = (
        f"{title} for {where}. Purpose: keep care consistent and fair for every patient. "
        + rule.format(**values)
        + f" Exceptions need written approval from the office manager. Questions go to {rng.choice(_NAMES)}."
    )
    return title, body


def _contract(rng: random.Random) -> tuple[str, str]:
    payer = rng.choice(_PAYERS)
    plan = rng.choice(["PPO", "HMO", "Premier", "Medicare Advantage"])
    title = f"{payer} {plan} contract summary"
    covered = rng.sample(_PROCEDURES, 4)
    lines = [
        f"{payer} pays {name} at {max(0, pct - rng.choice([0, 10, 20]))} percent"
        + (f" after a {rng.choice([6, 12])} month waiting period" if rng.random() < 0.4 else "")
        for name, pct in covered
    ]
    body = (
        f"Summary of the {payer} {plan} participating provider agreement. "
        + "; ".join(lines)
        + f". The annual maximum is {rng.choice([1000, 1500, 2000, 2500])} dollars per member and the deductible is "
        f"{rng.choice([50, 75, 100])} dollars. Claims must be filed within {rng.choice([90, 180, 365])} days; "
        f"pre-authorisation is required for {rng.choice(['implants', 'crowns', 'orthodontics', 'bridges'])}. "
        f"The contract renews every {rng.choice([1, 2, 3])} years with {rng.choice([60, 90])} days notice to cancel."
    )
    return title, body


def _notes(rng: random.Random, when: datetime, location: str) -> tuple[str, str]:
    topics = rng.sample(_TOPICS, 3)
    people = ", ".join(rng.sample(_NAMES, 4))
    title = f"Staff meeting notes {when:%Y-%m-%d}: {topics[0]}"
    where = "all locations" if location == "all" else location.split("_")[0].title()
    body = (
        f"Staff meeting of {when:%B %d, %Y} ({where}). Attendees: {people}. "
        f"First we discussed {topics[0]}; the team agreed to review it again next month. "
        f"Then {topics[1]}: {rng.choice(_NAMES)} will draft a proposal by Friday. "
        f"Finally {topics[2]}, which needs a decision from the practice owner. "
        f"Action items were assigned and the next meeting is in {rng.choice([2, 4])} weeks."
    )
    return title, body


def generate(rng: random.Random, start: datetime, locations: list[str], tenant_code: str) -> list[dict[str, str]]:
    tag, out = tenant_tag(tenant_code), []
    for n in range(PER_TYPE * len(DOC_TYPES)):
        kind = DOC_TYPES[n % len(DOC_TYPES)]
        location = rng.choice(["all", *locations])
        when = start - timedelta(seconds=rng.randrange(60, 365 * 86400))
        if kind == "office_policy":
            title, body = _policy(rng, location)
        elif kind == "payer_contract":
            title, body = _contract(rng)
        else:
            title, body = _notes(rng, when, location)
        out.append({
            "DOCUMENT_ID": f"DOC-{tag}-{n + 1:04d}", "DOC_TYPE": kind, "TITLE": title, "PRACTICE_LOCATION": location,
            "AUTHOR": rng.choice(_NAMES), "BODY": body,
            "UPDATED_AT": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "VERSION": "1",
        })  # fmt: skip
    return out


def revise(rng: random.Random, record: dict[str, str]) -> None:
    """A tick's change: a new revision paragraph (the previous one replaced)."""
    body = record["BODY"].split(REVISION)[0]
    record["BODY"] = f"{body}{REVISION}{rng.choice(_REVISIONS)}."
