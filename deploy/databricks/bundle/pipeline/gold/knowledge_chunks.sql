-- requires: documents
-- Documents split into overlapping word windows for retrieval (the tenant's Vector Search index syncs from it).
-- Windows of 50 words starting every 40 (10 words of overlap); a document of at most 50 words is one chunk.
-- Kept with MERGE, never replaced: a Delta Sync index reads the table's change data feed, which a CREATE OR
-- REPLACE would cut. Unchanged chunks are not rewritten, so a sync re-embeds only what changed.
CREATE TABLE IF NOT EXISTS gold.knowledge_chunks (
  chunk_id STRING NOT NULL,
  document_id STRING,
  chunk_index INT,
  title STRING,
  doc_type STRING,
  practice_location STRING,
  chunk_text STRING,
  updated_at TIMESTAMP,
  _built_at TIMESTAMP
)
COMMENT 'Chunks of silver.documents for retrieval: chunk_id = <document_id>#<chunk_index>'
TBLPROPERTIES (delta.enableChangeDataFeed = true);

MERGE INTO gold.knowledge_chunks AS t
USING (
  SELECT
    concat(w.document_id, '#', CAST(s.n AS STRING)) AS chunk_id,
    w.document_id,
    CAST(s.n AS INT) AS chunk_index,
    w.title,
    w.doc_type,
    w.practice_location,
    array_join(slice(w.words, 1 + s.n * 40, 50), ' ') AS chunk_text,
    w.updated_at,
    current_timestamp() AS _built_at
  FROM (
    SELECT document_id, title, doc_type, practice_location, updated_at,
           split(trim(regexp_replace(body, '\\s+', ' ')), ' ') AS words
    FROM silver.documents
    WHERE body IS NOT NULL AND trim(body) <> ''
  ) AS w
  LATERAL VIEW explode(sequence(0, CAST(floor(greatest(size(w.words) - 11, 0) / 40) AS INT))) s AS n
) AS s
ON t.chunk_id = s.chunk_id
WHEN MATCHED AND (t.chunk_text <> s.chunk_text OR t.title <> s.title OR t.updated_at <> s.updated_at
                  OR t.practice_location <> s.practice_location OR t.doc_type <> s.doc_type) THEN UPDATE SET *
WHEN NOT MATCHED THEN INSERT *
WHEN NOT MATCHED BY SOURCE THEN DELETE;
