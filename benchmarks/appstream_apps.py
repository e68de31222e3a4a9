"""Build the two-modality benchmark set: Debian's desktop applications, each with an icon (the
"poster"), a description (the "synopsis", English and, for about 560, Korean) and its
freedesktop categories (the genres).

usage: python benchmarks/appstream_apps.py OUT_DIR [--cache DIR] [--offline] [--mirror URL]
                                          [--min-items 30]

Data: Debian 12 "bookworm", main: the AppStream catalog (DEP-11 `Components-amd64.yml`) and its
64x64 icon tarball, fetched by `apt-get update` into --cache with its own sources.list and
apt.conf (index targets DEP-11 and DEP-11-icons-64x64, as the appstream package configures
them), the way `../shared/data/package_tags.py` reaches apt's indexes: the system's apt state is
not touched, about 12 MB are fetched, --offline reuses the cache.

Outputs in OUT_DIR:
- `icons/<app id>.png`: each application's 64x64 icon;
- `train.csv`, `val.csv`, `test.csv`: `id,group,image,title,author,genres,text,lang`, one row per
  application and language: an image manifest (image, title, genres; `author` is the package)
  and a text manifest (id, group, text, genres, lang) at once. A Korean row repeats its
  application's icon and genres with the Korean summary and description.
- Genres: categories on at least --min-items applications (toolkit and desktop categories such
  as GTK or KDE say how an application is built, not what it is, and are dropped).
- Anti-leak: the application's name is cut out of its text (whole words, any case).
- Split: md5(package) % 10: 0-6 train, 7 val, 8-9 test, so applications of one package stay on
  one side, with both their languages.
"""

from __future__ import annotations

import argparse
import collections
import csv
import glob
import hashlib
import html
import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
APT_CONF = """#clear APT::Update::Pre-Invoke; #clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success; #clear Acquire::Languages; #clear Acquire::IndexTargets;
Acquire::Languages { "none"; }; Acquire::GzipIndexes "true"; APT::Sandbox::User "root";
Acquire::IndexTargets::deb::DEP-11 { MetaKey "$(COMPONENT)/dep11/Components-$(NATIVE_ARCHITECTURE).yml";
  ShortDescription "Components-$(NATIVE_ARCHITECTURE)"; Description "$(RELEASE)/$(COMPONENT) DEP-11";
  KeepCompressed "true"; };
Acquire::IndexTargets::deb::DEP-11-icons-64x64 { MetaKey "$(COMPONENT)/dep11/icons-64x64.tar";
  ShortDescription "icons-64x64"; Description "$(RELEASE)/$(COMPONENT) DEP-11 64x64 icons";
  KeepCompressed "true"; };
"""
TOOLKITS = {"GTK", "Qt", "KDE", "GNOME", "XFCE", "Java", "Motif", "DDE", "LXQt", "X-XFCE", "ConsoleOnly"}
FIELDS = ("id", "group", "image", "title", "author", "genres", "text", "lang")


def system_mirror() -> str:
    for path in [*sorted(glob.glob("/etc/apt/sources.list.d/*.sources")), "/etc/apt/sources.list"]:
        text = Path(path).read_text() if os.path.isfile(path) else ""
        found = re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M
        )
        for uri in found:
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    sys.exit("no Debian archive found in /etc/apt sources: pass --mirror URI")


