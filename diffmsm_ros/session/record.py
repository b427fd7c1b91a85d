"""``diffmsm simulate``: a synthetic session written as a rosbag2 plus its truth model."""

import os

from diffmsm_ros.files import bags, modelfile
from diffmsm_ros.session import raw_emg, subjects, synth
import numpy as np
import yaml

T0_NS = 1_700_000_000 * 1_000_000_000   # sessions start at a fixed wall-clock epoch
EMG_MESSAGE_RATE = 100.0                 # EMG chunks per second
RAW_RATE = 2000.0                        # Hz
RAW_AMPLITUDE = 1e-3                     # V


def session_messages(model, session, emg='envelope', raw=None, noise=0.0, rng=None,
                     joint_topic='/joint_states', emg_topic='/emg', emg_chunk=None):
    """
    (topic, msgtype, time_ns, msg) for encoders and EMG chunks, in time order.

    EMG goes in chunks of ``emg_chunk`` samples (default: ``EMG_MESSAGE_RATE`` chunks per
    second), stamped with their newest sample's time.
    """
    h = model.timestep
    names = model.joint_names
    q = session.q + (noise * rng.standard_normal(session.q.shape) if noise > 0 else 0.0)
    msgs = []
    for k, t in enumerate(session.t):
        stamp = T0_NS + int(round(t * 1e9))
        msgs.append((joint_topic, bags.JOINT_STATE, stamp,
                     bags.joint_state(stamp, names, q[k], session.qd[k], session.tau_exo[k])))
    if emg == 'envelope':
        values, times, rate = session.u, session.t, 1.0 / h
    else:
        values, times = raw
        rate = RAW_RATE
    per_chunk = emg_chunk or max(1, int(round(rate / EMG_MESSAGE_RATE)))
    for start in range(0, len(times) - per_chunk + 1, per_chunk):
        end = start + per_chunk
        stamp = T0_NS + int(round(times[end - 1] * 1e9))
        msgs.append((emg_topic, bags.FLOAT_ARRAY, stamp, bags.emg_array(values[start:end])))
    msgs.sort(key=lambda m: m[2])
    return msgs, rate


def record(template, out_dir, duration=60.0, seed=0, perturb=0.1, emg='envelope',
           storage='mcap', noise=0.0):
    """
    Simulate a hidden subject; write ``out_dir/bag``, ``truth.yaml`` and ``params.yaml``.

    ``params.yaml`` holds the node settings that read the bag's EMG (kind, rate, channels,
    MVC), for ``diffmsm identify --params-file`` and ``diffmsm run``.
    """
    if emg not in ('envelope', 'raw'):
        raise ValueError(f'--emg must be envelope or raw, got {emg!r}')
    if duration <= 0:
        raise ValueError('--duration must be positive')
    bag_path = os.path.join(out_dir, 'bag')
    if os.path.exists(bag_path):
        raise FileExistsError(f'{bag_path} exists; choose an empty output folder')
    rng = np.random.default_rng(seed)
    truth = subjects.perturb(template, perturb, rng) if perturb > 0 else template
    session = synth.simulate(truth.model, template.model, duration, seed)
    raw = None
    mvc = [1.0] * truth.model.n_muscles
    if emg == 'raw':
        raw = raw_emg.synthesize(session.t, session.u, RAW_RATE, rng, RAW_AMPLITUDE)
        mvc = [raw_emg.calibrate_mvc(RAW_AMPLITUDE, RAW_RATE)] * truth.model.n_muscles
    msgs, rate = session_messages(truth.model, session, emg, raw, noise, rng)
    os.makedirs(out_dir, exist_ok=True)
    bags.write_bag(bag_path, msgs, storage)
    truth.extra['session'] = {
        'duration': float(duration), 'seed': int(seed), 'perturb': float(perturb),
        'storage': storage, 'encoder_noise': float(noise),
        'encoder_rate': 1.0 / truth.model.timestep,
        'emg': {'kind': emg, 'sample_rate': float(rate), 'channels': list(
            truth.model.muscle_names), 'mvc': mvc},
        'exo_controller': 'PD + gravity compensation (template model)',
        'template': template.model.name}
    modelfile.save_atomic(truth, os.path.join(out_dir, 'truth.yaml'))
    write_params(os.path.join(out_dir, 'params.yaml'), truth.extra['session']['emg'])
    return bag_path, session


def write_params(path, emg):
    """Write a node parameters file with the EMG settings of a simulated session."""
    # '/**': the node in whatever namespace it is launched
    tree = {'/**': {'ros__parameters': {'emg': {
        'kind': emg['kind'], 'sample_rate': float(emg['sample_rate']),
        'channels': list(emg['channels']), 'mvc': [float(v) for v in emg['mvc']]}}}}
    with open(path, 'w') as f:
        f.write("# Node settings that read this session's EMG (diffmsm identify --params-file,\n"
                '# diffmsm run --params-file); everything else keeps its default.\n')
        yaml.safe_dump(tree, f, sort_keys=False)


def recording_from_session(session, with_velocity=True):
    """Return the arrays a bag of this session would give (envelope EMG at the model rate)."""
    velocity = session.qd if with_velocity else np.full_like(session.q, np.nan)
    return bags.Recording(joint_t=session.t.copy(), position=session.q.copy(),
                          velocity=velocity.copy(), effort=session.tau_exo.copy(),
                          emg_t=session.t.copy(), emg=session.u.copy())
