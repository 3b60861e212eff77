"""Sweeps: Optuna studies over a task's search space, every trial an MLflow run (`thinker sweep`).

Read in the order a sweep runs:

- `space`: search spaces as TOML files, one per task in `spaces/`, parsed once into a `Space`
- `settings`: `SweepSettings` (what every worker needs, the space among it) and the objectives
- `stores`: both stores (Optuna's, MLflow's) by URL: checked before they are opened, passwords redacted
- `study`: Optuna's storage opened, and the study in it: sampler, pruner, a dead worker's trials failed
- `tracking`: MLflow (the one place MLflow is imported)
- `trial`: `TrialRecord`, what one trial is as the storage keeps it
- `objective`: one trial: suggest, train, report, log
- `interrupt`: Ctrl-C and SIGTERM as an object passed to whoever must stop
- `workers`: how many worker processes, with how many threads, on which device; running them
- `logs`: MLflow's and Optuna's own messages to the sweep's log file
- `standing`: where a running sweep stands (running trials, ended ones, ETA), for the live view
- `coordinator`: `run_sweep`, and the invocation's parent MLflow run from start to end
- `report`, `plots`, `rerun`: reading a study (its table and summary, its pictures, a trial again)
"""
