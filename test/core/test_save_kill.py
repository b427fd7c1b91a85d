"""A process killed with SIGKILL in the middle of saving leaves the previous model intact."""

import os
import signal
import subprocess
import sys

from diffmsm_ros.files import modelfile
import numpy as np

WRITER = r"""
import sys, dataclasses
import numpy as np
from diffmsm_ros import templates
from diffmsm_ros.files import modelfile
sf = templates.resolve('elbow')
path = sys.argv[1]
print('ready', flush=True)
k = 0
while True:
    k += 1
    mus = sf.model.muscles
    force = np.asarray(mus.max_isometric_force) * (1.0 + 1e-3 * (k % 50))
    model = sf.model.replace(muscles=dataclasses.replace(mus, max_isometric_force=force))
    modelfile.save_atomic(dataclasses.replace(sf, model=model), path)
"""


def test_sigkill_while_saving_keeps_a_valid_model(tmp_path, elbow):
    path = tmp_path / 'model.yaml'
    modelfile.save_atomic(elbow, path)
    reference = np.asarray(elbow.model.muscles.max_isometric_force)
    for delay in (0.05, 0.21, 0.37, 0.6):
        proc = subprocess.Popen([sys.executable, '-c', WRITER, str(path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == 'ready'
        # let it write for a while (several saves per attempt), then kill it mid-way
        try:
            proc.wait(timeout=delay + 0.3)
        except subprocess.TimeoutExpired:
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        sf = modelfile.load(path)            # parses and validates: never half a file
        ratio = np.asarray(sf.model.muscles.max_isometric_force) / reference
        assert np.allclose(ratio, ratio[0]) and 1.0 <= ratio[0] <= 1.05
        leftovers = [n for n in os.listdir(tmp_path) if n != 'model.yaml']
        for name in leftovers:               # at most a temporary file, never the model
            assert name.startswith('.model.yaml.') and name.endswith('.tmp')
            os.unlink(tmp_path / name)
