"""schema_to_gbnf: JSON Schema -> GBNF.

Model-free, every grammar is checked by LlamaGrammar (our parser and llama.cpp's) and
then run through llama.cpp's own grammar engine over the tokens of a vocab-only model,
which tells exactly which JSON texts it accepts. With a tiny random model, sampled
completions must parse and validate against their schema.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from _grammar_accept import Acceptor
from _tinymodel import vocab_path

from llama_binding import Llama
from llama_binding.core import Model, ModelParams, Vocab
from llama_binding.errors import SamplerError
from llama_binding.grammar import LlamaGrammar
from llama_binding.grammar.json_schema import schema_to_gbnf

FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


@pytest.fixture(scope="module")
def accepts() -> Iterator[Acceptor]:
    """GPT-2's byte-level vocabulary: it can spell any text, with no prefix space."""
    path = vocab_path("gpt-2")
    if not path.is_file():
        pytest.fail(f"vocab GGUF {path} is missing: run python vendor/sync.py")
    with Model(path, ModelParams(vocab_only=True)) as model:
        yield Acceptor(Vocab(model))


def grammar(schema: Any, **kwargs: Any) -> str:
    gbnf = schema_to_gbnf(schema, **kwargs)
    assert LlamaGrammar.from_string(gbnf).root == "root"
    return gbnf


