"""Where the loop's batches come from: the decoded cache (map-style) or a stream decoded on the fly.

Both cut batches the same way (`bucket`: sort a window of clips by length, fill a budget of
padded seconds, shuffle the window's batches), so on a split that fits one window they give the same
batches for the same seed. Each yields `Batch`es with the position to resume from after it.

Map-style: every process computes the same global batches and takes its slice of each, so one and N
processes see the same data. Streaming: each process reads its own rows (row i goes to process
i mod N; Hub streams are split by `datasets.distributed.split_dataset_by_node`), holds at most
`data.stream_window` decoded clips, and its position (epoch, rows consumed, batch in window) is saved
in every checkpoint.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import numpy as np

from slp_toolkit.config import Recipe, UserError
from slp_toolkit.data.manifest import RowSet, load_hub, pick, row_set
from slp_toolkit.data.splits import Tally, column, decode_rows

log = logging.getLogger("slp")
STREAM_METADATA_ROWS = 5000  # rows of a Hub stream read (text only) for building vocab / label tables


# ---------------------------------------------------------------- batching
def length_batches(
    durations: np.ndarray,
    batch_seconds: float,
    max_batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    multiple_of: int = 1,
) -> list[list[int]]:
    """Group clip indices into batches whose padded audio (longest x count) fits `batch_seconds`.

    Clips are shuffled, then sorted by length inside windows of ~50 batches, so batches hold similar
    lengths (little padding) while the order still changes every epoch; the batches of a window are
    shuffled among themselves. Deterministic in (seed, epoch). Each batch size is a multiple of
    `multiple_of` (the process count), so every process gets an equal share of every global batch: the
    clips over a multiple start the next batch, and only a window's last few (fewer than the process
    count) are left out of that epoch. Streaming (below) cuts its windows with the same `bucket`.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(durations)) if shuffle else np.arange(len(durations))
    mean = float(np.mean(durations)) if len(durations) else 1.0
    window = max(1, int(50 * batch_seconds / max(mean, 1e-3)))
    batches: list[list[int]] = []
    for w, start in enumerate(range(0, len(order), window)):
        chunk = order[start : start + window]
        rng_w = np.random.default_rng([seed, epoch, w]) if shuffle else None
        batches += bucket(chunk, durations[chunk], batch_seconds, max_batch_size, multiple_of, rng_w)
    return batches


def bucket(ids, durations, batch_seconds: float, max_batch_size: int, multiple_of: int, rng) -> list[list[int]]:
    """One window: sort by length (longest first, ties by id), cut at the padded-seconds budget into batches of a
    multiple of `multiple_of` clips, shuffle. A batch's clips over the multiple (its shortest) open the next
    one, where they fit: fewer clips, none longer than the batch they left. Left out: the window's last
    few, and a clip too long for `multiple_of` of it to fit the budget."""
    ids = np.asarray(ids)
    durations = np.asarray(durations, dtype=np.float64)
    order = np.lexsort((ids, -durations))
    batches: list[list[int]] = []
    batch: list[int] = []  # positions in `durations`
    longest = 0.0
    for j in order:
        if batch and (longest * (len(batch) + 1) > batch_seconds or len(batch) >= max_batch_size):
            keep = len(batch) - len(batch) % multiple_of
            if keep:
                batches.append([int(ids[k]) for k in batch[:keep]])
            batch = batch[keep:] if keep else []
            longest = float(durations[batch[0]]) if batch else 0.0
        if not batch:
            longest = float(durations[j])
        batch.append(int(j))
    keep = len(batch) - len(batch) % multiple_of
    if keep:
        batches.append([int(ids[k]) for k in batch[:keep]])
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def clip_costs(durations, window: float | None) -> np.ndarray:
    """Seconds of model input each clip fills in a batch: its length, or the window where there is one (60
    clips of 2 s are 120 s of audio, but 1,800 s of Whisper encoder input)."""
    durations = np.asarray(durations, dtype=np.float64)
    return np.maximum(durations, window) if window else durations


@dataclass
class Batch:
    examples: list[dict]  # this process's share, preprocessed
    seconds: float  # audio seconds in the global batch
    key: tuple  # seeds this batch's augmentation: the same batch gets the same randomness after a resume
    position: dict  # where the source stands once this batch is taken


