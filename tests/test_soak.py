"""The reduced soak: 10 small groups with random faults (fixed seed), checked end to end."""

from .soak import passed, soak


def test_soak_ten_groups(tmp_path):
    report = soak(10, seed=7, workdir=tmp_path)
    assert passed(report), report
    assert sum(report["injected_faults"].values()) >= 3, "the seed must inject some faults"
    assert report["expected_changed"], "the seed must re-send a published group's file"