# --- what each supported feature accepts and rejects -----------------------------------------

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "email": {"type": "string", "format": "uuid"},
    },
    "required": ["name", "age"],
}
TREE = {
    "$defs": {"node": {
        "type": "object",
        "properties": {"v": {"type": "integer"},
                       "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["v"],
    }},
    "$ref": "#/$defs/node",
}
UUID = '"123e4567-e89b-12d3-a456-426614174000"'

# id -> (schema, texts the grammar accepts, texts it rejects)
CASES: dict[str, tuple[Any, list[str], list[str]]] = {
    "true": (True, ['{"a": [1, 2.5e3, null]}', '"x"', "true", "[ ]"], ["tru", "{a:1}", " 1"]),
    "empty": ({}, ["{}", "-0.5", '["x", {"y": false}]'], ["[1,]", "'x'"]),
    "string": ({"type": "string"},
               ['""', '"hi"', r'"esc \" \\ \/ \n \u00e9 é"'],
               ['"raw\nline"', r'"\x41"', "hi", r'"\ud800"', '"a"b"']),
    "number": ({"type": "number"}, ["0", "-1.5e+10", "3.14", "2E3"], ["01", "1.", ".5", "+1", "1e"]),
    "integer": ({"type": "integer"}, ["0", "-12", "9999999999999999"],
                ["1.0", "1e3", "00", "12345678901234567"]),
    "type list": ({"type": ["boolean", "null"]}, ["true", "false", "null"], ['"true"', "0"]),
    "enum": ({"enum": ["red", "green", 3, None]}, ['"red"', '"green"', "3", "null"], ['"blue"', "3.0"]),
    "enum with type": ({"type": "string", "enum": ["a", 1]}, ['"a"'], ["1"]),
    "const": ({"const": {"a": [1, "x"]}}, ['{"a":[1,"x"]}'], ['{"a":[1,"y"]}']),
    "required and optional": (
        {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"},
                                          "c": {"type": "boolean"}}, "required": ["b"]},
        ['{"b":1}', '{"a":"x","b":1}', '{"b":1,"c":true}', '{ "a" : "x" ,\n "b" : 1 , "c" : false }'],
        ["{}", '{"a":"x"}', '{"b":1,"a":"x"}', '{"b":1,"d":2}', '{"b":1,}', '{"b":1 "c":true}']),
    "all optional": (
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
        ["{}", '{"a":1}', '{"b":2}', '{"a":1,"b":2}'],
        ['{,"b":2}', '{"a":1,}', '{"b":2,"a":1}']),
    "additionalProperties schema": (
        {"type": "object", "properties": {"name": {"type": "string"}},
         "additionalProperties": {"type": "integer"}},
        ['{"name":"x","n":1,"m":2}', '{"n":1}', "{}", '{"nam":1,"names":2,"":3,"\\u006e":4}'],
        ['{"n":"x"}', '{"name":"x","name":3}', '{"n":1,"name":"x"}']),
    "additionalProperties true": (
        {"type": "object", "additionalProperties": True}, ['{"x":{"y":[]},"z":null}', "{}"], ["[]"]),
    "nested objects": (
        {"type": "object", "required": ["address"], "properties": {"address": {
            "type": "object", "required": ["street", "zip"],
            "properties": {"street": {"type": "string"},
                           "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}}}},
        ['{"address":{"street":"Main","zip":"12345"}}'],
        ['{"address":{"street":"Main","zip":"1234"}}', '{"address":{"zip":"12345"}}']),
    "array items": ({"type": "array", "items": {"type": "integer"}},
                    ["[]", "[ ]", "[1, 2,3]", "[\n1\n]"], ["[1,]", "[,1]", '["a"]', "[1 2]"]),
    "minItems maxItems": ({"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
                          ['["a"]', '["a","b"]'], ["[]", '["a","b","c"]']),
    "prefixItems": ({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}],
                     "items": False},
                    ["[]", '["a"]', '["a",1]'], ["[1]", '["a",1,2]']),
    "prefixItems then items": (
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}],
         "items": {"type": "boolean"}, "minItems": 3, "maxItems": 4},
        ['["a",1,true]', '["a",1,true,false]'], ['["a",1]', '["a",1,true,true,true]', '["a",1,2]']),
    "anyOf": ({"anyOf": [{"type": "string", "maxLength": 2}, {"type": "integer", "minimum": 0}]},
              ['"ab"', "5"], ['"abc"', "-1"]),
    "oneOf with siblings": (
        {"type": "object", "required": ["kind"], "oneOf": [
            {"properties": {"kind": {"const": "circle"}, "r": {"type": "number"}}},
            {"properties": {"kind": {"const": "square"}, "side": {"type": "number"}}}]},
        ['{"kind":"circle","r":1}', '{"kind":"square"}'], ['{"kind":"circle","side":1}', '{"r":1}']),
    "allOf merge": (
        {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                   {"properties": {"b": {"type": "string"}}}]},
        ['{"a":1}', '{"a":1,"b":"x"}'], ['{"b":"x"}']),
    "allOf of one $ref": ({"$defs": {"s": {"type": "string", "maxLength": 1}},
                           "allOf": [{"$ref": "#/$defs/s"}]}, ['"a"'], ['"ab"']),
    "$ref with siblings": (
        {"definitions": {"base": {"type": "object", "properties": {"a": {"type": "integer"}}}},
         "$ref": "#/definitions/base", "required": ["a"], "description": "merged"},
        ['{"a":1}'], ["{}"]),
    "recursive $defs": (TREE, ['{"v":1,"kids":[{"v":2,"kids":[]},{"v":3}]}', '{"v":0}'],
                        ['{"v":1,"kids":[{}]}', '{"kids":[]}']),
    "recursive root": (
        {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}},
        ['{"next":{"next":{"next":null}}}', "{}"], ['{"next":1}']),
    "string lengths": ({"type": "string", "minLength": 2, "maxLength": 4},
                       ['"ab"', '"abcd"', r'"\n\t"', '"éé"', r'"\u00e9\u00e9"'], ['"a"', '"abcde"', '""']),
    "pattern": ({"type": "string", "pattern": r"^[A-Z]{2}-\d{3}(\.[a-z]+)?$"},
                ['"AB-123"', '"AB-123.xyz"'], ['"ab-123"', '"AB-12"', '"AB-123."', '"AB-1234"']),
    "pattern with quotes and classes": (
        {"type": "string", "pattern": r'^(yes|no|"q"|[^,a-z]+|\\)$'},
        ['"yes"', r'"\"q\""', '"A B"', r'"\\"', r'"\"\""', r'"\n"'], ['"maybe"', '"A,B"', '""', '"\\q"']),
    "unanchored pattern": ({"type": "string", "pattern": "ab|^x$"},
                           ['"ab"', '"--ab--"', '"x"'], ['"a b"', '"xx"', '""']),
    "formats": (
        {"type": "array", "prefixItems": [{"type": "string", "format": f} for f in
                                          ("date", "time", "date-time", "uuid")], "minItems": 4},
        [f'["2024-02-28","23:59:59Z","2024-01-01T00:00:00.123+05:30",{UUID}]'],
        [f'["2024-02-30","23:59:59Z","2024-01-01T00:00:00Z",{UUID}]',
         f'["2024-02-28","24:00:00Z","2024-01-01T00:00:00Z",{UUID}]',
         f'["2024-02-28","23:59:59","2024-01-01T00:00:00Z",{UUID}]',
         f'["2024-02-28","23:59:59Z","2024-01-01 00:00:00Z",{UUID}]',
         '["2024-02-28","23:59:59Z","2024-01-01T00:00:00Z","123e4567-e89b-12d3-a456-42661417400"]']),
    "integer bounds": (
        {"type": "array", "prefixItems": [
            {"type": "integer", "minimum": 0}, {"type": "integer", "exclusiveMinimum": 0, "maximum": 10},
            {"type": "integer", "minimum": -20.5, "exclusiveMaximum": -3}], "minItems": 3},
        ["[0,1,-20]", "[123,10,-4]"], ["[-1,1,-4]", "[0,0,-4]", "[0,11,-4]", "[0,1,-3]", "[0,1,-21]",
                                       "[0,1,0]"]),
    "draft-4 exclusiveMinimum": ({"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer",
                                  "minimum": 5, "exclusiveMinimum": True}, ["6", "700"], ["5", "-6"]),
    "number minimum 0": ({"type": "number", "minimum": 0}, ["0", "0.5", "12e-3"], ["-0.5", "-1"]),
    "nullable string": ({"type": ["string", "null"], "maxLength": 3}, ['"abc"', "null"], ['"abcd"']),
    "annotations": ({"title": "t", "description": "d", "default": 1, "examples": [1], "x-vendor": 1,
                     "type": "integer", "$comment": "c"}, ["1"], ['"1"']),
}


