"""Train the instrument recogniser: a multi-label head (one hidden layer) on the frozen musicnn features (each
tagger's 50 logits and 200-d penultimate layer per 3 s window), from development-corpus renders
(`scripts/make_dev_corpus.py`).

    python scripts/train_instruments.py CORPUS [CORPUS ...] --train musescore,csound [--augment 2] [--out embed/weights]

`--augment N` adds N copies of every training clip passed through a random recording chain (`augment`: EQ,
low-pass, level and saturation, pink noise), so the head learns the instrument rather than one soundfont's sound:
on the left-out training folds (clip mAP MuseScore / csound) none 0.766/0.765, one copy 0.811/0.774, two 0.814/0.789.

Every corpus folder's clips are read with their ground truth; features are cached beside them. Evaluation is
always on soundfonts left out of training: each training soundfont in turn is left out (the head is trained on
the others), and the final head, trained on every `--train` soundfont, is scored on the soundfonts never
trained on. It prints clip-level average precision per instrument (solos and mixtures apart) against the
musicnn tags where a tag exists. Training is deterministic: the same features give the same weights.

Only soundfonts whose licence is permissive may train weights that ship in the default path (the corpus marks
them); `--train` refuses the others unless `--allow-copyleft` is given (for experiments, never for release).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

# musicnn tags that name a class directly: the baseline the recogniser must not fall below
TAG_BASELINE = {"piano": "piano", "harpsichord": "harpsichord", "acoustic guitar": "guitar", "violin": "violin",
                "cello": "cello", "harp": "harp", "flute": "flute", "choir": "choir", "drum kit": "drums",
                "string ensemble": "strings", "synth lead": "synth", "synth pad": "synth"}


def load_corpus(folders: list[Path]) -> pl.DataFrame:
    frames = []
    for folder in folders:
        gt = pl.read_parquet(folder / "ground_truth.parquet")
        frames.append(gt.with_columns(pl.lit(str(folder)).alias("root")))
    return pl.concat(frames, how="diagonal_relaxed")


_worker_encoder = None


def _init_worker() -> None:
    global _worker_encoder
    import torch

    from tunelens.embed import EncoderOptions
    from tunelens.embed.musicnn_encoder import MusicnnEncoder

    torch.set_num_threads(1)
    _worker_encoder = MusicnnEncoder("", EncoderOptions(device="cpu"), with_head=False)


AUGMENT_VERSION = "a1"  # bump when augment() changes: the cached features of augmented copies are keyed by it


def _biquad(kind: str, freq: float, gain_db: float, q: float, sr: int) -> np.ndarray:
    """One second-order section (RBJ audio-EQ cookbook): a peaking, low-shelf or high-shelf filter, or a low-pass."""
    a = 10 ** (gain_db / 40)
    w = 2 * np.pi * freq / sr
    alpha = np.sin(w) / (2 * q)
    c = np.cos(w)
    if kind == "peak":
        b = [1 + alpha * a, -2 * c, 1 - alpha * a]
        den = [1 + alpha / a, -2 * c, 1 - alpha / a]
    elif kind in ("lowshelf", "highshelf"):
        sign = 1 if kind == "lowshelf" else -1
        sq = 2 * np.sqrt(a) * alpha
        b = [a * ((a + 1) - sign * (a - 1) * c + sq), sign * 2 * a * ((a - 1) - sign * (a + 1) * c),
             a * ((a + 1) - sign * (a - 1) * c - sq)]
        den = [(a + 1) + sign * (a - 1) * c + sq, -sign * 2 * ((a - 1) + sign * (a + 1) * c),
               (a + 1) + sign * (a - 1) * c - sq]
    else:  # lowpass
        b = [(1 - c) / 2, 1 - c, (1 - c) / 2]
        den = [1 + alpha, -2 * c, 1 - alpha]
    return np.array(b + den) / den[0]


def augment(samples: np.ndarray, sr: int, seed: int) -> np.ndarray:
    """The same music as a different recording chain would hand it over, so the head learns the instrument rather
    than one soundfont's sound (the renders already vary the room): a random EQ (two peaks and a shelf, up to
    ±9 dB), sometimes a low-pass (an old or band-limited recording), level from -20 to +6 dB with soft
    saturation when driven hot (mastering), and pink noise 25-50 dB below the music. Deterministic in `seed`."""
    from scipy.signal import sosfilt

    rng = np.random.default_rng(seed)
    sos = [_biquad("peak", float(np.exp(rng.uniform(np.log(80), np.log(6000)))), float(rng.uniform(-9, 9)),
                   float(rng.uniform(0.5, 2.0)), sr) for _ in range(2)]
    shelf = "lowshelf" if rng.random() < 0.5 else "highshelf"
    sos.append(_biquad(shelf, float(rng.uniform(150, 300) if shelf == "lowshelf" else rng.uniform(2500, 5000)),
                       float(rng.uniform(-8, 8)), 0.7, sr))
    if rng.random() < 0.25:
        sos.append(_biquad("lowpass", float(rng.uniform(3000, 0.45 * sr)), 0.0, 0.7, sr))
    y = sosfilt(np.stack(sos), samples.astype(np.float64))
    peak = float(np.max(np.abs(y))) or 1.0
    y = y / peak * 10 ** (rng.uniform(-20, 6) / 20)
    if np.max(np.abs(y)) > 1:
        y = np.tanh(y)
    white = rng.standard_normal(len(y))
    spectrum = np.fft.rfft(white)
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))  # 1/f power: pink
    pink = np.fft.irfft(spectrum, len(y))
    rms = float(np.sqrt(np.mean(y ** 2))) or 1e-6
    pink *= rms * 10 ** (-rng.uniform(25, 50) / 20) / (float(np.sqrt(np.mean(pink ** 2))) or 1.0)
    return (y + pink).astype(np.float32)


def _features_of(job: tuple[str, int | None]) -> np.ndarray:
    from tunelens.embed.audio import decoded, read_audio
    from tunelens.embed.windows import make_windows, window_samples

    path, seed = job
    enc = _worker_encoder
    data, sr = read_audio(path)
    samples = decoded(data, sr, enc.sample_rate).samples
    if seed is not None:
        samples = augment(samples, enc.sample_rate, seed)
    windows, _ = make_windows(samples, window_samples(enc.window_seconds, enc.sample_rate))
    return enc.features(windows).astype(np.float32)


def _augment_seed(file: str, copy: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{file}|{copy}".encode(), digest_size=4).digest(), "little")


def clip_features(corpus: pl.DataFrame, features_version: str, processes: int, copy: int = 0) -> list[np.ndarray]:
    """[windows, 500] features of every clip (`copy` > 0: of its copy-th augmented version), computed in
    one-thread worker processes and cached per corpus folder (`<features version>[-<augment version>-<copy>].npz`),
    so a second run only trains."""
    import multiprocessing as mp

    name = features_version + (f"-{AUGMENT_VERSION}-{copy}" if copy else "")
    caches: dict[str, dict] = {}
    for root in corpus["root"].unique().to_list():
        path = Path(root) / f"{name}.npz"
        caches[root] = dict(np.load(path)) if path.exists() else {}
    todo = [(r, f) for r, f in corpus.select("root", "file").iter_rows() if f not in caches[r]]
    if todo:
        t0 = time.time()
        jobs = [(str(Path(r) / f), _augment_seed(f, copy) if copy else None) for r, f in todo]
        if processes <= 1:  # in this process: no workers to start
            _init_worker()
            results = map(_features_of, jobs)
        else:
            pool = mp.get_context("spawn").Pool(processes, initializer=_init_worker)
            results = pool.imap(_features_of, jobs, chunksize=4)
        for i, ((root, file), x) in enumerate(zip(todo, results)):
            caches[root][file] = x
            if (i + 1) % 200 == 0:
                print(f"  features of {i + 1}/{len(todo)} clips{' (augmented)' if copy else ''} "
                      f"({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        if processes > 1:
            pool.close()
        for root, cache in caches.items():
            if cache:
                np.savez(Path(root) / f"{name}.npz", **cache)
    return [caches[r][f] for r, f in corpus.select("root", "file").iter_rows()]


def augmented_features(corpus: pl.DataFrame, rows: list[int], features_version: str, processes: int,
                       copies: int) -> dict[int, list[np.ndarray]]:
    """The features of `copies` augmented versions of each clip of `corpus` at `rows`, cached like the clean ones."""
    out: dict[int, list[np.ndarray]] = {i: [] for i in rows}
    for copy in range(1, copies + 1):
        for i, x in zip(rows, clip_features(corpus[rows], features_version, processes, copy)):
            out[i].append(x)
    return out


def training_windows(rows: list[int], feats: list[np.ndarray], augmented: dict[int, list[np.ndarray]],
                     labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windows and labels of the clips at `rows` and of their augmented copies."""
    clips = [(x, labels[i]) for i in rows for x in [feats[i], *augmented.get(i, [])]]
    return windows_and_labels([x for x, _ in clips], np.stack([y for _, y in clips]))


