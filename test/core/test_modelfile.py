"""Subject-model files: round trip, validation errors, template import."""

from diffmsm_ros import templates
from diffmsm_ros.files import modelfile
import numpy as np
import pytest
import yaml


def test_round_trip_is_exact(elbow, tmp_path):
    text = modelfile.dumps(elbow)
    again = modelfile.loads(text)
    assert modelfile.dumps(again) == text
    path = tmp_path / 'm.yaml'
    modelfile.save_atomic(again, path)
    assert path.read_text() == text


def test_bundled_template_is_the_mujoco_import(elbow):
    fresh = templates.resolve(
        'mjcf:myo_sim:models/legacy/elbow/myoelbow_1dof6muscles_1dofexo.xml'
        '?name=myoelbow-6muscles-exo')
    # the same file up to the last bit of a float (BLAS may round a product differently)
    assert_same_doc(yaml.safe_load(modelfile.dumps(fresh)), yaml.safe_load(modelfile.dumps(elbow)))


def assert_same_doc(a, b, where='doc'):
    """Equal structure and strings; numbers equal to 1e-12 relative."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            assert_same_doc(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same_doc(x, y, f'{where}[{k}]')
    elif isinstance(a, float) or isinstance(b, float):
        assert np.isclose(a, b, rtol=1e-12, atol=1e-15), (where, a, b)
    else:
        assert a == b, (where, a, b)


def test_hill_names_follow_mujoco_mapping(elbow):
    doc = yaml.safe_load(modelfile.dumps(elbow))
    bic = doc['muscles']['BIClong']
    r0, r1 = bic['range']
    lr0, lr1 = bic['lengthrange']
    assert bic['max_isometric_force'] == pytest.approx(607.75)
    assert bic['optimal_fiber_length'] == pytest.approx((lr1 - lr0) / (r1 - r0))
    assert bic['tendon_slack_length'] == pytest.approx(lr0 - r0 * bic['optimal_fiber_length'])
    assert (lr0, lr1) == pytest.approx((0.324209, 0.450055))


@pytest.mark.parametrize('edit, message', [
    (lambda d: d.update(format='other/1'), 'format'),
    (lambda d: d.update(curves='hill1938'), 'unknown family'),
    (lambda d: d['muscles']['BIClong'].update(optimal_fiber_length=11.6), 'plausible range'),
    (lambda d: d['muscles']['BIClong'].update(max_isometric_force=float('nan')), 'finite'),
    (lambda d: d['muscles']['BIClong'].pop('max_isometric_force'), 'missing'),
    (lambda d: d['segments']['r_ulna_radius_hand'].update(inertia=[1, 1, 1, 5, 0, 0]),
     'positive definite'),
    (lambda d: d['joints']['r_elbow_flex'].update(segment='femur'), 'segment'),
    (lambda d: d['muscles']['BRA']['geometry'].update(joints=['r_knee']), 'geometry.joints'),
    (lambda d: d['muscles']['BRA']['geometry']['length'].pop(), 'shape of length'),
    (lambda d: d['muscles']['BRA'].update(bounds={'max_isometric_force': [1.0, 2.0]}),
     'outside its bounds'),
])
def test_invalid_files_are_refused_with_the_reason(elbow, edit, message):
    doc = yaml.safe_load(modelfile.dumps(elbow))
    edit(doc)
    with pytest.raises(modelfile.ModelFileError, match=message):
        modelfile.from_doc(doc)


def test_compatibility_with_template(elbow):
    doc = yaml.safe_load(modelfile.dumps(elbow))
    doc['muscles']['BRA2'] = doc['muscles'].pop('BRA')
    other = modelfile.from_doc(doc)
    with pytest.raises(modelfile.ModelFileError, match='muscles'):
        modelfile.check_compatible(other, elbow)


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(modelfile.ModelFileError, match='cannot read'):
        modelfile.load(tmp_path / 'missing.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('muscles: [unclosed')
    with pytest.raises(modelfile.ModelFileError, match='not valid YAML'):
        modelfile.load(bad)
    bad.write_bytes(b'\xff\xfe\x00')
    with pytest.raises(modelfile.ModelFileError):
        modelfile.load(bad)


def test_segment_frames_survive(elbow):
    sk = elbow.model.skeleton
    assert np.allclose(np.linalg.norm(np.asarray(sk.frame_quat), axis=1), 1.0)


def test_save_text_reports_where_it_saved_or_why_not(elbow, tmp_path):
    text = modelfile.dumps(elbow)
    saved, where = modelfile.save_text(tmp_path / 'out' / 'model.yaml', text)
    assert saved and where == str(tmp_path / 'out' / 'model.yaml')
    assert modelfile.load(where).model.name == elbow.model.name
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    saved, why = modelfile.save_text(blocker / 'model.yaml', text)
    assert not saved and why.startswith('cannot save the model to') and 'a_file' in why
    assert blocker.read_text() == 'not a folder'
