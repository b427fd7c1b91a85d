"""
``jit`` that traces once per machine: compiled functions whose tracing is kept on disk.

The persistent compilation cache (``jax_setup``) skips XLA's compile, but every process
still traces and lowers the Python code to find the cache key: for the identifier of the
elbow that is about 15 s of a 18 s start-up, paid again by every node start, every
``diffmsm identify`` and every test process.  A function wrapped here is exported with
``jax.export`` the first time it meets a structure of arguments (pytree structure, shapes,
dtypes) and the exported program is written to ``<cache>/traced``; later processes read it
back and compile it (usually from the compilation cache), without tracing.

The file name is a hash of everything that decides the traced program: the package's
source, the JAX version and float width, the function's name, what its closure holds
(``static``), and the structure of its arguments with the static data inside it.  Changing
any of them makes a new entry.  A function that cannot be exported, or a file that cannot
be read, falls back to ``jax.jit`` (one warning per function): never a wrong program.

Positional and keyword arguments are pytrees of arrays (or Python scalars); there are no
static arguments: put what the function's closure holds into ``static``.
"""

import functools
import hashlib
import os
import pickle
import tempfile
import threading
import warnings

import jax

SUFFIX = '.jaxexport'


# the layers above the model's (test/core/test_layers.py): no traced function can call
# into them, so editing them keeps the traced programs
ABOVE = ('nodes', 'cli', 'settings.py')


@functools.lru_cache(maxsize=1)
def source_digest():
    """Hash of the package's Python source below ``ABOVE`` (a change makes new entries)."""
    root = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        if folder == root:
            dirs[:] = [d for d in dirs if d not in ABOVE]
            files = [f for f in files if f not in ABOVE]
        dirs.sort()
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, 'rb') as fh:
                    digest.update(fh.read())
    return digest.hexdigest()


def folder():
    """Where exported programs are kept ('' when the compilation cache is off)."""
    from diffmsm_ros import jax_setup
    base = jax_setup.cache_dir()
    return os.path.join(base, 'traced') if base else ''


def _spec(leaf):
    aval = jax.typeof(leaf)
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type)


_SCALARS = (bool, int, float, complex)


def _signature(leaf):
    """
    Return what of a leaf decides its traced program, cheaply (every call needs it).

    A Python scalar's type gives its (weakly typed) aval; an array's shape, dtype and weak
    type give its own.  Building ``_spec`` on every call cost about 15 us per leaf.
    """
    if type(leaf) in _SCALARS:
        return type(leaf)
    return leaf.shape, leaf.dtype, getattr(leaf, 'weak_type', False)


class Traced:
    """A jitted function with its traced programs kept on disk (see the module text)."""

    def __init__(self, fn, name, static):
        self.fn = fn
        self.name = name
        self.static = pickle.dumps(static)
        self._plain = jax.jit(fn)
        self._calls = {}          # (treedef, specs) -> (compiled call, output treedef)
        self._lock = threading.Lock()
        self._warned = False

    def __call__(self, *args, **kwargs):
        leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
        key = (tree, tuple(map(_signature, leaves)))
        entry = self._calls.get(key)
        if entry is None:
            with self._lock:
                entry = self._calls.get(key) or self._load_or_export(
                    tree, tuple(map(_spec, leaves)))
                self._calls[key] = entry
        call, out_tree = entry
        if call is None:
            return self._plain(*args, **kwargs)
        return jax.tree_util.tree_unflatten(out_tree, call(*leaves))

    def _cache_size(self):
        """Compiled programs held in this process (as ``jax.jit``'s own method counts)."""
        return self._plain._cache_size() + sum(
            call._cache_size() for call, _ in self._calls.values() if call is not None)

    # ------------------------------------------------------------------ one new structure
    def _path(self, tree, specs):
        base = folder()
        if not base:
            return None
        digest = hashlib.sha256()
        for part in (source_digest(), jax.__version__, str(jax.config.jax_enable_x64),
                     jax.default_backend(), self.name):
            digest.update(part.encode() + b'\0')
        digest.update(self.static)
        digest.update(pickle.dumps(tree))
        digest.update(repr([(s.shape, str(s.dtype), s.weak_type) for s in specs]).encode())
        return os.path.join(base, digest.hexdigest() + SUFFIX)

    def _load_or_export(self, tree, specs):
        try:
            path = self._path(tree, specs)
        except Exception as exc:    # an argument whose static data cannot be pickled
            return self._fallback(exc)
        if path is not None and os.path.exists(path):
            try:
                with open(path, 'rb') as fh:
                    out_tree, data = pickle.load(fh)
                return jax.jit(jax.export.deserialize(data).call), out_tree
            except Exception:       # unreadable or from an incompatible writer: export again
                pass
        try:
            exported, out_tree = self._export(tree, specs)
        except Exception as exc:
            return self._fallback(exc)
        if path is not None:
            _write_atomic(path, pickle.dumps((out_tree, exported.serialize())))
        return jax.jit(exported.call), out_tree

    def _export(self, tree, specs):
        out_trees = []

        def flat(*leaves):
            args, kwargs = jax.tree_util.tree_unflatten(tree, leaves)
            out_leaves, out_tree = jax.tree_util.tree_flatten(self.fn(*args, **kwargs))
            out_trees.append(out_tree)
            return out_leaves

        exported = jax.export.export(jax.jit(flat))(*specs)
        return exported, out_trees[-1]

    def _fallback(self, exc):
        if not self._warned:
            self._warned = True
            warnings.warn(f'{self.name}: traced in every process ({type(exc).__name__}: '
                          f'{exc})', RuntimeWarning, stacklevel=3)
        return None, None


def _write_atomic(path, data):
    """Write ``data`` to ``path`` through a temporary file (readers never see half)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix='.tmp')
        with os.fdopen(handle, 'wb') as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        pass                        # a read-only cache: the next process traces again


def jit(fn=None, *, name=None, static=None):
    """
    ``jax.jit`` whose traced programs are kept on disk; usable as a decorator.

    ``name`` identifies the function in the cache (default: module and qualified name; a
    lambda or a function defined inside another must be named); ``static`` is what its
    closure holds that changes the program (picklable).
    """
    if fn is None:
        return functools.partial(jit, name=name, static=static)
    qualname = getattr(fn, '__qualname__', '<lambda>')
    if name is None and '<' in qualname:
        raise ValueError(f'traced.jit({qualname}): give a name (and static) to tell it apart')
    label = name or f'{fn.__module__}.{qualname}'
    return functools.wraps(fn)(Traced(fn, label, static))
