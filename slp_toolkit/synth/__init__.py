"""Test-and-demo tooling, apart from the product (train / evaluate / serve / data):

- corpus, sentences, espeak: the synthetic espeak-ng speech corpus (`slp data synth`);
- scratch, whisper_vocab: randomly initialised models with real processors (`model.init: scratch`,
  `slp tiny`), the only part the product reaches into;
- twins: full-size random twins of Hub checkpoints (`slp tiny --full-size`).
"""
