"""Schemathesis hooks for armorm's openapi.yaml: the rules JSON Schema cannot state.

openapi.yaml says everything a request's shape must be. A few rules depend on content, not shape,
and are described in the spec's text instead: a conversation ends in the assistant's turn with a
turn before it, chat text carries turn markers, token ids contain the model's gating pattern and
stay inside its vocabulary, and `weights` names the model's objectives. This hook rewrites only
those parts, and only where the generated value already has the right shape, so a body the spec
calls invalid stays invalid (the negative checks still see it) and a body the spec calls valid
becomes one the server must accept (the positive checks then hold the server to the spec).

Loaded with SCHEMATHESIS_HOOKS=tests.schemathesis.hooks; ARMORM_URL is the server under test.
"""

import json
import os
import sys
import urllib.request

import schemathesis

# CPython 3.11 can fail hypothesis's source parsing deep in schemathesis's coverage recursion
# ("AST constructor recursion depth mismatch"); more headroom avoids it.
sys.setrecursionlimit(20_000)

INFO = json.load(urllib.request.urlopen(os.environ["ARMORM_URL"].rstrip("/") + "/info", timeout=10))
PATTERN = INFO.get("gating_pattern") or []
OBJECTIVES = INFO["objectives"]
CHAT = (
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nParis.<|eot_id|>"
)
ROLES = {"system", "user", "assistant"}


def is_message(m):
    role = m.get("role") if isinstance(m, dict) else None
    return isinstance(role, str) and role in ROLES and isinstance(m.get("content"), str)


def is_messages(v):
    return isinstance(v, list) and all(is_message(m) for m in v)


def conversation(v):
    """A full conversation: ends in the assistant's turn, with a turn before it."""
    if not is_messages(v) or not v:
        return v
    v = list(v)
    if v[-1]["role"] != "assistant":
        v.append({"role": "assistant", "content": "Paris."})
    if len(v) < 2:
        v.insert(0, {"role": "user", "content": "Hi"})
    return v


def prompt(v):
    """Prompt turns the server appends a response to: not emptied by dropping a blank assistant turn."""
    if not is_messages(v) or not v:
        return v
    v = list(v)
    if v[-1]["role"] == "assistant" and v[-1]["content"] == "":
        v[-1] = {"role": "assistant", "content": "Noted."}
    return v


def whole(i):
    """A token id the schema accepts (only those are repaired: an invalid one must stay invalid)."""
    number = isinstance(i, (int, float)) and not isinstance(i, bool)
    return number and 0 <= i <= 4294967295 and float(i).is_integer()


def ids(v):
    """Token ids inside the vocabulary, with the gating pattern (integral floats stay integral)."""
    if isinstance(v, list) and v and all(whole(i) for i in v):
        return PATTERN + [int(i) % 16 + 5 for i in v]
    return v


def ids_or_batch(v):
    if isinstance(v, list) and v and all(isinstance(x, list) for x in v):
        return [ids(x) for x in v]
    return ids(v)


def chat(v):
    return CHAT if isinstance(v, str) else v


def chats(v):
    if isinstance(v, str):
        return CHAT
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return [CHAT for _ in v]
    return v


def prompt_input(v):
    if isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)):
        return chats(v)
    return ids_or_batch(v)


def weights(v):
    number = lambda w: isinstance(w, (int, float)) and not isinstance(w, bool) and -1e6 <= w <= 1e6  # noqa: E731
    if isinstance(v, dict) and all(number(w) for w in v.values()):
        values = list(v.values())[: len(OBJECTIVES)]
        return dict(zip(OBJECTIVES, values))
    return v


FIELDS = {
    "messages": conversation,
    "conversations": lambda v: [conversation(c) for c in v] if isinstance(v, list) else v,
    "weights": weights,
    "query": lambda v: [chat(q) for q in v] if isinstance(v, list) else v,
    "input": prompt_input,
    "text": chats,
    "input_ids": ids_or_batch,
}
PROMPT_FIELDS = {"/rank", "/compare", "/reward"}


@schemathesis.hook
def map_body(ctx, body):
    if not isinstance(body, dict):
        return body
    path = ctx.operation.path
    out = dict(body)
    for key, fix in FIELDS.items():
        if key in out:
            out[key] = fix(out[key])
    if path in PROMPT_FIELDS:
        for key in ("messages", "prompt"):
            if key in body:
                out[key] = prompt(body[key])
    return out
