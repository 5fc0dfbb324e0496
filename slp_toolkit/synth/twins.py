"""Full-size twins of the Hub checkpoints the recipes start from: the published architecture, processor
and generation settings, random weights. ``slp tiny --full-size NAME OUT`` writes one; a recipe then runs
unchanged with ``model.name_or_path=OUT/<name>`` and meets every size-dependent problem (memory, 30-s
Whisper windows, group-norm feature encoders without attention masks, 100 M+ parameter save/merge/push)
without Hub access. The weights are noise: a twin is for measuring and testing, never for publishing
(``twin.json`` in each dir says so).

Where the numbers come from (config.json / generation_config.json / preprocessor_config.json on the Hub,
read 2024-2025; parameter counts as transformers counts them, asserted in tests/synth/test_twins.py):
- facebook/wav2vec2-base (94.4 M, "95 M" in the wav2vec 2.0 paper): transformers' Wav2Vec2Config defaults
  are this model (7 conv layers of 512, group norm, no conv bias, 12x768, 128-wide conv positions) plus
  layerdrop 0.05; its feature extractor has ``return_attention_mask: false`` (group-norm models are fed
  zero-padded audio without a mask). Architecture Wav2Vec2ForPreTraining; no tokenizer.
- facebook/wav2vec2-base-960h: the same encoder with a 32-symbol upper-case character CTC head
  (vocab.json order below), ``ctc_loss_reduction: sum``.
- openai/whisper-tiny (37.8 M) and openai/whisper-small (241.7 M): d_model 384/768, 4/12 layers each side,
  6/12 heads, 1500 source and 448 target positions, vocab 51865; suppress tokens and alignment heads are
  openai-whisper's ``non_speech_tokens`` and ``_ALIGNMENT_HEADS`` (cross-checked against the package).
- microsoft/speecht5_tts (144.4 M): SpeechT5Config defaults (12 encoder / 6 decoder layers of 768) with
  the published 1876 speech and 600 text positions; an ``spm_char``-style character tokenizer (79 pieces +
  <mask> + <ctc_blank> = vocab 81).
- microsoft/speecht5_hifigan (12.7 M): SpeechT5HifiGanConfig defaults (upsample 4x4x4x4 from 512 channels).
- facebook/w2v-bert-2.0 (580.5 M; "600 M" on its card): Wav2Vec2BertConfig defaults are this model (24 Conformer
  layers of 1024, 16 heads, relative-key positions, depthwise kernel 31); SeamlessM4TFeatureExtractor with 80
  mel bins stacked in pairs (stride 2: 160-dim input_features), padding value 1. Wav2Vec2BertModel; no tokenizer.
- nvidia/parakeet-ctc-0.6b (608.8 M): ParakeetCTCConfig defaults (FastConformer, 24 x 1024, 8x subsampling, 1,024
  SentencePiece tokens + the blank at 1024); ParakeetFeatureExtractor (80 mel bins). The tokenizer here is a
  1,024-piece BPE learnt from the synthetic grammar: same size and blank id, not the published pieces.
- openai/whisper-large-v3-turbo (808.9 M): large-v3's encoder (32 x 1280, 128 mel bins) with 4 decoder layers,
  vocab 51866 (<|yue|> is language 100); its alignment heads are left out (word timestamps are not used here).
- UsefulSensors/moonshine-base (61.5 M): hidden 416, 8 + 8 layers, 8 heads, vocab 32768; it reads the waveform
  (Wav2Vec2FeatureExtractor, no normalisation). Its byte-level BPE here is learnt from the synthetic grammar.
- microsoft/wavlm-base-plus (94.4 M; "94.7 M"): wav2vec2-base's conv front end and encoder size with WavLM's
  gated relative positions (320 buckets, distance 800); its extractor keeps the level (do_normalize false:
  WavLM was pretrained on unnormalised audio) and returns attention masks.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from slp_toolkit.runtime.storage import save_pretrained

W2V_BASE = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    conv_dim=(512,) * 7,
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
    conv_bias=False,
    feat_extract_norm="group",
    do_stable_layer_norm=False,
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    layerdrop=0.05,
    mask_time_prob=0.05,
    vocab_size=32,
)

# facebook/wav2vec2-base-960h vocab.json, in id order.
W2V_960H_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]

WHISPER = {
    "tiny": dict(d_model=384, layers=4, heads=6, alignment_heads=[[2, 2], [3, 0], [3, 2], [3, 3], [3, 4], [3, 5]]),
    "small": dict(
        d_model=768,
        layers=12,
        heads=12,
        alignment_heads=[[5, 3], [5, 9], [8, 0], [8, 4], [8, 7], [8, 8], [9, 0], [9, 7], [9, 9], [10, 5]],
    ),
}
# openai-whisper's non_speech_tokens for the multilingual tokenizer, then sot, translate, transcribe,
# startoflm, startofprev and nospeech: the generation_config.json `suppress_tokens` of every multilingual
# checkpoint up to large-v2.
WHISPER_SUPPRESS = [
    *(1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92, 93, 359, 503, 522),
    *(542, 873, 893, 902, 918, 922, 931, 1350, 1853, 1982, 2460, 2627, 3246, 3253, 3268, 3536, 3846, 3961),
    *(4183, 4667, 6585, 6647, 7273, 9061, 9383, 10428, 10929, 11938, 12033, 12331, 12562, 13793, 14157),
    *(14635, 15265, 15618, 16553, 16604, 18362, 18956, 20075, 21675, 22520, 26130, 26161, 26435, 28279),
    *(29464, 31650, 32302, 32470, 36865, 42863, 47425, 49870, 50254),
    *(50258, 50358, 50359, 50360, 50361, 50362),
]

# The characters of an spm_char-style SpeechT5 model: 75 pieces after <s> <pad> </s> <unk>.
SPEECHT5_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!'-:;\"()é"


def wav2vec2_base() -> tuple:
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining

    from slp_toolkit.runtime.scratch import wav2vec2_extractor

    return Wav2Vec2ForPreTraining(Wav2Vec2Config(**W2V_BASE)), wav2vec2_extractor(return_attention_mask=False)


def wav2vec2_base_960h() -> tuple:
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC, Wav2Vec2Processor

    from slp_toolkit.runtime.scratch import wav2vec2_extractor

    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "vocab.json"
        vocab.write_text(json.dumps({t: i for i, t in enumerate(W2V_960H_VOCAB)}))
        tokenizer = Wav2Vec2CTCTokenizer(
            str(vocab), unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>", do_lower_case=False
        )
    config = Wav2Vec2Config(**{**W2V_BASE, "layerdrop": 0.1}, ctc_loss_reduction="sum", pad_token_id=0)
    processor = Wav2Vec2Processor(
        feature_extractor=wav2vec2_extractor(return_attention_mask=False), tokenizer=tokenizer
    )
    return Wav2Vec2ForCTC(config), processor


def whisper(size: str) -> tuple:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from slp_toolkit.runtime.scratch import WHISPER_TOKEN_SETTINGS, whisper_generation_config, whisper_processor

    shape = WHISPER[size]
    config = WhisperConfig(
        **WHISPER_TOKEN_SETTINGS,
        d_model=shape["d_model"],
        encoder_layers=shape["layers"],
        decoder_layers=shape["layers"],
        encoder_attention_heads=shape["heads"],
        decoder_attention_heads=shape["heads"],
        encoder_ffn_dim=4 * shape["d_model"],
        decoder_ffn_dim=4 * shape["d_model"],
        num_mel_bins=80,
        max_source_positions=1500,
        max_target_positions=448,
        suppress_tokens=[],
    )
    processor = whisper_processor(language=None, task="transcribe", chunk_length=30)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = whisper_generation_config(
        processor,
        448,
        suppress_tokens=list(WHISPER_SUPPRESS),
        alignment_heads=shape["alignment_heads"],
        return_timestamps=False,
    )
    return model, processor


def speecht5_tts() -> tuple:
    from transformers import AddedToken, SpeechT5Config, SpeechT5ForTextToSpeech

    from slp_toolkit.runtime.scratch import speecht5_processor

    processor = speecht5_processor([SPEECHT5_CHARS])
    processor.tokenizer.add_tokens([AddedToken("<mask>", special=True), AddedToken("<ctc_blank>", special=True)])
    tok = processor.tokenizer
    if len(tok) > 81:
        raise ValueError(f"SpeechT5 twin tokenizer has {len(tok)} ids, more than the published 81")
    config = SpeechT5Config(
        vocab_size=81,
        max_speech_positions=1876,
        max_text_positions=600,
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
    )
    return SpeechT5ForTextToSpeech(config), processor


def speecht5_hifigan() -> tuple:
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    return SpeechT5HifiGan(SpeechT5HifiGanConfig()), None


def w2v_bert_2() -> tuple:
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    extractor = SeamlessM4TFeatureExtractor(
        feature_size=80, num_mel_bins=80, padding_value=1.0, stride=2, sampling_rate=16000, return_attention_mask=True
    )
    return Wav2Vec2BertModel(Wav2Vec2BertConfig()), extractor


def parakeet_ctc_06b() -> tuple:
    from transformers import ParakeetCTCConfig, ParakeetFeatureExtractor, ParakeetForCTC, Wav2Vec2Processor

    tokenizer = _learnt_tokenizer(1024, "parakeet")
    config = ParakeetCTCConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    processor = Wav2Vec2Processor(feature_extractor=ParakeetFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    return ParakeetForCTC(config), processor


def whisper_large_v3_turbo() -> tuple:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from slp_toolkit.runtime.scratch import WHISPER_TOKEN_SETTINGS, whisper_generation_config, whisper_processor

    processor = whisper_processor(language=None, task="transcribe", num_mel_bins=128, languages=100)
    config = WhisperConfig(
        **{**WHISPER_TOKEN_SETTINGS, "vocab_size": len(processor.tokenizer)},
        d_model=1280,
        encoder_layers=32,
        decoder_layers=4,
        encoder_attention_heads=20,
        decoder_attention_heads=20,
        encoder_ffn_dim=5120,
        decoder_ffn_dim=5120,
        num_mel_bins=128,
        max_source_positions=1500,
        max_target_positions=448,
        suppress_tokens=[],
    )
    model = WhisperForConditionalGeneration(config)
    # v3's specials sit one id higher than WHISPER_SUPPRESS's tail (sot stays at 50258)
    suppress = [*WHISPER_SUPPRESS[:-5], *(t + 1 for t in WHISPER_SUPPRESS[-5:])]
    model.generation_config = whisper_generation_config(
        processor, 448, suppress_tokens=suppress, return_timestamps=False
    )
    return model, processor


def moonshine_base() -> tuple:
    from transformers import MoonshineConfig, MoonshineForConditionalGeneration, Wav2Vec2Processor

    from slp_toolkit.runtime.scratch import wav2vec2_extractor

    tokenizer = _learnt_tokenizer(4096, "byte")
    config = MoonshineConfig(
        hidden_size=416,
        intermediate_size=1664,
        encoder_num_hidden_layers=8,
        decoder_num_hidden_layers=8,
        encoder_num_attention_heads=8,
        decoder_num_attention_heads=8,
        vocab_size=32768,
        pad_token_id=tokenizer.eos_token_id,
    )
    extractor = wav2vec2_extractor(return_attention_mask=True)
    extractor.do_normalize = False
    return MoonshineForConditionalGeneration(config), Wav2Vec2Processor(
        feature_extractor=extractor, tokenizer=tokenizer
    )


def wavlm_base_plus() -> tuple:
    from transformers import WavLMConfig, WavLMModel

    from slp_toolkit.runtime.scratch import wav2vec2_extractor

    shape = {k: v for k, v in W2V_BASE.items() if k != "vocab_size"}
    extractor = wav2vec2_extractor(return_attention_mask=True)
    extractor.do_normalize = False
    return WavLMModel(WavLMConfig(**shape, num_buckets=320, max_bucket_distance=800)), extractor


def _learnt_tokenizer(size: int, kind: str):
    """A tokenizer of `size` pieces learnt from the synthetic grammar's sentences: `parakeet`, SentencePiece-style
    BPE (▁ for spaces, <unk> 0) with the CTC blank <pad> after the pieces; `byte`, byte-level BPE (<unk> 0, <s> 1,
    </s> 2) as Moonshine's. Same sizes and special ids as the published ones, other pieces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import ParakeetTokenizer, PreTrainedTokenizerFast

    from slp_toolkit.synth.sentences import generate_sentences

    text = generate_sentences(6000, seed=0)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    if kind == "parakeet":
        bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=["<unk>"])
        bpe.train_from_iterator(text, trainer)
        bpe.add_special_tokens(["<pad>"])  # id `size`: the blank
        return ParakeetTokenizer(tokenizer_object=bpe, unk_token="<unk>", pad_token="<pad>")
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=size, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(text, trainer)
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


