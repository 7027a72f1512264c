"""`wbg-edge` end to end: real videos in, real files out, signals, one-line errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np
import pytest

from wbg_edge.cli import build_parser, main
from wbg_edge.pipeline import PipelineConfig

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model-res", "64", "--refine-res", "64", "-q"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def cli(*args, cwd=None, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wbg_edge", *args], capture_output=True, cwd=cwd, env=ENV,
                          timeout=timeout, **kw)


def write_clip(path, n=9, w=160, h=96):
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for i in range(n):
        f = np.full((h, w, 3), 70, np.uint8)
        cv2.ellipse(f, (20 + 12 * i, h // 2), (18, 30), 0, 0, 360, (40, 90, 200), -1)
        out.write(f)
    out.release()
    return path


def read_back(path) -> tuple[int, tuple | None]:
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, None
    while True:
        ok, img = cap.read()
        if not ok:
            return n, shape
        n, shape = n + 1, img.shape


def test_run_video_to_video_keeps_every_frame_and_size(tmp_path):
    src = write_clip(tmp_path / "in.mp4", n=9)
    assert main(["run", "-i", str(src), "-o", str(tmp_path / "out.mp4"), *FAST]) == 0
    assert read_back(tmp_path / "out.mp4") == (9, (96, 160, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]


def test_run_rgba_png_output_round_trips(tmp_path):
    src = write_clip(tmp_path / "in.mp4", n=4)
    assert main(["run", "-i", str(src), "-o", f"{tmp_path}/out/", "--background", "transparent", *FAST]) == 0
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 4
    img = cv2.imread(str(files[2]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (96, 160, 4)
    cap = cv2.VideoCapture(str(src))
    for _ in range(3):
        frame = cap.read()[1]
    # Straight (unpremultiplied) alpha: colour planes are the input frame itself where alpha is solid, and the
    # estimated foreground colours at soft pixels (--no-foreground: the frame itself everywhere).
    solid = (img[..., 3] == 0) | (img[..., 3] == 255)
    assert np.abs(img[..., :3].astype(int) - frame)[solid].max() <= 1
    assert main(["run", "-i", str(src), "-o", f"{tmp_path}/plain/", "--background", "transparent", "--no-foreground",
                 *FAST]) == 0
    img = cv2.imread(str(sorted((tmp_path / "plain").glob("*.png"))[2]), cv2.IMREAD_UNCHANGED)
    assert np.abs(img[..., :3].astype(int) - frame).max() <= 1


def test_run_alpha_only_video(tmp_path):
    src = write_clip(tmp_path / "in.mp4", n=4)
    assert main(["run", "-i", str(src), "-o", str(tmp_path / "a.mp4"), "--output", "alpha", *FAST]) == 0
    assert read_back(tmp_path / "a.mp4") == (4, (96, 160, 3))


@pytest.mark.skipif(not __import__("wbg_edge.sinks").sinks.have_av(), reason="needs PyAV")
def test_run_to_mov_keeps_alpha(tmp_path):
    import av
    src = write_clip(tmp_path / "in.mp4", n=3)
    assert main(["run", "-i", str(src), "-o", str(tmp_path / "o.mov"), "--codec", "qtrle", *FAST]) == 0
    with av.open(str(tmp_path / "o.mov")) as c:
        got = [f.to_ndarray(format="bgra") for f in c.decode(video=0)]
    assert len(got) == 3 and got[0].shape == (96, 160, 4)


def test_raw_frames_on_stdout_have_the_right_byte_count(tmp_path):
    p = cli("run", "-i", "synthetic://?size=64x48&frames=5", "-o", "-", *FAST)
    assert p.returncode == 0, p.stderr.decode()
    assert len(p.stdout) == 5 * 64 * 48 * 3
    assert b"ffmpeg -f rawvideo -pix_fmt bgr24 -s 64x48" in p.stderr


def test_raw_stdout_closed_early_stops_cleanly():
    proc = subprocess.Popen([sys.executable, "-m", "wbg_edge", "run", "-i", "synthetic://?size=64x48&frames=100000",
                             "-o", "-", *FAST], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    proc.stdout.read(64 * 48 * 3 * 2)
    proc.stdout.close()  # the reader goes away (ffmpeg quit, `| head`)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert "pipe closed" in lines[-1] and "Traceback" not in err.decode()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_stream_leaves_a_playable_file_with_the_frames_so_far(tmp_path, sig):
    out = tmp_path / "live.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "wbg_edge", "run", "-i",
                             "synthetic://?size=128x96&frames=100000", "-o", str(out), *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    t0 = time.time()
    while not list(tmp_path.glob("live.partial-*")) and time.time() - t0 < 60:
        time.sleep(0.05)  # the temporary file appears with the first frame
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 0, err
    assert "stop requested" in err
    n_written = int(err.split("wrote ")[1].split(" frames")[0])
    n, shape = read_back(out)
    assert n == n_written > 0 and shape == (96, 128, 3)
    assert not list(tmp_path.glob("live.partial-*"))


@pytest.mark.parametrize("args, words", [
    (["run", "-i", "x.mp4", "-o", "y.mp4", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "-i", "x.mp4"], "required: -o"),
    (["run", "-i", "x.mp4", "-o", "y.mp4", "--model-res", "100"], "--model-res: 100 is out of range"),
    (["run", "-i", "x.mp4", "-o", "y.mp4", "--smoothing", "1"], "--smoothing: 1 is out of range"),
    (["run", "-i", "x.mp4", "-o", "y.mp4", "--backend", "cuda"], "invalid choice: 'cuda'"),
    (["run", "-i", "x.mp4", "-o", "y.mp4", "--bundle", "/no/bundle"], "no such bundle folder"),
    (["run", "-i", "/no/such.mp4", "-o", "y.mp4"], "/no/such.mp4: no such file"),
    (["run", "-i", "synthetic://", "-o", "/no/dir/y.mp4"], "does not exist"),
    (["run", "-i", "synthetic://", "-o", "y.mp4", "--output", "rgba"], "cannot store --output rgba"),
    (["run", "-i", "3", "-o", "null"], "camera 3"),
    (["bench", "--frames", "0"], "--frames: 0 is out of range"),
    (["nosuchcommand"], "invalid choice"),
])
def test_bad_input_is_one_line_without_traceback(tmp_path, args, words, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(args)
    err = capsys.readouterr().err
    assert rc != 0
    assert words in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_input_files_in_a_subprocess(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 5000)
    p = cli("run", "-i", "junk.mp4", "-o", "out.mp4", cwd=tmp_path)
    err = p.stderr.decode()
    assert p.returncode == 1 and "junk.mp4" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.mp4").exists()


def test_every_pipeline_field_has_its_flag():
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    dests = {a.dest for a in run._actions}
    assert {f.name for f in fields(PipelineConfig)} <= dests  # made from the field's metadata
    for cmd in ("bench", "batch", "demo"):
        sub = build_parser()._subparsers._group_actions[0].choices[cmd]
        assert {f.name for f in fields(PipelineConfig)} - {"mode", "overlap"} <= {a.dest for a in sub._actions}
    depth = next(a for a in run._actions if a.dest == "depth")
    assert depth.option_strings == ["--depth", "--no-depth"]
    args = build_parser().parse_args(["run", "-i", "a", "-o", "b", "--no-depth", "--depth-every", "3",
                                      "--no-patches", "--smoothing", "0.5", "--output", "alpha", "--overlap"])
    assert (args.depth, args.depth_every, args.patches, args.smoothing, args.mode, args.overlap) == \
        (False, 3, False, 0.5, "alpha", True)


def test_bench_prints_fps_and_writes_json(tmp_path, capsys):
    src = write_clip(tmp_path / "in.mp4", n=4)
    rc = main(["bench", "-i", str(src), "--frames", "6", "--warmup", "1", "--json", str(tmp_path / "b.json"),
               "--compare", "patches", *FAST[:-1]])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.splitlines()[0].startswith("end-to-end: ") and " fps " in out.splitlines()[0]
    doc = json.loads((tmp_path / "b.json").read_text())
    # frames from a file are overlapped unless told not to, and the sequential run is the overhead's reference
    assert [r["variant"] for r in doc["results"]] == ["default", "patches off", "overlap off"]
    assert doc["results"][0]["frames"] == 6 and doc["size"] == [160, 96]
    assert doc["results"][0]["config"]["overlap"] is True and "beyond the models alone" in out


def test_bench_compares_overlap_with_the_models_alone(tmp_path, capsys):
    src = write_clip(tmp_path / "in.mp4", n=4)
    assert main(["bench", "-i", str(src), "--frames", "6", "--warmup", "1", "--json", str(tmp_path / "b.json"),
                 "--compare", "overlap", *FAST[:-1]]) == 0
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "b.json").read_text())
    on, off = doc["results"]
    assert off["variant"] == "overlap off" and off["config"]["overlap"] is False
    # beyond the models alone, never below 0: the two lanes may beat the models back to back (it printed -15%)
    beyond = on["end_to_end_ms"] - off["model_ms"]
    assert on["overhead_ms"] >= 0 and on["overhead_ms"] == pytest.approx(max(beyond, 0.0))
    assert on["models_alone_ms"] == off["model_ms"] and "beyond the models alone" in out
    # an overlapped run's own model times (two lanes at once) are never taken for its overhead: that was -60%
    line = next(ln for ln in out.splitlines() if ln.startswith("pipeline overhead"))
    assert f"{on['overhead_ms']:.1f} ms" in line


def test_bench_compare_all_leaves_out_depth_on_a_bundle_without_depth(tmp_path, capsys):
    import shutil

    from wbg_edge.bundle import default_bundle_dir
    bundle = tmp_path / "nodepth"
    shutil.copytree(default_bundle_dir(), bundle)
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["artifacts"] = [a for a in doc["artifacts"] if a["stage"] != "depth"]
    (bundle / "manifest.json").write_text(json.dumps(doc))
    src = write_clip(tmp_path / "in.mp4", n=4)
    common = ["bench", "-i", str(src), "--frames", "3", "--warmup", "1", "--bundle", str(bundle), "--no-overlap",
              *FAST[:-1]]
    assert main([*common, "--json", str(tmp_path / "b.json"), "--compare", "all"]) == 0
    cap = capsys.readouterr()
    variants = [r["variant"] for r in json.loads((tmp_path / "b.json").read_text())["results"]]
    assert variants == ["default", "patches off", "overlap on"], variants
    assert "leaves out depth and depth-every" in cap.err
    assert main([*common, "--compare", "depth-every"]) == 1
    assert "no depth model" in capsys.readouterr().err


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bundle"]["artifacts"] and "onnxruntime" in info and isinstance(info["gpus"], list)


def test_demo_writes_video_and_contact_sheet_here(tmp_path):
    p = cli("demo", "--frames", "6", "--person-frames", "3", "--size", "128x96", *FAST, cwd=tmp_path)
    out = p.stdout.decode().splitlines()
    assert p.returncode == 0, p.stderr.decode()
    assert read_back(tmp_path / "wbg-edge-demo.mp4") == (9, (96, 128, 3))  # the generated clip, then the person
    assert cv2.imread(str(tmp_path / "wbg-edge-demo.png")) is not None
    assert out[0].startswith("demo: generated clip, 6 frames at 128x96 through bundle synthetic (") and " fps" in out[0]
    assert out[1].startswith("demo: generated clip: matte IoU against the clip's own alpha ")
    assert "worst frame" in out[1]
    assert out[2].startswith("demo: real person, 3 frames at 128x96 through bundle real (") and " fps" in out[2]


def test_runtime_needs_neither_pyav_nor_torch(tmp_path):
    """The runtime's promise: numpy + OpenCV + onnxruntime suffice (PyAV and scikit-image blocked here: the
    demo's person is the photo embedded in the package), torch never loads."""
    code = ("import sys; sys.modules['av'] = None; sys.modules['skimage'] = None\n"  # nor scikit-image
            "from wbg_edge.cli import main\n"
            "rc = main(['demo', '--frames', '4', '--person-frames', '2', '--size', '128x96', '--model-res', '64',\n"
            "           '--refine-res', '64', '-q'])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "sys.exit(rc)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=tmp_path, env=ENV, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert read_back(tmp_path / "wbg-edge-demo.mp4") == (6, (96, 128, 3))


def test_image_folder_with_mixed_sizes_and_channels(tmp_path, capsys):
    """Grey, BGRA and differently sized frames mid-stream: every frame is written at the first size."""
    d = tmp_path / "frames"
    d.mkdir()
    rng = np.random.default_rng(1)
    cv2.imwrite(str(d / "0.png"), rng.integers(0, 255, (96, 160, 3), dtype=np.uint8))
    cv2.imwrite(str(d / "1.png"), rng.integers(0, 255, (96, 160), dtype=np.uint8))
    cv2.imwrite(str(d / "2.png"), rng.integers(0, 255, (120, 200, 4), dtype=np.uint8))
    assert main(["run", "-i", str(d), "-o", str(tmp_path / "o.mp4"), *FAST]) == 0
    assert read_back(tmp_path / "o.mp4") == (3, (96, 160, 3))
    assert "resized" in capsys.readouterr().err


def _install_real_world(home: Path) -> Path:
    """A stand-in real-world import: a valid bundle (the shipped files) renamed, at the importer's default path."""
    import shutil

    from wbg_edge.bundle import default_bundle_dir

    rw = home / "bundles" / "real-world"
    shutil.copytree(default_bundle_dir(), rw)
    m = json.loads((rw / "manifest.json").read_text())
    m["name"] = "real-world-standin"
    (rw / "manifest.json").write_text(json.dumps(m))
    return rw


@pytest.mark.parametrize("live", [True, False], ids=["camera-like", "file-like"])
@pytest.mark.parametrize("installed", [False, True], ids=["fresh", "import-in-cache"])
def test_run_uses_the_shipped_real_bundle_for_every_source(tmp_path, monkeypatch, capsys, live, installed):
    """No --bundle: the shipped real-people bundle, camera or file, whether or not an import sits in the cache
    (the name means the shipped bytes; a cache import runs when named by its folder). The first line says so."""
    monkeypatch.setenv("WBG_EDGE_HOME", str(tmp_path / "home"))
    if installed:
        _install_real_world(tmp_path / "home")
    flag = "--live" if live else "--no-live"
    assert main(["run", "-i", "synthetic://", flag, "--frames", "2", "-o", "null", *FAST]) == 0  # -q too
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("bundle real (MediaPipe selfie segmenter + temporal and guided filters"), err
    assert "--bundle synthetic" in err[0] and not any("import_coarse" in line for line in err)


@pytest.mark.parametrize("choice, first", [
    ("synthetic", "bundle synthetic (depth + matting + refiner trained on generated scenes)"),
    ("default", "bundle default (depth + matting + refiner trained on generated scenes)"),
    ("real", "bundle real (MediaPipe selfie segmenter"),
    ("HOME", "bundle {home}/bundles/real-world ('real-world-standin': depth + coarse + refiner)"),
])
def test_run_bundle_flag_picks_and_names_it(tmp_path, monkeypatch, capsys, choice, first):
    home = tmp_path / "home"
    monkeypatch.setenv("WBG_EDGE_HOME", str(home))
    rw = _install_real_world(home)
    bundle = str(rw) if choice == "HOME" else choice
    assert main(["run", "-i", "synthetic://", "--frames", "2", "-o", "null", "--bundle", bundle, *FAST]) == 0
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith(first.format(home=home)), line


def test_right_after_install_a_real_person_in_a_file_gets_the_real_bundle(tmp_path):
    """`wbg-edge run -i clip.mp4 -o out.mp4` with an empty home (nothing imported, nothing cached): the first
    line names the real bundle, the person in the clip is matted, and nothing was fetched or written there."""
    from wbg_edge.portrait import PanClip, astronaut

    clip = PanClip(astronaut(), 320, 180, frames=4)
    out = cv2.VideoWriter(str(tmp_path / "talk.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (320, 180))
    for i in range(len(clip)):
        out.write(clip.frame(i)[0])
    out.release()
    home, user = tmp_path / "wbg-home", tmp_path / "user"  # (ONNX Runtime keeps a device id under $HOME)
    home.mkdir()
    user.mkdir()
    env = {**ENV, "WBG_EDGE_HOME": str(home), "HOME": str(user), "no_proxy": "", "NO_PROXY": "",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}  # no network either
    for args in (["-o", "out.mp4"], ["-o", "alpha.mp4", "--output", "alpha"]):
        p = subprocess.run([sys.executable, "-m", "wbg_edge", "run", "-i", "talk.mp4", *args], capture_output=True,
                           cwd=tmp_path, env=env, timeout=120)
        err = p.stderr.decode()
        assert p.returncode == 0, err
        assert err.splitlines()[0].startswith("bundle real (MediaPipe selfie segmenter + temporal and guided"), err
    assert read_back(tmp_path / "out.mp4") == (4, (180, 320, 3))
    assert list(home.iterdir()) == []
    cap = cv2.VideoCapture(str(tmp_path / "alpha.mp4"))
    alpha = cap.read()[1][..., 0].astype(np.float32) / 255
    x, y, w, h = clip.box(0)
    assert alpha[y + h // 10: y + h // 4, x + int(w * 0.38): x + int(w * 0.5)].mean() > 0.85  # her face
    assert alpha[:, : x - 4].mean() < 0.1                                                   # the grey canvas


@pytest.mark.parametrize("flag, name", [([], "real"), (["--bundle", "synthetic"], "default")])
def test_batch_follows_run_bundle_choice(tmp_path, capsys, flag, name):
    """`batch` runs the real bundle unless --bundle says otherwise: its records hold the manifest it ran."""
    from wbg_edge.bundle import bundle_location, sha256_file

    src = write_clip(tmp_path / "in.mp4", n=3)
    assert main(["batch", str(src), "-o", str(tmp_path / "out"), "--workers", "1", *flag, *FAST[:-1]]) == 0
    err = capsys.readouterr().err
    assert f"bundle {'real' if not flag else 'synthetic'} (" in err
    (record,) = (tmp_path / "out" / ".wbg-batch").glob("*.json")
    want = sha256_file(f"{bundle_location(name)}/manifest.json")
    assert want in record.read_text()
    assert read_back(tmp_path / "out" / "in.mp4")[0] == 3
