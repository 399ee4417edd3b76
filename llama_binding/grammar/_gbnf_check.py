"""The GBNF checker: a port of llama.cpp's GBNF parser (``src/llama-grammar.cpp``) that
reports llama.cpp's errors with a line and column, and refuses what would make llama.cpp
crash, hang or never match (see :mod:`llama_binding.grammar.gbnf`, which runs it before
llama.cpp's own parse)."""

from __future__ import annotations

import re

__all__ = ["TOKEN_PLACEHOLDER", "GbnfChecker", "GbnfError"]

# --- limits that keep llama.cpp's parser away from crashes and hangs ---------------------
# llama.cpp's parser recurses once per nested group (about 450 bytes of stack a level) and
# its left-recursion check once per leftmost rule reference (about 130 bytes a level); 8 MB
# of stack overflow at about 18,700 nested groups and 65,000 chained rules. The limits
# leave room for the 512 KiB stacks of secondary threads on macOS.
MAX_NESTING = 100
MAX_LEFT_DEPTH = 2048
# The left-recursion check does not remember the rules it has finished, so it walks every
# path of leftmost references: exponential for some grammars (about 17 ns a step).
MAX_LEFT_STEPS = 5_000_000
# Grammar elements that repetitions may add ({m,n} copies what it repeats).
MAX_EXPANDED = 1 << 22
# Parse stacks of llama.cpp's first expansion from the root: an ambiguous grammar can need
# exponentially many, and llama.cpp dedupes them in quadratic time.
MAX_INITIAL_STACKS = 20_000
_MAX_REPETITION = 2000  # llama.cpp's MAX_REPETITION_THRESHOLD

# grammar elements as the checker keeps them: a rule reference is its id (>= 0)
_CHAR, _ALT, _END = -1, -2, -3

_Q, _BS, _LB, _RB, _LT, _GT = (ord(c) for c in '"\\[]<>')
_PLAIN_STRING = re.compile(rb'[^"\\\x00]+')
_HEX = frozenset(b"0123456789abcdefABCDEF")
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_DIGITS = frozenset(b"0123456789")
_SIMPLE_ESCAPES = frozenset(b'trn\\"[]-')
_UTF8_LEN = (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4)
TOKEN_PLACEHOLDER = b"<[0]>"
_MAX_CODE_POINT = 0x10FFFF
_MAX_TOKEN_ID = 0x7FFFFFFF  # llama_token is int32
_ESCAPED = {ord(k): ord(v) for k, v in zip('trn\\"[]-', '\t\r\n\\"[]-')}