TWINS: dict[str, Callable[[], tuple]] = {
    "facebook/wav2vec2-base": wav2vec2_base,
    "facebook/wav2vec2-base-960h": wav2vec2_base_960h,
    "openai/whisper-tiny": lambda: whisper("tiny"),
    "openai/whisper-small": lambda: whisper("small"),
    "microsoft/speecht5_tts": speecht5_tts,
    "microsoft/speecht5_hifigan": speecht5_hifigan,
    "facebook/w2v-bert-2.0": w2v_bert_2,
    "nvidia/parakeet-ctc-0.6b": parakeet_ctc_06b,
    "openai/whisper-large-v3-turbo": whisper_large_v3_turbo,
    "UsefulSensors/moonshine-base": moonshine_base,
    "microsoft/wavlm-base-plus": wavlm_base_plus,
}
# Parameters as published (model cards / papers, in millions), for the size check in the tests.
PUBLISHED_MILLIONS = {
    "facebook/wav2vec2-base": 95,
    "facebook/wav2vec2-base-960h": 94.4,
    "openai/whisper-tiny": 39,
    "openai/whisper-small": 244,
    "microsoft/speecht5_tts": 144,
    "microsoft/speecht5_hifigan": 12.7,
    "facebook/w2v-bert-2.0": 600,
    "nvidia/parakeet-ctc-0.6b": 600,
    "openai/whisper-large-v3-turbo": 809,
    "UsefulSensors/moonshine-base": 61.5,
    "microsoft/wavlm-base-plus": 94.7,
}
TWIN_MARKER = "twin.json"


def twin_dir(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / name.split("/")[-1]


def write_twin(name: str, out_dir: str | Path) -> Path:
    """Build the twin of Hub checkpoint ``name`` (seed 0) and save it to out_dir/<basename>. A dir that
    already holds a complete twin is kept: building whisper-small costs ~10 s and 1 GB of disk."""
    if name not in TWINS:
        raise ValueError(f"no full-size twin of {name!r}; expected one of {sorted(TWINS)}")
    path = twin_dir(out_dir, name)
    marker = path / TWIN_MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("twin_of") == name:
        return path
    torch.manual_seed(0)
    model, processor = TWINS[name]()
    tmp = path.with_name(path.name + ".partial")
    save_pretrained(tmp, model, processor)
    params = sum(p.numel() for p in model.parameters())
    info = {"twin_of": name, "weights": "random (seed 0): for tests and measurements only", "parameters": params}
    (tmp / TWIN_MARKER).write_text(json.dumps(info, indent=2) + "\n")
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)  # complete or absent: a killed build leaves only the .partial dir
    return path
