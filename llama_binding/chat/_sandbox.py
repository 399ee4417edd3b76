"""The jinja2 environment that chat templates run in: Hugging Face's globals, the sandbox,
and a budget check at every place a template can spend time or memory.

The sandbox (``ImmutableSandboxedEnvironment``) already refuses private and internal
attributes, mutation of lists and dicts, and caps ``range()``. On top of it:

* unsafe attribute access raises :class:`~jinja2.exceptions.SecurityError` at once instead
  of yielding an undefined value that renders as an empty string, so a hostile template
  fails loudly;
* ``str.translate``/``maketrans`` are refused (their output size cannot be bounded cheaply);
* the sandbox hooks ``call`` and the intercepted binary operators check the deadline and
  the size of what they are about to build (``_checks.py``); ``getitem`` counts slices;
* before code generation every ``{% for %}`` iterable is wrapped so each iteration checks
  the deadline (a loop with an empty body calls no hook at all), and every ``~`` becomes a
  call that checks the size of its operands before joining them;
* the output buffers of blocks, macros and ``{% set %}`` captures count their size as they
  fill, ``finalize`` checks every ``{{ }}`` value before ``str()``, and every filter is
  wrapped (``_filters.py``);
* the optimizer is off, so nothing from the template is evaluated at compile time.

One environment serves every :class:`~.template.ChatTemplate`; the budget of the render in
progress lives in a context variable (``_budget.current``).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Optional, Union, cast

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

from ._budget import current, metered, replace_item
from ._checks import check_binop, check_format_spec, check_replace, check_result
from ._filters import guard_filters

__all__ = ["TemplateRaised", "environment"]

_TEXT = (str, bytes)
_UNBOUNDED_TEXT_METHODS = frozenset({"translate", "maketrans"})
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})  # int -> a length


class TemplateRaised(Exception):
    """A template called ``raise_exception(message)`` (its own validation failed)."""


def raise_exception(message: Any) -> None:
    """``raise_exception`` of Hugging Face templates: abort rendering with a message."""
    raise TemplateRaised(str(message))


def strftime_now(format: str) -> str:
    """``strftime_now`` of Hugging Face templates (Llama 3.x puts today's date in prompts)."""
    return datetime.now().strftime(format)  # a long format is checked by the call hook


class _Namespace(Namespace):
    """``namespace()`` whose attribute assignment releases the replaced value from the
    budget's count of values made (see :func:`~._budget.replace_item`)."""

    def __setitem__(self, name: str, value: Any) -> None:
        replace_item(object.__getattribute__(self, "_Namespace__attrs"), name, value)


class _TimedIterable:
    """A ``{% for %}`` iterable that checks the deadline on every item (and keeps ``len``
    so ``loop.length`` does not have to copy the items)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        budget = current()
        for item in self._items:
            budget.tick()
            yield item

    def __len__(self) -> int:
        return len(self._items)  # type: ignore[arg-type]  # TypeError tells jinja2 to count


def _budget_call(name: str, args: list[nodes.Expr], like: nodes.Node) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(name), args, [], None, None)
    call.set_lineno(like.lineno)
    if like.environment is not None:
        call.set_environment(like.environment)
    return call


class _Instrument(NodeTransformer):
    """Rewrites a parsed template so that loops and ``~`` go through budget checks."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _budget_call("budget_iter", [cast(nodes.Expr, node.iter)], node)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _budget_call("budget_concat", list(node.nodes), node)


class _BudgetBuffer(list[str]):
    """The output buffer of a macro, ``{% set %}`` block, filter or call block.

    Checking only when a buffer is joined would be too late: a macro looping 100000 times
    over a 1 MB string holds 100 GB of references to new strings before it returns.
    """

    __slots__ = ("_budget", "_size")

    def __init__(self) -> None:
        super().__init__()
        self._budget = current()
        self._size = 0

    def _grow(self, size: int) -> None:
        self._size += size
        self._budget.check_len(self._size, "a captured block")
        self._budget.record(size)
        self._budget.tick()

    def append(self, text: str) -> None:
        self._grow(len(text))
        super().append(text)

    def extend(self, texts: Iterable[str]) -> None:
        texts = tuple(texts)
        self._grow(sum(len(text) for text in texts))
        super().extend(texts)


class _CodeGenerator(CodeGenerator):
    """The standard code generator, run on the instrumented tree, with metered buffers."""

    def visit_Template(self, node: nodes.Template, frame: Optional[Frame] = None) -> None:
        _Instrument().visit(node)
        super().visit_Template(node, frame)

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.budget_buffer()")


class _GenerationExtension(Extension):
    """``{% generation %}...{% endgeneration %}``: Hugging Face marks assistant text with it
    (to build training masks); for rendering a prompt it only renders its body."""

    tags = frozenset({"generation"})  # type: ignore[assignment]  # jinja2 declares a set

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


class _BudgetFormatter(SandboxedFormatter):
    """``str.format`` in the sandbox, with the widths of each field checked."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = current()
        budget.tick()
        check_format_spec(budget, format_spec)
        return super().format_field(value, format_spec)


class _Environment(ImmutableSandboxedEnvironment):
    code_generator_class = _CodeGenerator
    # the operators that can make a value much larger than its operands ("-", "/" and "//"
    # cannot; loops and calls check the deadline, so those need no hook)
    intercepted_binops = frozenset({"+", "*", "%", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, _TEXT) and attr in _UNBOUNDED_TEXT_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def getitem(self, obj: Any, argument: Union[str, Any]) -> Union[Any, Undefined]:
        value = super().getitem(obj, argument)
        if isinstance(argument, slice):  # a slice is a new value
            check_result(current(), value, "a slice")
        return value

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        budget.tick()
        check_binop(budget, operator, left, right)
        result = self.binop_table[operator](left, right)
        check_result(budget, result, f"the result of {operator!r}")
        return result

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.tick()
        text_method = isinstance(obj, types.BuiltinMethodType) and isinstance(
            getattr(obj, "__self__", None), _TEXT)
        if text_method:
            args = _checked_text_method(obj, args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        check_result(budget, result, "the result of a call", new_items=text_method)
        return result

    def wrap_str_format(self, value: Any) -> Optional[Any]:
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)):
            return None
        if value.__name__ not in ("format", "format_map") or not isinstance(value.__self__, str):
            return None
        owner: str = value.__self__
        is_map = value.__name__ == "format_map"
        formatter = _BudgetFormatter(self)

        @functools.wraps(value)
        def wrapper(*args: Any, **kwargs: Any) -> str:
            budget = current()
            fields: Any = (args, kwargs)
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one positional argument")
                fields = kwargs = args[0]
                args = ()
            size = budget.check_size(fields, "the arguments of str.format")
            budget.check_len(len(owner) + owner.count("{") * size, "a formatted string")
            return formatter.vformat(owner, args, kwargs)  # checked and counted by the call hook

        return wrapper

    def budget_iter(self, items: Iterable[Any]) -> _TimedIterable:
        """Wraps the iterable of every ``{% for %}`` (see :class:`_Instrument`)."""
        return _TimedIterable(items)

    def budget_buffer(self) -> _BudgetBuffer:
        """A new output buffer (see :meth:`_CodeGenerator.buffer`)."""
        return _BudgetBuffer()

    def budget_concat(self, *parts: Any) -> str:
        """The ``~`` operator, with the size of the joined text checked before joining."""
        budget = current()
        total = 0
        texts = []
        for part in parts:
            if not isinstance(part, str):
                budget.check_size(part, "an operand of '~'")
                part = str(part)
            total += len(part)
            budget.check_len(total, "a string joined with '~'")
            texts.append(part)
        return "".join(texts)  # counted by the call hook, as every call's result is

    def concat(self, parts: Iterable[str]) -> str:
        """Joins the output buffer of a block, macro or ``{% set %}`` capture."""
        budget = current()
        budget.tick()
        texts = list(parts)
        budget.check_len(sum(len(text) for text in texts), "a captured block")
        return "".join(texts)


def _checked_text_method(method: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Checks a call of a ``str``/``bytes`` method; returns its (maybe metered) arguments."""
    budget = current()
    owner = method.__self__
    name = method.__name__
    if name in _WIDTH_METHODS:
        for item in (*args, *kwargs.values()):
            budget.check_int(item, f"an argument of {type(owner).__name__}.{name}")
    if name == "join" and args:
        return (metered(args[0], budget, "a joined string", len(owner)), *args[1:])
    if name == "replace" and len(args) >= 2:
        check_replace(budget, owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"))
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            tabs = owner.count("\t" if isinstance(owner, str) else b"\t")
            budget.check_len(len(owner) + tabs * max(size, 0), "an expanded string")
    return args


def _finalize(value: Any) -> Any:
    """Every ``{{ }}`` value passes here before ``str()``: ``str(list)`` can be huge."""
    budget = current()
    budget.tick()
    if isinstance(value, str):
        budget.check_len(len(value), "an output value")
    else:
        budget.check_size(value, "an output value")
    return value


@functools.lru_cache(maxsize=1)
def environment() -> _Environment:
    """The one shared environment (built on first use: importing costs nothing)."""
    env = _Environment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[loopcontrols, _GenerationExtension],
        optimized=False,
        autoescape=False,
        finalize=_finalize,
    )
    env.globals.pop("lipsum", None)  # lipsum(n, min, max) is a Python loop with no hook in it
    env.globals["namespace"] = _Namespace
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.filters = guard_filters(env.filters)
    return env
