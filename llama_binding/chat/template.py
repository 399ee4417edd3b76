"""Hugging Face chat templates (``tokenizer.chat_template`` in GGUF metadata), rendered safely.

A model file's template is untrusted Jinja code: it runs in a hardened sandbox
(``_sandbox.py``) under a budget of output size and time (``_budget.py``). Every failure,
whether a syntax error, a ``raise_exception`` call, a sandbox violation, an exhausted
budget or a plain bug in the template, comes out as one
:class:`~llama_binding.errors.TemplateError` that names the template and the cause.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import jinja2
from jinja2.exceptions import SecurityError

from ..errors import TemplateError
from ._budget import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_TIME_LIMIT,
    SECONDS_PER_INPUT_CHAR,
    Budget,
    BudgetExceeded,
    activate,
    deactivate,
    text_length,
)
from ._sandbox import TemplateRaised, environment

__all__ = ["ChatTemplate"]


class ChatTemplate:
    """One chat template, compiled on first render and then reused (thread-safe).

    Both limits grow with what a render is given (the text of messages, tools and extra
    variables), so a long conversation is not refused while a template cannot invent work
    of its own: ``max_output`` is how many characters the template may produce (and how
    long any value it builds may be) beyond twice that text, and ``time_limit`` how many
    seconds it may run beyond one second per 100,000 characters of it.
    """

    def __init__(
        self,
        source: str,
        name: str = "default",
        bos_token: str = "",
        eos_token: str = "",
        *,
        max_output: int = DEFAULT_MAX_OUTPUT,
        time_limit: float = DEFAULT_TIME_LIMIT,
    ) -> None:
        if not isinstance(source, str):
            raise TypeError(f"a chat template's source must be a str, not {type(source).__name__}")
        if max_output < 0 or not time_limit > 0:
            raise ValueError("max_output must be >= 0 and time_limit > 0")
        self.source = source
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.max_output = max_output
        self.time_limit = time_limit
        self._compiled: Optional[jinja2.Template] = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ChatTemplate(name={self.name!r}, {len(self.source)} characters)"

    @property
    def compiled(self) -> bool:
        """Whether the source was compiled yet (it is on the first :meth:`render`)."""
        return self._compiled is not None

    def compile(self) -> None:
        """Compile the source now (a syntax error raises :class:`TemplateError` here, not at
        the first render)."""
        self._template()

    def _template(self) -> jinja2.Template:
        if self._compiled is None:
            with self._lock:
                if self._compiled is None:
                    self._compiled = self._compile()
        return self._compiled

    def _compile(self) -> jinja2.Template:
        try:
            return environment().from_string(self.source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"chat template {self.name!r} failed to compile: {exc.message} (line {exc.lineno})"
            ) from exc
        except Exception as exc:  # RecursionError on absurd nesting, errors of extensions
            raise TemplateError(
                f"chat template {self.name!r} failed to compile: {type(exc).__name__}: {exc}"
            ) from exc

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        **extra: Any,
    ) -> str:
        """Render ``messages`` to prompt text.

        Besides ``messages``, ``tools`` and ``add_generation_prompt`` the template sees
        ``bos_token``/``eos_token`` (an ``extra`` of the same name wins) and every ``extra``
        (``documents``, ``enable_thinking``, ...), as in ``transformers``.
        """
        template = self._template()
        variables: dict[str, Any] = {"bos_token": self.bos_token, "eos_token": self.eos_token, **extra}
        variables.update(messages=messages, tools=tools, add_generation_prompt=add_generation_prompt)
        given = text_length((messages, tools, extra))
        budget = Budget(self.max_output + 2 * given, self.time_limit + given * SECONDS_PER_INPUT_CHAR)
        token = activate(budget)
        try:
            return self._generate(template, variables, budget)
        except BudgetExceeded as exc:
            raise TemplateError(f"chat template {self.name!r} exceeded its rendering budget: {exc}") from exc
        except TemplateRaised as exc:
            raise TemplateError(f"chat template {self.name!r} raised an error: {exc}") from exc
        except SecurityError as exc:
            raise TemplateError(f"chat template {self.name!r} was stopped by the sandbox: {exc}") from exc
        except Exception as exc:  # the template's own bugs: UndefinedError, TypeError, RecursionError...
            raise TemplateError(
                f"chat template {self.name!r} failed to render: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            deactivate(token)

    @staticmethod
    def _generate(template: jinja2.Template, variables: dict[str, Any], budget: Budget) -> str:
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(variables):
            size += len(chunk)
            budget.check_len(size, "the rendered prompt")
            budget.tick()
            chunks.append(chunk)
        return "".join(chunks)
