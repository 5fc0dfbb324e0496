"""A Gradio Space for a model trained with slp_toolkit, written by `slp push --space`.

It needs only transformers (no slp_toolkit): the model repo loads in plain `pipeline()`.
"""

import gradio as gr
import numpy as np
from transformers import pipeline

MODEL_ID = "__MODEL_ID__"
PIPELINE_TAG = "__PIPELINE_TAG__"
MAX_SECONDS = 30

pipe = pipeline(PIPELINE_TAG, model=MODEL_ID)


def _mono_float(data: np.ndarray) -> np.ndarray:
    wave = data.astype(np.float32)
    if np.issubdtype(data.dtype, np.integer):
        wave /= np.iinfo(data.dtype).max
    return wave.mean(axis=1) if wave.ndim == 2 else wave


def run(audio):
    if audio is None:
        return None, "Record a clip or upload a file first."
    rate, data = audio
    wave = _mono_float(data)
    if len(wave) / rate > MAX_SECONDS:
        return None, f"The clip is {len(wave) / rate:.1f} s long; this Space accepts up to {MAX_SECONDS} s."
    result = pipe({"raw": wave, "sampling_rate": rate})  # a fresh dict: the pipeline pops its keys
    if PIPELINE_TAG == "audio-classification":
        return {r["label"]: r["score"] for r in result}, ""
    return result["text"], ""


with gr.Blocks(title=MODEL_ID) as demo:
    gr.Markdown(f"# {MODEL_ID}\nTrained with slp_toolkit. Clips up to {MAX_SECONDS} s.")
    audio = gr.Audio(sources=["upload", "microphone"], type="numpy", label="Speech")
    button = gr.Button("Run", variant="primary")
    output = gr.Label(label="Labels") if PIPELINE_TAG == "audio-classification" else gr.Textbox(label="Transcript")
    message = gr.Textbox(label="Message", interactive=False)
    button.click(run, inputs=audio, outputs=[output, message], api_name="predict")

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1).launch()
