"""The run report and the progress lines, on a real run (the session's two converted groups)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from casacore import tables

from dsa110ms.observe.quicklook import group_quicklook, subband_quicklook
from dsa110ms.observe.report import (
    check_report_dir,
    figure_path,
    group_figure,
    link_or_copy,
    plot_group,
)

from .conftest import run_snakemake


def test_run_report_has_the_per_group_table_and_figures(converted):
    work, config, proc = converted
    groups = sorted(p.stem for p in (work / "out").glob("*.ms"))
    assert len(groups) == 2
    table = (work / "report" / "groups.html").read_text()
    rows = re.findall(r"<tr><td>(\d{4}-[^<]+)</td>(.*?)</tr>", table)
    assert [g for g, _ in rows] == groups
    for _, cells in rows:
        values = re.findall(r"<td>([^<]*)</td>", cells)
        files, subbands, nrows, spws, fields = values[:5]
        assert (files, subbands, spws) == ("16", "16/16", "16")
        assert int(nrows) > 0 and int(fields) == 3  # one field per integration
        assert values[-3:] == ["1", "removed", "published"]  # concat attempts, scratch
    for group in groups:
        plot = work / "report" / "plots" / f"{group}.png"
        assert plot.read_bytes().startswith(b"\x89PNG") and plot.stat().st_size > 10_000
        # drawn by the group's concat job while it wrote the MS, linked in by the report
        drawn = figure_path(work / "logs" / "metrics", group)
        assert drawn.samefile(plot), "the report drew it again"
        assert "figure not drawn" not in (work / "logs" / group / "concat.log").read_text()
    # one progress line per group, then the summary table
    for group in groups:
        assert re.search(rf"\[dsa110ms\] {group} converted: 16 subbands, .* MB/s", proc.stdout)
    assert "[dsa110ms] run summary: 2 converted" in proc.stdout

    out = run_snakemake(work, "--report", "run.html", config=config)
    assert (work / "run.html").stat().st_size > 100_000, out.stdout[-2000:]
    assert "groups.html" in (work / "run.html").read_text()


def test_quicklook_statistics_equal_those_of_the_published_ms(converted):
    """The amplitudes the part jobs computed are those of the MS's cross-correlations."""
    work, _, _ = converted
    ms = sorted((work / "out").glob("*.ms"))[0]
    record = json.loads((work / "logs" / "metrics" / "groups" / f"{ms.stem}.json").read_text())
    look = record["quicklook"]
    with tables.table(str(ms), ack=False) as tb:
        data, flag = tb.getcol("DATA"), tb.getcol("FLAG")
        ant1, ant2, ddid, time = (
            tb.getcol(c) for c in ("ANTENNA1", "ANTENNA2", "DATA_DESC_ID", "TIME")
        )
    with tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as tb:
        freqs = [tb.getcell("CHAN_FREQ", i) for i in range(tb.nrows())]
    cross = ant1 != ant2
    per_channel = []
    for spw, chan_freq in enumerate(freqs):  # SPW order = ascending frequency
        rows = cross & (ddid == spw)
        amp = np.where(flag[rows], 0, np.abs(data[rows]))
        per_channel.append(amp.sum(axis=(0, 2)) / (~flag[rows]).sum(axis=(0, 2)))
        assert np.allclose(chan_freq, look["chan_freq_hz"][48 * spw : 48 * (spw + 1)])
    np.testing.assert_allclose(look["amp_per_channel"], np.concatenate(per_channel), rtol=1e-5)
    times = np.unique(time)
    amp_t = [np.abs(data[cross & (time == t)]).mean() for t in times]
    np.testing.assert_allclose(look["amp_per_time"], amp_t, rtol=1e-4)
    assert look["flagged_fraction"] == {f"sb{sb:02d}": 0.0 for sb in range(15, -1, -1)}


