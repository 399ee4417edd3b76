"""A chat format backed by the model's own Jinja template (:class:`ChatTemplate`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ..template import ChatTemplate
from ..types import ChatPrompt
from ._common import prepare

__all__ = ["TemplateFormat"]

_CHATML_END = "<|im_end|>"


class TemplateFormat:
    """Renders normalized messages with ``template``.

    Stops at the EOS token's text and, for ChatML-like templates (those that write
    ``<|im_start|>``), at ``<|im_end|>`` too: many ChatML models have another EOS token
    and would otherwise run on into a new turn. ``add_bos`` is ``False`` because the
    template writes ``bos_token`` itself where the model wants it (llama-cpp-python's
    ``Jinja2ChatFormatter`` does the same).
    """

    def __init__(self, template: ChatTemplate) -> None:
        self.template = template
        stop = [template.eos_token] if template.eos_token else []
        if "<|im_start|>" in template.source and _CHATML_END not in stop:
            stop.append(_CHATML_END)
        self._stop = stop

    def __repr__(self) -> str:
        return f"TemplateFormat({self.template!r})"

    def __call__(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        **extra: Any,
    ) -> ChatPrompt:
        """Validate ``messages``, render them, and say how generation ends."""
        prompt = self.template.render(prepare(messages), add_generation_prompt=add_generation_prompt,
                                      tools=tools, **extra)
        return ChatPrompt(prompt, list(self._stop), add_bos=False)
