"""Hostile chat templates: each is stopped with a TemplateError, quickly, and without
exhausting memory. A template comes from a model file, so it is treated as hostile code."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from jinja2.exceptions import SecurityError

from llama_binding.chat import ChatTemplate
from llama_binding.errors import TemplateError

USER = [{"role": "user", "content": "Hi"}]
TIME_LIMIT = 0.5  # seconds: short, so the time-based attacks keep the suite fast
SLACK = 1.0  # seconds allowed beyond the limit (checks run between steps, CI machines are slow)
PEAK_BYTES = 128 << 20  # no attack may allocate more (values made add up to 64 MB at most)

ESCAPES = {
    "str class": "{{ ''.__class__ }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "subclasses by item": "{{ ''['__class__']['__mro__'] }}",
    "cycler globals": "{{ cycler.__init__.__globals__.os.system('id') }}",
    "joiner globals": "{{ joiner.__init__.__globals__ }}",
    "namespace globals": "{{ namespace.__init__.__globals__['sys'].modules['os'] }}",
    "function globals": "{{ raise_exception.__globals__ }}",
    "function code": "{{ strftime_now.__code__ }}",
    "template context": "{{ self._TemplateReference__context }}",
    "format attribute": "{{ '{0.__class__}'.format(messages) }}",
    "format item": "{{ '{0[__class__]}'.format(messages) }}",
    "format_map": "{{ '{m.__class__.__base__}'.format_map({'m': messages}) }}",
    "format through attr filter": "{{ ('{0.__class__}' | attr('format'))(messages) }}",
    "format by subscript": "{{ ('{0.__init__.__globals__}'['format'])(cycler) }}",
    "attr filter": "{{ messages | attr('__class__') }}",
    "map attribute": "{{ messages | map(attribute='__class__') | list }}",
    "sort attribute": "{{ messages | sort(attribute='__class__') }}",
    "mutate the caller's list": "{{ messages.append(1) }}",
    "mutate the caller's dict": "{{ messages[0].update({'role': 'system'}) }}",
    "clear": "{% set _ = messages.clear() %}",
    "translate": "{{ 'a'.translate({97: 'b' * 1000}) }}",
    "generator frame": "{{ (messages | map('string')).gi_frame }}",
}

BUDGET = {
    "nested range loops": "{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}",
    "nested loops over one range": (
        "{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}"
    ),
    "loop over items without a call": (
        "{% set r = range(100000) | list %}{% for i in r %}{% for j in r %}{% for k in r %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    ),
    "exponential recursion": (
        "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}"
    ),
    "wide recursive loop": (
        "{% for x in range(10) recursive %}{% if loop.depth < 40 %}{{ loop(range(10)) }}{% endif %}"
        "{% endfor %}"
    ),
    "wide macro recursion": (
        "{% macro g(n) %}{% if n > 0 %}{% for x in range(10) %}{{ g(n - 1) }}{% endfor %}{% endif %}"
        "{% endmacro %}{{ g(40) }}"
    ),
    "quadratic list growth": (
        "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] %}{% endfor %}"
    ),
}

MEMORY = {
    "string doubling with ~": (
        "{% set ns = namespace(x='ab') %}{% for i in range(100) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}"
    ),
    "string doubling with +": (
        "{% set ns = namespace(x='ab') %}{% for i in range(100) %}{% set ns.x = ns.x + ns.x %}{% endfor %}"
    ),
    "nested set doubling": (
        "{% set x = 'ab' %}{% set x = x ~ x %}" + "{% set x = x ~ x ~ x ~ x %}" * 40 + "{{ x }}"
    ),
    "string times": "{{ 'a' * 10**10 }}",
    "list times": "{{ [1] * 10**10 }}",
    "huge power": "{{ 10 ** 100000000 }}",
    "huge product": (
        "{% set ns = namespace(n=7) %}{% for i in range(64) %}{% set ns.n = ns.n * ns.n %}{% endfor %}"
    ),
    "center filter": "{{ 'a' | center(9999999999) }}",
    "center method": "{{ 'a'.center(10**10) }}",
    "zfill method": "{{ '1'.zfill(10**10) }}",
    "expandtabs": "{{ ('\t' * 100000).expandtabs(1000) }}",
    "indent with a long string": "{{ ('\n' * 500000) | indent('x' * 500000) }}",
    "wordwrap": "{{ ('a ' * 400000) | wordwrap(1, wrapstring='x' * 1000) }}",
    "replace with empty old": (
        "{% set ns = namespace(x='ab') %}{% for i in range(60) %}{% set ns.x = ns.x.replace('', ns.x) %}"
        "{% endfor %}"
    ),
    "replace filter": (
        "{% set ns = namespace(x='ab') %}{% for i in range(60) %}{% set ns.x = ns.x | replace('', ns.x) %}"
        "{% endfor %}"
    ),
    "join of a lazy map": "{{ range(100000) | map('string') | map('center', 999999) | join }}",
    "list of a lazy map": "{{ range(100000) | map('string') | map('center', 999999) | list | length }}",
    "join with a long separator": "{{ range(100000) | join('x' * 1000000) }}",
    "str.join": "{{ ('x' * 1000000).join(range(100000) | map('string')) }}",
    "sum of lists": "{% set l = [['x'] * 1000000] * 1000 %}{{ l | sum(start=[]) | length }}",
    "repr of shared references": "{% set l = ['x' * 1000000] * 100000 %}{{ l }}",
    "string filter": "{% set l = ['x' * 1000000] * 100000 %}{{ l | string | length }}",
    "tojson of shared references": "{% set l = ['x' * 1000000] * 100000 %}{{ l | tojson }}",
    "tojson indent": "{% set l = [[[[[[[[[[1]]]]]]]]]] * 10000 %}{{ l | tojson(indent='x' * 100000) }}",
    "concat of a list": "{% set l = ['x' * 1000000] * 100000 %}{{ 'a' ~ l }}",
    "captured block": (
        "{% set y = 'x' | center(1000000) %}{% set x %}{% for i in range(100000) %}{{ y }}{% endfor %}"
        "{% endset %}"
    ),
    "macro output": (
        "{% macro m() %}{% for i in range(100000) %}{{ 'x' * 1000000 }}{% endfor %}{% endmacro %}"
        "{% set z = m() %}"
    ),
    "output stream": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "str.format width": "{{ '{:>9999999999}'.format(1) }}",
    "str.format nested width": "{{ '{0:>{1}}'.format(1, '99999999999') }}",
    "str.format fields": "{{ ('{0}' * 100000).format('x' * 1000000) }}",
    "percent width": "{{ '%09999999999d' % 1 }}",
    "percent star width": "{{ '%*d' % (10**10, 1) }}",
    "percent mapping reuse": "{{ ('%(a)s' * 100000) % {'a': 'x' * 1000000} }}",
    "format filter": "{{ '%0999999999d' | format(1) }}",
    "batch fill": "{{ [1] | batch(10**10, 'x') | list }}",
    "chain of list literals": (
        "{% set ns = namespace(l=none) %}{% for i in range(100000) %}"
        "{% set ns.l = [ns.l, 'x' * 1000000 ~ i] %}{% endfor %}"
    ),
    "chain of dict literals": (
        "{% set ns = namespace(d=none) %}{% for i in range(100000) %}"
        "{% set ns.d = {'prev': ns.d, 'value': 'x' * 999990 ~ i} %}{% endfor %}"
    ),
    "list of distinct strings": (
        "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
        "{% set ns.l = ns.l + ['x' * 1000000 ~ i] %}{% endfor %}"
    ),
    "list of split pieces": (
        "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
        "{% set ns.l = ns.l + [('ab' * 500000 ~ i).split('b')] %}{% endfor %}"
    ),
    "namespace values kept in a chain": (
        "{% set ns = namespace(x='', c=none) %}{% set big = 'x' * 1000000 %}{% for i in range(100000) %}"
        "{% set ns.x = big ~ i %}{% set ns.c = [ns.c, ns.x] %}{% endfor %}"
    ),
    "namespace values kept by recursion": (
        "{% set ns = namespace(x='') %}{% set big = 'x' * 1000000 %}{% macro f(n) %}{% set keep = ns.x %}"
        "{% set ns.x = big ~ n %}{% if n < 900 %}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}"
    ),
    "many variables": (
        "{% set big = 'x' * 1000000 %}"
        + "".join(f"{{% set v{i} = big ~ {i} %}}" for i in range(100))
    ),
    "recursion holding values": (
        "{% macro f(n, s) %}{% set t = s ~ n %}{% if n < 900 %}{{ f(n + 1, t) }}{% endif %}{% endmacro %}"
        "{{ f(0, 'x' * 1000000) }}"
    ),
}


def _run(source: str, name: str) -> tuple[TemplateError, float]:
    template = ChatTemplate(source, name=name, time_limit=TIME_LIMIT)
    start = time.monotonic()
    with pytest.raises(TemplateError) as info:
        template.render(USER)
    return info.value, time.monotonic() - start


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escapes_are_stopped_by_the_sandbox(name: str) -> None:
    error, elapsed = _run(ESCAPES[name], name)
    assert str(error).startswith(f"chat template {name!r} was stopped by the sandbox: ")
    assert "unsafe" in str(error)
    assert isinstance(error.__cause__, SecurityError)
    assert elapsed < SLACK


@pytest.mark.parametrize("name", sorted(BUDGET))
def test_endless_work_is_stopped_at_the_deadline(name: str) -> None:
    error, elapsed = _run(BUDGET[name], name)
    assert str(error) == f"chat template {name!r} exceeded its rendering budget: it ran longer than 0.5 s"
    assert TIME_LIMIT <= elapsed < TIME_LIMIT + SLACK


@pytest.mark.parametrize("name", sorted(MEMORY))
def test_memory_attacks_are_stopped_before_memory_runs_out(name: str) -> None:
    tracemalloc.start()
    try:
        error, elapsed = _run(MEMORY[name], name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(error).startswith(f"chat template {name!r} exceeded its rendering budget: ")
    assert elapsed < TIME_LIMIT + SLACK
    assert peak < PEAK_BYTES, f"peak {peak / 2**20:.0f} MiB"


def test_the_default_budget_is_two_seconds() -> None:
    template = ChatTemplate(BUDGET["nested range loops"])
    start = time.monotonic()
    with pytest.raises(TemplateError, match="exceeded its rendering budget: it ran longer than 2 s"):
        template.render(USER)
    assert 2.0 <= time.monotonic() - start < 2.0 + SLACK


def test_max_output_is_configurable() -> None:
    """The limit is ``max_output`` plus twice the size of what the template is given."""
    source = "{% for i in range(100) %}xxxxxxxxxx{% endfor %}"
    assert len(ChatTemplate(source, max_output=1000).render(USER)) == 1000
    with pytest.raises(TemplateError, match="the rendered prompt would be longer than 9"):
        ChatTemplate(source, max_output=900).render(USER)


def test_accumulating_text_in_a_namespace_costs_only_what_is_added() -> None:
    """``{% set ns.out = ns.out ~ piece %}`` over a long chat (as Reka's template does) is
    not counted as a new copy of the whole text at every step."""
    source = ("{% set ns = namespace(out='') %}{% for m in messages %}"
              "{% set ns.out = ns.out ~ m.role ~ ': ' ~ m.content ~ '\n' %}{% endfor %}{{ ns.out }}")
    messages = [{"role": "user", "content": "x" * 1000}] * 3000
    assert len(ChatTemplate(source).render(messages)) == 3000 * 1007


def test_growing_a_list_in_a_namespace_costs_only_what_is_added() -> None:
    source = ("{% set ns = namespace(ids=[]) %}{% for m in messages %}{% set ns.ids = ns.ids + [m.content] %}"
              "{% endfor %}{{ ns.ids | length }}")
    assert ChatTemplate(source).render([{"role": "tool", "content": "id"}] * 20000) == "20000"


def test_lipsum_is_not_available() -> None:
    with pytest.raises(TemplateError, match="'lipsum' is undefined"):
        ChatTemplate("{{ lipsum(1000000, max=1000000) }}").render(USER)


def test_deep_recursion_is_an_error_not_a_crash() -> None:
    with pytest.raises(TemplateError, match="RecursionError"):
        ChatTemplate("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}").render(USER)
    with pytest.raises(TemplateError, match="failed to compile"):
        ChatTemplate("{{ " + "(" * 10000 + "1" + ")" * 10000 + " }}").render(USER)


def test_the_sandbox_leaves_the_callers_messages_alone() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    with pytest.raises(TemplateError):
        ChatTemplate("{% set _ = messages[0].pop('role') %}").render(messages)
    assert messages == [{"role": "user", "content": "Hi"}]


def test_a_template_works_again_after_an_attack_stopped() -> None:
    source = "{% if messages | length > 1 %}" + BUDGET["nested range loops"] + "{% endif %}ok"
    template = ChatTemplate(source, time_limit=TIME_LIMIT)
    with pytest.raises(TemplateError):
        template.render([*USER, *USER])
    assert template.render(USER) == "ok"
