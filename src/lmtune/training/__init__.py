"""The one training loop and its parts: batching, checkpoints, callbacks."""
