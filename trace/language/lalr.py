"""lark's LALR(1) parser and contextual lexer, run from tables, without lark.

Importing lark and loading its cached parser took ~65 ms of a never-seen
one-liner's start (lark imports typing, logging, dataclasses, inspect, pickle
and more); the parse itself takes a millisecond. `tables(parser)` reads, once,
what lark computed for pytrace's grammar: the parse table, each rule's shape,
and each parser state's lexer (its terminal alternations, which keyword a NAME
becomes, which tokens are ignored or may hold newlines), as plain data that
`marshal` stores. `Parser.parse` then does what lark's LALR parser does with
them: the same tokens, the same reductions in the same order, the same calls to
the AST builder's methods (lark's inline transformer: `?rule` passes a single
child through, `_rule`s are spliced into their parent, every token is kept).

Anything it does not reproduce exactly raises `Unsupported`: a token no state
accepts, a lexer callback (the unterminated string and comment terminals), the
end of the input where the grammar cannot end. The caller then parses with lark
itself, which gives the error its exact words; the tables are lark's own, so a
program this parser accepts is a program lark accepts.
"""
from __future__ import annotations

FORMAT = 1      # of the tables: bumped whenever their layout changes


class Unsupported(Exception):
    """The input needs lark itself (usually: it has an error to report)."""


class Token(str):
    """lark's Token, as the AST builder reads it: the text, `type` and position."""

    __slots__ = ("type", "value", "start_pos", "line", "column", "end_line", "end_column", "end_pos")

    def __new__(cls, type_, value, start_pos, line, column):
        self = super().__new__(cls, value)
        self.type, self.value, self.start_pos, self.line, self.column = type_, value, start_pos, line, column
        return self


class _Spliced:
    """A `_rule`'s children, on their way into the parent rule (lark's Tree)."""

    __slots__ = ("children",)

    def __init__(self, children):
        self.children = children


# --------------------------------------------------------------- from lark's parser

def tables(parser) -> dict:
    """The data `Parser` runs on, read from a `lark.Lark` LALR parser with the
    contextual lexer. Raises Unsupported for a grammar or build it cannot mirror."""
    frontend = parser.parser
    table = frontend.parser.parser.parse_table
    contextual = frontend.lexer
    rules, rule_index = [], {}
    states = {}
    for state, actions in table.states.items():
        row = {}
        for symbol, (action, arg) in actions.items():
            if str(action) == "Shift":
                row[str(symbol)] = arg
            else:
                if id(arg) not in rule_index:
                    rule_index[id(arg)] = len(rules)
                    rules.append(_rule(arg, parser.options))
                row[str(symbol)] = -1 - rule_index[id(arg)]
        states[state] = row
    lexers, lexer_of_state, seen = [], {}, {}
    for state, lexer in contextual.lexers.items():
        if id(lexer) not in seen:
            seen[id(lexer)] = len(lexers)
            lexers.append(_lexer(lexer))
        lexer_of_state[state] = seen[id(lexer)]
    (start,) = table.start_states.values()
    (end,) = table.end_states.values()
    return {"format": FORMAT, "states": states, "rules": rules, "lexers": lexers,
            "lexer_of_state": lexer_of_state, "start": start, "end": end}


def _rule(rule, options) -> tuple:
    """(origin, length, callback name, pass a single child through, which children
    are spliced): lark's ParseTreeBuilder for this rule, with keep_all_tokens."""
    if not (options.keep_all_tokens or rule.options.keep_all_tokens) or options.maybe_placeholders \
            or options.parser != "lalr":
        raise Unsupported("a parse-tree option this parser does not mirror")
    name = str(rule.alias or rule.options.template_source or rule.origin.name)
    expand1 = bool(rule.options.expand1 and not rule.alias)
    spliced = tuple(i for i, sym in enumerate(rule.expansion)
                    if not sym.is_term and str(sym.name).startswith("_"))
    return str(rule.origin.name), len(rule.expansion), name, expand1, spliced


def _lexer(lexer) -> tuple:
    """(patterns, keywords by terminal, ignored types, types that may hold a newline)
    of one state's lark BasicLexer, its scanner built."""
    scanner = lexer.scanner
    patterns = [(m.pattern, scanner.g_regex_flags) for m in scanner._mres]
    keywords = {}
    for type_, callback in lexer.callback.items():
        inner = getattr(callback, "scanner", None)
        if type(callback).__name__ != "UnlessCallback" or inner is None:
            keywords[type_] = None          # a user callback: lark must run it
            continue
        words = {}
        for term in inner.terminals:
            if term.pattern.type != "str" or term.pattern.flags:
                raise Unsupported(f"keyword terminal {term.name} is not a plain string")
            words[term.pattern.value] = term.name
        keywords[type_] = words
    return patterns, keywords, sorted(lexer.ignore_types), sorted(lexer.newline_types)


