"""Screenshots of the MLflow UI as a user sees it, in headless Chromium (not part of CI).

Starts `mlflow ui` on a tracking store, opens the pages a user of the harness looks at and
saves a PNG of each:

- ``runs.png``: a coin's experiment on its runs (the link `cryptolstm train` prints);
- ``study.png``: a study's parent run;
- ``study_children.png``: the runs table filtered to that study's trials;
- ``models.png`` and ``model.png``: the registered models and the coin's model with its versions;
- ``evaluation.png`` and ``version.png``: the latest `cryptolstm evaluate` run and the version it
  scored (its ``live.*`` tags).

    python bench/ui_screenshots.py --store sqlite:///mlflow.db --coin BTC --out screenshots

Needs Playwright (`pip install playwright`) and a Chromium: `--chromium /usr/bin/chromium`
(Debian's `apt-get install chromium`) or Playwright's own (`playwright install chromium`).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(store: str, port: int) -> subprocess.Popen:
    """`mlflow ui` on ``store``, once it answers its health check."""
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--host",
                               "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return server
        except OSError:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("mlflow ui did not start")


def _pages(store: str, coin: str) -> dict[str, str]:
    """name -> UI route of each page to capture."""
    import mlflow

    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name(f"cryptolstm-{coin.lower()}")
    if experiment is None:
        raise SystemExit(f"the store has no experiment cryptolstm-{coin.lower()}; train or search first")
    eid = experiment.experiment_id
    pages = {"runs": f"#/experiments/{eid}/runs"}
    studies = client.search_runs([eid], "tags.`cryptolstm.entry` = 'search'", max_results=1,
                                 order_by=["attributes.start_time DESC"])
    if studies:
        parent = studies[0].info.run_id
        pages["study"] = f"#/experiments/{eid}/runs/{parent}"
        search = f"tags.`mlflow.parentRunId` = '{parent}'"
        pages["study_children"] = f"#/experiments/{eid}/runs?searchFilter={urllib.parse.quote(search)}"
    pages["models"] = "#/models"
    pages["model"] = f"#/models/cryptolstm-{coin.lower()}"
    evaluations = client.search_runs([eid], "tags.`cryptolstm.entry` = 'evaluate'", max_results=1,
                                     order_by=["attributes.start_time DESC"])
    if evaluations:
        tags = evaluations[0].data.tags
        pages["evaluation"] = f"#/experiments/{eid}/runs/{evaluations[0].info.run_id}"
        if tags.get("evaluated.version"):
            pages["version"] = f"#/models/{tags['evaluated.model']}/versions/{tags['evaluated.version']}"
    return pages


def _close_assistant(page) -> None:
    """Close MLflow 3's "MLflow Assistant" side panel, which opens over the right of the runs table."""
    close = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.count():
        close.first.click(timeout=3000)
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite:///mlflow.db")
    parser.add_argument("--coin", default="BTC")
    parser.add_argument("--out", default="screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pages = _pages(args.store, args.coin)
    port = _free_port()
    server = _serve(args.store, port)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            for k, (name, route) in enumerate(pages.items()):
                page.goto(f"http://127.0.0.1:{port}/{route}", wait_until="load")
                time.sleep(15 if k == 0 else 6)  # the UI keeps polling (never network-idle); tables render after their data
                _close_assistant(page)
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                print(f"{name}: {route} -> {out / (name + '.png')}")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
