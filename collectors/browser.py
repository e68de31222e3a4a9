"""Headless Chromium through Selenium 4: the one place that knows how to start a browser.

Selenium Manager would download a driver, which cannot work offline, so the
system chromedriver is used (Debian: `apt-get install chromium chromium-driver`).
`remote` points at a Selenium Grid instead, with no other change.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from collectors.settings import Timeouts

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "Stylefinder/0.1 (+research; polite collector; contact: see README)"

_DRIVER_PLACES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver", "/usr/local/bin/chromedriver")
_BROWSER_PLACES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")

# Quiet, sandbox-safe headless flags. Without the background-networking switches Chromium
# keeps calling Google services at start, which fails (and logs) on a closed network.
CHROMIUM_FLAGS = (
    "--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-quic",
    "--metrics-recording-only", "--mute-audio", "--hide-scrollbars", "--log-level=3",
)


class BrowserError(RuntimeError):
    """The browser could not be started; str() is one line saying what to install or set."""


@dataclass(frozen=True)
class BrowserConfig:
    remote: str | None = None  # Selenium Grid URL
    user_agent: str = DEFAULT_USER_AGENT
    window: tuple[int, int] = (1280, 900)
    chromedriver: str | None = None  # default: $STYLEFINDER_CHROMEDRIVER, PATH, Debian's place
    chromium: str | None = None  # default: $STYLEFINDER_CHROMIUM, Debian's place
    timeouts: Timeouts = field(default_factory=Timeouts)


def find_executable(explicit: str | None, env: str, names: tuple[str, ...],
                    places: tuple[str, ...]) -> str | None:
    for candidate in (explicit, os.environ.get(env), *(shutil.which(n) for n in names), *places):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def chromium_options(config: BrowserConfig):
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to sandbox as root
    options.add_argument(f"--window-size={config.window[0]},{config.window[1]}")
    options.add_argument(f"--user-agent={config.user_agent}")
    binary = find_executable(config.chromium, "STYLEFINDER_CHROMIUM", ("chromium", "chromium-browser"),
                             _BROWSER_PLACES)
    if binary and not config.remote:
        options.binary_location = binary
    return options


def open_browser(config: BrowserConfig = BrowserConfig()):
    """A started WebDriver; the caller quits it (use `with closing(open_browser())`)."""
    try:
        import urllib3
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise BrowserError("Selenium is not installed: pip install 'stylefinder[collect]'") from None
    options = chromium_options(config)
    try:
        if config.remote:
            driver = webdriver.Remote(command_executor=config.remote, options=options)
        else:
            if config.chromedriver and not os.access(config.chromedriver, os.X_OK):
                raise BrowserError(f"{config.chromedriver}: no such chromedriver (or not executable)")
            path = find_executable(config.chromedriver, "STYLEFINDER_CHROMEDRIVER", ("chromedriver",),
                                   _DRIVER_PLACES)
            if path is None:
                raise BrowserError("no chromedriver found: install it (apt-get install chromium "
                                   "chromium-driver) or pass --chromedriver PATH")
            driver = webdriver.Chrome(service=Service(executable_path=path), options=options)
    except WebDriverException as err:
        message = (err.msg or str(err)).strip().splitlines()[0]
        raise BrowserError(f"could not start Chromium{' at ' + config.remote if config.remote else ''}: "
                           f"{message}") from None
    except (OSError, urllib3.exceptions.HTTPError) as err:  # a Grid that is not there
        message = str(getattr(err, "reason", None) or err).strip().splitlines()[0]
        raise BrowserError(f"could not start Chromium{' at ' + config.remote if config.remote else ''}: "
                           f"{message}") from None
    driver.set_page_load_timeout(config.timeouts.page_load)
    driver.set_script_timeout(config.timeouts.script)
    _block_unasked_requests(driver)
    return driver


# Chromium asks a site for its icon on its own, half a second after a page: a request to the site
# host outside the polite schedule. Nothing collected needs it.
UNASKED = ["*/favicon.ico"]


def _block_unasked_requests(driver) -> None:
    from selenium.common.exceptions import WebDriverException

    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": UNASKED})
    except (AttributeError, WebDriverException):  # a Grid node without the DevTools protocol
        log.warning("could not block the browser's own favicon requests (no DevTools protocol)")
