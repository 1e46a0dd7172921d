"""What users open: the CSV exports (docs/numbers.md, "Exports"), the charts, the SQL views,
`coinsum status` and `coinsum export`, and the sensor that keeps each day's exports current."""

from __future__ import annotations

import contextlib
import io
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path

import matplotlib.image as plt_image
import pandas as pd
import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
    evaluate_automation_conditions,
)
from PIL import ImageDraw, ImageFont

from coinsum_pipeline.backfill import export_range, run_slots
from coinsum_pipeline.cli import main
from coinsum_pipeline.core.slots import SLOT, epoch_ms, slots_in
from coinsum_pipeline.definitions import defs
from coinsum_pipeline.instance.daemon import DaemonTurns
from coinsum_pipeline.instance.home import dagster_home
from coinsum_pipeline.okx.fake import FakeOKX
from coinsum_pipeline.warehouse.charts import PALETTES
from coinsum_pipeline.warehouse.heatmap import FONT, FULL_TABLE, draw_day_table
from coinsum_pipeline_tests.helpers import PNG, Pipeline, beijing, header, read_csv

HEADERS = {
    "full": ["日期", "时间", "时间戳", "币种", "基准价格", "当前价格", "涨跌幅"],
    "sum": ["日期", "时间", "时间戳", "27币涨跌幅总和", "报告币数"],
    "missing": ["日期", "时间", "币种", "原因"],
}
# After the sum columns of docs/numbers.md: the breadth of the slot.
BREADTH = ["上涨币数", "下跌币数", "持平币数", "最强币种", "最强涨跌幅", "最弱币种", "最弱涨跌幅",
           "涨跌幅中位数"]  # fmt: skip
DAY = "2026-02-17"  # not the first user's days: the ready queries must answer on any
GAP = (beijing(f"{DAY} 04:00"), beijing(f"{DAY} 05:00"))  # ETH: 3 slots without candle


# The tests that read it run on one worker, which builds it once (scripts/test: --dist loadgroup).
READS_ONE_DAY = pytest.mark.xdist_group("one_day")


@pytest.fixture(scope="module")
def one_day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """A day backfilled once through the CLI (which exports it), with a gap and an unknown
    coin, shared by the tests that only read it; its output is kept in ``printed``."""
    home = tmp_path_factory.mktemp("one_day")
    with pytest.MonkeyPatch.context() as env, FakeOKX() as okx:
        env.setenv("OKX_BASE_URL", okx.url)
        env.setenv("DAGSTER_HOME", str(home / "dagster_home"))
        env.setenv("COINSUM_DB", str(home / "coinsum.duckdb"))
        env.setenv("COINSUM_EXPORTS", str(home / "exports"))
        env.setenv("COINSUM_COINS", "BTC,ETH,SOL,NOPE")
        okx.gaps["ETH-USDT-SWAP"] = [(epoch_ms(GAP[0]), epoch_ms(GAP[1]))]
        dagster_home()
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            assert main(["backfill", "--from", DAY, "--to", DAY]) == 0
        with DagsterInstance.get() as instance:
            day = Pipeline(okx, instance, home / "coinsum.duckdb", home / "exports")
            day.printed = output.getvalue()
            yield day


