"""Grammars that used to crash, hang or answer wrongly: the GBNF pre-check refuses what llama.cpp
cannot match (and would then throw across the C boundary), CRLF grammars work, json_object
mode gives an object, string lengths count characters, many optional properties stay small."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _child import Child

from llama_binding import Llama, SamplerError
from llama_binding.grammar import JSON_GBNF, JSON_OBJECT_GBNF, LlamaGrammar, schema_to_gbnf

VENDOR_GRAMMARS = Path(__file__).resolve().parents[2] / "vendor" / "llama.cpp" / "grammars"

# grammar -> fragments the error must name
UNMATCHABLE = {
    "reversed range": (r"root ::= [z-a]+", ("reversed character range z-a", "column 11")),
    "reversed range among others": (r'root ::= "x" [0-9a-zZ-A]', ("reversed character range Z-A",)),
    "reversed escaped range": (r"root ::= [\u0100-\x41]", ("reversed", "U+0100", "U+0041")),
    "huge \\U in a literal": (r'root ::= "\U7FFFFFFF"', (r"\U7FFFFFFF", "beyond U+10FFFF", "literal")),
    "huge \\U in a class": (r"root ::= [\U00110000]", (r"\U00110000", "beyond U+10FFFF", "class")),
    "huge range in a class": (r"root ::= [\U00110000-\U7FFFFFFF]", ("beyond U+10FFFF",)),
    "NUL in a literal": (r'root ::= "a\x00b"', ("NUL", "literal", "column 12")),
    "NUL as \\u0000": (r'root ::= "\u0000"', ("NUL", "literal")),
    "NUL in a class": (r"root ::= [\x00]", ("NUL", "character class")),
    "token id beyond uint32": (r"root ::= <[99999999999]>", ("token id is too big",)),
    "token id beyond int32": (r"root ::= <[4294967295]>", ("token id 4294967295 is out of range",)),
    "negated token beyond int32": (r"root ::= !<[2147483648]>", ("out of range",)),
}


@pytest.mark.parametrize("case", sorted(UNMATCHABLE))
def test_unmatchable_grammars_are_refused_with_the_reason(case: str) -> None:
    grammar, naming = UNMATCHABLE[case]
    with pytest.raises(SamplerError) as info:
        LlamaGrammar(grammar)
    for fragment in naming:
        assert fragment.lower() in str(info.value).lower(), str(info.value)


@pytest.mark.parametrize("grammar", [
    r"root ::= [^\x00]+",  # NUL is fine where it is kept out
    r"root ::= [\x00-\x1F]",  # a range from NUL matches 1..31
    r'root ::= [^"\uD800-\uDFFF\U00110000-\U7FFFFFFF]',  # beyond U+10FFFF, kept out
    r"root ::= [a-a]",  # a one-character range is not reversed
    r'root ::= "\xFFFFFFFFFF"',  # \xFF then the letters FFFFFFFF
    r"root ::= <[2147483647]>",
])
def test_what_can_match_is_still_accepted(grammar: str) -> None:
    assert LlamaGrammar(grammar).grammar == grammar


# Every parser error llama-grammar.cpp's llama_grammar_parser can raise: they are thrown and
# caught inside llama.cpp, but the pre-check reports them first, with a line and column.
PARSER_ERRORS = {
    'root ::= "\\x4"': "expecting 2 hex chars",
    'root ::= "\\u12"': "expecting 4 hex chars",
    'root ::= "\\U1234"': "expecting 8 hex chars",
    '::= "a"': "expecting name",
    'root ::= "a"{,2}': "expecting an int",
    'root ::= "\\q"': "unknown escape",
    'root ::= "abc': "unexpected end of input",
    "root ::= [abc": "unexpected end of input",
    "root ::= <[12": "expecting ']'",
    "root ::= <[12]": "expecting '>'",
    "root ::= <abc": "expecting '>'",
    "root ::= *": "expecting preceding item",
    'root ::= ("a"': "expecting ')'",
    'root ::= "a"{1,2': "expecting '}'",
    'root ::= "a"{1;2}': "expecting ','",
    'root "a"': "expecting ::=",
    'root ::= "a" )': "expecting newline or end",
    "root ::= other": "Undefined rule identifier 'other'",
    'root ::= "a"{3000}': "number of repetitions exceeds sane defaults",
    "root ::= root": "left recursion",
}


@pytest.mark.parametrize("grammar", sorted(PARSER_ERRORS))
def test_every_parser_error_is_a_sampler_error(grammar: str) -> None:
    with pytest.raises(SamplerError, match="invalid GBNF grammar") as info:
        LlamaGrammar(grammar)
    assert PARSER_ERRORS[grammar].lower() in str(info.value).lower()


# -- CRLF -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_grammars_with_crlf_or_cr_line_endings_are_accepted(ending: str) -> None:
    texts = {p.name: p.read_text(encoding="utf-8") for p in sorted(VENDOR_GRAMMARS.glob("*.gbnf"))}
    texts["json"] = JSON_GBNF
    texts["continued"] = 'root ::= ( "a" |\n  "b" ) # a comment\nitem ::= "c"\n'
    assert len(texts) > 5
    for name, text in texts.items():
        converted = text.replace("\n", ending)
        assert LlamaGrammar(converted).grammar == converted, name


CRLF_CHILD = r'''
from llama_binding import LlamaGrammar
llm = Llama(sys.argv[1], n_ctx=128, n_threads=1, verbose=False)
lf = 'root ::= "The " word " " word\nword ::= [a-z]{2,6}\n'
for ending in ("\r\n", "\r"):
    def run(ending=ending):
        texts = [llm("Once", max_tokens=12, temperature=0.0, grammar=LlamaGrammar(g))["choices"][0]["text"]
                 for g in (lf, lf.replace("\n", ending))]
        assert texts[0] == texts[1] and texts[0].startswith("The "), texts
        return texts[0]
    report(repr(ending), run)
'''


def test_crlf_grammar_constrains_like_the_lf_one(stories260k: Path) -> None:
    child = Child(CRLF_CHILD, str(stories260k), timeout=120)
    for label in ("'\\r\\n'", "'\\r'"):
        assert child[label].name == "OK", child[label].message


# -- what llama.cpp would have crashed on, through a real completion -------------------------

COMPLETION_CHILD = r'''
import json
from llama_binding import LlamaGrammar
llm = Llama(sys.argv[1], n_ctx=128, n_threads=1, verbose=False)
for label, grammar in json.loads(sys.argv[2]).items():
    report(label, lambda grammar=grammar: llm("Once", max_tokens=4, grammar=grammar)["choices"][0]["text"])
    report(label + " (object)", lambda grammar=grammar: llm("Once", max_tokens=4,
                                                           grammar=LlamaGrammar(grammar))["choices"][0]["text"])
'''


def test_unmatchable_grammars_fail_a_completion_cleanly(stories260k: Path) -> None:
    grammars = {case: grammar for case, (grammar, _) in UNMATCHABLE.items()}
    child = Child(COMPLETION_CHILD, str(stories260k), json.dumps(grammars), timeout=120)
    for case in grammars:
        for label in (case, case + " (object)"):
            outcome = child[label]
            assert outcome.is_a("SamplerError"), f"{label}: {outcome.name}: {outcome.message}"
            assert UNMATCHABLE[case][1][0].lower() in outcome.message.lower(), outcome.message


# -- json_object mode -------------------------------------------------------------------------


def test_json_object_grammar_has_an_object_root() -> None:
    assert "root     ::= object" in JSON_OBJECT_GBNF
    assert JSON_OBJECT_GBNF.replace("root     ::= object", "root     ::= value").replace(
        "# one JSON object", "# one JSON value") == JSON_GBNF
    LlamaGrammar(JSON_OBJECT_GBNF)


def test_json_object_response_format_gives_an_object(smollm2: Path) -> None:
    with Llama(smollm2, n_ctx=512, n_threads=2, verbose=False) as llm:
        for seed in range(4):
            out = llm.create_chat_completion(
                [{"role": "user", "content": "Reply with JSON: what is null in JSON?"}],
                temperature=0.9, seed=seed, max_tokens=160, response_format={"type": "json_object"})
            assert isinstance(out, dict)
            content = out["choices"][0]["message"]["content"] or ""
            assert content.lstrip().startswith("{"), (seed, content)
            if out["choices"][0]["finish_reason"] == "stop":
                assert isinstance(json.loads(content), dict), (seed, content)


# -- string lengths in characters --------------------------------------------------------------


def test_string_lengths_count_characters_not_bytes() -> None:
    gbnf = schema_to_gbnf({"type": "string", "minLength": 2, "maxLength": 4})
    assert 'root ::= "\\"" char{2,4} "\\""' in gbnf
    # char is one character, and keeps out what invalid UTF-8 decodes to in llama.cpp (which
    # decodes without checking): surrogates and values beyond U+10FFFF, each of which a strict
    # decoder turns into up to four U+FFFD
    (char,) = [line for line in gbnf.splitlines() if line.startswith("char ::=")]
    assert r"\uD800-\uDFFF" in char and r"\U00110000-\U7FFFFFFF" in char
    pattern = schema_to_gbnf({"type": "string", "pattern": "^[^a]{2}$"})
    assert r"\uD800-\uDFFF\U00110000-\U7FFFFFFF]" in pattern
    assert r"\uD800-\uDFFF\U00110000-\U7FFFFFFF]" in JSON_GBNF


LENGTH_CHILD = r'''
import json
from llama_binding import LlamaGrammar
from llama_binding.grammar import schema_to_gbnf
llm = Llama(sys.argv[1], n_ctx=128, n_threads=1, verbose=False)
# push the model towards byte tokens that start surrogates (0xED), code points beyond U+10FFFF
# (0xF5-0xF7) and their continuation bytes: only the grammar keeps the text valid UTF-8
bias = {}
for i in range(llm.n_vocab()):
    text = llm.engine.vocab.text(i)
    if text.startswith(b"<0x") and (int(text[3:5], 16) in (0xED, 0xF5, 0xF6, 0xF7)
                                    or 0x80 <= int(text[3:5], 16) <= 0xBF):
        bias[i] = 40.0
assert len(bias) == 68, len(bias)
grammar = LlamaGrammar(schema_to_gbnf({"type": "string", "maxLength": 4}))
def run():
    seen = []
    for seed in range(25):
        text = llm("Once", max_tokens=24, temperature=1.5, seed=seed, logit_bias=bias,
                   grammar=grammar)["choices"][0]["text"]
        value = json.loads(text)
        assert len(value) <= 4 and "\ufffd" not in value, (seed, text)
        seen.append(value)
    return seen
report("byte tokens", run)
'''


def test_max_length_holds_when_the_model_is_pushed_to_invalid_utf8(stories260k: Path) -> None:
    child = Child(LENGTH_CHILD, str(stories260k), timeout=120)
    assert child["byte tokens"].name == "OK", child["byte tokens"].message


# -- many optional properties -------------------------------------------------------------------


def many(n: int, required: tuple[str, ...] = ()) -> dict[str, object]:
    return {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(n)},
            "required": list(required)}


def test_a_thousand_optional_properties_make_a_small_grammar_quickly() -> None:
    start = time.perf_counter()
    gbnf = schema_to_gbnf(many(1000))
    LlamaGrammar(gbnf)
    assert time.perf_counter() - start < 1.0
    assert len(gbnf) < 200_000
    assert len(schema_to_gbnf(many(1400))) < 1.5 * len(gbnf)  # linear, not quadratic


def test_too_many_properties_are_refused_naming_the_limit() -> None:
    with pytest.raises(SamplerError, match="more than 1500"):
        schema_to_gbnf(many(1501))


OPTIONAL_CHILD = r'''
import json, time
import jsonschema
from llama_binding import LlamaGrammar
from llama_binding.grammar import schema_to_gbnf
llm = Llama(sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
# keep stories260K from spending its tokens on the whitespace the grammar allows
no_space = {i: -100.0 for i in range(llm.n_vocab())
            if llm.engine.vocab.token_to_piece(i).strip() == b"" and i != llm.token_eos()}
for label, schema in json.loads(sys.argv[2]).items():
    grammar = LlamaGrammar(schema_to_gbnf(schema))
    def run(grammar=grammar, schema=schema):
        complete, slowest = 0, 0.0
        for seed in range(4):
            start = time.perf_counter()
            text = llm("{", max_tokens=96, temperature=1.0, seed=seed, grammar=grammar,
                       logit_bias=no_space)["choices"][0]["text"]
            slowest = max(slowest, time.perf_counter() - start)
            assert text.startswith("{"), text
            if text.endswith("}"):
                jsonschema.validate(json.loads(text), schema)
                complete += 1
        return f"complete={complete} slowest={slowest:.2f}"
    report(label, run)
'''


def test_completions_with_many_optional_properties_are_bounded_and_valid(stories260k: Path) -> None:
    schemas = {"1000 optional": many(1000), "mixed": many(12, required=("p3", "p7")),
               "mixed extra": {**many(10, required=("p0", "p9")), "additionalProperties": {"type": "string"}}}
    child = Child(OPTIONAL_CHILD, str(stories260k), json.dumps(schemas), timeout=240)
    for label in schemas:
        outcome = child[label]
        assert outcome.name == "OK", f"{label}: {outcome.message}"
        slowest = float(outcome.message.split("slowest=")[1].rstrip("'\""))
        assert slowest < 10, (label, outcome.message)
    assert "complete=0" not in child["mixed"].message  # some objects ended, and validated


ACCEPT = r'''
from llama_binding.core import Model, ModelParams, Sampler, SamplerChain, Vocab
vocab = Vocab(Model(sys.argv[1], ModelParams(vocab_only=True)))
chain = SamplerChain([Sampler.grammar(vocab, 'root ::= " yes" | " no"')])  # SPM: a leading space
yes = vocab.tokenize(b"yes", add_special=False)
report("allowed", lambda: [chain.accept(t) for t in yes] and "ok")
report("refused", lambda: chain.accept(vocab.tokenize(b"maybe", add_special=False)[0]))
'''


def test_accepting_a_token_the_grammar_refuses_raises(stories260k: Path) -> None:
    """llama.cpp throws across its C API (and ends the process) on such an accept."""
    child = Child(ACCEPT, str(stories260k))
    assert child["allowed"].name == "OK", child["allowed"]
    assert child["refused"].name == "SamplerError", child["refused"]
    assert "not allowed by the chain's grammar" in child["refused"].message
