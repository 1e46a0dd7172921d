"""The Dagster resources, and the one function that builds them from the settings, used by the
Definitions and by the command line alike.

To add a setting: declare it (name, default, meaning) in ``settings.SETTINGS``, give the resource
that needs it a field, pass ``configured("NAME")`` for it in ``build_resources``, and add it to
the table in docs/configuration.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from coinsum_pipeline.core.alerts import Alert
from coinsum_pipeline.core.basket import parse_basket
from coinsum_pipeline.okx.client import OKXClient
from coinsum_pipeline.settings import configured, value
from coinsum_pipeline.warehouse.charts import Palette, palette_named
from coinsum_pipeline.warehouse.database import CONNECTION_CONFIG, CoinsumDatabase
from coinsum_pipeline.webhook import FORMATS, deliver, unknown_format


class OKXResource(ConfigurableResource):
    """OKX's public market data, as a Dagster resource.

    ``base_url`` comes from ``OKX_BASE_URL``, so the same code runs against OKX, a regional
    host, or the local stand-in used by tests and demos.
    """

    base_url: str
    timeout_seconds: int
    attempts: int = 6
    backoff_factor: float = 0.5
    fetch_threads: int = 8

    _client: OKXClient | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._client = self.build_client()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()

    def build_client(self, reads_ahead: bool = False) -> OKXClient:
        """``reads_ahead``: a backfill's client for later runs' candles (okx/ahead.py)."""
        return OKXClient(
            base_url=self.base_url,
            timeout=self.timeout_seconds,
            attempts=self.attempts,
            backoff_factor=self.backoff_factor,
            reads_ahead=reads_ahead,
        )

    @property
    def client(self) -> OKXClient:
        if self._client is None:
            self._client = self.build_client()
        return self._client


class BasketResource(ConfigurableResource):
    """The basket asked for in ``COINSUM_COINS`` (a comma list): the basket of a new database;
    for an existing one, empty (follow the database) or the database's current basket."""

    coins: str

    def requested(self) -> tuple[str, ...] | None:
        """The coins asked for, or None when ``COINSUM_COINS`` is empty."""
        return parse_basket(self.coins) if self.coins.strip() else None


class ExportFolder(ConfigurableResource):
    """Where exports go (``COINSUM_EXPORTS``): a folder per Beijing day, and ``ranges/`` for
    range exports; and how their pictures colour up and down (``COINSUM_COLORS``)."""

    path: str
    colors: str

    def palette(self) -> Palette:
        return palette_named(self.colors)

    def day(self, day: date) -> Path:
        return Path(self.path) / day.isoformat()

    def ranges(self) -> Path:
        return Path(self.path) / "ranges"


class CheckLimits(ConfigurableResource):
    """The thresholds the data-quality checks judge by."""

    max_move_pct: float  # COINSUM_MAX_MOVE_PCT: a bigger 30-minute move is flagged


class AlertWebhook(ConfigurableResource):
    """Where alerts go and what is alerted (``COINSUM_ALERT_*``); no webhook, no alerts."""

    url: str
    format: str
    levels: str
    move_pct: float
    retry_seconds: int
    timeout_seconds: int = 10

    def sum_levels(self) -> list[float]:
        """The levels whose crossing is alerted."""
        return alert_levels(self.levels)

    def send(self, alert: Alert) -> str:
        """POST ``alert``; returns what the endpoint answered."""
        return deliver(alert, self.url, self.format.strip().lower(), self.timeout_seconds)


class AlertSettingError(ValueError):
    """An alert setting that cannot be read; the message says how to write it."""


def alert_levels(levels: str) -> list[float]:
    """``COINSUM_ALERT_LEVELS`` as numbers."""
    try:
        return [float(level) for level in levels.split(",") if level.strip()]
    except ValueError:
        raise AlertSettingError(
            f"COINSUM_ALERT_LEVELS is {levels!r}: give numbers separated by commas, for example "
            "20,-20."
        ) from None


def check_settings() -> None:
    """The choice and list settings, checked when the definitions load (and before every
    command): a typo then stops the code location from loading, with the variable and what it
    may be in the message Dagster shows, instead of failing each run or alert that reads it."""
    palette_named(value("COINSUM_COLORS"))
    alert_format = value("COINSUM_ALERT_FORMAT")
    if alert_format.strip().lower() not in FORMATS:
        raise AlertSettingError(unknown_format(alert_format))
    alert_levels(value("COINSUM_ALERT_LEVELS"))


def build_resources() -> dict[str, ConfigurableResource]:
    """Every resource, configured from the environment as it is now (defaults where unset),
    once the settings are checked."""
    check_settings()
    return {
        "okx": OKXResource(
            base_url=configured("OKX_BASE_URL"),
            timeout_seconds=configured("OKX_TIMEOUT_SECONDS"),
        ),
        "database": CoinsumDatabase(
            database=configured("COINSUM_DB"),
            wait_seconds=configured("COINSUM_DB_WAIT_SECONDS"),
            connection_config=CONNECTION_CONFIG,
        ),
        "basket": BasketResource(coins=configured("COINSUM_COINS")),
        "exports": ExportFolder(
            path=configured("COINSUM_EXPORTS"), colors=configured("COINSUM_COLORS")
        ),
        "limits": CheckLimits(max_move_pct=configured("COINSUM_MAX_MOVE_PCT")),
        "alerts": AlertWebhook(
            url=configured("COINSUM_ALERT_WEBHOOK"),
            format=configured("COINSUM_ALERT_FORMAT"),
            levels=configured("COINSUM_ALERT_LEVELS"),
            move_pct=configured("COINSUM_ALERT_MOVE_PCT"),
            retry_seconds=configured("COINSUM_ALERT_RETRY_SECONDS"),
        ),
    }


@contextmanager
def resolved(name: str) -> Iterator[ConfigurableResource]:
    """One resource as ``build_resources`` makes it, its settings read now and set up for use
    (torn down after): for code that runs outside Dagster (the command line, the benchmark)."""
    with build_resources()[name].process_config_and_initialize_cm() as resource:
        yield resource
