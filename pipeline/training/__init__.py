"""Training the T5 student: the loop (selection, resume, DDP) and the multi-task loss. Decoding and the
model itself are ``pipeline.student``, which evaluation shares."""
