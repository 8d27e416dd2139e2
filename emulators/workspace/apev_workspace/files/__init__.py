"""The Files API on Unity Catalog volumes (`/api/2.0/fs/files`, `/api/2.0/fs/directories`)."""
