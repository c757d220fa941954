"""How far a definition shown to the model reaches (definitions.extent): a `{` inside
the body (a Python dict, a Lua table) or inside the header's parentheses (a default)
does not end it; a header's own `{` does, wherever the header's lines go. Pure."""

from __future__ import annotations

from kznllm_py.prompt.sources import definitions


def test_a_python_function_with_a_dict_in_its_body_is_shown_whole():
    lines = [
        "def parse_config(text: str) -> dict[str, str]:",
        '    """Parse key=value lines."""',
        "    out = {}",
        "    for line in text.splitlines():",
        '        k, _, v = line.partition("=")',
        "        out[k.strip()] = v.strip()",
        "    return out",
        "",
        "def other():",
    ]
    assert definitions.extent(lines) == 7  # was 3: cut at the dict's closing brace


def test_a_multi_line_dict_in_a_python_body_and_a_dict_default_do_not_end_it():
    body = ["def f(x={}):", "    d = {", '        "a": 1,', "    }", "    return d", "y = 2"]
    assert definitions.extent(body) == 5


def test_a_lua_function_with_a_table_in_its_body_reaches_its_end():
    lua = ["function M.f(a)", "  local t = {}", "  t[1] = a", "  return t", "end", "local x"]
    assert definitions.extent(lua) == 5


def test_a_module_level_dict_is_its_braces():
    assert definitions.extent(["CONFIG = {", '    "a": 1,', "}", "OTHER = 2"]) == 3


def test_a_header_brace_after_parameters_over_several_lines_opens_the_body():
    c = ["static int foo(int a,", "               int b) {", "  return a + b;", "}", "int g;"]
    assert definitions.extent(c) == 4
    js = ["function f(a, b = {}) {", "  return a", "}", "f()"]
    assert definitions.extent(js) == 3


def test_a_rust_where_clause_belongs_to_the_header():
    rust = ["fn f<T>(x: T) -> T", "where", "    T: Clone,", "{", "    x.clone()", "}", "fn g() {}"]
    assert definitions.extent(rust) == 6
