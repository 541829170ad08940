"""Client APIs in front: one pure module per API, in one registry.

A front turns its API's request into the neutral request the core and every
dialect take (a chat-completions-shaped body, see `base.ClientRequest`), and
the neutral answer (`Completion`, or a stream of `Delta`s) back into its API's
answer and events. Adding an API is one module here and a line below.
"""
from __future__ import annotations

from gateway.front import chat, embeddings, messages, responses
from gateway.front.base import Front

_MODULES: tuple[Front, ...] = (chat, messages, embeddings, responses)
FRONTS: dict[str, Front] = {m.name: m for m in _MODULES}
