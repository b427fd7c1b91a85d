"""
Integration tests share the machine's two cores with whatever else runs.

A node or identifier process left running by an earlier test (or another job) competes
with the node under test, and its real-time threads can stall it: every test here notes
in its report (shown when it fails) the ``diffmsm`` processes that were already running
when it began and are not its own.
"""

import psutil
import pytest


NODE_MARKS = ('diffmsm_ros.cli.main run', 'diffmsm run', 'diffmsm_node')


def diffmsm_processes():
    """[(pid, command line)] of the diffmsm nodes and their identifier processes running."""
    nodes, found = set(), []
    for proc in psutil.process_iter(['pid', 'ppid', 'cmdline']):
        line = ' '.join(proc.info['cmdline'] or [])
        if any(mark in line for mark in NODE_MARKS):
            nodes.add(proc.info['pid'])
            found.append((proc.info['pid'], line[:200]))
    for proc in psutil.process_iter(['pid', 'ppid', 'cmdline']):
        if proc.info['ppid'] in nodes and 'spawn_main' in ' '.join(proc.info['cmdline'] or []):
            found.append((proc.info['pid'], f'identifier process of {proc.info["ppid"]}'))
    return found


@pytest.fixture(autouse=True)
def processes_already_running(request):
    before = diffmsm_processes()
    yield before
    if before:
        request.node.add_report_section(
            'setup', 'diffmsm processes already running',
            '\n'.join(f'{pid} {line}' for pid, line in before))
