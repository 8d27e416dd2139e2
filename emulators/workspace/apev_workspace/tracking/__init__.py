"""MLflow tracking: experiments, runs, metrics, params and tags (`/api/2.0/mlflow/...`)."""