def examples_at(ds, indices: list[int]) -> list[dict]:
    """Rows of a (numpy-formatted) dataset as a list of per-example dicts."""
    cols = ds[list(indices)]
    return [{k: v[i] for k, v in cols.items()} for i in range(len(indices))]


class MapBatches:
    """Batches of a prepared, memory-mapped dataset."""

    def __init__(self, ds, recipe: Recipe, rank: int, world: int, window: float | None = None):
        self.ds, self.cfg, self.rank, self.world = ds, recipe.train, rank, world
        self.durations = np.asarray(column(ds, "duration"), dtype=np.float64)
        self.costs = clip_costs(self.durations, window)
        self._epoch: tuple[int, list] | None = None

    def epoch(self, epoch: int) -> list[list[int]]:
        if self._epoch is None or self._epoch[0] != epoch:
            c = self.cfg
            batches = length_batches(
                self.costs, c.batch_seconds, c.max_batch_size, c.seed, epoch, c.shuffle, self.world
            )
            if not batches:
                raise UserError(f"no batch fits train.batch_seconds={c.batch_seconds} with {self.world} process(es)")
            left = len(self.costs) - sum(len(b) for b in batches)
            if left and self.rank == 0:  # the left-out change with every epoch's shuffle
                log.info(
                    "epoch %d: %d of %d clips left out (each global batch holds a multiple of the %d processes)",
                    epoch,
                    left,
                    len(self.costs),
                    self.world,
                )
            self._epoch = (epoch, batches)
        return self._epoch[1]

    def epochs_done(self, position: dict) -> float:
        epoch, index = position.get("epoch", 0), position.get("batch", 0)
        return epoch + index / len(self.epoch(epoch))

    def run(self, position: dict) -> Iterator[Batch]:
        epoch, index = position.get("epoch", 0), position.get("batch", 0)
        while True:
            batches = self.epoch(epoch)
            for i in range(index, len(batches)):
                idx = batches[i]
                share = len(idx) // self.world
                mine = idx[self.rank * share : (self.rank + 1) * share]
                yield Batch(
                    examples_at(self.ds, mine),
                    float(self.durations[idx].sum()),
                    (epoch, i),
                    {"epoch": epoch, "batch": i + 1},
                )
            epoch, index = epoch + 1, 0