@pytest.mark.slow
@READS_ONE_DAY
def test_day_exports_match_the_database_with_specs_headers(one_day: Pipeline) -> None:
    folder = one_day.exports / DAY
    for kind, columns in HEADERS.items():
        after = BREADTH if kind == "sum" else []
        assert header(folder / f"{kind}_{DAY}.csv") == [*columns, *after]

    full = read_csv(folder / f"full_{DAY}.csv")
    stored = one_day.query(
        "SELECT slot_ts_ms, coin, base_price, price, pct_change FROM coin_prices ORDER BY 1, 2"
    )
    assert [
        (
            int(r["时间戳"]),
            r["币种"],
            float(r["基准价格"]),
            float(r["当前价格"]),
            float(r["涨跌幅"]),
        )
        for r in full
    ] == stored
    assert full[0]["日期"] == DAY and full[0]["时间"] == "00:00"

    missing = read_csv(folder / f"missing_{DAY}.csv")
    assert len(missing) == len(one_day.query("SELECT * FROM missing_values")) == 48 + 3
    assert {(r["币种"], r["原因"]) for r in missing} == {
        ("NOPE", "unknown_instrument"),
        ("ETH", "no_candle"),
    }

    sums = read_csv(folder / f"sum_{DAY}.csv")
    stored_sums = one_day.query("SELECT slot_ts_ms, sum_pct, coins_reported FROM coin_sum")
    assert [(int(r["时间戳"]), float(r["27币涨跌幅总和"]), int(r["报告币数"])) for r in sums] == [
        (ts, total, n) for ts, total, n in sorted(stored_sums)
    ]

    table = read_csv(folder / f"day_table_{DAY}.csv")
    assert header(folder / f"day_table_{DAY}.csv") == [
        "日期", "时间", "BTC", "ETH", "SOL", "NOPE", "27币涨跌幅总和"
    ]  # fmt: skip
    assert len(table) == 48
    at_0430 = next(r for r in table if r["时间"] == "04:30")
    assert at_0430["ETH"] == "", "a missing value is an empty cell, never a zero"
    assert {r["NOPE"] for r in table} == {""}, "a coin OKX does not list keeps its column"
    for png in ("curve", "day_table"):
        assert (folder / f"{png}_{DAY}.png").read_bytes().startswith(PNG)


PREVIEW_LIMIT = 20_000  # bytes of a preview image in the event log


def day_export_metadata(instance: DagsterInstance, day: str) -> dict:
    """The metadata of ``day``'s latest day_exports materialization, as its page shows it."""
    result = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("day_exports"), asset_partitions=[day]), limit=1
    )
    return result.records[0].asset_materialization.metadata


@READS_ONE_DAY
def test_day_export_metadata_shows_counts_previews_and_sums(one_day: Pipeline) -> None:
    meta = day_export_metadata(one_day.instance, DAY)
    assert meta["full_rows"].value == 48 * 3 - 3 and meta["missing_rows"].value == 51
    for name, alt in (("curve", "27-coin sum"), ("day_table", "day table")):
        markdown = meta[name].value
        assert markdown.startswith(f"![{alt}](data:image/png;base64,")
        assert len(markdown) < PREVIEW_LIMIT, f"{name}: a preview, not the full image"
    assert Path(meta["day_table_image"].value).read_bytes().startswith(PNG)
    preview = meta["sums_preview"].value
    assert "| 时间 | 27币涨跌幅总和 | 报告币数 | 上涨币数 |" in preview
    (first_sum,) = one_day.query(
        "SELECT sum_pct FROM coin_sum WHERE slot_time = '00:30' AND trade_date = ?", [DAY]
    )[0]
    assert f"| 00:30 | {first_sum:.2f} |" in preview, "2 decimals in previews"


@pytest.mark.slow
def test_a_range_run_gives_each_day_its_own_pictures(pipeline: Pipeline) -> None:
    for day in ("2026-01-05", "2026-01-06"):
        run_slots([beijing(f"{day} 00:00"), beijing(f"{day} 00:30")], pipeline.instance)
    run_slots([beijing("2026-01-06 01:00")], pipeline.instance)
    assert export_range(date(2026, 1, 5), date(2026, 1, 6), pipeline.instance).success
    first, second = (
        day_export_metadata(pipeline.instance, d) for d in ("2026-01-05", "2026-01-06")
    )
    assert (first["sum_rows"].value, second["sum_rows"].value) == (2, 3), "each day's own counts"
    assert first["curve"].value != second["curve"].value, "each day's own curve"
    assert first["day_table"].value != second["day_table"].value, "and its own day table"
    assert first["range_days"].value == second["range_days"].value == 2
    assert Path(first["range_curve"].value).read_bytes().startswith(PNG)


