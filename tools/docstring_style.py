"""
Rewrite multi-line docstrings so the summary starts on the second line (ROS 2 pep257 style).

Usage: python tools/docstring_style.py FILE...
"""

import re
import sys

OPEN = re.compile(r'^(?P<indent>[ \t]*)(?P<prefix>[rRuU]?)"""(?P<rest>\S.*)$')


def rewrite(text):
    """Return ``text`` with every multi-line docstring's summary moved to its second line."""
    out = []
    lines = text.split('\n')
    for line in lines:
        m = OPEN.match(line)
        if m and '"""' not in m.group('rest') and not line.rstrip().endswith('= """'):
            indent = m.group('indent')
            out.append(f'{indent}{m.group("prefix")}"""')
            out.append(f'{indent}{m.group("rest")}')
        else:
            out.append(line)
    return '\n'.join(out)


if __name__ == '__main__':
    for path in sys.argv[1:]:
        with open(path, encoding='utf-8') as fh:
            original = fh.read()
        updated = rewrite(original)
        if updated != original:
            with open(path, 'w', encoding='utf-8') as fh:
                fh.write(updated)