@pytest.mark.parametrize(("schema", "good", "bad"), list(CASES.values()), ids=list(CASES))
def test_the_grammar_accepts_exactly_what_the_schema_allows(
        schema: Any, good: list[str], bad: list[str], accepts: Acceptor) -> None:
    gbnf = grammar(schema)
    for text in good:
        jsonschema.validate(json.loads(text), schema, format_checker=FORMATS)  # the cases are right
        assert accepts(gbnf, text), f"rejected {text!r}:\n{gbnf}"
    for text in bad:
        assert not accepts(gbnf, text), f"accepted {text!r}:\n{gbnf}"


def test_rule_names_follow_the_schema() -> None:
    gbnf = grammar(TREE)
    assert gbnf.startswith("root ::= node\n")
    assert re.search(r"^node ::= ", gbnf, re.M)
    assert re.search(r"^ws ::= \[ \\t\\n\]\{0,20\}$", gbnf, re.M)
    person = grammar(PERSON)
    assert re.search(r'^name-kv ::= "\\"name\\"" ws ":" ws name ws$', person, re.M)
    assert re.search(r'^root ::= "\{" ws name-kv "," ws age-kv \( "," ws email-kv \)\? "\}"$', person, re.M)


def test_definitions_named_like_primitives_do_not_clash(accepts: Acceptor) -> None:
    schema = {"$defs": {"string": {"type": "integer"}, "ws": {"const": "w"}},
              "type": "array", "prefixItems": [{"$ref": "#/$defs/string"}, {"$ref": "#/$defs/ws"},
                                               {"type": "string"}], "items": False}
    gbnf = grammar(schema)
    assert accepts(gbnf, '[1, "w", "s"]')
    assert not accepts(gbnf, '["s", "w", "s"]')


def test_strict_mode_only_changes_what_the_schema_leaves_open(accepts: Acceptor) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert not accepts(grammar(schema), '{"a":1,"zz":[true]}')  # absent additionalProperties: false
    loose = grammar(schema, strict=False)
    assert accepts(loose, '{"a":1,"zz":[true]}')
    assert not accepts(loose, '{"a":1,"a":2}')  # an extra key is never a declared one
    for odd in ({"type": "string", "format": "email"}, {"type": "array", "uniqueItems": True}):
        with pytest.raises(SamplerError, match="not supported"):
            schema_to_gbnf(odd)
        grammar(odd, strict=False)  # the constraint is dropped
    assert accepts(grammar({"type": "string", "format": "email"}, strict=False), '"not an email"')


