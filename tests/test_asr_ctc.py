"""asr_ctc's long-form decoding: a clip over LONG_SECONDS goes through overlapping windows whose middles
tile it exactly once, and gives as many CTC frames as the whole clip in one pass would."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slp_toolkit.tasks import asr_ctc


@pytest.mark.parametrize("n", [1, 319, 320, 6400, 6401, 100_000, 123_457])
def test_windows_keep_every_sample_once(n):
    spans = asr_ctc.windows(n, chunk=6400, context=640, align=320)
    covered = np.zeros(n, dtype=int)
    for start, stop, keep_from, keep_to in spans:
        assert start <= keep_from < keep_to <= stop and stop - start <= 6400 + 2 * 640
        assert start % 320 == 0 and keep_from % 320 == 0
        covered[keep_from:keep_to] += 1
    assert (covered == 1).all()


def test_a_long_clip_gives_the_frames_of_one_pass_and_a_transcript(ctc_run, monkeypatch):
    model, processor = asr_ctc.load(str(ctc_run))
    rate = processor.feature_extractor.sampling_rate
    wave = (0.05 * np.random.default_rng(0).standard_normal(75 * rate)).astype(np.float32)  # 75 s
    with torch.no_grad():
        whole = asr_ctc._logits(model, processor, [wave]).shape[1]
    ids = asr_ctc.long_form_ids(model, processor, wave)
    assert abs(len(ids) - whole) <= 1
    [text] = asr_ctc.predict(model, processor, [{"audio": wave}])
    assert isinstance(text, str)
    monkeypatch.setattr(asr_ctc, "CHUNK_SECONDS", 10.0)  # the windowing, not the window size, decides frames
    assert abs(len(asr_ctc.long_form_ids(model, processor, wave)) - whole) <= 1
