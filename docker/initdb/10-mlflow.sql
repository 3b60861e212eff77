-- MLflow keeps its runs in their own database beside Optuna's.
CREATE DATABASE mlflow;
