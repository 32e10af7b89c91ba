"""The ``openai`` backend: a live teacher on any OpenAI-compatible chat-completions endpoint.

For each question of ``teacher.splits``: ``cots`` sampled CoTs from ``prompts/<task>/cot.txt``; then
for each *parseable* CoT of the ``self_eval_splits`` questions, ``self_evals`` self-evaluations from
``prompts/<task>/self_eval.txt`` (an unparseable CoT is excluded downstream, so it is not evaluated;
the count is reported as ``skipped_self_evals``). Every response is committed to the journal
(``../journal.py``) as it arrives, so reruns and resumes after a crash repeat no answered request.

One job per module:

- ``endpoint``: one teacher's base URL (``base_url``, else ``OPENAI_BASE_URL``) and key (the variable
  named by ``api_key_env``), empty = unset; how messages name the teacher; scrubbing secrets
- ``tokens``: token counts
- ``plan``: which prompts and samples are wanted, and which the journal already has
- ``client``: the SDK client and transport (no 4xx but 408/409/429 retried), one-line error descriptions
- ``models``: the endpoint's model list, checked before the first paid request
- ``response``: answers read as the SDK's typed ``ChatCompletion``
- ``budget``: cost, and ``budget_usd`` as a cap on the total spend on an endpoint and model
- ``sender``: the async sender (concurrency, pacing, ``n`` and its fallback, pending requests, stopping)
- ``outcome``: ``TeacherStopped`` (with the usage so far) and the one line of a phase that stopped
- ``backend``: ``generate``, the teach stage's entry point (records, quarantine rows, usage metrics)
- ``estimate``: requests, tokens and cost before anything is sent

The backend writes no file and imports nothing from ``pipeline.stages``: the teach stage reads the
prepared examples, calls ``generate`` / ``estimate_lines`` and writes every artifact.
"""
from .backend import TeacherOutput, generate
from .budget import Budget, cost_usd
from .client import describe_error, http_client, make_client
from .endpoint import DEFAULT_BASE_URL, api_key, client_base_url, endpoint_url, scrub
from .estimate import estimate_lines
from .models import ModelCheck
from .outcome import TeacherStopped
from .plan import MAX_N, Group, Planner
from .response import parse_completion, read_answer
from .sender import Sender
from .tokens import count_tokens, message_tokens

__all__ = ["Budget", "DEFAULT_BASE_URL", "Group", "MAX_N", "ModelCheck", "Planner", "Sender", "TeacherOutput",
           "TeacherStopped", "api_key", "client_base_url", "cost_usd", "count_tokens", "describe_error",
           "endpoint_url", "estimate_lines", "generate", "http_client", "make_client", "message_tokens",
           "parse_completion", "read_answer", "scrub"]