def train_head(x: np.ndarray, y: np.ndarray, epochs: int = 600, weight_decay: float = 1e-4, hidden: int = 256,
               dropout: float = 0.2, seed: int = 0) -> dict:
    """Standardised inputs, one hidden ReLU layer (`hidden` 0: linear), one logistic output per class, positives
    weighted up to balance each class; full-batch Adam on one thread with a fixed seed, so the result depends
    only on the data."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-4
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y)
    pos = yt.sum(0).clamp(min=1)
    pos_weight = ((len(yt) - pos) / pos).clamp(max=20.0)
    layers = ([torch.nn.Dropout(dropout), torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
               torch.nn.Dropout(dropout), torch.nn.Linear(hidden, y.shape[1])]
              if hidden else [torch.nn.Linear(x.shape[1], y.shape[1])])
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=0.003 if hidden else 0.01, weight_decay=weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn(net(xt), yt)
        loss.backward()
        opt.step()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    state = {"mean": mean.astype(np.float32), "std": std.astype(np.float32),
             "weight": linears[-1].weight.detach().numpy().T.copy(), "bias": linears[-1].bias.detach().numpy().copy()}
    if hidden:
        state["hidden_weight"] = linears[0].weight.detach().numpy().T.copy()
        state["hidden_bias"] = linears[0].bias.detach().numpy().copy()
    return state


def predict(head: dict, x: np.ndarray) -> np.ndarray:
    """[windows, classes] logits, as the encoder computes them."""
    from tunelens.embed.musicnn_encoder import InstrumentHead

    return InstrumentHead(head).logits(x)


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    if not relevant.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    rel = relevant[order]
    hits = np.cumsum(rel)
    return float(np.sum(hits[rel] / (np.flatnonzero(rel) + 1)) / rel.sum())


def windows_and_labels(feats: list[np.ndarray], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate(feats)
    y = np.concatenate([np.repeat(labels[i:i + 1], len(f), axis=0) for i, f in enumerate(feats)])
    return x.astype(np.float32), y.astype(np.float32)


def evaluate(head: dict, feats: list[np.ndarray], labels: np.ndarray, kinds: list[str], classes: list[str],
             tag_probs: np.ndarray | None, tag_index: dict[str, int]) -> pl.DataFrame:
    """Clip-level AP per class (clip score = mean window logit), over all clips, solos and mixtures."""
    clip_scores = np.stack([predict(head, f).mean(axis=0) for f in feats])
    rows = []
    kinds_arr = np.array(kinds)
    for j, name in enumerate(classes):
        row = {"instrument": name}
        for part, mask in (("all", np.ones(len(kinds_arr), bool)), ("solo", kinds_arr == "solo"),
                           ("mixture", kinds_arr == "mixture")):
            row[f"AP {part}"] = average_precision(clip_scores[mask, j], labels[mask, j] > 0)
        tag = TAG_BASELINE.get(name)
        row["AP musicnn tag"] = (average_precision(tag_probs[:, tag_index[tag]], labels[:, j] > 0)
                                 if tag and tag_probs is not None else float("nan"))
        rows.append(row)
    return pl.DataFrame(rows)


def text_search(encoder, feats: list[np.ndarray], labels: np.ndarray, classes: list[str], baseline: bool) -> list:
    """AP of the query "<instrument>" (e.g. "clarinet") over clips, as `tunelens search` ranks tracks: track vector =
    the encoder's window vectors pooled as the pipeline pools them; query vector = the text tower's tag weights.
    `baseline`: the 100 musicnn tags alone (encoder revision 3)."""
    from tunelens.embed.base import l2_normalize
    from tunelens.embed.musicnn_encoder import _centre, vector_blocks, window_vectors
    from tunelens.embed.windows import pool_track

    if baseline:
        tracks = np.stack([pool_track(window_vectors(f[:, :100])) for f in feats])
        q = np.asarray(encoder._text_tower().encode(classes, normalize_embeddings=True), np.float32)
        sims = q @ encoder._tags()[:100].T / encoder.text_temperature
        w = np.exp(sims - sims.max(axis=1, keepdims=True))
        queries = l2_normalize(_centre(w / w.sum(axis=1, keepdims=True)))
    else:
        logits = [encoder.logits_from_features(f) for f in feats]
        tracks = np.stack([pool_track(window_vectors(x), vector_blocks(x.shape[1])) for x in logits])
        queries = encoder.embed_text(classes)
    scores = tracks @ queries.T
    return [average_precision(scores[:, j], labels[:, j] > 0) for j in range(len(classes))]


def summary(table: pl.DataFrame) -> str:
    parts = [f"mAP {table['AP all'].drop_nans().mean():.3f}", f"solos {table['AP solo'].drop_nans().mean():.3f}",
             f"mixtures {table['AP mixture'].drop_nans().mean():.3f}"]
    base = table.filter(pl.col("AP musicnn tag").is_not_nan())
    if len(base):
        parts.append(f"on the {len(base)} classes with a musicnn tag: head {base['AP all'].mean():.3f} vs tag "
                     f"{base['AP musicnn tag'].mean():.3f}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    from safetensors.numpy import save_file

    from tunelens.embed import EncoderOptions
    from tunelens.embed.musicnn_encoder import MusicnnEncoder, tag_metadata

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpora", type=Path, nargs="+", help="development corpus folders (make_dev_corpus.py output)")
    ap.add_argument("--train", default="musescore,csound", help="soundfonts to train on; the rest are evaluation")
    ap.add_argument("--out", type=Path, default=None, help="write instruments.safetensors and instruments.json here")
    # hidden layer, dropout 0.2 and 600 epochs chosen on the left-out training folds (clip mAP MuseScore / csound):
    # linear 0.745/0.723; 128 units 0.760/0.740; 256 units 0.766/0.752 (300 epochs), 0.766/0.765 (600 epochs)
    ap.add_argument("--epochs", type=int, default=600)
    ap.add_argument("--hidden", type=int, default=256, help="hidden ReLU units (0: a linear head)")
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="feature extraction workers")
    # chosen on the left-out training folds (MuseScore / csound clip mAP, 1,200 clips each): 1e-2 0.687/0.655,
    # 1e-3 0.733/0.708, 1e-4 0.745/0.723, 0 0.744/0.723
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--augment", type=int, default=2,
                    help="augmented copies of each training clip (EQ, level, saturation, noise) beside the clean one")
    ap.add_argument("--allow-copyleft", action="store_true", help="train on GPL / share-alike renders (experiments)")
    args = ap.parse_args(argv)

    corpus = load_corpus(args.corpora)
    train_fonts = [s for s in args.train.split(",") if s]
    missing = set(train_fonts) - set(corpus["soundfont"])
    if missing:
        print(f"error: no clips of {sorted(missing)} in the corpora given", file=sys.stderr)
        return 2
    copyleft = corpus.filter(pl.col("soundfont").is_in(train_fonts) & ~pl.col("permissive"))["soundfont"].unique()
    if len(copyleft) and not args.allow_copyleft:
        print(f"error: {', '.join(copyleft)} is not permissively licensed; its renders cannot train weights that "
              f"ship (pass --allow-copyleft for an experiment)", file=sys.stderr)
        return 2
    classes = sorted({n for names in corpus["instruments"] for n in names})
    labels = np.array([[n in set(names) for n in classes] for names in corpus["instruments"]], np.float32)
    encoder = MusicnnEncoder("", EncoderOptions(device="cpu"), with_head=False)
    print(f"{len(corpus)} clips, {len(classes)} classes; computing musicnn features", file=sys.stderr)
    feats = clip_features(corpus, encoder.features_version, args.processes)
    train_rows = [i for i, s in enumerate(corpus["soundfont"]) if s in train_fonts]
    augmented = augmented_features(corpus, train_rows, encoder.features_version, args.processes, args.augment)
    meta = tag_metadata()["models"]
    names = list(meta["MTT"]["labels"]) + list(meta["MSD"]["labels"])
    tag_index = {n: i for i, n in enumerate(names)}
    tag_probs = np.stack([1 / (1 + np.exp(-f[:, :100].mean(axis=0))) for f in feats])
    fonts = corpus["soundfont"].to_list()
    kinds = corpus["kind"].to_list()
    by_font = {s: [i for i, f in enumerate(fonts) if f == s] for s in sorted(set(fonts))}

    def fit(rows: list[int]) -> dict:
        return train_head(*training_windows(rows, feats, augmented, labels), args.epochs, args.weight_decay,
                          args.hidden)

    def score(head: dict, rows: list[int]) -> pl.DataFrame:
        return evaluate(head, [feats[i] for i in rows], labels[rows], [kinds[i] for i in rows], classes,
                        tag_probs[rows], tag_index)

    results, fold_heads = {}, {}
    if len(train_fonts) > 1:
        for left in train_fonts:
            rows = [i for s in train_fonts if s != left for i in by_font[s]]
            fold_heads[left] = fit(rows)
            table = score(fold_heads[left], by_font[left])
            results[f"left out {left} (trained on the other training soundfonts)"] = table
    final = fit([i for s in train_fonts for i in by_font[s]])
    for s in by_font:
        if s not in train_fonts:
            results[f"never trained on: {s}"] = score(final, by_font[s])
    pl.Config.set_tbl_rows(60)
    metrics = {}
    for name, table in results.items():
        print(f"\n== {name}: {summary(table)}")
        print(table.with_columns(pl.selectors.float().round(3)))
        metrics[name] = {"summary": summary(table), "per_instrument": table.to_dicts()}
    if args.out:
        data_hash = hashlib.blake2b(digest_size=8)
        for i in sorted(i for s in train_fonts for i in by_font[s]):
            for x in [feats[i], *augmented[i]]:
                data_hash.update(x.tobytes())
        save_file({k: np.ascontiguousarray(v) for k, v in final.items()}, str(args.out / "instruments.safetensors"))
        (args.out / "instruments.safetensors").chmod(0o644)
        corpora = {}
        for folder in args.corpora:
            recipe = json.loads((folder / "recipe.json").read_text()) if (folder / "recipe.json").exists() else {}
            corpora[folder.name] = "scripts/make_dev_corpus.py " + " ".join(recipe.get("argv", []))
        licences = corpus.select("soundfont", "soundfont_licence").unique().sort("soundfont").rows()
        (args.out / "instruments.json").write_text(json.dumps({
            "classes": classes, "features": "musicnn MTT+MSD logits (100) and penultimate layers (400) per 3 s window",
            "trained_on": train_fonts, "soundfont_licences": dict(licences), "feature_hash": data_hash.hexdigest(),
            # the runtime too: ONNX Runtime's and torch's features differ in the last bits (4e-5), so in the hash
            "features_version": encoder.features_version, "features_runtime": encoder.runtime,
            "epochs": args.epochs, "weight_decay": args.weight_decay, "hidden": args.hidden,
            "augment": {"copies": args.augment, "version": AUGMENT_VERSION},
            "clips": {s: len(by_font[s]) for s in by_font}, "corpora": corpora,
            "scores": "music21's corpus (Bach chorales, Haydn and Mozart quartet movements, Joplin, Corelli)",
            "recipe": "scripts/train_instruments.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "metrics": metrics,
        }, indent=1, default=float))
        print(f"\nwrote {args.out / 'instruments.safetensors'} and instruments.json", file=sys.stderr)
        if args.out.resolve() == (Path(__file__).resolve().parents[1] / "embed" / "weights"):
            # text search through the shipped encoder, on the soundfonts never trained on
            from tunelens.embed import load_encoder

            full = load_encoder("musicnn", EncoderOptions(device="cpu"))
            from tunelens.embed.musicnn_encoder import InstrumentHead

            held_fonts = [s for s in by_font if s not in train_fonts]
            groups = [(f"left out {s} (head trained on the other training soundfonts)", [s], fold_heads[s])
                      for s in fold_heads]
            groups += [(f"never trained on: {s}", [s], None) for s in held_fonts]
            shipped, searches = full.head, {}
            for name, font, head in groups:
                full.head = shipped if head is None else InstrumentHead(head)
                held = [i for s in font for i in by_font[s]]
                for part, mask in (("all", None), ("solo", "solo"), ("mixture", "mixture")):
                    rows_ = [i for i in held if mask is None or kinds[i] == mask]
                    if not rows_:
                        continue
                    new = text_search(full, [feats[i] for i in rows_], labels[rows_], classes, baseline=False)
                    old = text_search(full, [feats[i] for i in rows_], labels[rows_], classes, baseline=True)
                    line = (f"text search mAP over {len(classes)} instrument queries, {part} clips: "
                            f"{np.nanmean(new):.3f} (musicnn tags alone {np.nanmean(old):.3f})")
                    print(f"{name}: {line}")
                    searches.setdefault(name, []).append(line)
                    if part == "all" and head is None:
                        print(pl.DataFrame({"query": classes, "AP": new, "AP musicnn tags": old}).with_columns(
                            pl.selectors.float().round(3)))
            full.head = shipped
            provenance = json.loads((args.out / "instruments.json").read_text())
            provenance["text_search"] = searches
            (args.out / "instruments.json").write_text(json.dumps(provenance, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
