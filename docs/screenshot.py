"""Make docs/page.png, the README's picture of the page: `python docs/screenshot.py [START END [PNG]]`.

Serves events.csv on a free port, has headless Chromium (Debian's `chromium`) draw the page
for the window (the seed window unless told) and save a screenshot, then stops the server.
"""

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
SEED = ("2021-03-01T04:00:00Z", "2021-03-01T06:30:00Z")


def serve(log: Path, stderr: Path) -> tuple[subprocess.Popen, int]:
    """`totaler LOG --serve --port 0`, and the port it took (from its first line)."""
    command = [sys.executable, str(ROOT / "totaler.py"), str(log), "--serve", "--port", "0", "--workers", "1"]
    server = subprocess.Popen([*command, "--quiet"], stderr=stderr.open("wb"))
    deadline = time.monotonic() + 30
    while "serving http://" not in stderr.read_text():
        if server.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the server did not start: {stderr.read_text()}")
        time.sleep(0.05)
    return server, int(stderr.read_text().split("serving http://127.0.0.1:")[1].split("/")[0])


def screenshot(url: str, png: Path, profile: Path) -> None:
    """Headless Chromium's picture of URL once its fetches are done."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("no chromium here: apt-get install chromium")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    flags += ["--hide-scrollbars", "--window-size=1000,760", "--virtual-time-budget=10000"]
    flags.append(f"--user-data-dir={profile}")
    subprocess.run([chromium, *flags, f"--screenshot={png}", url], check=True, capture_output=True, timeout=120)


def main(argv: list[str]) -> None:
    start, end = argv[:2] if len(argv) >= 2 else SEED
    png = Path(argv[2]) if len(argv) > 2 else ROOT / "docs" / "page.png"
    with tempfile.TemporaryDirectory() as folder:
        server, port = serve(ROOT / "events.csv", Path(folder) / "server.log")
        try:
            screenshot(f"http://127.0.0.1:{port}/?" + urlencode({"start": start, "end": end}), png, Path(folder))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"wrote {png}")


if __name__ == "__main__":
    main(sys.argv[1:])
