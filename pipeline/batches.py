"""Golden and synthetic input batches, the export shape, and the names of the inputs and outputs they carry.

Golden inputs are the recipe's real texts (tokenized together, so with padding) plus synthetic
batches at the recipe's shapes, each with rows of different lengths (padding again). At least one
batch differs from the export shape in batch size and one in sequence length, so a shape baked
into a graph shows. Generation tasks' prompts are left-padded as batched generation pads them and
carry ``max_new_tokens``; image tasks' batches are ``pixel_values`` of seeded synthetic images.

A leaf: numpy only (tokenizers and image processors are passed in). It makes inputs and saves
them; it never runs a model or compares outputs (pipeline/parity.py does).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifact import Outputs

# optimum's ONNX exporter traces with batch 2, sequence 16 (optimum.utils.DEFAULT_DUMMY_SHAPES).
EXPORT_SHAPE = (2, 16)
TEXTS = "texts"  # the golden batch made of the recipe's real texts
PIXELS = "pixel_values"
DECODE_STEPS = 4  # greedy tokens generated per golden batch of a generation task
GENERATED = "generated_ids"  # integer output of a generation task: the greedy tokens
STEP_LOGITS = "step_logits"  # the logits each greedy token was picked from
MAX_NEW_TOKENS = "max_new_tokens"  # golden input: how many greedy steps to take
# The inputs a text model's golden batches carry (synthetic_batch makes these).
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


LONG_TEXT = "long_text"  # golden batch: long texts, truncated at the model's max_seq_length as its tokenizer truncates
LONG_WITH_SHORT = "long_with_short"  # golden batch: one long text batched with short ones (one int8 scale per batch)
LONG_BATCHES = (LONG_TEXT, LONG_WITH_SHORT)
LONG_ROWS = 4  # rows of the long_text batch: the document from as many starting sentences
# A held-out document (no recipe, calibration set or benchmark holds these sentences): about 1,400 WordPiece
# tokens, far over any sentence-transformers max_seq_length, so its batches are all truncated, as consumers'
# long inputs are. all-MiniLM-L6-v2's OpenVINO static int8 IR scored 0.9874 on such a text on an AVX2 CPU
# while passing 0.99 on the recipe's short texts: a gate without it missed what consumers send.
_LONG_DOCUMENT = """\
The old lighthouse on the northern cape was automated in the nineteen-eighties, and since then the keeper's
cottage has served as a small museum of maritime history. Visitors climb the one hundred and twelve steps of the
spiral staircase to reach the lantern room, where a rotating lens still throws its beam across the bay every
night. In the summer months a volunteer guide explains how the keepers trimmed the wicks, polished the brass and
recorded the weather in thick leather logbooks. Those logbooks, now kept behind glass, describe storms that tore
the roof from the oil shed and winters when the supply boat could not land for six weeks. A local historian
spent three years transcribing them and found that the keepers' children were taught at home by their mothers,
using books sent from the mainland. Today the village below the cape depends mostly on tourism, although a
handful of fishing boats still leave the harbour before dawn to set their lobster pots. The fishermen complain
that the catch has fallen since the water grew warmer, and marine biologists from the university have begun to
tag lobsters to learn where they move. Early results suggest that the animals are shifting towards deeper and
colder water, which forces the boats to travel further and burn more fuel. The regional council has proposed a
small grant to help the fleet replace its oldest engines with more efficient ones, but the application process
is slow. Meanwhile the café on the quay has started to serve dishes made from species that were once thrown
back, such as dogfish and gurnard, to encourage people to try them. The chef, who trained in a city restaurant
before returning to the village where she grew up, says that customers are curious once they taste the fish. On
Saturday mornings a market fills the square with stalls selling vegetables, cheese, honey, knitted jumpers and
paintings of the coast by local artists. A retired engineer sells wooden toys that he carves in his garage, and
children gather round his table to watch him shape a boat from a block of pine. In the afternoon the wind
usually picks up, and the bay fills with the bright sails of dinghies from the sailing club, which runs lessons
for beginners of every age. The club was founded by a group of friends after the war, and its clubhouse is a
converted net loft with a balcony that looks straight out over the moorings. Every August the club organises a
regatta that ends with a race around the island and a barbecue on the beach, where the trophies are handed out
at sunset. The island itself is a nature reserve, home to colonies of puffins, razorbills and guillemots that
nest on the cliffs from April until the end of July. Boat trips around the island are limited to protect the
birds, and the skippers must keep a set distance from the cliffs during the breeding season. Wardens live on the
island for six months of the year, counting the nests, monitoring the chicks and removing the rats that
sometimes arrive on driftwood. Their small hut has solar panels, a rainwater tank and a radio that they use to
report to the mainland each evening at exactly seven o'clock. One warden wrote a blog about her first season
there, describing the noise of the colony, the smell of the guano and the loneliness of foggy days. Her posts
became popular, and a publisher later asked her to turn them into a book, which now sells in the museum shop
beside postcards and maps. The museum also hosts talks during the winter, when the village is quiet and people
are glad of an excuse to meet in a warm room on a dark evening. Recent talks have covered the geology of the
cape, the history of smuggling along the coast and the restoration of a wooden lifeboat built in eighteen
ninety. That lifeboat, rowed by twelve men, rescued the crews of more than forty ships before it was replaced by
a motor lifeboat in the nineteen-thirties. After years of neglect in a barn it was brought back to the harbour,
where a team of volunteers replaced its rotten planks using traditional methods. The restoration took four
winters, and on the day it was relaunched almost the whole village came down to the slipway to watch it touch
the water. Descendants of the original crew rowed it across the harbour, and an elderly woman whose grandfather
had been the coxswain rang the old station bell. Plans are now being made to build a shelter for the boat so
that it can be displayed to visitors without being damaged by the salt and the rain. The architect's design uses
local stone and a roof of recycled timber, and it includes a small workshop where young people can learn
boatbuilding skills. Funding has been promised by a heritage charity on the condition that the village raises a
quarter of the cost itself within the next two years. To do that, the residents have organised concerts, quiz
nights, a sponsored swim across the bay and an auction of items donated by local businesses. The swim was the
most successful event so far, with more than sixty people taking part despite the cold water and a strong
current near the point. A doctor from the health centre and two lifeguards followed the swimmers in kayaks, and
a fishing boat waited nearby in case anyone needed help. Everyone finished safely, and the fastest swimmer, a
seventeen-year-old student, crossed the bay in just under thirty-eight minutes. She hopes to study marine
science at university and says that growing up beside the sea made her want to understand how it is changing.
Her teachers describe her as determined and thoughtful, and she already volunteers with the lobster tagging
project on weekends during the school holidays. The scientists running the project say that help from local
people has been essential, because they know the seabed and the tides better than anyone. They have also
installed temperature sensors on the harbour wall and on several buoys, which send their readings to a website
every fifteen minutes. Anyone can look at the data, and the primary school uses it in lessons about climate,
graphs and the difference between weather and long-term trends. The head teacher says that the children are
proud that their village contributes to real research and that some of them check the readings at home. Older
residents remember the winter of the great storm, when waves broke over the harbour wall and the lifeboat crew
worked through the night. Their stories are being recorded by the museum, so that the voices of the village will
still be heard long after the storytellers have gone. In the evenings, when the boats are back and the market
has been packed away, the lighthouse beam begins to sweep across the darkening water once again.
"""
LONG_DOCUMENT: tuple[str, ...] = tuple(re.split(r"(?<=\.) ", " ".join(_LONG_DOCUMENT.split())))


def long_text(start: int = 0) -> str:
    """The held-out document, from sentence ``start`` on (then from its beginning again)."""
    n = len(LONG_DOCUMENT)
    return " ".join(LONG_DOCUMENT[(start + i) % n] for i in range(n))


def long_batches(texts: Sequence[str], tokenizer: Any, max_length: int) -> list[GoldenBatch]:
    """``long_text``: :data:`LONG_ROWS` long texts at ``max_length`` tokens (truncated as the tokenizer
    truncates); ``long_with_short``: one long text batched with the recipe's first short texts, padded to it
    (dynamic int8 takes one activation scale per batch, so the long row changes the short rows' numbers)."""
    step = len(LONG_DOCUMENT) // LONG_ROWS
    long = [long_text(i * step) for i in range(LONG_ROWS)]
    short = sorted(texts, key=len)[:3]
    out = []
    for name, rows in ((LONG_TEXT, long), (LONG_WITH_SHORT, [long[0], *short])):
        encoded = tokenizer(rows, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        out.append(GoldenBatch(name, {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}))
    return out



@dataclass(frozen=True)
class GoldenBatch:
    name: str
    inputs: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, ...]:
        """[batch, sequence] of a token batch, [batch, channels, height, width] of an image batch."""
        main = self.inputs["input_ids"] if "input_ids" in self.inputs else self.inputs[PIXELS]
        return tuple(int(d) for d in main.shape)

    @property
    def padded_tokens(self) -> int:
        return int((self.inputs["attention_mask"] == 0).sum()) if "attention_mask" in self.inputs else 0


def golden_batches(texts: Sequence[str], shapes: Sequence[tuple[int, int]], tokenizer: Any,
                   max_positions: int | None, seed: int = 0, long_length: int | None = None) -> list[GoldenBatch]:
    """The recipe's texts as one padded batch, then one synthetic batch per shape, then with
    ``long_length`` (what consumers truncate to, e.g. sentence-transformers' max_seq_length; capped at
    the model's positions) the two long-text batches of :func:`long_batches`.

    Synthetic rows have lengths from the full sequence down to a few tokens; ids are drawn from
    the tokenizer's ordinary (non-special) vocabulary, framed by its special tokens if it has them.
    """
    limit = min(max_positions or 512, getattr(tokenizer, "model_max_length", 512) or 512)
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=limit, return_tensors="np")
    batches = [GoldenBatch(TEXTS, {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()})]
    names = set(encoded)
    rng = np.random.default_rng(seed)
    wanted = list(shapes)
    if all(b == EXPORT_SHAPE[0] for b, _ in [batches[0].shape, *wanted]) or \
            all(s == EXPORT_SHAPE[1] for _, s in [batches[0].shape, *wanted]):
        wanted.append((EXPORT_SHAPE[0] + 1, EXPORT_SHAPE[1] + 7))  # never only the export shape
    for b, s in wanted:
        s = min(s, limit)
        batches.append(GoldenBatch(f"synthetic_{b}x{s}", synthetic_batch(tokenizer, names, b, s, rng)))
    if long_length:
        batches += long_batches(texts, tokenizer, min(long_length, limit))
    return batches


