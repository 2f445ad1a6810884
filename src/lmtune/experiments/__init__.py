"""What runs many trainings, or watches them: experiment tracking, hyperparameter search.

Each trial is an ordinary run folder; see ARCHITECTURE.md (Experiments).
"""
