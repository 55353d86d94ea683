"""The README's Python example runs as written and prints what it promises."""

import contextlib
import io
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), 'README.md')


@pytest.mark.slow
def test_readme_python_example_finds_every_atom():
    text = open(README, encoding='utf-8').read()
    code = re.search(r'```python\n(.*?)```', text, re.S).group(1)
    assert 'Problem(' in code and '.solve(problem)' in code
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, README, 'exec'), {})
    # "F1 = 1: every atom found", as the comment in the README says.
    assert 'f1=1.000' in printed.getvalue()
    assert '48 of 48 reference / 48 reconstructed' in printed.getvalue()
