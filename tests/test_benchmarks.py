"""Benchmarks that need no training: author probes (demo bundle), parts of catalog_scale, image_hash."""

import csv
import json
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "author_probes.py"
DEMO = REPO / "inference" / "demo_bundle"


def run_probes(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_author_probes_prints_every_figure(tmp_path):
    manifest = tmp_path / "samples.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "title", "author", "genres"])
        for path in sorted((REPO / "examples" / "icons").glob("*/*/*.png")):
            writer.writerow([str(path), path.parent.name, path.parent.parent.name, ""])
    result = run_probes(str(DEMO), str(DEMO), "--manifest", str(manifest), "--train-manifest", str(manifest))
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)["author_top1"]
    top1 = figures["bundles"][str(DEMO)]
    assert figures["images"] == 32 and top1 >= 0.8  # the demo bundle gets 31 of 32 right
    assert figures["ensemble"]["2"] == top1  # the same model twice
    assert set(figures["shifted_one_pixel"]) == {"up", "down", "left", "right"}
    assert set(figures["prior_reweighted"]) == {"0.25", "0.5", "1.0"}
    assert 0 <= figures["recomputed_batch_norm"] <= 1


def test_author_probes_bad_input_is_one_line(tmp_path):
    result = run_probes(str(tmp_path / "none"), "--manifest", str(tmp_path / "x.csv"))
    assert result.returncode == 1
    assert result.stderr == f"error: {tmp_path / 'none'}: no such bundle folder\n"
    manifest = tmp_path / "stranger.csv"
    sample = sorted((REPO / "examples" / "icons").glob("*/*/*.png"))[0]
    manifest.write_text(f"image,title,author,genres\n{sample},t,nobody,\n")
    result = run_probes(str(DEMO), "--manifest", str(manifest))
    assert result.returncode == 1
    assert result.stderr == f"error: {manifest}: author 'nobody' is not one of the bundle's authors\n"


def test_catalog_scale_synthetic_store_and_query_parts_print_their_figures(tmp_path):
    """The parts of benchmarks/catalog_scale.py that need no training, at toy sizes."""
    from tests.imagegen import style_image

    rows = []
    for i in range(5):
        style_image(i % 3, i, 40).save(tmp_path / f"i{i}.png")
        rows.append(f"i{i}.png,t{i % 3},a{i % 3},\n")
    (tmp_path / "manifest.csv").write_text("image,title,author,genres\n" + "".join(rows))
    command = [sys.executable, str(REPO / "benchmarks" / "catalog_scale.py"), str(tmp_path), "--work",
               str(tmp_path / "work"), "--parts", "synthetic,queries,stored-queries", "--synthetic-images",
               "600,1200", "--synthetic-dim", "8", "--query-titles", "20", "--query-exemplars", "400",
               "--images", "5"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)
    machine = document["machine"]  # read from this machine's /proc/cpuinfo: which kind of CPU ran it
    assert machine["cpus"] >= 1 and machine["cpu"] and len(machine["cpu_family_model_stepping"]) == 3
    figures = document["results"]
    assert [s["images"] for s in figures["synthetic"]] == [600, 1200]
    assert all(s["all_found"] and s["peak_anonymous_mb"] > 0 for s in figures["synthetic"])
    queries = figures["queries"]
    assert queries["exemplars"] == 400 and queries["top1_title_of_own_cluster"] > 0.9
    assert queries["enroll_images"] == 3 and queries["enroll_output"].startswith("enrolled 3 images")
    assert figures["stored_queries"]["images"] == 5 and figures["stored_queries"]["same_titles"]


def test_image_hash_benchmark_times_each_shape_against_its_baselines():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "image_hash.py"), "--repeats", "1"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    rows = figures["difference_hash"]
    assert [r["shape"] for r in rows] == ["320x320", "800x600", "1000x1400", "4000x3000"]
    assert all(r["same_as_256_rows"] and r["ms"] > 0 and r["ms_pillow"] > 0 for r in rows)
    assert figures["resize_fingerprint_320_ms"] > 0


def test_catalog_scale_refuses_zero_throughput_rounds_in_one_line(tmp_path):
    """No median of no rounds: one line naming the option, before any work starts."""
    command = [sys.executable, str(REPO / "benchmarks" / "catalog_scale.py"), str(tmp_path), "--work",
               str(tmp_path / "work"), "--parts", "throughput", "--throughput-rounds", "0"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: --throughput-rounds 0: at least one round is needed"]
    assert not (tmp_path / "work").exists()
