"""The Gradio demo (app.py / `slp demo`) on a tiny CTC run made by `slp train`: every endpoint through
gradio_client, transcripts identical to `slp transcribe`, bad uploads answered with a message while the
app keeps serving, and a headless-Chromium test of the page itself."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from slp_toolkit.cli import main
from slp_toolkit.serve import demo
from slp_toolkit.tasks import _MODULES, TASKS

LABELS = ["angry", "happy", "neutral", "sad"]
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def emotion_model(tmp_path_factory) -> Path:
    """An untrained tiny classifier: the Emotion tab needs its labels and probabilities, not accuracy."""
    import torch

    from slp_toolkit.runtime.scratch import build_audio_classifier

    torch.manual_seed(0)
    model, extractor = build_audio_classifier(LABELS)
    out = tmp_path_factory.mktemp("emotion_model")
    model.save_pretrained(out)
    extractor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tts_dir(tts_run):
    return tts_run


@pytest.fixture(scope="module")
def app(ctc_run, emotion_model, tts_dir, corpus):
    argv = ["--port", str(free_port()), "--max-mb", "0.2", "--max-seconds", "6", "--examples", str(corpus / "test")]
    args = demo.build_parser().parse_args(argv)
    running = demo.serve({"asr": str(ctc_run), "tts": str(tts_dir), "emotion": str(emotion_model)}, args, block=False)
    yield running
    running.close()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app.local_url, verbose=False)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    files = {"empty": d / "empty.wav", "not audio": d / "notes.wav", "too large": d / "large.wav"}
    files["empty"].write_bytes(b"")
    files["not audio"].write_text("these are meeting notes, not audio\n" * 20)
    files["too large"].write_bytes(np.random.default_rng(0).integers(0, 255, 300_000, dtype=np.uint8).tobytes())
    files["too long"] = d / "long.flac"  # 20 s of silence: a few KB, under the size limit, over 6 s
    sf.write(files["too long"], np.zeros(20 * 16000, dtype=np.float32), 16000)
    return files


def clips(corpus: Path, n: int) -> list[Path]:
    return sorted((corpus / "test").glob("*.flac"))[:n]


# ---------------------------------------------------------------- endpoints
def test_transcript_equals_slp_transcribe(client, ctc_run, corpus, capsys):
    for clip in clips(corpus, 2):
        text, message = client.predict(clip_file(clip), api_name="/transcribe")
        capsys.readouterr()
        assert main(["transcribe", str(ctc_run), str(clip), "--json"]) == 0
        expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["text"]
        assert text == expected and expected.strip() and message.startswith("Transcribed")


def test_emotion_tab_gives_every_label_a_probability(client, corpus):
    label, message = client.predict(clip_file(clips(corpus, 1)[0]), api_name="/classify")
    scores = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert sorted(scores) == LABELS and sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert label["label"] == max(scores, key=scores.get) and message.startswith("Classified")


def test_synthesize_tab_runs_the_tts_task(client, tts_run):
    speaker = next(iter(json.loads((tts_run / "speaker_embeddings" / "index.json").read_text())))
    audio, message = client.predict("Hello there.", speaker, "griffin-lim", api_name="/synthesize")
    wave, rate = sf.read(audio)
    assert rate == 16000 and len(wave) > 0 and np.isfinite(wave).all() and message.startswith("Synthesised")
    audio, message = client.predict("   ", speaker, "griffin-lim", api_name="/synthesize")
    assert audio is None and message == "No text: type a sentence first."
    audio, message = client.predict("?!", speaker, "griffin-lim", api_name="/synthesize")
    assert audio is None and "no letters or digits" in message and "Error" not in message
    _, message = client.predict("Hello.", "nobody", "griffin-lim", api_name="/synthesize")
    assert "unknown speaker 'nobody'" in message


def test_bad_uploads_get_a_message_and_the_app_keeps_serving(client, bad_files, corpus):
    good = clip_file(clips(corpus, 1)[0])
    expected = {
        "empty": "The file is empty",
        "not audio": "Not usable audio",
        "too large": "this demo accepts files up to 0.2 MB",
        "too long": "this demo accepts up to 6 s",
    }
    for kind, path in bad_files.items():
        for api in ("/transcribe", "/classify"):
            output, message = client.predict(clip_file(path), api_name=api)
            assert not output and expected[kind] in message, (kind, api, message)
            _, message = client.predict(good, api_name=api)  # still serving
            assert message.startswith(("Transcribed", "Classified")), (kind, api, message)
    assert client.predict(None, api_name="/transcribe") == ("", "No audio: record a clip or upload a file first.")


def clip_file(path: Path):
    from gradio_client import handle_file

    return handle_file(str(path))


# ---------------------------------------------------------------- which tabs appear
def test_binds_loopback_by_default_and_queues(app):
    args = demo.build_parser().parse_args([])
    assert (args.host, args.share, args.concurrency, args.queue_size) == ("127.0.0.1", False, 1, 32)
    assert app.local_url.startswith("http://127.0.0.1:") and app.share_url is None
    assert (app._queue.default_concurrency_limit, app._queue.max_size) == (1, 32)  # gradio has no public getter


def test_tab_needs_a_model_and_its_task(ctc_run, tts_dir, monkeypatch):
    """No tts module: the Synthesize tab is left out with a note, and the other tabs still load."""
    known = demo.tabs()
    monkeypatch.setattr(demo, "tabs", lambda: known)  # this version knows the tab of the task it misses
    monkeypatch.delitem(TASKS, "tts")
    monkeypatch.setitem(_MODULES, "tts", "_not_written_yet")
    served, notes = demo.load_models({"asr": str(ctc_run), "tts": str(tts_dir), "emotion": None})
    assert list(served) == ["asr"]
    assert len(notes) == 1 and notes[0].startswith("Synthesize: not available: task 'tts' is not implemented")
    assert demo.route([str(tts_dir), str(ctc_run)]) == {"tts": str(tts_dir), "asr": str(ctc_run)}


def test_slp_demo_routes_each_model_to_its_tab(ctc_run, emotion_model, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(demo, "serve", lambda specs, args: seen.update(specs=specs, host=args.host))
    assert main(["demo", str(emotion_model), str(ctc_run)]) == 0
    assert seen == {"specs": {"emotion": str(emotion_model), "asr": str(ctc_run)}, "host": "127.0.0.1"}
    monkeypatch.undo()
    assert main(["demo", str(ctc_run), str(ctc_run)]) == 2
    assert "are both Transcribe models; give one per tab" in capsys.readouterr().err


def test_app_py_without_a_model_says_so_in_one_line():
    done = subprocess.run([sys.executable, "app.py", "--port", "0"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: no model given: pass --asr, --tts or --emotion DIR (or `slp demo DIR...`)"
    ]


# ---------------------------------------------------------------- the page in a real browser
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="chromium/chromedriver not installed (Debian: apt-get install chromium chromium-driver)")  # fmt: skip
def test_browser_uploads_a_clip_and_reads_the_transcript(app, client, corpus, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1000"):  # fmt: skip
        options.add_argument(flag)
    clip = clips(corpus, 1)[0]
    expected, _ = client.predict(clip_file(clip), api_name="/transcribe")
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get(app.local_url)
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#asr-run"))
        tabs = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]")]
        assert tabs == ["Transcribe", "Synthesize", "Emotion"]
        browser.find_elements(By.CSS_SELECTOR, "input[type=file]")[0].send_keys(str(clip))
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#asr-run:not([disabled])"))
        time.sleep(1)  # the upload lands in the component before the click reads it
        browser.find_element(By.CSS_SELECTOR, "#asr-run").click()
        message = lambda b: b.find_element(By.CSS_SELECTOR, "#asr-message textarea").get_attribute("value")  # noqa: E731
        wait.until(lambda b: message(b))
        status = message(browser)
        transcript = browser.find_element(By.CSS_SELECTOR, "#asr-output textarea").get_attribute("value")
        browser.save_screenshot(str(tmp_path / "transcribe.png"))
    finally:
        browser.quit()
    assert status.startswith("Transcribed") and transcript == expected and expected.strip()
    assert (tmp_path / "transcribe.png").stat().st_size > 10_000
    print(f"screenshot: {tmp_path / 'transcribe.png'}")


# ---------------------------------------------------------------- R4 load, R5 files served
def test_fifty_concurrent_requests_with_bad_uploads_mixed_in(app, client, ctc_run, corpus, bad_files, capsys):
    """50 requests from 10 threads, one in five a bad upload: every good one gets `slp transcribe`'s text,
    every bad one its message, the server keeps serving and its memory stays bounded."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    import psutil
    from gradio_client import Client

    good, expected = clips(corpus, 4), {}
    for clip in good:  # one at a time, as the demo takes them (batched, padding would change a tiny model's text)
        assert main(["transcribe", str(ctc_run), str(clip), "--json"]) == 0
        expected[str(clip)] = json.loads(capsys.readouterr().out.splitlines()[-1])["text"]
    bad = list(bad_files.values())
    jobs = [
        (bad[i // 5 % len(bad)], None) if i % 5 == 4 else (good[i % 4], expected[str(good[i % 4])]) for i in range(50)
    ]
    me = psutil.Process(os.getpid())  # the app runs in this process
    client.predict(clip_file(good[0]), api_name="/transcribe")  # warm: the first request loads lazily
    rss_before = me.memory_info().rss

    def request(job):
        path, want = job
        began = time.perf_counter()
        text, message = Client(app.local_url, verbose=False).predict(clip_file(path), api_name="/transcribe")
        return time.perf_counter() - began, want, text, message

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(request, jobs))
    rss_after = me.memory_info().rss
    for _, want, text, message in results:
        if want is None:
            assert not text and not message.startswith(("Transcribed", "Error")), message
        else:
            assert text == want and message.startswith("Transcribed"), message
    latency = sorted(r[0] for r in results)
    print(f"50 requests: p50 {latency[24]:.2f} s, p95 {latency[47]:.2f} s; RSS {rss_before / 2**20:.0f} -> "
          f"{rss_after / 2**20:.0f} MiB")  # fmt: skip
    assert rss_after - rss_before < 300 * 2**20
    assert client.predict(clip_file(good[1]), api_name="/transcribe")[0] == expected[str(good[1])]


def test_serves_no_file_outside_its_examples(app, ctc_run, corpus, tmp_path):
    """Path traversal: the file route answers only for the examples folder (and gradio's own uploads)."""
    import httpx

    example = clips(corpus, 1)[0].resolve()
    secret = tmp_path / "secret.env"
    secret.write_text("HF_TOKEN=hf_not_a_real_token\n")
    url = app.local_url.rstrip("/")
    assert httpx.get(f"{url}/gradio_api/file={example}").status_code == 200
    tries = [
        secret,
        Path("/etc/passwd"),
        ctc_run.resolve() / "model.safetensors",
        f"{example.parent}/../../../../../../etc/passwd",
        f"{example.parent}/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        f"{example.parent}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    ]
    for target in tries:
        response = httpx.get(f"{url}/gradio_api/file={target}")
        assert response.status_code in (403, 404), (target, response.status_code)
        assert "root:" not in response.text and "hf_not_a_real_token" not in response.text


def test_an_upload_named_with_dots_lands_in_gradio_temp_dir(app, corpus, tmp_path):
    import httpx

    url = app.local_url.rstrip("/")
    data = clips(corpus, 1)[0].read_bytes()
    response = httpx.post(f"{url}/gradio_api/upload", files={"files": ("../../../../tmp/escaped.flac", data)})
    assert response.status_code == 200, response.text
    stored = Path(response.json()[0]).resolve()
    assert stored.name == "escaped.flac" and not Path("/tmp/escaped.flac").exists()
    assert stored.read_bytes() == data and ".." not in stored.parts
