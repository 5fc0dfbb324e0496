"""Run by tests/test_distributed.py in 2 gloo processes (accelerate launch, ACCELERATE_USE_CPU=1): a trained CTC model sharded with FSDP2
(fully_shard, as `recipes/accelerate/fsdp.yaml` asks Accelerate for on GPUs), evaluated shard by shard in
lockstep and exported through its gathered weights; or (argument 4: asr_seq2seq) a Whisper, whose generate must
keep every process stepping until the longest transcript ends. Accelerate itself runs FSDP only on accelerators, so this
is how far a CPU can take the sharded path: the same evaluate_split and export the training loop calls."""

import json
import logging
import sys
from pathlib import Path

from torch.distributed.fsdp import fully_shard

from slp_toolkit.config import DataConfig
from slp_toolkit.inference.evaluate import evaluate_split, load_for_eval
from slp_toolkit.runtime.device import is_sharded, process_state
from slp_toolkit.tasks import get_task
from slp_toolkit.training.checkpoint import export, gathered_state_dict

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
model_dir, split, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
name = sys.argv[4] if len(sys.argv) > 4 else "asr_ctc"
state = process_state()
task = get_task(name)
cfg = DataConfig(min_seconds=0.0, max_seconds=60.0, normalize_text=False)
with state.main_process_first():
    model, processor, ds = load_for_eval(task, model_dir, split, cfg, device="cpu")
layers = (
    [*model.model.encoder.layers, *model.model.decoder.layers]
    if name == "asr_seq2seq"
    else model.wav2vec2.encoder.layers
)
for layer in layers:
    fully_shard(layer)
fully_shard(model)
assert is_sharded(model)
metrics, _ = evaluate_split(task, model, processor, ds, 3.0, state, lockstep=True)
if name != "asr_ctc":  # Whisper's generate in lockstep is the point; its export is the CTC run's path
    if state.is_main_process:
        (out / "metrics.json").write_text(json.dumps(metrics))
    state.wait_for_everyone()
    sys.exit(0)
weights = gathered_state_dict(model)
if state.is_main_process:
    export(model, processor, out / "export", weights)
    (out / "metrics.json").write_text(json.dumps(metrics))
state.wait_for_everyone()
