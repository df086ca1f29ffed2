"""The type model and its sources: model (the value types), btf (kernel BTF), kernel (BTF types as values), cdecl (in-script C declarations)."""
