"""tunelens' default model against the original musicnn TensorFlow graphs, on the same files, in one sitting.

    python scripts/bench_original.py MUSIC_DIR [--files 12] [--rounds 3] [--load 0,1] [--tf-env .tf-env]

The original runs in its own environment (built at --tf-env when missing: tensorflow-cpu, librosa and the
`musicnn` 0.1.0 wheel without its dependencies, which pin TF 1): its MTT and MSD graphs frozen from the wheel's
checkpoints as `../shared/musicnn/make_fixtures.py` does, on 2 threads, fed the mel patches of musicnn's own
front end (librosa at 16 kHz, log10(10000·x + 1)), both one patch per call (as the issue's first measurement) and
all of a file's patches in one call. tunelens runs its default encoder in one process (decode, front end, both
taggers on its default runtime, the recogniser head), and in two one-thread processes sharing the files (what
`tunelens index` runs on 2 cores). They alternate round by round; model loading is left out
of both; each file is decoded and embedded whole. `--load 1` repeats it all with one busy process competing for
the cores. Not part of CI: it downloads TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from busy import busy_processes  # scripts/busy.py, beside this file

ORIGINAL = r'''
import json, sys, time, numpy as np
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import librosa, tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.python.framework import tensor_util
import musicnn
tf.compat.v1.disable_eager_execution()
SR, HOP, NFFT, NMELS, NFRAMES = 16000, 256, 512, 96, 187
files, per_patch = json.loads(sys.argv[1]), sys.argv[2] == "1"
root = os.path.dirname(musicnn.__file__)
outs = ["model/dense_1/BiasAdd", "model/batch_normalization_10/batchnorm/add_1"]

def frozen(model_dir):
    mg = meta_graph_pb2.MetaGraphDef(); mg.ParseFromString(open(f"{model_dir}/.meta", "rb").read())
    gd = tf.compat.v1.graph_util.extract_sub_graph(mg.graph_def, outs)
    reader = tf.compat.v1.train.NewCheckpointReader(model_dir + "/")
    for n in gd.node:
        if "_output_shapes" in n.attr: del n.attr["_output_shapes"]
        if n.op in ("VariableV2", "Variable"):
            val = reader.get_tensor(n.name); n.op = "Const"; n.ClearField("attr")
            n.attr["dtype"].type = tf.as_dtype(val.dtype).as_datatype_enum
            n.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(val))
    for n in gd.node:
        if n.op == "Identity" and "_class" in n.attr: del n.attr["_class"]
    return gd

config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
sessions = []
for model in ("MTT_musicnn", "MSD_musicnn"):
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(frozen(f"{root}/{model}"), name="")
    sessions.append(tf.compat.v1.Session(graph=g, config=config))

def run(path):
    y, _ = librosa.load(path, sr=SR)
    m = np.log10(10000 * librosa.feature.melspectrogram(y=y, sr=SR, hop_length=HOP, n_fft=NFFT, n_mels=NMELS).T + 1)
    p = np.stack([m[s:s + NFRAMES] for s in range(0, m.shape[0] - NFRAMES + 1, NFRAMES)]).astype(np.float32)
    for s in sessions:
        for batch in ([p[i:i + 1] for i in range(len(p))] if per_patch else [p]):
            s.run([o + ":0" for o in outs], {"model/Placeholder:0": batch, "model/Placeholder_2:0": False})
    return len(y) / SR

run(files[0])  # warm-up: graph optimisation on first call is not the speed
t = time.perf_counter(); seconds = sum(run(f) for f in files); took = time.perf_counter() - t
print(json.dumps({"audio_s": seconds, "took_s": took}))
'''


def ensure_tf_env(env: Path) -> Path:
    python = env / "bin" / "python"
    if (env / ".ready").exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["tensorflow-cpu", "librosa"], check=True)
    subprocess.run(pip + ["--no-deps", "musicnn==0.1.0"], check=True)
    (env / ".ready").touch()
    return python


def run_original(python: Path, files: list[str], per_patch: bool) -> float:
    out = subprocess.run([str(python), "-c", ORIGINAL, json.dumps(files), "1" if per_patch else "0"],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["audio_s"] / r["took_s"]


def balanced_shares(files: list[str], n: int) -> list[list[str]]:
    """The files split over n workers, longest first, each to the worker with the least audio so far: close to
    what `tunelens index` does by handing out files as workers free up (a fixed every-other split left one worker
    343 of the 12 demo files' 565 seconds, so the other waited)."""
    import av

    def seconds(path: str) -> float:
        with av.open(path) as container:
            return float(container.duration or 0) / av.time_base

    length = {f: seconds(f) for f in files}
    loads, shares = [0.0] * n, [[] for _ in range(n)]
    for f in sorted(files, key=lambda f: (-length[f], f)):
        i = loads.index(min(loads))
        shares[i].append(f)
        loads[i] += length[f]
    return [share for share in shares if share]


def run_tunelens(files: list[str], processes: int = 0) -> float:
    """x realtime of tunelens' default encoder: in one process (its threads: torch's count), or over `processes`
    one-thread processes each given a share of the files at once (`balanced_shares`), as `tunelens index` runs its
    workers."""
    code = (
        "import json, sys, time\n"
        "from tunelens.embed import load_encoder\n"
        "from tunelens.embed.audio import decode\n"
        "from tunelens.embed.windows import make_windows, window_samples\n"
        "enc = load_encoder('musicnn'); files = json.loads(sys.argv[1])\n"
        "def run(f):\n"
        "    d = decode(f, enc.sample_rate); w, _ = make_windows(d.samples, window_samples(enc.window_seconds, "
        "enc.sample_rate))\n"
        "    enc.embed_audio(w); return len(d.samples) / enc.sample_rate\n"
        "run(files[0]); t = time.perf_counter(); s = sum(run(f) for f in files)\n"
        "print(json.dumps({'audio_s': s, 'took_s': time.perf_counter() - t, 'runtime': enc.runtime}))\n")
    if not processes:
        out = subprocess.run([sys.executable, "-c", code, json.dumps(files)], capture_output=True, text=True,
                             check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        return r["audio_s"] / r["took_s"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    shares = balanced_shares(files, processes)
    procs = [subprocess.Popen([sys.executable, "-c", code, json.dumps(share)], stdout=subprocess.PIPE, text=True,
                              env=env) for share in shares]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return sum(r["audio_s"] for r in results) / max(r["took_s"] for r in results)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("music", type=Path)
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--load", default="0,1", help="busy background processes, comma-separated settings")
    ap.add_argument("--tf-env", type=Path, default=Path(".tf-env"))
    args = ap.parse_args(argv)
    if not args.music.is_dir():
        ap.error(f"{args.music} is not a folder of music (the demo corpus is made by `make demo`)")
    files = sorted(str(p) for p in args.music.rglob("*") if p.suffix in {".flac", ".ogg", ".mp3", ".wav"})
    files = files[:: max(1, len(files) // args.files)][: args.files]
    python = ensure_tf_env(args.tf_env)
    print(f"{len(files)} files; x realtime, median of {args.rounds} alternating rounds; model loading left out")
    print(f"{'load':>5}{'original, 1 patch/call':>24}{'original, file/call':>21}{'tunelens, 1 process':>21}"
          f"{'tunelens, 2 workers':>21}{'ratio':>8}")
    for load in (int(x) for x in args.load.split(",")):
        with busy_processes(load):
            rows = {"patch": [], "file": [], "tunelens": [], "workers": []}
            for _ in range(args.rounds):
                rows["patch"].append(run_original(python, files, True))
                rows["tunelens"].append(run_tunelens(files))
                rows["file"].append(run_original(python, files, False))
                rows["workers"].append(run_tunelens(files, processes=2))
            med = {k: float(np.median(v)) for k, v in rows.items()}
            best = max(med["patch"], med["file"])
            print(f"{load:>5}{med['patch']:>24.1f}{med['file']:>21.1f}{med['tunelens']:>21.1f}{med['workers']:>21.1f}"
                  f"{max(med['tunelens'], med['workers']) / best:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