def test_subband_quicklook_counts_only_unflagged_cross_correlations():
    rng = np.random.default_rng(1)
    n_times, per_time, nchan = 3, 10, 4
    rows = n_times * per_time
    data = rng.standard_normal((rows, nchan, 2)) + 1j * rng.standard_normal((rows, nchan, 2))
    data = data.astype(np.complex64)
    ant_1 = np.tile(np.arange(per_time) % 4, n_times)
    ant_2 = np.tile(np.arange(per_time) // 3, n_times)
    some_flagged = rng.random(data.shape) < 0.3
    some_flagged[:, 2, :] = True  # a channel with nothing left: None, not a number
    for flag in (np.zeros(data.shape, bool), some_flagged):
        look = subband_quicklook(data, flag, ant_1, ant_2, n_times)
        used = ~flag & (ant_1 != ant_2)[:, None, None]
        amp = np.abs(data).astype(np.float64) * used
        with np.errstate(invalid="ignore"):
            per_channel = amp.sum(axis=(0, 2)) / used.sum(axis=(0, 2))
        expected = [None if np.isnan(v) else v for v in per_channel]
        assert [v is None for v in look["amp_per_channel"]] == [v is None for v in expected]
        np.testing.assert_allclose(
            [v for v in look["amp_per_channel"] if v is not None],
            [v for v in expected if v is not None],
            rtol=1e-5,
        )
        per_time = amp.reshape(n_times, -1).sum(axis=1) / used.reshape(n_times, -1).sum(axis=1)
        np.testing.assert_allclose(look["amp_per_time"], per_time, rtol=1e-5)
        assert look["flagged_fraction"] == round(float(flag.mean()), 6)


def test_nightly_reports_link_figures_without_leaving_temporary_names(tmp_path, tiny_tmpfs):
    """Issue 19 C.7: each nightly run links the figures into plots/; when plots/ already holds a
    link to the same file, a rename of the staging link does nothing (POSIX) and the staging
    name stayed, so that the third run refused report_dir. Every temporary name is gone now,
    after a link, a relink, a copy, and a copy that fails (a full file system)."""
    figure = tmp_path / "metrics" / "groups" / "2026-03-01T00:00:00.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"\x89PNG" + bytes(1000))
    report_dir = tmp_path / "report"
    target = report_dir / "plots" / f"{figure.stem}.png"
    target.parent.mkdir(parents=True)

    def names(d):
        return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.name != ".dsa110ms-owned")

    for _ in range(3):  # three nights
        check_report_dir(report_dir)
        link_or_copy(figure, target)
        assert target.samefile(figure)
        assert names(report_dir / "plots") == [target.name]
    assert names(report_dir) == [".dsa110ms-report-staging", "plots", f"plots/{target.name}"]
    # another file system: copied; then a copy that does not fit
    far = tiny_tmpfs / "report"
    (far / "plots").mkdir(parents=True)
    link_or_copy(figure, far / "plots" / target.name)
    assert (far / "plots" / target.name).read_bytes() == figure.read_bytes()
    big = tmp_path / "big.png"
    big.write_bytes(bytes(4 << 20))  # more than the 3 MB tmpfs holds
    with pytest.raises(OSError):
        link_or_copy(big, far / "plots" / "2026-03-01T00:05:00.png")
    assert names(far / "plots") == [target.name]
    assert names(far / ".dsa110ms-report-staging") == []
    check_report_dir(far)


def test_the_figure_of_one_fully_flagged_integration_of_one_subband_reads_right(tmp_path):
    """Hostile trial: a 1-integration group's time axis read -0.04 ... 0.04 minutes, a
    fully flagged group had two empty panels, a group of one subband said "1 subbands"."""
    ant_1, ant_2 = np.array([0, 0, 1]), np.array([0, 1, 1])
    data = np.ones((3, 4, 2), np.complex64)
    look = subband_quicklook(data, np.ones(data.shape, bool), ant_1, ant_2, n_times=1)
    freqs = {0: [1.40e9, 1.41e9, 1.42e9, 1.43e9]}
    record = {
        "group": "2026-12-03T00:00:00",
        "subbands": [0],
        "quicklook": group_quicklook({0: look}, freqs, [5.2e9]),
    }
    fig = group_figure(record)
    ax_f, ax_t, _ = fig.axes
    assert list(ax_t.get_xticks()) == [0.0]
    for ax in (ax_f, ax_t):
        assert [t.get_text() for t in ax.texts] == ["everything flagged"]
    assert fig.get_suptitle() == "2026-12-03T00:00:00  (1 subband)"
    plot_group(record, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")
