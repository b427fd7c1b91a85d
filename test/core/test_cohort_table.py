"""The cohort table of identify-batch: session and subject names, manifest, CSV, summary."""

import csv

from diffmsm_ros.cli import cohort_table
import pytest


def test_sessions_are_named_after_their_folder_and_subjects_by_prefix(tmp_path):
    (tmp_path / 'P07_2026-03-02' / 'bag').mkdir(parents=True)
    (tmp_path / 'P07_2026-03-09').mkdir()
    single = tmp_path / 'P08_w1.mcap'
    single.write_bytes(b'')
    plan = cohort_table.plan([tmp_path / 'P07_2026-03-02' / 'bag', tmp_path / 'P07_2026-03-09',
                              single])
    assert [(name, subject) for name, subject, _ in plan] == [
        ('P07_2026-03-02', 'P07'), ('P07_2026-03-09', 'P07'), ('P08_w1', 'P08')]


def test_a_manifest_names_subjects_and_duplicate_sessions_are_refused(tmp_path):
    manifest = tmp_path / 'm.csv'
    manifest.write_text('session,subject\nweek1,anna\n')
    found = cohort_table.read_manifest(manifest)
    plan = cohort_table.plan([tmp_path / 'week1', tmp_path / 'week2'], found)
    assert [s for _, s, _ in plan] == ['anna', 'week2']
    with pytest.raises(cohort_table.CohortError, match='two bags make the session'):
        cohort_table.plan([tmp_path / 'a' / 'week1', tmp_path / 'b' / 'week1'])
    manifest.write_text('name,who\nweek1,anna\n')
    with pytest.raises(cohort_table.CohortError, match='session,subject'):
        cohort_table.read_manifest(manifest)


def test_the_csv_and_summary_hold_every_row(tmp_path, elbow):
    ok = cohort_table.row_of('P01_a', 'P01', '/b1', cohort_table.OK, elbow, 8.0, 12.5)
    bad = cohort_table.row_of('P02_a', 'P02', '/b2', cohort_table.FAILED,
                              reason='cannot read /b2: File end magic is invalid.')
    rows = [ok, bad]
    cohort_table.write_csv(tmp_path / 'cohort.csv', rows)
    with open(tmp_path / 'cohort.csv', newline='') as fh:
        table = list(csv.DictReader(fh))
    muscles = elbow.model.muscle_names
    assert [r['status'] for r in table] == ['ok', 'failed: cannot read /b2: File end magic '
                                            'is invalid.']
    for k, name in enumerate(muscles):
        assert float(table[0][f'{name}.max_isometric_force']) == pytest.approx(
            float(elbow.model.muscles.max_isometric_force[k]), rel=1e-11)
        assert table[1][f'{name}.max_isometric_force'] == ''
    cohort_table.write_summary(tmp_path / 'summary.md', rows)
    text = (tmp_path / 'summary.md').read_text()
    assert '2 sessions of 2 subjects: 1 identified, 0 already complete, 1 failed.' in text
    assert all(name in text for name in muscles)
    assert cohort_table.plot_strengths(tmp_path / 's.png', rows) == tmp_path / 's.png'
    assert cohort_table.plot_strengths(tmp_path / 'none.png', [bad]) is None
