"""
JAX configuration for the command line and the node (the model core never changes it).

float64 everywhere, and a persistent compilation cache so that the JIT compilation done at
start-up is paid once per machine and version, not on every start.
"""

import os

# one XLA thread: Eigen's thread pool off and one intra-op thread (cohort workers); must be
# in XLA_FLAGS before JAX's CPU client starts
SINGLE_THREAD_XLA = '--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1'


def cache_dir():
    """Folder of the persistent compilation cache (``DIFFMSM_JAX_CACHE`` overrides)."""
    default = os.path.join(os.path.expanduser('~'), '.cache', 'diffmsm_ros', 'jax')
    return os.environ.get('DIFFMSM_JAX_CACHE', default)


def configure():
    """Enable float64 and the compilation cache; safe to call more than once."""
    import jax
    jax.config.update('jax_enable_x64', True)
    folder = cache_dir()
    if folder:
        try:
            os.makedirs(folder, exist_ok=True)
            jax.config.update('jax_compilation_cache_dir', folder)
            # every computation, however quick to compile: with a threshold of 0.5 s the
            # small ones (158 of about 0.1 s in one online-identification test) were
            # compiled again in every process (core tests 564 -> 494 s with this)
            jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
        except OSError:
            pass