def test_day_table_reads_at_native_size_at_any_number_of_slots() -> None:
    """Digits at least 9 px tall, coin names above and below, a colour scale and a caption,
    and nothing cut off, for one slot as for 48, with short and long coin names."""
    coins = ["BTC", "ETH", "1000PEPE"]
    for slots in (1, 48):
        times = [f"{h:02d}:{m:02d}" for h in range(24) for m in (0, 30)][:slots]
        changes = pd.DataFrame(
            [[0.5 * i + 0.3, -1.25, float("nan")] for i in range(slots)], index=times, columns=coins
        )
        drawing = draw_day_table(changes, changes.sum(axis=1), DAY, PALETTES["cn"])
        width, height = drawing.image.size
        for text, (left, top, right, bottom) in drawing.texts:
            assert left >= 0 and right <= width and top >= 0 and bottom <= height, (slots, text)
        labels = [text for text, _ in drawing.texts]
        cells = [box for text, box in drawing.texts if text == "-1.25"]
        assert len(cells) == slots
        probe = ImageDraw.Draw(drawing.image)
        digit = probe.textbbox((0, 0), "0", font=ImageFont.truetype(str(FONT), FULL_TABLE.font))
        assert digit[3] - digit[1] >= 9, "digits at least 9 px tall"
        assert labels.count("1000PEPE") == labels.count("BTC") == 2, "names on top and bottom"
        assert labels[0].startswith("% change since 00:00 Beijing"), "the title"
        assert any("grey = missing" in t for t in labels), "the caption"
        assert "+1.25%" in labels or f"+{0.5 * (slots - 1) + 0.3:.2f}%" in labels, "the scale"
        assert all(t in labels for t in times), "every slot's time"


@READS_ONE_DAY
def test_views_answer_the_common_questions(one_day: Pipeline) -> None:
    q = one_day.query
    assert q("SELECT count(*) FROM day_table") == [(48,)]
    assert q("SELECT ETH FROM day_table WHERE slot_time = '04:30'") == [(None,)]
    assert q(
        "SELECT count(*) FROM day_table d JOIN coin_prices p USING (slot_start) "
        "WHERE p.coin = 'SOL' AND d.SOL = p.pct_change"
    ) == [(48,)]
    assert q("SELECT * EXCLUDE (trade_date) FROM daily_coverage") == [
        (48, 0, 48 * 3 - 3, 51, 0, 3, 0, 0, 48)  # NOPE is never there: no slot is complete
    ]
    assert q(f"SELECT count(*) FROM sums_between('{DAY}', '{DAY}')") == [(48,)]
    assert q("SELECT count(*), min(slot_time) FROM latest_slot") == [(3, "23:30")]


