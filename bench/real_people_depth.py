"""Does our depth model help the real-people pipeline? The acceptance pans (real_video.py: the package photos,
48 frames at 1280x720, +3 px/frame), flicker and IoU after undoing the motion, for three pipelines in one run:
the shipped `real` bundle (temporal + guided, no depth), and a MediaPipe import that borrows our depth model and the
default refiner that learnt with it (`python -m export.import_coarse mediapipe-selfie --depth --out DIR`), with
depth and with `--no-depth`.

    python bench/real_people_depth.py --bundle DIR [--lib ../shared/acceptance/lib]
"""
import argparse
import statistics
import sys
from pathlib import Path

from wbg_edge import Pipeline, PipelineConfig


class Run:
    def __init__(self, name, **kw):
        self.name, self.pipe = name, Pipeline(PipelineConfig(mode="alpha", **kw))

    def reset(self):
        self.pipe.reset()

    def __call__(self, bgr):
        return self.pipe.process(bgr).alpha.copy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True, help="a MediaPipe import made with --depth")
    ap.add_argument("--lib", default=str(Path(__file__).resolve().parents[2] / "shared" / "acceptance" / "lib"))
    a = ap.parse_args()
    sys.path.insert(0, a.lib)
    import real_video as rv  # the acceptance library: clips, measure, references

    runs = [Run("real (temporal + guided, no depth)", bundle="real"),
            Run("our depth + its refiner, temporal on", bundle=a.bundle, refine="model"),
            Run("the same refiner, --no-depth", bundle=a.bundle, refine="model", depth=False)]
    rows = {r.name: [] for r in runs}
    for _name, bgr, ref in rv.photos("public", Path(a.lib) / "real"):
        frame, maps, size, ref2 = rv.clip("public", bgr, ref, None)
        for r in runs:
            rows[r.name].append(rv.measure(r, frame, maps, size, ref2))
    print("| pipeline | flicker photo / band | IoU on the pans |\n|---|---|---|")
    for name, ms in rows.items():
        f, b, i = (statistics.fmean(m[k] for m in ms) for k in ("flicker", "band", "iou"))
        print(f"| {name} | {f:.1f} / {b:.1f} | {i:.3f} |")


if __name__ == "__main__":
    main()
