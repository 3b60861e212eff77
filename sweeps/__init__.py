"""Sweeps: Optuna studies over a task's search space, every trial an MLflow run (`thinker sweep`).

Read in the order a sweep runs:

- `settings`: `SweepSettings` (what every worker needs) and the objectives
- `space`: search spaces as TOML files, one per task in `spaces/`
- `algorithms`: Optuna samplers and pruners by name
- `storage`: the Optuna storage (the one place Optuna storages are opened)
- `first_open`: opening a store other workers are creating at the same moment
- `study`: create, check and load the study
- `tracking`: MLflow (the one place MLflow is imported for sweeps)
- `objective`: one trial: suggest, train, report, log
- `interrupt`: Ctrl-C and SIGTERM as an object passed to whoever must stop
- `placement`: how many trial processes per device, with how many threads
- `workers`: worker processes running `study.optimize`
- `logs`: MLflow's and Optuna's own messages to the sweep's log file
- `standing`: where a running sweep stands (running trials, ended ones, ETA), for the live view
- `repair`: MLflow runs left RUNNING by dead workers and invocations
- `summary`: the sweep's summary, plots and best checkpoint on the parent run
- `coordinator`: `run_sweep`, which ties these together
- `report`, `plots`, `rerun`: reading a study afterwards (tables, its picture, a trial again)
"""
