"""Gradio demo of slp_toolkit models: Transcribe, Synthesize and Emotion tabs. Imports, never trains.

    python app.py --asr outputs/ctc_quickstart [--emotion DIR] [--tts DIR] [--examples data/synth/test]
    slp demo outputs/ctc_quickstart outputs/my_emotion      # the same; each model's task picks its tab

Binds 127.0.0.1 unless --host says otherwise; --share is off unless asked. See slp_toolkit/serve/demo.py.
"""

import sys

from slp_toolkit.serve.demo import main

if __name__ == "__main__":
    sys.exit(main())
