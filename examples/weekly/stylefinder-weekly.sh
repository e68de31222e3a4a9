#!/usr/bin/env bash
# The weekly pipeline: collect what the sites published, enroll it into the served bundle, and
# retrain on a schedule. Run from the repository root by cron or a systemd timer (README.md,
# "The weekly pipeline"). Every step resumes where a stopped or killed run left off.
set -euo pipefail
cd "${STYLEFINDER_HOME:?set STYLEFINDER_HOME to the repository root}"
PY="${PYTHON:-.venv/bin/python}"
CATALOG="${CATALOG:-data/catalog.sqlite}"
BUNDLE="${BUNDLE:-runs/default/bundle}"
STORE="${STORE:-data/features}"
RETRAIN_EVERY_WEEKS="${RETRAIN_EVERY_WEEKS:-4}"
SITES="${SITES:-naver kakao mal}"
read -r -a COLLECT_FLAGS <<< "${COLLECT_FLAGS:-}"  # e.g. --weekday mon, or --base-url for a mirror

# 1. Collectors: new titles, new episodes of ongoing ones, metadata changes (recorded in the
#    catalog's title_changes). Exit 1 means some titles or images failed: they are listed, the
#    rest is stored, and the next run tries them again, so the pipeline goes on.
for site in $SITES; do
    "$PY" -m collectors "$site" --catalog "$CATALOG" --quiet "${COLLECT_FLAGS[@]}" || [ $? -eq 1 ]
done

# 2. Enroll what the catalog gained since the last run: new titles, and new episodes of titles
#    the bundle has (updated in place). The web app picks the new bundle up between queries.
"$PY" -m inference.enroll --bundle "$BUNDLE" --catalog "$CATALOG" --new --store "$STORE" --quiet

# 3. Retrain every RETRAIN_EVERY_WEEKS weeks: a fresh split, then the default recognizer on it.
#    Images already in the feature store are not encoded again; only new ones are.
week=$(( $(date +%s) / 604800 ))
if [ $(( week % RETRAIN_EVERY_WEEKS )) -eq 0 ]; then
    name="weekly-$(date +%Y%m%d)"
    "$PY" -m datasets split --catalog "$CATALOG"
    "$PY" -m training.train --catalog "$CATALOG" --store "$STORE" --name "$name" --quiet
    # Promote by hand after reading runs/$name/ (evaluate against the served bundle first), then
    # enroll its val and test splits (titles held out of training) so that every title is served;
    # the next `enroll --new` into it starts from the images no split holds.
fi
