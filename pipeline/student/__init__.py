"""The T5 student, shared by training and evaluation: building and loading (model.py), batches, DDP
helpers, greedy decoding. The training loop and loss are ``pipeline.training``."""
