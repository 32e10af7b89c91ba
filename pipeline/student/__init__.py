"""The T5 student: building/loading (model.py), batches, the multi-task loss, the training loop, DDP, greedy decoding."""
