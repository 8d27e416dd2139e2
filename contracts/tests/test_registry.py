from __future__ import annotations

import pytest

from apev_contracts import topics
from apev_contracts.errors import UnknownEventType, UnsupportedVersion
from apev_contracts.events import RunFinished
from apev_contracts.examples import example_payloads
from apev_contracts.registry import (
    all_specs,
    event_type,
    parse_event_type,
    spec_for_model,
    spec_for_topic,
    spec_for_type,
)


def test_every_topic_has_exactly_one_event_in_topic_order() -> None:
    assert [spec.topic for spec in all_specs()] == list(topics.TOPICS)
    assert {spec.model for spec in all_specs()} == set(example_payloads())


def test_types_carry_topic_and_major_version() -> None:
    for spec in all_specs():
        assert spec.type == f"com.agentprovision.{spec.topic}.v{spec.major}"
        assert parse_event_type(spec.type) == (spec.topic, spec.major)
        assert spec_for_type(spec.type) is spec
        assert spec_for_topic(spec.topic) is spec
        assert spec_for_topic(topics.dlq_topic(spec.topic)) is spec
        assert spec_for_model(spec.model) is spec


def test_lookup_failures() -> None:
    with pytest.raises(UnsupportedVersion, match="major version 2"):
        spec_for_type(event_type(topics.RUN_FINISHED, 2))
    with pytest.raises(UnknownEventType):
        spec_for_type("com.agentprovision.run.started.v1")
    with pytest.raises(UnknownEventType):
        spec_for_type("run.finished")
    with pytest.raises(UnknownEventType, match=r"topic 'run\.started' is not registered"):
        spec_for_topic("run.started")
    with pytest.raises(UnknownEventType):
        spec_for_model(RunFinished.__base__)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["com.agentprovision.run.finished", "com.agentprovision..v1", "org.x.run.finished.v1"]
)
def test_parse_event_type_refuses_malformed_types(value: str) -> None:
    assert parse_event_type(value) is None