@READS_ONE_DAY
def test_status_and_range_export_commands(
    one_day: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status"]) == 0
    printed = capsys.readouterr().out
    header_line, day_line = printed.splitlines()[:2]
    row = dict(zip(header_line.split(), day_line.split(), strict=True))
    assert row["trade_date"] == DAY
    assert (row["slots_expected"], row["slots_stored"], row["slots_complete"]) == ("48", "48", "0")
    assert (row["missing_values"], row["no_candle"], row["unknown_instrument"]) == ("51", "3", "48")
    assert f"1 day(s); 0 of 48 stored slots complete; newest slot {DAY} 23:30" in printed

    assert main(["export", "--from", DAY, "--to", DAY, "--out", str(tmp_path / "out")]) == 0
    assert len(read_csv(tmp_path / "out" / f"full_{DAY}.csv")) == 48 * 3 - 3
    assert main(["export", "--from", "2026-02-18", "--to", DAY]) == 2
    assert "before --from" in capsys.readouterr().err
    assert main(["status", "--from", "2026-02-18", "--to", DAY]) == 2
    assert "before --from" in capsys.readouterr().err
    empty = tmp_path / "empty"
    assert main(["export", "--from", "2026-02-01", "--to", "2026-02-02", "--out", str(empty)]) == 1
    assert "no slots stored from 2026-02-01 to 2026-02-02" in capsys.readouterr().err
    assert not empty.exists(), "no 0-row files"


@READS_ONE_DAY
def test_backfill_prints_a_progress_bar(one_day: Pipeline) -> None:
    assert "[########################] 48/48 slots (100%)" in one_day.printed


@pytest.mark.slow
def test_sensor_requests_exports_for_exactly_the_days_whose_slots_changed(
    pipeline: Pipeline,
) -> None:
    cursor = None

    def requested() -> set[str | None]:
        nonlocal cursor
        result = evaluate_automation_conditions(
            defs=defs, instance=pipeline.instance, cursor=cursor
        )
        cursor = result.cursor
        return set(result.get_requested_partitions(AssetKey("day_exports")))

    requested()  # the first evaluation only records where things stand
    run_slots([beijing("2026-01-05 10:00")], pipeline.instance)
    run_slots([beijing("2026-01-07 10:00")], pipeline.instance)
    assert requested() == {"2026-01-05", "2026-01-07"}
    assert export_range(date(2026, 1, 5), date(2026, 1, 7), pipeline.instance).success
    assert requested() == set(), "exported days are not asked for again"


@READS_ONE_DAY
def test_every_ready_query_in_the_docs_answers_its_question(one_day: Pipeline) -> None:
    """The ready queries of docs/sql.md on the day of ``one_day`` (BTC, ETH, SOL, NOPE; ETH
    without candles 04:00 to 05:00): each one's answer, as far as the day decides it."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "sql.md").read_text()
    block = docs[docs.index("-- 1. ") :]
    queries = [q.strip() for q in block[: block.index("```")].split(";") if q.strip()]
    answers = [one_day.query(query) for query in queries]
    assert [len(rows) for rows in answers] == [48, 48, 48, 3, 1, 1, 48, 1, 1, 2, 10, 1]
    curve, table, _, latest, coverage, incomplete, btc, close, ends, missing, moves, weeks = answers
    assert curve[0][0] == "00:00" and curve[0][2] == 3 and curve[8][2] == 2  # 04:00: no ETH
    assert len(table[0]) == 1 + 4 + 2, "the time, a column per coin, the sum, coins reported"
    assert {row[1] for row in latest} == {"BTC", "ETH", "SOL"} and latest[0][0] == "23:30"
    assert coverage[0][1:4] == (48, 0, 141) and incomplete[0][1:] == (48, 0)
    assert btc[0][2] == btc[0][1], "BTC's 00:00 price is its base"
    assert round(close[0][1], 3) == curve[-1][1], "the close is the 23:30 sum"
    assert ends[0][1] in {"BTC", "ETH", "SOL"} and ends[0][2] >= ends[0][4]
    assert sorted((coin, reason, n) for _, coin, reason, n in missing) == [
        ("ETH", "no_candle", 3),
        ("NOPE", "unknown_instrument", 48),
    ]
    assert all(abs(moves[0][3] or 0) >= abs(m or 0) for *_, m in moves)
    assert weeks[0][2] == 1


@READS_ONE_DAY
def test_breadth_in_sql_and_the_sum_csv_is_what_the_prices_say(one_day: Pipeline) -> None:
    by_slot: dict[str, dict[str, float]] = defaultdict(dict)
    for time, coin, pct in one_day.query("SELECT slot_time, coin, pct_change FROM coin_prices"):
        by_slot[time][coin] = pct
    expected = {}
    for time, changes in by_slot.items():
        values = list(changes.values())
        best, worst = max(values), min(values)
        expected[time] = (
            sum(v > 0 for v in values),
            sum(v < 0 for v in values),
            sum(v == 0 for v in values),
            {c for c, v in changes.items() if v == best},
            best,
            {c for c, v in changes.items() if v == worst},
            worst,
            statistics.median(values),
        )
    stored = one_day.query(
        "SELECT slot_time, coins_up, coins_down, coins_flat, best_coin, best_pct, worst_coin, "
        "worst_pct, median_pct FROM slot_sums"
    )
    assert len(stored) == 48 and {row[0] for row in stored} == set(expected)
    for time, up, down, flat, best_coin, best, worst_coin, worst, median in stored:
        want = expected[time]
        assert (up, down, flat) == want[:3] and up + down + flat == len(by_slot[time])
        assert best_coin in want[3] and best == want[4]
        assert worst_coin in want[5] and worst == want[6]
        assert median == pytest.approx(want[7], abs=1e-12)
    assert expected["00:00"][:3] == (0, 0, 3), "at 00:00 every coin is flat"

    sums = read_csv(one_day.exports / DAY / f"sum_{DAY}.csv")
    assert list(sums[0]) == [*HEADERS["sum"], *BREADTH]
    for row in sums:
        want = expected[row["时间"]]
        assert (int(row["上涨币数"]), int(row["下跌币数"]), int(row["持平币数"])) == want[:3]
        assert row["最强币种"] in want[3] and float(row["最强涨跌幅"]) == want[4]
        assert row["最弱币种"] in want[5] and float(row["最弱涨跌幅"]) == want[6]


@pytest.mark.parametrize(("colors", "up_is"), [("cn", "red"), ("west", "green"), ("WEST", "green")])
@READS_ONE_DAY
def test_pictures_colour_up_by_the_chosen_convention(
    one_day: Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    colors: str,
    up_is: str,
) -> None:
    """One day's pictures through `coinsum export`: on the curve's breadth panel the up bars
    (all 3 coins up, the day's best slot) are drawn in the convention's colour for up."""
    monkeypatch.setenv("COINSUM_COLORS", colors)
    assert main(["export", "--from", DAY, "--to", DAY, "--out", str(tmp_path)]) == 0
    image = plt_image.imread(tmp_path / f"curve_{DAY}.png")[..., :3]
    red = (image[..., 0] > 0.7) & (image[..., 1] < 0.35)
    green = (image[..., 1] > 0.5) & (image[..., 0] < 0.2)
    upper_breadth = slice(int(image.shape[0] * 0.70), int(image.shape[0] * 0.80))
    counts = {"red": int(red[upper_breadth].sum()), "green": int(green[upper_breadth].sum())}
    assert counts[up_is] > 10 * max(counts["red" if up_is == "green" else "green"], 1), counts


@READS_ONE_DAY
def test_an_unknown_colour_convention_is_refused_naming_the_known_ones(
    one_day: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("COINSUM_COLORS", "purple")
    assert main(["export", "--from", DAY, "--to", DAY, "--out", str(tmp_path)]) == 2
    assert "use cn (red up, green down" in capsys.readouterr().err


def exported_days(pipeline: Pipeline) -> set[str]:
    """The days whose ``day_exports`` partition is materialized."""
    return set(pipeline.instance.get_materialized_partitions(AssetKey("day_exports")))


def slots_by_day(pipeline: Pipeline) -> dict[str, int]:
    """The slots stored, by Beijing day."""
    return dict(pipeline.query("SELECT trade_date::VARCHAR, count(*) FROM coin_sum GROUP BY 1"))


def assert_every_stored_day_exported(pipeline: Pipeline) -> None:
    """Each day with stored slots has its day_exports partition materialized, and its sums
    file has a row for each of its slots."""
    stored = slots_by_day(pipeline)
    assert exported_days(pipeline) == set(stored)
    for day, slots in stored.items():
        assert len(read_csv(pipeline.exports / day / f"sum_{day}.csv")) == slots, day


@pytest.mark.slow
def test_a_new_instance_exports_every_stored_day_up_to_today_so_far(
    pipeline: Pipeline, daemon: DaemonTurns, clock_at: Callable[[str], datetime]
) -> None:
    """A new instance: gap repair stores the last 48 hours and a backfill two whole days, today's
    slots so far among them. The export sensor's request spans today, whose later slots have no
    partition yet, and every day gets its files."""
    daemon.instigate(clock_at("2026-01-07 15:10"))  # gap repair asks for the last 48 hours
    for day in ("2026-01-05", "2026-01-06"):
        slots = list(slots_in(beijing(f"{day} 00:00"), beijing(f"{day} 23:30") + SLOT))
        assert run_slots(slots, pipeline.instance).success
    for minute in ("15:11", "15:13", "15:15"):
        daemon.instigate(clock_at(f"2026-01-07 {minute}"))
        daemon.run_queued()
    assert slots_by_day(pipeline) == {"2026-01-05": 48, "2026-01-06": 48, "2026-01-07": 31}
    assert_every_stored_day_exported(pipeline)


@pytest.mark.slow
def test_a_failed_export_is_asked_for_again_until_the_day_is_exported(
    pipeline: Pipeline, daemon: DaemonTurns, clock_at: Callable[[str], datetime]
) -> None:
    daemon.instigate(clock_at("2026-01-06 02:40"))  # gap repair asks for the last 48 hours
    blocked = pipeline.exports / "2026-01-05"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the day's folder goes: the export cannot write")
    for minute in ("02:41", "02:43"):
        daemon.instigate(clock_at(f"2026-01-06 {minute}"))
        daemon.run_queued()
    assert exported_days(pipeline) == set()
    failed = pipeline.instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
    assert [run.asset_selection for run in failed] == [{AssetKey("day_exports")}], "it shows"

    blocked.unlink()  # what was wrong is put right; no slot changes
    for moment in ("02:50", "02:58", "03:11", "03:13"):
        daemon.instigate(clock_at(f"2026-01-06 {moment}"))
        daemon.run_queued()
        if moment < "03:10":
            assert exported_days(pipeline) == set(), "asked for again at :10, not every minute"
    assert_every_stored_day_exported(pipeline)
