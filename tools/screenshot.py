"""The README's picture of the console: `python -m tools.screenshot [docs/screenshot.svg]`.

Starts what `mnist-tui` starts (embedded broker, the three local roles in their child process, the observer
process), opens the console headless at 120x40 under Textual's Pilot, starts the publisher at 30/s,
waits until a few hundred results have come and the workers show their rates and trends, and saves the
screen as SVG.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from engine.console.observer_process import ObserverProcess
from engine.console.roles_process import RolesProcess
from engine.settings import Settings
from engine.topics import ROLES

SIZE = (120, 40)
RESULTS = 300
TIMEOUT = 180.0


async def shoot(target: Path) -> None:
    from tui.app import MnistApp
    from tui.chrome.header_bar import BrokerInfo

    settings = Settings()
    roles = RolesProcess(settings, ROLES)
    info = roles.start()
    observer = ObserverProcess(info.address, settings.topics, protocol=info.protocol)
    observer.start()
    try:
        app = MnistApp(observer, BrokerInfo(info.address.url, info.broker_kind, info.broker_description),
                       owns_roles=True)
        async with app.run_test(size=SIZE) as pilot:
            deadline = time.monotonic() + TIMEOUT
            while not (app.snap and app.snap.roles_of("input") and app.snap.subscribed):
                if time.monotonic() > deadline:
                    raise SystemExit("the console did not see the publisher")
                await pilot.pause(0.2)
            await pilot.press("r")
            await pilot.press(*"30", "enter")
            await pilot.press("space")
            while not (app.snap and app.snap.stats.received >= RESULTS):
                if time.monotonic() > deadline:
                    raise SystemExit("too few results came")
                await pilot.pause(0.2)
            await pilot.pause(1.0)
            app.save_screenshot(filename=target.name, path=str(target.parent))
            await pilot.press("space")
    finally:
        observer.stop()
        roles.stop()


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "docs/screenshot.svg").absolute()
    asyncio.run(shoot(target))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