def test_integer_ranges_match_exactly(accepts: Acceptor) -> None:
    """Digit-range rules against Python's comparison, around the bounds and at random."""
    rnd = random.Random(7)
    for _ in range(60):
        lo, hi = sorted(rnd.randint(-(10 ** rnd.randint(0, 6)), 10 ** rnd.randint(0, 6)) for _ in range(2))
        which = rnd.randrange(3)
        schema = {"type": "integer", **({"minimum": lo} if which != 1 else {}),
                  **({"maximum": hi} if which != 0 else {})}
        gbnf = grammar(schema)
        low = lo if which != 1 else -(10**16)
        high = hi if which != 0 else 10**16
        numbers = {*range(lo - 2, lo + 3), *range(hi - 2, hi + 3),
                   *(rnd.randint(lo - 99, hi + 99) for _ in range(20))}
        for n in numbers:
            assert accepts(gbnf, str(n)) == (low <= n <= high), (schema, n)


# --- what cannot be enforced raises, naming where ---------------------------------------------

ERRORS: dict[str, tuple[Any, str]] = {
    "lookahead": ({"type": "string", "pattern": "^(?=a)b$"}, "#/pattern: lookahead is not supported"),
    "lookbehind in a property": ({"type": "object", "properties": {"name": {"pattern": "(?<=x)y"}}},
                                 "#/properties/name/pattern: lookbehind is not supported"),
    "backreference": ({"pattern": r"(a)\1"}, "#/pattern: backreferences are not supported"),
    "word boundary": ({"pattern": r"\bword"}, "#/pattern: word boundaries"),
    "inner anchor": ({"pattern": "a^b"}, "#/pattern: anchors ^ and $ are supported only at the ends"),
    "anchor in a group": ({"pattern": "(^a)"}, "#/pattern: anchors"),
    "unicode property": ({"pattern": r"\p{L}"}, "#/pattern: Unicode property escapes"),
    "unbalanced": ({"pattern": "(a"}, "#/pattern: missing ')'"),
    "bad quantifier": ({"pattern": "a{2,1}"}, "#/pattern: the quantifier"),
    "huge quantifier": ({"pattern": "a{5000}"}, "#/pattern: quantifiers above"),
    "pattern and length": ({"type": "string", "pattern": "a", "maxLength": 3},
                           "#/pattern: a pattern together"),
    "unknown format": ({"properties": {"m": {"type": "string", "format": "email"}}},
                       "#/properties/m/format: the format 'email' is not supported"),
    "number maximum": ({"type": "number", "maximum": 10}, "#/maximum: number bounds"),
    "number minimum 1": ({"type": "number", "minimum": 1}, "#/minimum: number bounds"),
    "number exclusiveMinimum": ({"type": "number", "exclusiveMinimum": 0},
                                "#/exclusiveMinimum: number bounds"),
    "huge integer bound": ({"type": "integer", "minimum": 1e20}, "#/minimum: integer bounds of more than"),
    "empty integer range": ({"type": "integer", "minimum": 10, "maximum": 5}, "#: no integer lies"),
    "unknown keyword": ({"type": "array", "items": {"type": "array", "uniqueItems": True}},
                        "#/items/uniqueItems: the keyword 'uniqueItems' is not supported"),
    "patternProperties": ({"patternProperties": {"^a": {}}}, "#/patternProperties"),
    "remote $ref": ({"$ref": "https://example.com/s.json"}, "#/$ref: only local references"),
    "missing $ref": ({"$ref": "#/$defs/nope"}, "#/$ref: '#/$defs/nope' points to nothing"),
    "left recursion": ({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}},
                        "$ref": "#/$defs/a"},
                       "#/$defs/a/anyOf/0/$ref: '#/$defs/a' refers back to itself"),
    "allOf conflict": ({"allOf": [{"type": "string", "maxLength": 3}, {"maxLength": 4}]},
                       "#/allOf: cannot merge two different 'maxLength'"),
    "allOf types": ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "#/allOf: the types"),
    "allOf cycle": ({"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}, {"type": "object"}]}},
                     "$ref": "#/$defs/a"},
                    "#/$defs/a/allOf/0: $ref and allOf nest too deep"),
    "false": (False, "#: the schema false accepts no value"),
    "false item": ({"type": "array", "items": {"type": "array", "items": False, "minItems": 1}},
                   "#/items/minItems: minItems asks for more items"),
    "required false property": ({"properties": {"a": False}, "required": ["a"]},
                                "#/properties/a: a required"),
    "required but not allowed": ({"type": "object", "required": ["a"]}, "#/required: 'a' is required"),
    "minItems above maxItems": ({"type": "array", "minItems": 3, "maxItems": 2}, "#/minItems"),
    "huge maxLength": ({"type": "string", "maxLength": 5000}, "#/maxLength: lengths above"),
    "bad type": ({"type": "text"}, "#/type: type must be one of"),
    "empty enum": ({"enum": []}, "#/enum: enum must be a non-empty list"),
    "not a schema": ({"properties": {"a": 5}}, "#/properties/a: a schema must be an object"),
    "escaped pointer": ({"properties": {"a/b~": {"pattern": "(?!x)"}}},
                        "#/properties/a~1b~0/pattern: lookahead"),
}


