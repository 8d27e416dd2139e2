"""The client's schemas must cover every field the simulator sends, with values that parse."""

from apev_mcpsim import data
from apev_runtime.mcp import ENTITY_ID_FIELDS, ENTITY_SCHEMAS, INTEGRATION_ENTITIES, normalise


def test_every_simulated_field_is_typed_by_the_client() -> None:
    shape = data.Shape(seed=7, start=data.datetime(2026, 1, 1, tzinfo=data.UTC), locations=2, days=30)
    assert INTEGRATION_ENTITIES == data.INTEGRATION_ENTITIES
    assert ENTITY_ID_FIELDS == data.ENTITY_ID_FIELDS
    for entity in data.ENTITY_FIELDS:
        assert set(ENTITY_SCHEMAS[entity]) == {*data.ENTITY_FIELDS[entity], *data.SYSTEM_FIELDS}
        for record in data.generate(entity, "acme", shape):
            normalise(entity, record)  # raises McpDataError on any value that does not fit
