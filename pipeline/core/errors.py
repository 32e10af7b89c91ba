"""One exception type for every user-facing failure: the CLI prints its message on one line and exits 2."""


class PipelineError(Exception):
    """A clear, one-line problem with the user's input (params, data files, teacher files)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