@pytest.mark.parametrize(("schema", "message"), list(ERRORS.values()), ids=list(ERRORS))
def test_unsupported_parts_raise_sampler_error_naming_the_pointer(schema: Any, message: str) -> None:
    with pytest.raises(SamplerError, match="^" + re.escape(message)):
        schema_to_gbnf(schema)


def test_sampler_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="lookahead"):
        schema_to_gbnf({"pattern": "(?=a)"})


# --- sampling with a model -------------------------------------------------------------------

SAMPLED: dict[str, Any] = {
    "person": PERSON,
    "enum": {"enum": ["red", "green", "blue", 42, None]},
    "nested": {"type": "object", "required": ["user", "items"], "properties": {
        "user": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 999}},
                 "required": ["id"]},
        "items": {"type": "array", "maxItems": 3, "items": {
            "type": "object", "properties": {"sku": {"type": "string", "maxLength": 6},
                                             "qty": {"type": "integer", "minimum": 0, "maximum": 9}},
            "required": ["sku", "qty"]}}}},
    "anyOf": {"anyOf": [{"type": "string", "maxLength": 5},
                        {"type": "integer", "minimum": -50, "maximum": 50}, {"type": "boolean"}]},
    "tree": {"$defs": {"node": {"type": "object", "required": ["v"], "properties": {
        "v": {"type": "integer", "minimum": 0, "maximum": 9},
        "kids": {"type": "array", "maxItems": 2, "items": {"$ref": "#/$defs/node"}}}}},
        "$ref": "#/$defs/node"},
    "pattern": {"type": "string", "pattern": r"^[A-Z]{2}-\d{3}(\.[a-z]{1,4})?$"},
    "formats": {"type": "object", "required": ["day", "at", "id"], "properties": {
        "day": {"type": "string", "format": "date"}, "at": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "format": "uuid"}}},
    "numbers": {"type": "array", "minItems": 1, "maxItems": 4, "items": {"type": "number", "minimum": 0}},
    "tuple": {"type": "array", "prefixItems": [{"type": "string", "maxLength": 4}, {"type": "integer"},
                                               {"type": "null"}], "items": False, "minItems": 2},
    "extra properties": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                         "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 9}},
    "optional only": {"type": "object", "properties": {
        "a": {"type": "boolean"}, "b": {"type": "null"}, "c": {"const": "c"}}},
    "nullable": {"type": ["string", "null"], "minLength": 1, "maxLength": 8},
}


@pytest.fixture(scope="module")
def llm(tiny_model: Callable[..., Path]) -> Iterator[Llama]:
    with Llama(str(tiny_model()), n_ctx=512) as model:
        yield model


@pytest.mark.parametrize("schema", list(SAMPLED.values()), ids=list(SAMPLED))
def test_sampled_completions_validate(schema: Any, llm: Llama) -> None:
    g = LlamaGrammar.from_string(schema_to_gbnf(schema))
    stopped = 0
    for seed in range(3):
        out = llm.create_completion("JSON:", grammar=g, max_tokens=200, temperature=1.0, seed=seed)
        assert isinstance(out, dict)
        choice = out["choices"][0]
        if choice["finish_reason"] != "stop":
            continue
        stopped += 1
        jsonschema.validate(json.loads(choice["text"]), schema, format_checker=FORMATS)
    assert stopped >= 2
