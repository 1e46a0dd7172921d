"""The jobs: what the schedule, the sensors, the CLI and the UI's launchpad run."""

from dagster import AssetSelection, define_asset_job

from coinsum_pipeline.defs.assets import basket_slots, day_exports

slots_job = define_asset_job(
    "collect_slots",
    selection=AssetSelection.assets(basket_slots),
    description="Fetch and store one slot or a range of slots, with their checks.",
)

exports_job = define_asset_job(
    "export_days",
    selection=AssetSelection.assets(day_exports),
    description="Write the CSVs and charts of one Beijing day or a range of days.",
)