def fetch(cache: Path, mirror: str, offline: bool) -> tuple[bytes, bytes]:
    """(the DEP-11 YAML, the 64x64 icon tar), decompressed by apt-helper."""
    lists = cache / "lists"
    for folder in (lists / "partial", cache / "cache/archives/partial", cache / "sources.list.d"):
        folder.mkdir(parents=True, exist_ok=True)
    (cache / "sources.list").write_text(
        f"deb [arch=amd64 target=DEP-11,DEP-11-icons-64x64 signed-by={KEYRING}] {mirror} bookworm main\n"
    )
    (cache / "apt.conf").write_text(APT_CONF)
    if not offline:
        subprocess.run(
            [
                "apt-get",
                "update",
                "-q",
                "-c",
                cache / "apt.conf",
                "-o",
                f"Dir::State::Lists={lists}",
                "-o",
                f"Dir::Cache={cache / 'cache'}",
                "-o",
                f"Dir::Etc::SourceList={cache / 'sources.list'}",
                "-o",
                f"Dir::Etc::SourceParts={cache / 'sources.list.d'}",
            ],
            check=True,
        )

    def read(name: str) -> bytes:
        paths = [p for p in glob.glob(f"{lists}/*_dists_bookworm_main_dep11_{name}*") if os.path.isfile(p)]
        if len(paths) != 1:
            sys.exit(f"{len(paths)} {name} files in {lists}: did apt-get update fail?")
        return subprocess.run(
            ["/usr/lib/apt/apt-helper", "cat-file", paths[0]], capture_output=True, check=True
        ).stdout

    return read("Components-amd64.yml"), read("icons-64x64.tar")


def plain(markup: str | None) -> str:
    """AppStream description markup (<p>, <ul><li>) as one line of text."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", markup or ""))
    return re.sub(r"\s+", " ", text).strip()


def cut_name(text: str, name: str) -> str:
    for word in sorted({name, *name.split()}, key=len, reverse=True):
        if len(word) > 2:
            text = re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", " ", text, flags=re.I)
    return re.sub(r"\s+", " ", text).strip()


def split_of(package: str) -> str:
    bucket = int(hashlib.md5(package.encode()).hexdigest(), 16) % 10
    return "train" if bucket <= 6 else "val" if bucket == 7 else "test"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/appstream-apps-apt"))
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--mirror")
    parser.add_argument("--min-items", type=int, default=30)
    args = parser.parse_args()
    components, icon_tar = fetch(args.cache.expanduser(), args.mirror or system_mirror(), args.offline)
    documents = list(
        yaml.load_all(io.BytesIO(components), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    )
    icons = tarfile.open(fileobj=io.BytesIO(icon_tar))  # noqa: SIM115  (in memory; read to the end of main)
    icon_names = set(icons.getnames())
    apps = []
    for doc in documents[1:]:
        if not doc or doc.get("Type") != "desktop-application":
            continue
        cached = [c["name"] for c in (doc.get("Icon") or {}).get("cached", []) if c.get("width") == 64]
        cached = [name for name in cached if name in icon_names]
        categories = [c for c in doc.get("Categories") or [] if c not in TOOLKITS and not c.startswith("X-")]
        if cached and categories and (doc.get("Description") or {}).get("C"):
            apps.append((doc, cached[0], categories))
    counts = collections.Counter(c for _, _, cats in apps for c in set(cats))
    kept = {c for c, n in counts.items() if n >= args.min_items}
    (args.out / "icons").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for doc, icon, categories in apps:
        genres = sorted(set(categories) & kept)
        if not genres:
            continue
        app_id, package = doc["ID"], doc["Package"]
        name = (doc.get("Name") or {}).get("C") or app_id
        image = f"icons/{re.sub(r'[^A-Za-z0-9._-]', '_', app_id)}.png"
        (args.out / image).write_bytes(icons.extractfile(icon).read())
        base = {
            "group": package,
            "image": image,
            "title": app_id,
            "author": package,
            "genres": "|".join(genres),
        }
        for lang, key in (("en", "C"), ("ko", "ko")):
            summary = (doc.get("Summary") or {}).get(key) or ""
            description = plain((doc.get("Description") or {}).get(key))
            if description:
                text = cut_name(f"{summary}. {description}" if summary else description, name)
                rows[split_of(package)].append(
                    {**base, "id": app_id if lang == "en" else f"{app_id}:ko", "text": text, "lang": lang}
                )
    for split, items in rows.items():
        with open(args.out / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(sorted(items, key=lambda r: r["id"]))
        langs = collections.Counter(r["lang"] for r in items)
        print(f"{split}: {langs['en']} English rows, {langs['ko']} Korean rows")
    print(f"{len(kept)} genres: {', '.join(sorted(kept))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
