"""LlamaGrammar: GBNF grammars checked when made, without a model; one test constrains a
real model's generation."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest

from llama_binding.core import Context, ContextParams, Model, Sampler, Vocab
from llama_binding.errors import SamplerError
from llama_binding.generation.sampling import SamplingParams, build_chain
from llama_binding.generation.steps import SequenceState, generate_tokens
from llama_binding.grammar import JSON_GBNF, LlamaGrammar
from llama_binding.grammar.gbnf import _Checker, _GbnfError, _native_check

VENDOR_GRAMMARS = sorted((Path(__file__).resolve().parents[2] / "vendor" / "llama.cpp" / "grammars")
                         .glob("*.gbnf"))

VALID = {
    "alternation": 'root ::= "yes" | "no"',
    "rules": 'root ::= greeting " " name\ngreeting ::= "hello" | "hi"\nname ::= [A-Z] [a-z]*\n',
    "repetition": 'root ::= "a"* "b"+ "c"? "d"{2} "e"{1,3} "f"{2,} ("g" | "h"){0,4}',
    "char classes": r'root ::= [a-zA-Z0-9_] [^"\\\n] [\x41-\x5A] [\u00e9\U0001F600] [-a] [a\-z] .',
    "escapes": r'root ::= "\"quoted\" \\ \t\r\n \x41 \u00e9 \U0001F600 \[ \] \-"',
    "comments": '# a comment\nroot ::= "a" | # the next alternative\n  "b" # after a rule\n# the end',
    "multiline": 'root ::=\n  "a" |\n  (\n    "b"\n    "c"\n  )\n',
    "crlf": 'root ::= item+\r\nitem ::= "x" | "y"\r\n',
    "unicode": 'root ::= "héllo" | "日本" [ぁ-ゟ]+',
    "token ids": 'root ::= <[1]> "x" !<[2]>',
    "named tokens": 'root ::= <think> [a-z]* !<think> </think>',
    "empty alternative": 'root ::= "a" opt\nopt ::= "b" |',
    "right recursion": 'root ::= "(" root ")" | ""',
    "json": JSON_GBNF,
}


@pytest.mark.parametrize("text", list(VALID.values()), ids=list(VALID))
def test_valid_grammars_are_accepted(text: str) -> None:
    g = LlamaGrammar.from_string(text)
    assert g.grammar == text
    assert g.root == "root"


@pytest.mark.parametrize("path", VENDOR_GRAMMARS, ids=[p.name for p in VENDOR_GRAMMARS])
def test_llama_cpp_grammars_are_accepted(path: Path) -> None:
    assert LlamaGrammar.from_file(path).grammar == path.read_text(encoding="utf-8")


INVALID = {
    "alternative on a new line": ('root ::= "a"\n  | "b"', "expecting name at line 2, column 3: '| \"b\"'"),
    "undefined rule": ('root ::= "a" foo', "Undefined rule identifier 'foo' at line 1, column 14"),
    "undefined later": ('root ::= a\na ::= "x" b\n', "Undefined rule identifier 'b' at line 2, column 11"),
    "unbalanced open": ('root ::= ("a" | "b"', "expecting ')' at line 1, column 20 (end of input)"),
    "unbalanced close": ('root ::= "a" )', "expecting newline or end at line 1, column 14: ')'"),
    "garbage": ("@@@ !!!", "expecting name at line 1, column 1: '@@@ !!!'"),
    "no ::=": ('root := "a"', "expecting ::= at line 1, column 6"),
    "unterminated string": ('root ::= "abc', "unexpected end of input"),
    "unterminated class": ("root ::= [a-", "unexpected end of input"),
    "unknown escape": (r'root ::= "\q"', "unknown escape at line 1, column 11"),
    "short hex": (r'root ::= "\x4"', "expecting 2 hex chars"),
    "dangling star": ("root ::= * \"a\"", "expecting preceding item to */+/?/{ at line 1, column 10"),
    "bad brace": ('root ::= "a"{x}', "expecting an int"),
    "underscore name": ('my_rule ::= "a"\nroot ::= my_rule', "expecting ::= at line 1, column 3"),
    "no root": ('start ::= "a"', "grammar does not contain a 'root' symbol"),
    "left recursion": ('root ::= root "a" | "b"', "left recursion detected: root -> root"),
    "indirect left recursion": ('root ::= a\na ::= b "x"\nb ::= a "y" | "z"', "left recursion detected"),
    "only a comment": ("# nothing here\n", "defines no rules"),
    "too many repetitions": ('root ::= "a"{2001}', "number of repetitions exceeds sane defaults"),
}


@pytest.mark.parametrize(("text", "message"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_grammars_raise_sampler_error_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(SamplerError, match="invalid GBNF grammar") as info:
        LlamaGrammar.from_string(text)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("text", ["", "   ", "\n\t\n"])
def test_an_empty_grammar_is_refused(text: str) -> None:
    # llama.cpp itself would make a grammar sampler that constrains nothing
    with pytest.raises(SamplerError, match="empty"):
        LlamaGrammar(text)


def test_a_nul_character_is_refused() -> None:
    with pytest.raises(SamplerError, match="NUL"):
        LlamaGrammar('root ::= "a"\0garbage')


def test_non_str_grammars_raise_type_error() -> None:
    with pytest.raises(TypeError, match="str"):
        LlamaGrammar.from_string(b'root ::= "a"')  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs the grammar"):
        LlamaGrammar.from_string(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs the grammar"):
        LlamaGrammar()
    with pytest.raises(TypeError, match="once"):
        LlamaGrammar('root ::= "a"', _grammar='root ::= "a"')
    with pytest.raises(TypeError, match="root"):
        LlamaGrammar('root ::= "a"', root=1)  # type: ignore[arg-type]


# --- inputs that would crash or hang llama.cpp: refused before llama.cpp sees them --------

HAZARDS = {
    # {m,n} with n < m: llama.cpp's repetition rewrite loops (nearly) forever
    "max below min": ('root ::= "a"{3,1}', "repetition maximum 1 is below its minimum 3"),
    # llama.cpp's recursive parser overflows the stack (segfault at ~18,700 levels, 8 MB)
    "deep nesting": ("root ::= " + "(" * 20000 + '"a"' + ")" * 20000, "nested more than"),
    # its left-recursion check recurses once per rule of a leftmost chain (segfault at ~65,000)
    "long chain": ("root ::= r0\n" + "".join(f"r{i} ::= r{i + 1}\n" for i in range(70000))
                   + 'r70000 ::= "a"\n', "leftmost position"),
    # ... and walks every path of leftmost references: 2^40 steps here
    "exponential check": ("root ::= r0\n" + "".join(f"r{i} ::= r{i + 1} | r{i + 1}\n" for i in range(40))
                          + 'r40 ::= "a"\n', "too ambiguous"),
    # 2^30 parse stacks for the first expansion, deduped in quadratic time
    "ambiguous start": ("root ::= r0\n"
                        + "".join(f'r{i} ::= r{i + 1} "a" | r{i + 1} "b"\n' for i in range(30))
                        + 'r30 ::= "a"\n', "too ambiguous"),
    # left recursion through a rule that matches nothing only by way of another rule: it
    # passes llama.cpp's check, then the stack expansion grows until std::bad_alloc aborts
    "hidden left recursion": ('root ::= expr "="\nexpr ::= term ("+" term)*\nterm ::= "x" | ws expr\n'
                              "ws ::= [ ]*", "left recursion through rules that can match nothing"),
    "expansion": ('root ::= "' + "x" * 10000 + '"{0,2000}', "expand the grammar beyond"),
}


@pytest.mark.parametrize(("text", "message"), list(HAZARDS.values()), ids=list(HAZARDS))
def test_grammars_that_would_crash_or_hang_llama_cpp_are_refused_quickly(text: str, message: str) -> None:
    start = time.monotonic()
    with pytest.raises(SamplerError, match="invalid GBNF grammar") as info:
        LlamaGrammar(text)
    assert message in str(info.value)
    assert time.monotonic() - start < 10


def test_harmless_hidden_left_recursion_is_accepted_like_llama_cpp_does() -> None:
    # the recursive reference ends its alternative: llama.cpp's stacks stay bounded
    LlamaGrammar('root ::= ws root | "x"\nws ::= [ ]*')


def test_big_but_sane_grammars_are_accepted() -> None:
    LlamaGrammar("root ::= " + " | ".join(f'"word{i}"' for i in range(5000)))
    LlamaGrammar('root ::= item{0,2000}\nitem ::= [a-z] ","')


# --- the checker and llama.cpp agree ------------------------------------------------------

AGREEMENT = [*VALID.values(), *(text for text, _ in INVALID.values()),
             'root ::= "a" foo{0}',  # the reference to foo is dropped with the repetition
             'root ::= ("a" "b"{3}){3}', 'root ::= "a"{0,0} "b"', "root ::= [^]] [\\]]",
             "root ::= x\nx ::= ", 'root ::= "a"\n\n\nroot ::= "b"\n', 'root ::= "a"{ 2 , 3 }',
             'root ::= "a" # comment without newline',
             'root ::= "\\U0001F600"{1,2} [\\U0001F600-\\U0001F64F]',
             'root ::= ("a"{2000}){2}', 'root ::= ("a"{1000}){2}', 'root ::= <[99999999999]>']


@pytest.mark.parametrize("text", AGREEMENT, ids=[f"g{i}" for i in range(len(AGREEMENT))])
def test_the_checker_agrees_with_llama_cpp(text: str) -> None:
    data = text.replace("<think>", "<[0]>").replace("</think>", "<[0]>").encode()
    checker = _Checker(data)
    try:
        checker.parse("root")
        ours = None
    except _GbnfError as exc:
        ours = exc.what
    native = _native_check(data, b"root")
    assert (ours is None) == (native is None), (ours, native)


# --- construction, comparison, files ----------------------------------------------------

def test_attributes_repr_equality_and_hash() -> None:
    g = LlamaGrammar.from_string('root ::= "a"')
    assert g == LlamaGrammar('root ::= "a"') == LlamaGrammar(_grammar='root ::= "a"')
    assert g != LlamaGrammar('root ::= "b"')
    assert g != LlamaGrammar('root ::= "a"\nstart ::= "a"', root="start")
    assert len({g, LlamaGrammar('root ::= "a"')}) == 1
    assert repr(g) == "LlamaGrammar('root ::= \"a\"')"
    assert "root='start'" in repr(LlamaGrammar('start ::= "a"', root="start"))
    assert repr(LlamaGrammar(JSON_GBNF)).endswith("...')")
    assert g._grammar == 'root ::= "a"' and g._root == "root"  # llama-cpp-python's names
    with pytest.raises(AttributeError):
        g.grammar = 'root ::= "b"'  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(g)) == g


def test_another_root_rule() -> None:
    g = LlamaGrammar.from_string('answer ::= "yes" | "no"', root="answer")
    assert g.root == "answer"
    with pytest.raises(SamplerError, match="does not contain a 'root' symbol"):
        LlamaGrammar.from_string('answer ::= "yes" | "no"')
    with pytest.raises(SamplerError, match="root rule name is empty"):
        LlamaGrammar('root ::= "a"', root="")


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "answer.gbnf"
    path.write_text('root ::= "yes" | "no"\n', encoding="utf-8")
    assert LlamaGrammar.from_file(path) == LlamaGrammar('root ::= "yes" | "no"\n')
    assert LlamaGrammar.from_file(str(path), verbose=False).grammar == path.read_text(encoding="utf-8")
    json_path = tmp_path / "json.gbnf"
    json_path.write_text(JSON_GBNF, encoding="utf-8")
    assert LlamaGrammar.from_file(json_path).grammar == JSON_GBNF


def test_from_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gbnf"
    with pytest.raises(FileNotFoundError, match=r"missing\.gbnf") as info:
        LlamaGrammar.from_file(missing)
    assert info.value.filename == str(missing)
    with pytest.raises(OSError, match="cannot read grammar file"):
        LlamaGrammar.from_file(tmp_path)  # a folder
    bad = tmp_path / "bad.gbnf"
    bad.write_text('root ::= "a" (', encoding="utf-8")
    with pytest.raises(SamplerError, match=r"bad\.gbnf: invalid GBNF grammar: expecting"):
        LlamaGrammar.from_file(bad)
    empty = tmp_path / "empty.gbnf"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(SamplerError, match="empty"):
        LlamaGrammar.from_file(empty)
    latin1 = tmp_path / "latin1.gbnf"
    latin1.write_bytes('root ::= "é"'.encode("latin-1"))
    with pytest.raises(SamplerError, match="not UTF-8"):
        LlamaGrammar.from_file(latin1)
    with pytest.raises(TypeError, match="path"):
        LlamaGrammar.from_file(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path"):
        LlamaGrammar.from_file(b"x.gbnf")  # type: ignore[arg-type]


def test_checking_is_fast() -> None:
    start = time.monotonic()
    for _ in range(20):
        LlamaGrammar(JSON_GBNF)
    assert time.monotonic() - start < 2


# --- with a real model -------------------------------------------------------------------

def _generate(model: Model, grammar: LlamaGrammar, seed: int | None) -> bytes:
    vocab = Vocab(model)
    ctx = Context(model, ContextParams(n_ctx=256))
    params = SamplingParams(temperature=0.0 if seed is None else 1.0, seed=seed,
                            grammar=grammar.grammar, grammar_root=grammar.root)
    chain = build_chain(params, vocab, ctx.n_ctx)
    tokens = list(generate_tokens(ctx, vocab, chain, vocab.tokenize("Once upon a time"),
                                  SequenceState(ctx), 64))
    assert vocab.is_eog(tokens[-1])  # the grammar was complete, so only end-of-text was allowed
    return vocab.detokenize([t for t in tokens if not vocab.is_eog(t)])


def test_the_grammar_constrains_generation(stories260k: Path) -> None:
    yes_no = LlamaGrammar('root ::= "yes" | "no"')
    pets = LlamaGrammar('sentence ::= "The " pet " sat."\npet ::= "cat" | "dog"', root="sentence")
    with Model(stories260k) as model:
        for seed in (None, 1, 2, 3):
            assert _generate(model, yes_no, seed) in (b"yes", b"no")
            assert _generate(model, pets, seed) in (b"The cat sat.", b"The dog sat.")


def test_named_tokens_are_checked_against_the_vocabulary_when_the_sampler_is_built(
        stories260k: Path) -> None:
    g = LlamaGrammar('root ::= <no-such-token> "x"')  # no vocabulary at hand: accepted
    with Model(stories260k) as model:
        vocab = Vocab(model)
        with pytest.raises(SamplerError, match="grammar"):
            Sampler.grammar(vocab, g.grammar, g.root)
        Sampler.grammar(vocab, 'root ::= <[1]> "x"').close()