class GbnfError(Exception):
    """A grammar error at byte offset ``pos`` (None: no single place)."""

    def __init__(self, what: str, pos: int | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.pos = pos


class GbnfChecker:
    """A port of llama.cpp's ``llama_grammar_parser`` that only checks.

    It reads the UTF-8 bytes the way the C++ parser does (same rules, same order, same
    messages) and keeps, per rule, the element list llama.cpp would build, where only rule
    references matter: enough to find undefined rules, left recursion and the cost of
    llama.cpp's own checks.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.s = data + b"\0"  # the C string's terminator
        self.symbols: dict[str, int] = {}
        self.names: list[str] = []
        self.first_use: dict[int, int] = {}
        self.rules: dict[int, list[int]] = {}
        self.token_spans: list[tuple[int, int]] = []  # <name> token references
        self.expanded = 0
        self.depth = 0
        self.value = 0  # the code point of the last character read by char()

    # --- symbols -------------------------------------------------------------------------

    def symbol(self, name: str, pos: int) -> int:
        sid = self.symbols.get(name)
        if sid is None:
            sid = self.symbols[name] = len(self.names)
            self.names.append(name)
            self.first_use[sid] = pos
        return sid

    def generate(self, base: str) -> int:
        sid = len(self.names)
        name = f"{base}_{sid}"
        self.symbols[name] = sid
        self.names.append(name)
        return sid

    # --- lexical helpers (parse_space, parse_name, parse_int, parse_char, parse_token) ----

    def space(self, pos: int, newline_ok: bool) -> int:
        s = self.s
        while True:
            c = s[pos]
            if c in (0x20, 0x09) or (newline_ok and c in (0x0A, 0x0D)):
                pos += 1
            elif c == 0x23:  # '#': a comment to the end of the line
                while s[pos] not in (0, 0x0A, 0x0D):
                    pos += 1
            else:
                return pos

    def name(self, pos: int) -> int:
        end = pos
        while self.s[end] in _WORD:
            end += 1
        if end == pos:
            raise GbnfError("expecting name", pos)
        return end

    def integer(self, pos: int) -> int:
        end = pos
        while self.s[end] in _DIGITS:
            end += 1
        if end == pos:
            raise GbnfError("expecting integer", pos)
        return end

    def hex(self, pos: int, size: int) -> int:
        end = pos
        while end < pos + size and self.s[end] in _HEX:
            end += 1
        if end != pos + size:
            raise GbnfError(f"expecting {size} hex chars", pos)
        self.value = int(self.data[pos:end], 16)
        return end

    def char(self, pos: int) -> int:
        """The end of the character at ``pos``; its code point is left in ``self.value``."""
        s = self.s
        if s[pos] == _BS:
            c = s[pos + 1]
            if c == 0x78:  # x
                return self.hex(pos + 2, 2)
            if c == 0x75:  # u
                return self.hex(pos + 2, 4)
            if c == 0x55:  # U
                return self.hex(pos + 2, 8)
            if c in _SIMPLE_ESCAPES:
                self.value = _ESCAPED[c]
                return pos + 2
            raise GbnfError("unknown escape", pos)
        if s[pos]:
            end = pos + 1
            stop = pos + _UTF8_LEN[s[pos] >> 4]
            while end < stop and s[end]:
                end += 1
            self.value = ord(self.data[pos:end].decode("utf-8", "replace")[:1] or "\ufffd")
            return end
        raise GbnfError("unexpected end of input", pos)

    def beyond(self, pos: int, end: int, where: str) -> GbnfError:
        return GbnfError(f"{self.data[pos:end].decode('utf-8', 'replace')} {where} is beyond U+10FFFF, the "
                          "last Unicode code point, so no text can match it", pos)

    def nul(self, pos: int, where: str) -> GbnfError:
        return GbnfError(f"a NUL character (\\x00) {where} can never be matched "
                          "(llama.cpp reads NUL as the end of the text)", pos)

    def token(self, pos: int) -> int:
        s = self.s
        if s[pos] != _LT:
            raise GbnfError("expecting '<'", pos)
        start = pos
        pos += 1
        if s[pos] == _LB:  # <[id]>
            pos += 1
            end = self.integer(pos)
            if int(self.data[pos:end]) > 0xFFFFFFFF:
                raise GbnfError("parsed token id is too big", pos)
            if int(self.data[pos:end]) > _MAX_TOKEN_ID:
                raise GbnfError(f"token id {int(self.data[pos:end])} is out of range: token ids are "
                                 f"below {_MAX_TOKEN_ID + 1} (int32)", pos)
            if s[end] != _RB:
                raise GbnfError("expecting ']'", end)
            if s[end + 1] != _GT:
                raise GbnfError("expecting '>'", end + 1)
            return end + 2
        while s[pos] and s[pos] != _GT:  # <name>: a token of the model's vocabulary
            pos += 1
        if s[pos] != _GT:
            raise GbnfError("expecting '>'", pos)
        self.token_spans.append((start, pos + 1))
        return pos + 1

    # --- the grammar (parse_sequence, parse_alternates, parse_rule, parse) ---------------

    def sequence(self, pos: int, rule_name: str, rule: list[int], nested: bool) -> int:
        s = self.s
        last = len(rule)  # where the last item's elements start in ``rule``
        n_prev = 1  # the rules that repeating the last item copies
        while s[pos]:
            c = s[pos]
            if c in (0x2A, 0x2B, 0x3F, 0x7B):  # * + ? {m,n}: a repetition of the last item
                at = pos
                pos, lo, hi = self.repetition(pos, nested)
                n_prev = self.repeat(rule_name, rule, last, n_prev, lo, hi, at)
            elif c == 0x28:  # ( a group )
                last = len(rule)
                pos, n_prev = self.group(pos, rule_name, rule, nested)
            else:
                start = len(rule)
                end = self.item(pos, rule, nested)
                if end is None:
                    break
                pos, last, n_prev = end, start, 1
        return pos

    def item(self, pos: int, rule: list[int], nested: bool) -> int | None:
        """A literal, character class, token, rule reference or ``.`` at ``pos``, its elements
        added to ``rule``: the position after it and the space that follows; None (and
        ``rule`` unchanged) where none starts."""
        c = self.s[pos]
        if c == _Q:  # a literal string
            pos = self.literal(pos + 1, rule)
        elif c == _LB:  # a character class
            pos = self.char_class(pos + 1, rule)
        elif c in (_LT, 0x21):  # a token, or ! and a token: any other token
            pos = self.token(pos + 1 if c == 0x21 else pos)
            rule.append(_CHAR)
        elif c in _WORD:  # a rule reference
            end = self.name(pos)
            rule.append(self.symbol(self.data[pos:end].decode(), pos))
            pos = end
        elif c == 0x2E:  # . any character
            rule.append(_CHAR)
            pos += 1
        else:
            return None
        return self.space(pos, nested)

    def literal(self, pos: int, rule: list[int]) -> int:
        """The characters of a string literal from ``pos`` (after its opening quote) to
        ``rule``; the position after its closing quote."""
        s = self.s
        while s[pos] != _Q:
            plain = _PLAIN_STRING.match(s, pos)
            if plain is not None:
                rule.extend([_CHAR] * len(plain.group().decode("utf-8", "replace")))
                pos = plain.end()
                continue
            if not s[pos]:
                raise GbnfError("unexpected end of input", pos)
            at = pos
            pos = self.char(pos)
            if self.value == 0:
                raise self.nul(at, "in a string literal")
            if self.value > _MAX_CODE_POINT:
                raise self.beyond(at, pos, "in a string literal")
            rule.append(_CHAR)
        return pos + 1

    def char_class(self, pos: int, rule: list[int]) -> int:
        """The characters and ranges of a character class from ``pos`` (after its ``[``) to
        ``rule``; the position after its ``]``."""
        s = self.s
        negated = s[pos] == 0x5E  # ^
        if negated:
            pos += 1
        while s[pos] != _RB:
            if not s[pos]:
                raise GbnfError("unexpected end of input", pos)
            at = pos
            pos = self.char(pos)
            lo = self.value
            rule.append(_CHAR)
            if s[pos] == 0x2D and s[pos + 1] != _RB:  # a range a-z
                if not s[pos + 1]:
                    raise GbnfError("unexpected end of input", pos + 1)
                pos = self.char(pos + 1)
                rule.append(_CHAR)
                if self.value < lo:
                    text = self.data[at:pos].decode("utf-8", "replace")
                    raise GbnfError(f"reversed character range {text} (U+{lo:04X} to "
                                     f"U+{self.value:04X}): its end comes before its start, so it "
                                     "matches nothing", at)
            elif lo == 0 and not negated:
                raise self.nul(at, "in a character class")
            # beyond U+10FFFF is fine in [^...]: it keeps out what invalid UTF-8 decodes to
            if lo > _MAX_CODE_POINT and not negated:
                raise self.beyond(at, pos, "in a character class")
        return pos + 1

    def group(self, pos: int, rule_name: str, rule: list[int], nested: bool) -> tuple[int, int]:
        """A parenthesized group at ``pos``, made a rule of its own that ``rule`` references:
        the position after its ``)`` and the space that follows, and the number of rules it made."""
        s = self.s
        if self.depth >= MAX_NESTING:
            raise GbnfError(f"groups are nested more than {MAX_NESTING} deep", pos)
        pos = self.space(pos + 1, True)
        before = len(self.names)
        sub = self.generate(rule_name)
        self.depth += 1
        pos = self.alternates(pos, rule_name, sub, True)
        self.depth -= 1
        n_rules = max(1, len(self.names) - before)
        rule.append(sub)
        if s[pos] != 0x29:
            raise GbnfError("expecting ')'", pos)
        return self.space(pos + 1, nested), n_rules

    def repetition(self, pos: int, nested: bool) -> tuple[int, int, int | None]:
        """The operator ``*``, ``+``, ``?`` or ``{m}``, ``{m,}``, ``{m,n}`` at ``pos``: the
        position after it and the space that follows, its minimum and its maximum (None: no
        maximum)."""
        s = self.s
        c = s[pos]
        if c != 0x7B:  # * + ?
            return self.space(pos + 1, nested), 1 if c == 0x2B else 0, 1 if c == 0x3F else None
        brace = pos
        pos = self.space(pos + 1, nested)
        if s[pos] not in _DIGITS:
            raise GbnfError("expecting an int", pos)
        end = self.integer(pos)
        lo = int(self.data[pos:end])
        pos = self.space(end, nested)
        hi: int | None = None
        if s[pos] == 0x7D:
            hi = lo
            pos = self.space(pos + 1, nested)
        elif s[pos] == 0x2C:
            pos = self.space(pos + 1, nested)
            if s[pos] in _DIGITS:
                end = self.integer(pos)
                hi = int(self.data[pos:end])
                pos = self.space(end, nested)
            if s[pos] != 0x7D:
                raise GbnfError("expecting '}'", pos)
            pos = self.space(pos + 1, nested)
        else:
            raise GbnfError("expecting ','", pos)
        if lo >= 1 << 64 or (hi is not None and hi >= 1 << 64):
            raise GbnfError("repetition count out of range", brace)
        if lo > _MAX_REPETITION:
            raise GbnfError("number of repetitions exceeds sane defaults, "
                             "please reduce the number of repetitions", brace)
        if hi is not None and hi > _MAX_REPETITION:
            hi = None
        if hi is not None and hi < lo:  # llama.cpp would loop forever
            raise GbnfError(f"repetition maximum {hi} is below its minimum {lo}", brace)
        return pos, lo, hi

    def repeat(self, rule_name: str, rule: list[int], last: int, n_prev: int, lo: int, hi: int | None,
               at: int) -> int:
        """Repeat the last item of ``rule`` (its elements from ``last`` on) ``lo`` to ``hi``
        times (None: no maximum) as llama.cpp's ``handle_repetitions`` does, with new rules
        for the optional copies; the rules that repeating the result would copy."""
        if last == len(rule):
            raise GbnfError("expecting preceding item to */+/?/{", at)
        prev = rule[last:]
        total = hi if hi is not None and hi > 0 else (lo if lo > 0 else 1)
        if n_prev * total > _MAX_REPETITION:
            raise GbnfError(
                "number of rules that are going to be repeated multiplied by the new repetition "
                "exceeds sane defaults, please reduce the number of repetitions or rule complexity")
        n_opt = 1 if hi is None else hi - lo
        self.expanded += len(prev) * max(lo - 1, 0) + n_opt * (len(prev) + 3)
        if self.expanded > MAX_EXPANDED:
            raise GbnfError(f"repetitions expand the grammar beyond {MAX_EXPANDED} elements", at)
        if lo == 0:
            del rule[last:]
        else:
            rule.extend(prev * (lo - 1))
        last_rec = 0
        for i in range(n_opt):
            rec_id = self.generate(rule_name)
            rec = list(prev)
            if hi is None:
                rec.append(rec_id)
            elif i > 0:
                rec.append(last_rec)
            rec += (_ALT, _END)
            self.rules[rec_id] = rec
            last_rec = rec_id
        if n_opt > 0:
            rule.append(last_rec)
        return n_prev * total

    def alternates(self, pos: int, rule_name: str, rule_id: int, nested: bool) -> int:
        rule: list[int] = []
        pos = self.sequence(pos, rule_name, rule, nested)
        while self.s[pos] == 0x7C:  # |
            rule.append(_ALT)
            pos = self.space(pos + 1, True)
            pos = self.sequence(pos, rule_name, rule, nested)
        rule.append(_END)
        self.rules[rule_id] = rule
        return pos

    def rule(self, pos: int) -> int:
        s = self.s
        end = self.name(pos)
        name = self.data[pos:end].decode()
        rule_id = self.symbol(name, pos)
        pos = self.space(end, False)
        if s[pos : pos + 3] != b"::=":
            raise GbnfError("expecting ::=", pos)
        pos = self.space(pos + 3, True)
        pos = self.alternates(pos, name, rule_id, False)
        if s[pos] == 0x0D:
            pos += 2 if s[pos + 1] == 0x0A else 1
        elif s[pos] == 0x0A:
            pos += 1
        elif s[pos]:
            raise GbnfError("expecting newline or end", pos)
        return self.space(pos, True)

    def parse(self, root: str) -> None:
        pos = self.space(0, True)
        while self.s[pos]:
            pos = self.rule(pos)
        if not self.rules:
            raise GbnfError("the grammar defines no rules")
        size = max(self.rules) + 1
        for rule_id in range(size):
            for ref in [rule_id, *self.rules.get(rule_id, ())]:
                if ref >= 0 and ref not in self.rules:
                    raise GbnfError(f"Undefined rule identifier '{self.names[ref]}'",
                                     self.first_use.get(ref))
        if root not in self.symbols:
            raise GbnfError(f"grammar does not contain a '{root}' symbol")
        self.analyse(self.symbols[root])

    # --- what llama.cpp does with the parsed rules, and what it would cost ----------------

    def alternatives(self, rule: list[int]) -> list[list[int]]:
        alts: list[list[int]] = [[]]
        for e in rule:
            if e == _ALT:
                alts.append([])
            elif e != _END:
                alts[-1].append(e)
        return alts

    def analyse(self, root: int) -> None:
        n = len(self.names)
        alts = {rid: self.alternatives(rule) for rid, rule in self.rules.items()}
        self.native_left_recursion(n, alts)
        self.hidden_left_recursion(n, alts, root)
        self.initial_stacks(root)

    def native_left_recursion(self, n: int, alts: dict[int, list[list[int]]]) -> None:
        """llama.cpp's check: a rule may be empty only through an empty alternative of its
        own; it recurses into leftmost references and does not remember finished rules."""
        empty = [False] * n
        for rid, rule_alts in alts.items():
            empty[rid] = any(not alt for alt in rule_alts)
        children: list[list[int]] = [[] for _ in range(n)]
        for rid, rule_alts in alts.items():
            for alt in rule_alts:
                for e in alt:
                    if e < 0:
                        break
                    children[rid].append(e)
                    if not empty[e]:
                        break
        state = [0] * n  # 0 new, 1 on the path, 2 done
        depth = [0] * n
        paths = [0] * n
        cap = MAX_LEFT_STEPS + 1
        for start in range(n):
            if state[start]:
                continue
            stack = [(start, 0)]
            state[start] = 1
            while stack:
                node, i = stack[-1]
                kids = children[node]
                if i < len(kids):
                    stack[-1] = (node, i + 1)
                    kid = kids[i]
                    if state[kid] == 1:
                        path = [nd for nd, _ in stack]
                        raise GbnfError("unsupported grammar, left recursion detected: "
                                         + self.cycle_text([*path[path.index(kid):], kid]))
                    if state[kid] == 0:
                        state[kid] = 1
                        stack.append((kid, 0))
                else:
                    stack.pop()
                    state[node] = 2
                    depth[node] = 1 + max((depth[k] for k in kids), default=0)
                    paths[node] = min(cap, 1 + sum(paths[k] for k in kids))
        # llama.cpp starts a walk at each rule (in id order) that no walk has reached yet
        steps = 0
        seen = [False] * n
        for start in range(n):
            if seen[start]:
                continue
            steps += paths[start]
            todo = [start]
            seen[start] = True
            while todo:
                for kid in children[todo.pop()]:
                    if not seen[kid]:
                        seen[kid] = True
                        todo.append(kid)
        deepest = max(depth, default=0)
        if deepest > MAX_LEFT_DEPTH:
            raise GbnfError(f"rules reference each other in leftmost position {deepest} deep "
                             f"(the limit is {MAX_LEFT_DEPTH})")
        if steps > MAX_LEFT_STEPS:
            raise GbnfError("the grammar is too ambiguous: llama.cpp's left-recursion check would take "
                             f"more than {MAX_LEFT_STEPS} steps")

    def hidden_left_recursion(self, n: int, alts: dict[int, list[list[int]]], root: int) -> None:
        """Left recursion through rules that can match nothing only by way of other rules
        (``a ::= ws a "x"`` with ``ws ::= [ ]*``) passes llama.cpp's check, but when the
        recursive reference has something after it, llama.cpp's stack expansion grows
        without end until memory runs out (``std::bad_alloc`` aborts the process)."""
        # nullable rules, the proper (transitive) way
        nullable = [False] * n
        waiting: list[int] = []  # per alternative: references not yet known to be nullable
        owner: list[int] = []
        users: list[list[int]] = [[] for _ in range(n)]
        todo: list[int] = []
        for rid, rule_alts in alts.items():
            for alt in rule_alts:
                if any(e < 0 for e in alt):
                    continue
                k = len(waiting)
                waiting.append(len(alt))
                owner.append(rid)
                for e in alt:
                    users[e].append(k)
                if not alt and not nullable[rid]:
                    nullable[rid] = True
                    todo.append(rid)
        while todo:
            for k in users[todo.pop()]:
                waiting[k] -= 1
                if waiting[k] == 0 and not nullable[owner[k]]:
                    nullable[owner[k]] = True
                    todo.append(owner[k])
        # leftmost references; "grows": the reference has something after it
        edges: list[list[tuple[int, bool]]] = [[] for _ in range(n)]
        for rid, rule_alts in alts.items():
            for alt in rule_alts:
                for i, e in enumerate(alt):
                    if e < 0:
                        break
                    edges[rid].append((e, i + 1 < len(alt)))
                    if not nullable[e]:
                        break
        reach = {root}
        todo = [root]
        while todo:
            for e in self.rules[todo.pop()]:
                if e >= 0 and e not in reach:
                    reach.add(e)
                    todo.append(e)
        comp = _components(n, [[v for v, _ in out] for out in edges])
        for u in sorted(reach):
            for v, grows in edges[u]:
                if grows and comp[u] == comp[v]:
                    back = _path(v, u, edges, comp)
                    raise GbnfError("unsupported grammar, left recursion through rules that can match "
                                     "nothing: " + self.cycle_text([u, *back]))

    def initial_stacks(self, root: int) -> None:
        """Run llama.cpp's first stack expansion (``llama_grammar_advance_stack`` from the
        root's alternatives) with a limit: an ambiguous grammar can need exponentially many
        parse stacks, and llama.cpp dedupes them in quadratic time."""
        rules = self.rules
        starts: dict[int, list[int]] = {}
        for rid, rule in rules.items():
            starts[rid] = [0, *(i + 1 for i, e in enumerate(rule) if e == _ALT)]
        processed = 0
        for a in starts[root]:
            first: tuple[tuple[int, int], ...] = () if rules[root][a] in (_ALT, _END) else ((root, a),)
            todo = [first]
            seen: set[tuple[tuple[int, int], ...]] = set()
            while todo:
                cur = todo.pop()
                if cur in seen:
                    continue
                seen.add(cur)
                processed += 1
                if processed > MAX_INITIAL_STACKS:
                    raise GbnfError("the grammar is too ambiguous: it starts with more than "
                                     f"{MAX_INITIAL_STACKS} parse stacks")
                if not cur:
                    continue
                rid, i = cur[-1]
                e = rules[rid][i]
                if e < 0:
                    continue
                base = cur[:-1] if rules[rid][i + 1] in (_ALT, _END) else (*cur[:-1], (rid, i + 1))
                for s in starts[e]:
                    todo.append(base if rules[e][s] in (_ALT, _END) else (*base, (e, s)))

    def cycle_text(self, cycle: list[int]) -> str:
        return " -> ".join(self.display(c) for c in cycle)

    def display(self, sid: int) -> str:
        name = self.names[sid]
        base, sep, num = name.rpartition("_")
        if sep and num.isdigit() and base in self.symbols:
            return f"(a group in {base})"
        return name

    # --- messages --------------------------------------------------------------------------

    def where(self, pos: int | None) -> str:
        if pos is None:
            return ""
        before = self.data[:pos]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        rest = self.data[pos:].split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
        if not rest:
            near = " (end of line)" if pos < len(self.data) else " (end of input)"
        else:
            near = f": {rest[:40] + ('...' if len(rest) > 40 else '')!r}"
        return f" at line {line}, column {column}{near}"


def _components(n: int, out: list[list[int]]) -> list[int]:
    """Strongly connected components (iterative Tarjan): the component of each node."""
    index = [-1] * n
    low = [0] * n
    comp = [-1] * n
    on_stack = [False] * n
    stack: list[int] = []
    counter = 0
    n_comp = 0
    for start in range(n):
        if index[start] != -1:
            continue
        work = [(start, 0)]
        while work:
            node, i = work[-1]
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack[node] = True
            if i < len(out[node]):
                work[-1] = (node, i + 1)
                nxt = out[node][i]
                if index[nxt] == -1:
                    work.append((nxt, 0))
                elif on_stack[nxt]:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                while True:
                    top = stack.pop()
                    on_stack[top] = False
                    comp[top] = n_comp
                    if top == node:
                        break
                n_comp += 1
    return comp


def _path(src: int, dst: int, edges: list[list[tuple[int, bool]]], comp: list[int]) -> list[int]:
    """A shortest path src -> ... -> dst inside one strongly connected component."""
    prev = {src: src}
    todo = [src]
    while todo and dst not in prev:
        nxt = []
        for u in todo:
            for v, _ in edges[u]:
                if v not in prev and comp[v] == comp[src]:
                    prev[v] = u
                    nxt.append(v)
        todo = nxt
    path = [dst]
    while path[-1] != src:
        path.append(prev[path[-1]])
    return path[::-1]
