"""
The working folder of a bench that runs the node: its bags, parameters and the node's log.

One run writes 150 MB or more there.  ``finish`` removes it at the end unless it is to be
kept: the bench's ``--keep``, or a run that missed its goal (the node's log is the first
thing to read then).  A run that stopped on an error leaves it where the bench said it was.
"""

import shutil

KEEP_HELP = 'keep the working folder (bags, node log); kept anyway when a goal is missed'


def finish(path, keep):
    """Remove the working folder ``path``, or say where it stays when ``keep``."""
    if keep:
        print(f'working folder kept: {path}')
    else:
        shutil.rmtree(path, ignore_errors=True)