# --------------------------------------------------------------- the parser

class Parser:
    """Parses with `tables`; `compile(pattern, flags)` compiles the lexers'
    alternations (re.compile, or a PatternCache)."""

    def __init__(self, tables: dict, compile):
        if tables.get("format") != FORMAT:
            raise Unsupported("tables of another format")
        self.states = tables["states"]
        self.rules = tables["rules"]
        # rules whose one child is their value (lark's `?rule` with one child, most of
        # an expression's precedence levels): a reduction only changes the state
        self._unit = frozenset(i for i, (_o, size, _n, expand1, spliced) in enumerate(self.rules)
                               if size == 1 and expand1 and not spliced)
        self.lexer_of_state = tables["lexer_of_state"]
        self.start, self.end = tables["start"], tables["end"]
        self._specs = tables["lexers"]
        self._compile = compile
        self._lexers = {}

    def _lexer(self, index: int):
        lexer = self._lexers.get(index)
        if lexer is None:
            patterns, keywords, ignored, newlines = self._specs[index]
            lexer = ([self._compile(p, f).match for p, f in patterns], keywords,
                     frozenset(ignored), frozenset(newlines))
            self._lexers[index] = lexer
        return lexer

    def parse(self, text: str, builder):
        stack, values = [self.start], []
        methods = {}
        pos, line, line_start, n = 0, 1, 0, len(text)
        last = None
        while True:
            # lark's contextual lexer: the lexer of the state the parser is in
            token = None
            matchers, keywords, ignored, newlines = self._lexer(self.lexer_of_state[stack[-1]])
            while pos < n:
                for match in matchers:
                    m = match(text, pos)
                    if m:
                        break
                else:
                    raise Unsupported("no terminal matches here")
                value, matched = m.group(0), m.lastgroup
                type_ = matched
                if matched in keywords:
                    words = keywords[matched]
                    if words is None:
                        raise Unsupported(f"the lexer callback of {matched}")
                    type_ = words.get(value, matched)
                start, start_line, column = pos, line, pos - line_start + 1
                if matched in newlines:
                    count = value.count("\n")
                    if count:
                        line += count
                        line_start = pos + value.rindex("\n") + 1
                pos += len(value)
                if matched in ignored:
                    continue
                token = Token(type_, value, start, start_line, column)
                token.end_line, token.end_column, token.end_pos = line, pos - line_start + 1, pos
                break
            if token is None:
                return self._end(stack, values, builder, methods, last)
            self._feed(token, stack, values, builder, methods)
            last = token

    def _feed(self, token, stack, values, builder, methods):
        states, unit, rules = self.states, self._unit, self.rules
        while True:
            action = states[stack[-1]].get(token.type)
            if action is None:
                raise Unsupported("a syntax error")
            if action >= 0:
                stack.append(action)
                values.append(token)
                return
            if -1 - action in unit:
                stack[-1] = states[stack[-2]][rules[-1 - action][0]]
            else:
                self._reduce(-1 - action, stack, values, builder, methods)

    def _end(self, stack, values, builder, methods, last):
        states, end = self.states, self.end
        while True:
            action = states[stack[-1]].get("$END")
            if action is None or action >= 0:
                raise Unsupported("the input ends where the grammar cannot")
            self._reduce(-1 - action, stack, values, builder, methods)
            if stack[-1] == end:
                return values[-1]

    def _reduce(self, index, stack, values, builder, methods):
        origin, size, name, expand1, spliced = self.rules[index]
        if size:
            children = values[-size:]
            del stack[-size:]
            del values[-size:]
        else:
            children = []
        if spliced:
            filtered = []
            for i, child in enumerate(children):
                if i in spliced:
                    filtered += child.children
                else:
                    filtered.append(child)
            children = filtered
        if expand1 and len(children) == 1:
            value = children[0]
        else:
            method = methods.get(name)
            if method is None:
                method = methods[name] = getattr(builder, name, None) or _splicer(name)
            value = method(children)
        goto = self.states[stack[-1]][origin]
        stack.append(goto)
        values.append(value)


def _splicer(name):
    if not name.startswith("_"):
        raise Unsupported(f"rule {name} has no method in the AST builder")
    return _Spliced