def synthetic_batch(tokenizer: Any, names: set[str], batch: int, seq: int, rng: np.random.Generator,
                    lengths: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Random ordinary tokens framed by the special tokens, rows of ``lengths`` real tokens (by
    default the first row full and the others shorter and shorter), padded to ``seq``."""
    special = set(tokenizer.all_special_ids)
    ordinary = np.array([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = np.full((batch, seq), pad, dtype=np.int64)
    mask = np.zeros((batch, seq), dtype=np.int64)
    if lengths is None:  # the first row is full length; the others shrink, so 2+ rows have padding
        lengths = [seq] + [max(1, int(seq * (batch - i) / (batch + 1))) for i in range(1, batch)]
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.choice(ordinary, size=n)
        if n >= 2 and tokenizer.cls_token_id is not None and tokenizer.sep_token_id is not None:
            ids[row, 0], ids[row, n - 1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        elif n >= 2 and tokenizer.bos_token_id is not None and tokenizer.eos_token_id is not None:
            ids[row, 0], ids[row, n - 1] = tokenizer.bos_token_id, tokenizer.eos_token_id
        mask[row, :n] = 1
    out = {"input_ids": ids}
    if "attention_mask" in names:
        out["attention_mask"] = mask
    if "token_type_ids" in names:
        out["token_type_ids"] = np.zeros_like(ids)
    return out


def prompt(inputs: Mapping[str, np.ndarray], left: bool) -> dict[str, np.ndarray]:
    """input_ids and attention_mask only (generate takes no token_type_ids), padding moved to the
    left for decoder-only models: batched generation continues every row from its last column."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    if left:  # trailing padding moves to the front (a tokenizer that pads left has none)
        shifts = np.argmax(mask[:, ::-1] == 1, axis=1)  # trailing zeros of each row
        ids = np.stack([np.roll(row, int(n)) for row, n in zip(ids, shifts, strict=True)])
        mask = np.stack([np.roll(row, int(n)) for row, n in zip(mask, shifts, strict=True)])
    return {"input_ids": ids, "attention_mask": mask}


def image_batches(processor: Any, shapes: Sequence[tuple[int, int]], seed: int = 0) -> list[GoldenBatch]:
    """One batch of seeded random RGB images per recipe shape (its batch size; images of several
    sizes, so the processor resizes), as ``pixel_values`` from the checkpoint's image processor.
    At least one batch size differs from the export's."""
    rng = np.random.default_rng(seed)
    sizes = list(dict.fromkeys(b for b, _ in shapes))
    if all(b == EXPORT_SHAPE[0] for b in sizes):
        sizes.append(EXPORT_SHAPE[0] + 1)
    batches = []
    for b in sizes:
        images = [rng.integers(0, 256, size=(24 + 8 * (i % 3), 40 - 6 * (i % 2), 3), dtype=np.uint8)
                  for i in range(b)]
        pixels = np.asarray(processor(images=images, return_tensors="np")[PIXELS], dtype=np.float32)
        batches.append(GoldenBatch(f"images_{b}", {PIXELS: pixels}))
    return batches


def save_golden(path_inputs: Path, path_outputs: Path, batches: Sequence[GoldenBatch],
                reference: Sequence[Outputs]) -> None:
    """Golden inputs and eager outputs as ``<batch>/<tensor>`` entries of two .npz files.

    Written byte-for-byte deterministically (fixed zip timestamps), so manifests of two builds of
    the same recipe agree.
    """
    _write_npz(path_inputs, {f"{b.name}/{k}": v for b in batches for k, v in b.inputs.items()})
    _write_npz(path_outputs, {f"{b.name}/{k}": v for b, out in zip(batches, reference, strict=True)
                              for k, v in out.items()})


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def load_golden(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Read a golden .npz back as ``{batch: {tensor: array}}`` (no pickles)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            batch, name = key.split("/", 1)
            out.setdefault(batch, {})[name] = data[key]
    return out
