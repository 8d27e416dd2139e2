"""Unity Catalog registered models and model versions, and the MLflow Unity Catalog registry path."""
