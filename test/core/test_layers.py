"""
The package's layers point one way (from ``model`` up to ``nodes`` and ``cli``).

``model`` <- ``identify``, ``emg``, ``files``, ``live``, ``session``, ``templates`` (one
layer: they may use each other) <- ``settings`` <- ``nodes``, ``cli``.

Each module below ``settings`` is imported in a fresh interpreter, and the modules of
``diffmsm_ros`` it loaded (directly or through others) must all be of its layer or below;
its source is also read, for imports hidden inside functions.
"""

import ast
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, 'diffmsm_ros')
MIDDLE = {'identify', 'emg', 'files', 'live', 'session', 'templates'}
SHARED = {'jax_setup', 'traced', 'bad_input', ''}    # modules of no layer, usable by every one
# what the modules of each layer may import from the package
ALLOWED = dict({'model': {'model'} | SHARED}, **{name: MIDDLE | {'model'} | SHARED
                                                 for name in MIDDLE})


def layer(module):
    """``diffmsm_ros.identify.problem`` -> ``identify``."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else ''


def lower_modules():
    for folder in sorted(ALLOWED):
        for name in sorted(os.listdir(os.path.join(PACKAGE, folder))):
            if name.endswith('.py'):
                stem = name[:-3]
                yield f'diffmsm_ros.{folder}' + ('' if stem == '__init__' else f'.{stem}')


def source_imports(module):
    """Package modules named by the import statements of ``module``'s source (anywhere)."""
    path = os.path.join(ROOT, *module.split('.'))
    path = os.path.join(path, '__init__.py') if os.path.isdir(path) else path + '.py'
    with open(path, encoding='utf-8') as fh:
        tree = ast.parse(fh.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('diffmsm_ros'):
            if node.module == 'diffmsm_ros':
                yield from (f'diffmsm_ros.{alias.name}' for alias in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith('diffmsm_ros'))


def check(module, imported):
    return sorted({m for m in imported if layer(m) not in ALLOWED[layer(module)]})


@pytest.mark.parametrize('module', list(lower_modules()))
def test_lower_layers_do_not_import_higher_ones_in_their_source(module):
    assert check(module, source_imports(module)) == []


def test_importing_the_lower_layers_loads_nothing_above_them():
    modules = list(lower_modules())
    code = ('import sys, json\n'
            'out = {}\n'
            f'for m in {modules!r}:\n'
            '    before = set(sys.modules)\n'
            '    __import__(m)\n'
            '    out[m] = sorted(k for k in sys.modules if k.startswith("diffmsm_ros"))\n'
            '    for k in [k for k in sys.modules if k.startswith("diffmsm_ros")]:\n'
            '        del sys.modules[k]\n'
            'print(json.dumps(out))\n')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = {m: check(m, names) for m, names in loaded.items() if check(m, names)}
    assert wrong == {}
    # and the check can fail: settings and the ROS shell are above every one of them
    assert check('diffmsm_ros.identify.offline', ['diffmsm_ros.settings']) != []
