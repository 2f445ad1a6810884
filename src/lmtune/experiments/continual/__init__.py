"""Continual learning: a sequence of steps, each an ordinary run, with the strategies that keep
earlier steps from being forgotten and the report that measures it (`lmtune continual`)."""
