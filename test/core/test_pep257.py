"""The ament_pep257 docstring check."""

import os

from ament_pep257.main import main
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATHS = ['diffmsm_ros', 'test', 'bench', 'tools', 'launch', 'setup.py']


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    paths = [os.path.join(ROOT, p) for p in PATHS if os.path.exists(os.path.join(ROOT, p))]
    rc = main(argv=paths)
    assert rc == 0, 'Found code style errors / warnings'
