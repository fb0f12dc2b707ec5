"""``python -m mpi_landscape.plot --animate``: surface files as the frames of one GIF (MP4 with ffmpeg),
on one colour scale and one camera."""

from __future__ import annotations

import contextlib
import io
import shutil

import numpy as np
import pytest
from PIL import Image, ImageSequence

from mpi_landscape import plot
from surface_files import bowl, write_surface


def epochs(tmp_path, scales=(1.0, 3.0, 9.0)) -> list[str]:
    x = y = np.linspace(-1, 1, 9)
    return [write_surface(tmp_path / f"epoch{k}.h5", x, y,
                          metrics={"train_loss": scale * bowl(x, y), "train_acc": 100 - 10 * bowl(x, y)})
            for k, scale in enumerate(scales)]


def run_plot(*args: str) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert plot.main(list(args)) == 0
    return out.getvalue().split()


def test_gif_has_one_frame_per_file_on_a_fixed_colour_scale_and_layout(tmp_path):
    files = epochs(tmp_path)
    written = run_plot("--animate", *files, "--out", str(tmp_path / "evolution.gif"))
    assert written == [str(tmp_path / "evolution.gif")]
    frames = [np.asarray(f.convert("RGB"), dtype=int) for f in ImageSequence.Iterator(Image.open(written[0]))]
    assert len(frames) == 3
    assert all(f.shape == frames[0].shape for f in frames)
    bar = int(0.86 * frames[0].shape[1])  # the colour bar and its labels are right of this column
    for a, b in zip(frames, frames[1:]):
        assert np.abs(a[:, :bar] - b[:, :bar]).mean() > 5  # the landscape changes ...
        assert np.abs(a[:, bar:] - b[:, bar:]).mean() < 1  # ... its colour scale does not (GIF palettes aside)


def test_default_name_and_a_missing_encoder_or_bad_suffix_are_one_error(tmp_path, capsys):
    files = epochs(tmp_path, scales=(1.0, 2.0))
    assert run_plot("--animate", *files) == [str(tmp_path / "epoch0_train_loss_evolution.gif")]
    if shutil.which("ffmpeg"):
        assert run_plot("--animate", *files, "--out", str(tmp_path / "e.mp4")) == [str(tmp_path / "e.mp4")]
    else:
        with pytest.raises(SystemExit):
            plot.main(["--animate", *files, "--out", str(tmp_path / "e.mp4")])
        assert "needs ffmpeg" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        plot.main(["--animate", *files, "--out", str(tmp_path / "e.avi")])
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ".gif or .mp4" in err
