"""Search: spaces, Optuna studies and the objective that trains a trial."""