class StreamBatches:
    """Batches decoded on the fly from a local split or a Hub stream, through a bounded window."""

    def __init__(self, recipe: Recipe, rate: int, task, processor, rank: int, world: int, window: float | None = None):
        self.recipe, self.rate, self.task, self.processor = recipe, rate, task, processor
        self.rank, self.world, self.window = rank, world, window
        self.spec = recipe.data.train
        self.tally = Tally()
        d = recipe.data
        self.rows = None if self.spec.startswith("hf:") else row_set(self.spec, d, task.needs, d.max_train_samples)

    def epochs_done(self, position: dict) -> float:
        return 0.0  # a stream has no known length; runs stop on steps or minutes

    def run(self, position: dict) -> Iterator[Batch]:
        d, t = self.recipe.data, self.recipe.train
        epoch, consumed, skip = position.get("epoch", 0), position.get("consumed", 0), position.get("batch", 0)
        while True:
            rows = islice(self._rows(epoch), consumed, None)
            produced = 0
            while True:
                window, read = self._window(rows)
                if not read:
                    break
                costs = clip_costs([e["duration"] for e in window], self.window)
                rng = np.random.default_rng([t.seed, epoch, consumed // d.stream_window]) if t.shuffle else None
                batches = bucket(np.arange(len(window)), costs, t.batch_seconds, t.max_batch_size, 1, rng)
                for b in range(skip, len(batches)):
                    examples = [window[j] for j in batches[b]]
                    seconds = self.world * float(sum(e["duration"] for e in examples))
                    produced += 1
                    yield Batch(
                        examples, seconds, (epoch, consumed, b), {"epoch": epoch, "consumed": consumed, "batch": b + 1}
                    )
                consumed, skip = consumed + read, 0
            if not produced and not self.tally.kept:
                raise UserError(f"{self.spec}: no usable rows in the stream (see the warnings above)")
            epoch, consumed = epoch + 1, 0

    def _window(self, rows) -> tuple[list[dict], int]:
        """Up to `stream_window` rows, decoded, kept and preprocessed; and how many raw rows were read."""
        d, task, proc = self.recipe.data, self.task, self.processor
        raw = list(islice(rows, d.stream_window))
        before = len(self.tally.examples)
        window = []
        for example in decode_rows(raw, d, self.rate, task.needs, self.tally):
            if task.caps.keep is not None and not task.caps.keep(example, proc):
                continue
            window.append({**example, **task.preprocess(example, proc)})
        for line in self.tally.examples[before:]:
            log.warning("%s: skipped %s", self.spec, line)
        return window, len(raw)

    def _rows(self, epoch: int):
        """This process's rows in epoch order (a permutation for local data, a seeded shuffle buffer for Hub)."""
        t = self.recipe.train
        if self.rows is not None:
            n = len(self.rows)
            order = np.random.default_rng([t.seed, epoch]).permutation(n) if t.shuffle else np.arange(n)
            for i in order[self.rank :: self.world]:
                yield next(self.rows.rows(int(i), int(i) + 1))
            return
        stream, rows = hub_stream(self.spec, self.recipe.data, self.task.needs)
        if t.shuffle:
            stream = stream.shuffle(seed=t.seed + epoch, buffer_size=10 * self.recipe.data.stream_window)
        if self.world > 1:
            from datasets.distributed import split_dataset_by_node

            stream = split_dataset_by_node(stream, rank=self.rank, world_size=self.world)
        for i, record in enumerate(islice(stream, self.recipe.data.max_train_samples)):
            yield rows.row(f"{self.spec}:row {i}", record)


def hub_stream(spec: str, cfg, needs: tuple[str, ...]) -> tuple:
    """A Hub dataset as an IterableDataset with undecoded audio, and a RowSet that reads its records."""
    import datasets

    from slp_toolkit.data.manifest import _with_columns

    stream = load_hub(spec, streaming=True)
    columns = list(stream.features or next(iter(stream)).keys())
    audio_col = pick(columns, cfg.audio_column, ("audio", "file", "path"), "audio", spec)
    stream = stream.cast_column(audio_col, datasets.Audio(decode=False))
    from slp_toolkit.data.manifest import class_names

    return stream, _with_columns(RowSet(spec, audio_col, {}, names=class_names(stream.features)), columns, cfg, needs)


def stream_metadata(recipe: Recipe, needs: tuple[str, ...]):
    """The text fields of a streamed split (no audio), for what a model is built from (vocab, labels)."""
    import datasets

    from slp_toolkit.data.text import normalize_text

    d = recipe.data
    if d.train.startswith("hf:"):
        stream, rows = hub_stream(d.train, d, needs)
        found = (rows.row("", r) for r in islice(stream, min(STREAM_METADATA_ROWS, d.max_train_samples or 10**12)))
    else:
        found = row_set(d.train, d, needs, d.max_train_samples).rows()
    records = []
    for row in found:
        fields = dict(row.fields)
        if "text" in fields:
            fields["raw_text"] = fields["text"]
            fields["text"] = normalize_text(fields["text"]) if d.normalize_text is not False else fields["text"].strip()
        records.append(fields)
    return datasets.Dataset.from_list(records)


def prefetched(items: Iterator, prepare: Callable, workers: int = 1) -> Iterator:
    """prepare(item) for the next item(s) in worker threads while the caller works on this one, in order.
    One worker also reads the item; several prepare the next `workers` items, read here in order."""
    if workers > 1:
        with ThreadPoolExecutor(workers, thread_name_prefix="slp-prefetch") as pool:
            pending = deque(pool.submit(prepare, item) for item in islice(items, workers))
            while pending:
                ready = pending.popleft().result()
                pending.extend(pool.submit(prepare, item) for item in islice(items, 1))
                yield ready
        return
    with ThreadPoolExecutor(1, thread_name_prefix="slp-prefetch") as pool:
        pending = pool.submit(lambda: prepare(next(items)))
        while True:
            try:
                ready = pending.result()
            except StopIteration:
                return
            pending = pool.submit(lambda: prepare(next(items)))
            yield ready
