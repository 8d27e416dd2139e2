"""The documented rate and price tables of the local workspace.

DBU rates default to the seed's cost table (jobs compute S 0.75 DBU/h, SQL warehouse M 2.0 DBU/h, model
serving 1.0 DBU/h); other sizes scale with capacity the way Databricks' own sizes do (SQL warehouses double per
size step; serving workload sizes scale with their concurrency 4 / 16 / 64). List prices default to the seed's
$0.50 per DBU for every SKU (its table: 540 DBU -> $270, 800 -> $400, 720 -> $360).
"""

from __future__ import annotations

from decimal import Decimal

# SKU names as Databricks bills them on AWS (one per product the local workspace runs).
JOBS_SKU = "STANDARD_JOBS_COMPUTE"
SQL_SKU = "PREMIUM_SQL_PRO_COMPUTE"
SERVING_SKU = "PREMIUM_SERVERLESS_REAL_TIME_INFERENCE"

# Local task processes run on one "cluster size": the seed's jobs compute S.
JOBS_DBU_PER_HOUR = Decimal("0.75")

SQL_DBU_PER_HOUR = {
    "2X-Small": Decimal("0.25"),
    "X-Small": Decimal("0.5"),
    "Small": Decimal("1.0"),
    "Medium": Decimal("2.0"),
    "Large": Decimal("4.0"),
    "X-Large": Decimal("8.0"),
    "2X-Large": Decimal("16.0"),
    "3X-Large": Decimal("32.0"),
    "4X-Large": Decimal("64.0"),
}
DEFAULT_WAREHOUSE_SIZE = "Medium"

SERVING_DBU_PER_HOUR = {"Small": Decimal("1.0"), "Medium": Decimal("4.0"), "Large": Decimal("16.0")}

LIST_PRICE_USD_PER_DBU = {
    JOBS_SKU: Decimal("0.50"),
    SQL_SKU: Decimal("0.50"),
    SERVING_SKU: Decimal("0.50"),
}
# list_prices rows start here (before any usage the local workspace can have recorded).
PRICE_START = "2020-01-01T00:00:00+00:00"
