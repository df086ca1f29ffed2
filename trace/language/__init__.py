"""The language: source text to a checked-position AST (grammar, parser, AST nodes, diagnostics)."""
