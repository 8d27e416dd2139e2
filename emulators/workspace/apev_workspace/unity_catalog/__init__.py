"""Unity Catalog: catalogs, schemas, volumes, tables and grants, enforced on every read and write."""
