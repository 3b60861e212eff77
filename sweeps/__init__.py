"""Optuna studies over thinker configurations, tracked in MLflow."""
