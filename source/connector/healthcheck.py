"""`python -m connector.healthcheck`: exit 0 if the connector's /healthz says healthy, else 1.

For the container's HEALTHCHECK (the image has no curl). It reads HTTP_HOST and HTTP_PORT
as the connector does (the environment, then ./.env), so the check follows the setting.
One line on stdout says why, which `docker inspect` shows.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from dotenv import load_dotenv

from connector.settings import Settings, SettingsError

TIMEOUT_S = 4.0
# Where a server bound to every address is reached from inside its own container.
LOCAL = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def health_url(settings: Settings) -> str | None:
    """The /healthz URL of the connector these settings run; None without a fixed port."""
    if not settings.http_port:  # off, or 0 (a port chosen at start that no one else knows)
        return None
    host = LOCAL.get(settings.http_host, settings.http_host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.http_port}/healthz"


def check(url: str) -> tuple[int, str]:
    """(exit status, the line saying why)."""
    try:
        # No proxy: an HTTP_PROXY in the container's environment must not carry a local check away.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=TIMEOUT_S) as response:
            return 0, f"healthy: {response.read(1000).decode(errors='replace')}"
    except urllib.error.HTTPError as error:  # 503: the body names what is down
        return 1, f"unhealthy: HTTP {error.code} {error.read(1000).decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as error:
        return 1, f"unhealthy: {url} not reachable ({getattr(error, 'reason', error)})"


def main() -> int:
    load_dotenv(Path.cwd() / ".env", override=False)
    try:
        url = health_url(Settings.from_env(os.environ))
    except SettingsError as error:
        print(f"unhealthy: configuration error: {error}")
        return 1
    if url is None:
        print("unhealthy: no fixed HTTP_PORT to check (it is off or 0)")
        return 1
    status, line = check(url)
    print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
