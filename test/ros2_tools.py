"""
The ROS 2 launch system, the ``ros2`` command line and colcon, for the tests that run them.

On this project's machines they come from shared/ros2-tools, which ``make venv`` installs
into the test venv; on a machine with a system ROS 2 they come from the distro.  Where
neither is there, the tests that need them skip and say so.  Where ``make`` found the tools
folder (it exports ``DIFFMSM_ROS2_TOOLS``), a missing piece fails those tests instead, so a
broken set-up never passes as skipped tests.

Every process started here keeps DDS on this machine (the DDS variables of conftest.py and
its ``ROS_DOMAIN_ID``), and writes its ROS logs, ``launch_params_*`` files and temporary
files under the test's own folder.
"""

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, 'README.md')
SECTION = '## Using it on an exoskeleton PC'
MODULES = ('launch', 'launch_ros', 'launch_pytest', 'ros2cli', 'ros2param', 'ros2topic',
           'ros2service', 'colcon_core')
COMMANDS = ('ros2', 'colcon')
REPOSITORY = '<this repository>'       # the README's placeholder for the clone source


def command(name):
    """Path of the executable ``name``: beside this Python (the venv) first, else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(here, os.X_OK):
        return here
    return shutil.which(name)


def missing():
    """Modules and commands of the ROS 2 tools that are not installed here."""
    gone = [m for m in MODULES if importlib.util.find_spec(m) is None]
    return gone + [c for c in COMMANDS if command(c) is None]


def require(module_level=False):
    """Skip (or, where ``make`` found the tools folder, fail) without the ROS 2 tools."""
    gone = missing()
    if not gone:
        return
    folder = os.environ.get('DIFFMSM_ROS2_TOOLS', '')
    if folder:
        pytest.fail(f'{folder} is there but {", ".join(gone)} are not installed in '
                    f'{sys.prefix}: run make venv', pytrace=False)
    pytest.skip(f'needs the ROS 2 launch system, ros2 CLI and colcon ({", ".join(gone)} '
                'missing): neither ../shared/ros2-tools nor a system ROS 2 is here',
                allow_module_level=module_level)


def other_domain():
    """Return a second ROS domain of this session (100-199, 50 from ``ROS_DOMAIN_ID``)."""
    return 100 + (int(os.environ['ROS_DOMAIN_ID']) - 100 + 50) % 100


def environment(root, base=None):
    """
    Environment of a ROS 2 process started by a test, with its files under ``root``.

    ``base`` (default: this process's environment) gets the DDS settings of this session,
    ``ROS_HOME``, ``ROS_LOG_DIR`` and ``TMPDIR`` under ``root``, the venv's ``bin`` on
    ``PATH`` and its prefix on ``AMENT_PREFIX_PATH`` (where pip-installed ROS packages
    register), and the JAX compilation cache of this user (``HOME`` may be changed).
    """
    from diffmsm_ros.jax_setup import cache_dir
    env = dict(os.environ if base is None else base)
    for name in ('PYTEST_ADDOPTS', 'PYTEST_CURRENT_TEST', 'PYTEST_XDIST_WORKER'):
        env.pop(name, None)
    folders = {}
    for name, sub in (('ROS_HOME', 'ros_home'), ('ROS_LOG_DIR', 'ros_log'), ('TMPDIR', 'tmp')):
        folders[name] = os.path.join(str(root), sub)
        os.makedirs(folders[name], exist_ok=True)
    env.update(folders)
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', ROS_LOCALHOST_ONLY='1',
               ROS_DOMAIN_ID=os.environ['ROS_DOMAIN_ID'], JAX_PLATFORMS='cpu',
               DIFFMSM_JAX_CACHE=cache_dir(), PYTHONUNBUFFERED='1')
    venv_bin = os.path.dirname(sys.executable)
    env['PATH'] = os.pathsep.join([venv_bin] + [p for p in env.get('PATH', '').split(
        os.pathsep) if p and p != venv_bin])
    prefixes = [p for p in env.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    if os.path.isdir(os.path.join(sys.prefix, 'share', 'ament_index')) and \
            sys.prefix not in prefixes:
        prefixes.append(sys.prefix)
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(prefixes)
    return env


# ---------------------------------------------------------------------- the README's steps
def readme_blocks():
    """Return the ```bash blocks of the README's exoskeleton-PC section, as lists of lines."""
    text = open(README, encoding='utf-8').read()
    start = text.index(SECTION)
    end = text.find('\n## ', start + len(SECTION))
    section = text[start:end if end > 0 else len(text)]
    blocks = re.findall(r'```bash\n(.*?)```', section, flags=re.S)
    return [[line.rstrip() for line in block.splitlines() if line.strip()]
            for block in blocks]


def readme_line(prefix):
    """Return the one line of the section's blocks that starts with ``prefix``."""
    lines = [line for block in readme_blocks() for line in block if line.startswith(prefix)]
    assert len(lines) == 1, f'README {SECTION!r}: {len(lines)} lines start with {prefix!r}'
    return lines[0]


def strip_comment(line):
    """Return the command of a README line, without a trailing ``# comment``."""
    return re.sub(r'\s+#.*$', '', line)


def run(cmd, env, timeout, cwd=None):
    """Run ``cmd`` (a list, or a string for bash); return (exit code, stdout and stderr)."""
    if isinstance(cmd, str):
        cmd = ['bash', '-c', cmd]
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, timeout=timeout, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or '')
        return None, out + f'\n(timed out after {timeout} s)'
    return proc.returncode, proc.stdout


def sync_working_tree(clone):
    """
    Make ``clone`` (a ``git clone`` of this repository) hold what is tested here.

    It checks out this checkout's commit and copies over uncommitted changes (changed and
    new files; deleted ones are removed), so that a developer's edits are what colcon builds.
    In a clean clone (``make test``, CI) this changes nothing.
    """
    head = subprocess.run(['git', '-C', ROOT, 'rev-parse', 'HEAD'], check=True, text=True,
                          stdout=subprocess.PIPE).stdout.strip()
    subprocess.run(['git', '-C', clone, 'checkout', '-q', head], check=True)

    def names(*args):
        out = subprocess.run(['git', '-C', ROOT, *args], check=True, stdout=subprocess.PIPE)
        return filter(None, out.stdout.decode().split('\0'))

    # every path changed since HEAD (staged or not; a move is a deletion and an addition),
    # and the files git does not track yet
    changed = set(names('diff', '--name-only', '-z', '--no-renames', 'HEAD'))
    changed.update(names('ls-files', '-z', '-o', '--exclude-standard'))
    for name in sorted(changed):
        source, target = os.path.join(ROOT, name), os.path.join(clone, name)
        if os.path.isfile(source):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(source, target)
        elif os.path.isfile(target):
            os.unlink(target)


class Workspace:
    """
    The first block of the README's exoskeleton-PC section, run in a shell as written.

    ``HOME`` is a folder of the test, so ``~/ws`` and ``~/s1`` are too.  Not run here:
    ``pip install`` and ``rosdep`` (the test venv holds the dependencies; pip-only machines
    have no rosdep).  ``<this repository>`` is this checkout (see ``sync_working_tree``) and
    the simulated session is ``duration`` s long instead of 60.
    """

    SKIPPED = ('pip install', 'rosdep install')

    def __init__(self, root, duration):
        self.home = os.path.join(str(root), 'home')
        self.ws = os.path.join(self.home, 'ws')
        self.session = os.path.join(self.home, 's1')
        os.makedirs(self.home)
        env = environment(root)
        env['HOME'] = self.home
        self.env = env
        self.log = ''
        self.code = None
        self.sourced = None
        lines = [strip_comment(line) for line in readme_blocks()[0]]
        lines = [line.replace(REPOSITORY, ROOT).replace('--duration 60',
                                                        f'--duration {duration:g}')
                 for line in lines if not line.startswith(self.SKIPPED)]
        self.lines = lines
        clone = next(k for k, line in enumerate(lines) if 'git clone' in line)
        self._run(lines[:clone + 1], cwd=self.home)
        if self.code == 0:
            sync_working_tree(os.path.join(self.ws, 'src', 'diffmsm_ros'))
            self._run(lines[clone + 1:], cwd=self.cwd)

    def _run(self, lines, cwd):
        """Run ``lines`` in one shell; keep the log, the exit code and the final state."""
        state = os.path.join(self.home, '.state')
        script = 'set -eo pipefail\n' + '\n'.join(lines) + \
            f'\npwd > {state}.pwd\nenv -0 > {state}.env\n'
        code, out = run(script, self.env, timeout=900, cwd=cwd)
        self.log += out
        self.code = code
        if code == 0:
            self.cwd = open(state + '.pwd').read().strip()
            pairs = open(state + '.env', 'rb').read().decode().split('\0')
            self.sourced = dict(p.split('=', 1) for p in pairs if '=' in p)

    def shell(self, line):
        """Return a bash command that runs the README ``line`` in the built, sourced workspace."""
        setup = os.path.join(self.ws, 'install', 'setup.bash')
        return f'cd {self.ws} && source {setup} && exec {line}'


class Launched:
    """A command started in its own session, stopped as Ctrl-C in a terminal stops it."""

    def __init__(self, cmd, env, log_path, cwd=None):
        self.log_path = log_path
        self.log = open(log_path, 'w', encoding='utf-8')
        self.proc = subprocess.Popen(['bash', '-c', cmd] if isinstance(cmd, str) else cmd,
                                     env=env, cwd=cwd, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def output(self):
        return open(self.log_path, encoding='utf-8', errors='replace').read()

    def ctrl_c(self, timeout=60.0):
        """SIGINT to the whole process group (as a terminal sends it); the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout):
        """Wait for the end; kill the group after ``timeout`` s (exit code None then)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None
        finally:
            self.log.close()


def wait_until(predicate, timeout, interval=0.05):
    """Poll ``predicate`` until it holds or ``timeout`` s pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
